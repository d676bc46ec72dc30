"""Quiz pages: the teacher builds, starts, watches and closes a quiz; the learner takes
it one question at a time, without hints or feedback, and sees results once it closes."""

from __future__ import annotations

import random
import secrets

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup

from appliance import practice
from appliance.richtext import text_of
from appliance.store import classes, content, groups, quizzes, transaction
from appliance.web.access import (
    actor,
    class_work,
    current_user,
    learner_required,
    managed_class,
    teacher_required,
)
from appliance.web.days import utc_from_local
from appliance.web.db import get_db
from appliance.web.validate import form_ids

bp = Blueprint("quiz", __name__)
MAX_RANDOM = quizzes.MAX_ITEMS


# --- the teacher's pages ----------------------------------------------------------------


def _class_quiz(class_id: int, quiz_id: int) -> tuple[dict, dict]:
    return class_work(class_id, quiz_id, quizzes.get)


@bp.get("/teach/classes/<int:class_id>/quizzes/new")
@teacher_required
def new_quiz(class_id: int):
    """The form: questions picked by lesson, or drawn at random from skills; for whom;
    an optional window."""
    found = managed_class(class_id)
    db = get_db()
    return render_template(
        "teacher/quiz_new.html",
        cls=found,
        lessons=_lessons_with_items(db),
        skills=content.skills(db),
        groups=groups.of_class(db, class_id),
        roster=classes.roster(db, class_id),
        max_items=quizzes.MAX_ITEMS,
    )


def _lessons_with_items(db) -> list[dict]:
    found = []
    for lesson in content.lessons(db):
        items = [
            {"id": r[0], "text": text_of(r[1])[:140], "type": r[2]}
            for r in db.conn.execute(
                "SELECT id, prompt_html, type FROM items WHERE lesson_id = ? AND retired = 0"
                " ORDER BY position",
                (lesson["id"],),
            )
        ]
        if items:
            found.append({**lesson, "items": items})
    return found


@bp.post("/teach/classes/<int:class_id>/quizzes")
@teacher_required
def create_quiz(class_id: int):
    managed_class(class_id)
    db = get_db()
    form = request.form
    try:
        opens_at = utc_from_local(form.get("opens_at", ""))
        closes_at = utc_from_local(form.get("closes_at", ""))
        count = form.get("random_count", 0, type=int) or 0
        if not 0 <= count <= MAX_RANDOM:
            raise ValueError(_("Draw 0 to %(n)d questions at random.", n=MAX_RANDOM))
    except ValueError as error:
        flash(str(error), "error")
        return redirect(url_for(".new_quiz", class_id=class_id))
    chosen = form.getlist("item")
    drawn = quizzes.random_items(db, form.getlist("skill"), count, random.SystemRandom())
    picked = chosen + [i for i in drawn if i not in chosen]
    if count and not drawn:
        flash(_("Choose the skills to draw questions from."), "error")
        return redirect(url_for(".new_quiz", class_id=class_id))
    try:
        with transaction(db):
            quiz_id = quizzes.create(
                db, actor(), class_id, form.get("title", ""), picked,
                groups_=form_ids(form.getlist("group")), learners=form_ids(form.getlist("learner")),
                opens_at=opens_at, closes_at=closes_at,
            )  # fmt: skip
    except quizzes.QuizError as error:
        flash(str(error), "error")
        return redirect(url_for(".new_quiz", class_id=class_id))
    flash(_("Quiz saved. Start it when your class is ready."), "ok")
    return redirect(url_for(".quiz_page", class_id=class_id, quiz_id=quiz_id))


@bp.get("/teach/classes/<int:class_id>/quizzes/<int:quiz_id>")
@teacher_required
def quiz_page(class_id: int, quiz_id: int):
    """The quiz as it goes: who has started and finished, with scores, and per question
    how many got it right and the commonest wrong answers."""
    found, quiz = _class_quiz(class_id, quiz_id)
    db = get_db()
    return render_template(
        "teacher/quiz.html",
        cls=found,
        quiz=quiz,
        learners=quizzes.progress(db, quiz),
        results=quizzes.item_results(db, quiz, _shown),
    )


def _shown(item: dict, response: str) -> Markup:
    return Markup(practice.response_html(item, response))  # noqa: S704 - sanitised on import or escaped


@bp.post("/teach/classes/<int:class_id>/quizzes/<int:quiz_id>/start")
@teacher_required
def start_quiz(class_id: int, quiz_id: int):
    _cls, quiz = _class_quiz(class_id, quiz_id)
    db = get_db()
    try:
        with transaction(db):
            quizzes.start(db, actor(), quiz)
    except quizzes.QuizError as error:
        flash(str(error), "error")
    else:
        flash(_("The quiz is open to its learners."), "ok")
    return redirect(url_for(".quiz_page", class_id=class_id, quiz_id=quiz_id))


