"""The learner's pages: home, lessons, one-item-at-a-time practice, and my progress."""

from __future__ import annotations

import secrets

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _

from appliance import practice
from appliance.knowledge import recommend
from appliance.store import (
    assignments,
    attempts,
    class_lessons,
    content,
    conversations,
    mastery,
    quizzes,
    resources,
)
from appliance.tutor import conversation as tutoring
from appliance.web import tutor as tutor_http
from appliance.web.access import current_user, learner_required, signed_in_required
from appliance.web.db import get_db
from appliance.web.errors import fail

bp = Blueprint("learner", __name__, url_prefix="/learn")


@bp.get("/")
@learner_required
def home():
    db = get_db()
    learner = current_user()
    assigned = assignments.of_learner(db, learner["id"])
    recent = attempts.recent(db, learner["id"], limit=1)
    return render_template(
        "learner/home.html",
        assigned=assigned,
        quizzes=quizzes.of_learner(db, learner["id"]),
        made=class_lessons.of_learner(db, learner["id"]),
        last=recent[0] if recent else None,
    )


@bp.get("/lessons")
@signed_in_required
def library():
    return render_template("learner/library.html", lessons=content.lessons(get_db()))


@bp.get("/search")
@signed_in_required
def search():
    """Lesson text and questions matching the words typed; a learner never finds the
    questions of a quiz they are taking."""
    query = request.args.get("q", "")[:200]
    found = _search(get_db(), current_user(), query)
    return render_template("learner/search.html", query=query, **found)


def _search(db, user: dict, query: str) -> dict:
    hidden = quizzes.live_item_ids(db, user["id"]) if user["role"] == "learner" else set()
    return {
        "passages": content.search(db, query),
        "questions": content.search_items(db, query, hidden),
        "resources": content.search_resources(db, query),
    }


@bp.get("/lessons/<lesson_id>")
@signed_in_required
def lesson(lesson_id: str):
    found = content.lesson(get_db(), lesson_id)
    if not found:
        abort(404)
    if current_user()["role"] == "learner":  # for the teacher's completion and time report
        assignments.viewed(get_db(), current_user()["id"], lesson_id)
    panel = _tutor_panel(lesson_id)
    if panel["tutor_on"]:  # the class will ask about it: the tutor reads it now
        tutoring.read_ahead(get_db(), current_app.config["SCHOOLBOX"], lesson_id)
    found_resources = resources.of_lesson(get_db(), lesson_id)
    done = {}
    if current_user()["role"] == "learner":
        ids = [r["id"] for r in found_resources]
        done = resources.progress(get_db(), current_user()["id"], ids)
    return render_template(
        "learner/lesson.html",
        lesson=found,
        resources=found_resources,
        done=done,
        kind_names=resources.KIND_NAMES,
        **panel,
    )


@bp.get("/practice/<lesson_id>")
@learner_required
def practise(lesson_id: str):
    db = get_db()
    learner = current_user()
    found = content.lesson(db, lesson_id)
    if not found:
        abort(404)
    restart = bool(request.args.get("restart"))
    done = practice.session_progress(db, session, learner["id"], lesson_id, restart)
    if done["answered"] >= done["total"]:
        return render_template("learner/practice_done.html", lesson=found, done=done)
    item_id = request.args.get("item")
    if not item_id:
        avoid = request.args.get("after")
        choice = recommend.choose_and_log(db, _home(), learner["id"], [lesson_id], avoid)
        item_id = choice.item_id if choice else None
    item = content.item(db, item_id) if item_id else None
    if item is None or item["lesson_id"] != lesson_id:
        return render_template("learner/practice_empty.html", lesson=found)
    if item["id"] in quizzes.live_item_ids(db, learner["id"]):
        fail(409, _("This question is in a quiz you are taking: answer it there."))
    return _practice_page(found, item, request.args.get("hints", 0, type=int), done)


@bp.get("/practice/next")
@learner_required
def practise_next():
    """Start on what to practise next across the learner's assigned lessons."""
    choice = recommend.next_assigned(get_db(), _home(), current_user()["id"])
    if choice is None:
        return redirect(url_for("learner.library"))
    return redirect(url_for("learner.practise", lesson_id=choice.lesson_id, item=choice.item_id))


def _home():
    return current_app.config["SCHOOLBOX"].home


def _practice_page(lesson: dict, item: dict, hints_shown: int, done: dict, error: str = ""):
    hints_shown = max(0, min(hints_shown, len(item["hints"] or [])))
    tutor_http.open_item(item["id"])  # the tutor hides this item's answer until it is answered
    return render_template(
        "learner/practice.html",
        lesson=lesson,
        item=content.public_item(item),
        hints=(item["hints"] or [])[:hints_shown],
        hints_shown=hints_shown,
        done=done,
        client_key=secrets.token_urlsafe(12),
        error=error,
        **_tutor_panel(lesson["id"], item["id"]),
    )


def _tutor_panel(lesson_id: str, item_id: str | None = None) -> dict:
    """What the tutor panel needs: shown to learners whose school and class allow it."""
    user = current_user()
    on = bool(user and user["role"] == "learner")
    on = on and conversations.tutor_allowed(get_db(), user["id"])
    return {"tutor_on": on, "tutor_lesson_id": lesson_id, "tutor_item_id": item_id}


@bp.post("/practice/<lesson_id>")
@learner_required
def answer(lesson_id: str):
    db = get_db()
    learner = current_user()
    found = content.lesson(db, lesson_id)
    if not found:
        abort(404)
    form = request.form
    try:
        result = practice.submit(
            db,
            learner["id"],
            form.get("item_id", ""),
            form.get("response", ""),
            form.get("hints_used", 0, type=int),
            None,
            form.get("client_key") or None,
            lesson_id=lesson_id,
            home=_home(),
        )
    except practice.AnswerError as error:
        item = content.item(db, form.get("item_id", ""))
        if error.status == 404 or item is None:  # e.g. retired by a pack upgrade mid-session
            fail(error.status, str(error))
        done = practice.session_progress(db, session, learner["id"], lesson_id)
        hints = form.get("hints_used", 0, type=int)
        return _practice_page(found, item, hints, done, str(error)), 400
    tutor_http.open_item(None)
    done = practice.session_progress(db, session, learner["id"], lesson_id)
    return render_template(
        "learner/feedback.html",
        lesson=found,
        result=result,
        item=content.public_item(result["item"]),
        done=done,
    )


@bp.post("/tutor")
@learner_required
def ask_tutor():
    """A question for the tutor from a lesson or practice page: streamed when the page's
    script asks for events, a whole page back when there is no JavaScript."""
    form = request.form
    answer = tutor_http.start(form.get("question", ""), form.get("lesson_id"), form.get("item_id"))
    if "text/event-stream" in request.headers.get("Accept", ""):
        return tutor_http.sse(answer)
    return render_template(
        "learner/tutor.html",
        question=form.get("question", "")[:500],
        lesson_id=form.get("lesson_id") or None,
        item_id=form.get("item_id") or None,
        **tutor_http.collect(answer),
    )


@bp.get("/progress")
@learner_required
def progress():
    db = get_db()
    learner = current_user()
    return render_template(
        "learner/progress.html",
        skills=attempts.skill_progress(db, learner["id"]),
        estimates=mastery.of_learner(db, learner["id"]),
        assigned=assignments.of_learner(db, learner["id"]),
    )