@bp.post("/teach/classes/<int:class_id>/quizzes/<int:quiz_id>/close")
@teacher_required
def close_quiz(class_id: int, quiz_id: int):
    _cls, quiz = _class_quiz(class_id, quiz_id)
    db = get_db()
    with transaction(db):
        quizzes.close(db, actor(), quiz)
    flash(_("The quiz is closed. Learners can see their results."), "ok")
    return redirect(url_for(".quiz_page", class_id=class_id, quiz_id=quiz_id))


@bp.route("/teach/classes/<int:class_id>/quizzes/<int:quiz_id>/delete", methods=["GET", "POST"])
@teacher_required
def delete_quiz(class_id: int, quiz_id: int):
    """Asks first (GET), then removes a quiz nobody has answered (POST)."""
    found, quiz = _class_quiz(class_id, quiz_id)
    if request.method == "GET":
        return render_template("teacher/quiz_delete.html", cls=found, quiz=quiz)
    db = get_db()
    try:
        with transaction(db):
            quizzes.delete(db, actor(), quiz)
    except quizzes.QuizError as error:
        flash(str(error), "error")
        return redirect(url_for(".quiz_page", class_id=class_id, quiz_id=quiz_id))
    flash(_("Quiz removed."), "ok")
    return redirect(url_for("teacher.class_page", class_id=class_id) + "#quizzes-heading")


# --- the learner's pages ----------------------------------------------------------------


def _learners_quiz(quiz_id: int) -> dict:
    quiz = quizzes.for_learner(get_db(), quiz_id, current_user()["id"])
    if quiz is None:
        abort(404)
    return quiz


@bp.get("/learn/quizzes/<int:quiz_id>")
@learner_required
def take(quiz_id: int):
    """The next question not yet answered (or the one asked for), the hand-in page when
    all are answered, the results once the quiz is closed."""
    quiz = _learners_quiz(quiz_id)
    db = get_db()
    learner_id = current_user()["id"]
    given = quizzes.answers(db, quiz_id, learner_id)
    if quiz["phase"] == "closed":
        return render_template("learner/quiz_results.html", quiz=quiz, given=given,
                               answer_html=_answer_html, right_html=_right_html)  # fmt: skip
    handed_in = quizzes.finished(db, quiz_id, learner_id)
    if quiz["phase"] == "scheduled" or handed_in:
        return render_template("learner/quiz_wait.html", quiz=quiz, given=given,
                               handed_in=handed_in)  # fmt: skip
    quizzes.note_begun(db, quiz, learner_id)
    position = request.args.get("q", type=int)
    waiting = [i for i in quiz["items"] if i["id"] not in given]
    item = next((i for i in quiz["items"] if i["position"] == position), None)
    if item is None or item["id"] in given:
        item = waiting[0] if waiting else None
    return render_template(
        "learner/quiz.html",
        quiz=quiz,
        given=given,
        item=content.public_item(item) if item else None,
        position=item["position"] if item else None,
        client_key=secrets.token_urlsafe(12),
    )


def _answer_html(item: dict, attempt: dict | None) -> Markup:
    text = practice.response_html(item, attempt["response"]) if attempt else ""
    return Markup(text)  # noqa: S704 - sanitised on import or escaped


def _right_html(item: dict) -> Markup:
    return Markup(practice.right_answer_html(item))  # noqa: S704 - sanitised on import or escaped


@bp.post("/learn/quizzes/<int:quiz_id>")
@learner_required
def answer(quiz_id: int):
    quiz = _learners_quiz(quiz_id)
    form = request.form
    try:
        with_key = form.get("client_key") or None
        practice.submit_quiz_answer(
            get_db(), quiz, current_user()["id"], form.get("item_id", ""),
            form.get("response", ""), client_key=with_key,
        )  # fmt: skip
    except practice.AnswerError as error:  # a stale page: say so on the quiz's own page
        flash(str(error), "error")
    return redirect(url_for(".take", quiz_id=quiz_id))


@bp.post("/learn/quizzes/<int:quiz_id>/finish")
@learner_required
def finish(quiz_id: int):
    quiz = _learners_quiz(quiz_id)
    if quiz["phase"] != "open":
        return redirect(url_for(".take", quiz_id=quiz_id))
    db = get_db()
    quizzes.hand_in(db, quiz, current_user()["id"])
    flash(_("Quiz handed in. You will see your results when your teacher closes it."), "ok")
    return redirect(url_for(".take", quiz_id=quiz_id))
