"""The JSON API under /api/v1: the same operations as the pages, for apps and scripts.

Described in openapi.py and served at /api/v1/openapi.json. State-changing calls need
the session cookie and the X-CSRFToken header from GET or POST /api/v1/session.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

from flask import Blueprint, abort, current_app, jsonify, request, session, url_for
from flask_wtf.csrf import generate_csrf
from markupsafe import escape

from appliance import practice
from appliance.knowledge import insight, recommend
from appliance.messages import LANGUAGES
from appliance.store import (
    assignments,
    attempts,
    class_lessons,
    classes,
    content,
    groups,
    mastery,
    quizzes,
    reports,
    resources,
    roster,
    site,
    transaction,
    users,
)
from appliance.web import access, auth, languages
from appliance.web import tutor as tutor_http
from appliance.web.access import (
    current_user,
    learner_required,
    signed_in_required,
    teacher_required,
)
from appliance.web.db import get_db
from appliance.web.errors import fail
from appliance.web.openapi import document
from appliance.web.validate import is_id

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _body() -> dict:
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # absurdly nested JSON
        data = None
    if not isinstance(data, dict):
        fail(400, "Send a JSON object with Content-Type: application/json.")
    return data


def _user_json(user: dict | None) -> dict | None:
    if user is None:
        return None
    return {"id": user["id"], "role": user["role"], "name": user["display_name"]}


@bp.get("/openapi.json")
def openapi():
    return jsonify(document())


@bp.get("/signin/classes")
def signin_classes():
    return jsonify(
        classes=[{"id": c["id"], "name": c["name"]} for c in classes.all_classes(get_db())]
    )


@bp.get("/signin/classes/<int:class_id>/learners")
def signin_learners(class_id: int):
    db = get_db()
    if not classes.get(db, class_id):
        abort(404)
    roster = [
        {"id": r["id"], "name": r["display_name"], "sign_in_with": r["sign_in_with"]}
        for r in classes.roster(db, class_id)
        if r["active"]
    ]
    # A picture code is sent as its digits 1-9 in "pin", in the order tapped.
    pictures = [{"digit": digit, "picture": key} for digit, key, _ in users.PICTURES]
    return jsonify(learners=roster, pictures=pictures)


@bp.get("/session")
def get_session():
    return jsonify(
        user=_user_json(current_user()),
        csrf_token=generate_csrf(),
        language=languages.chosen(),
        direction=languages.direction(),
        languages=LANGUAGES,
    )


@bp.post("/session")
def create_session():
    data = _body()
    if "learner_id" in data:
        if not is_id(data["learner_id"]):
            fail(400, "learner_id must be a learner's id (a positive whole number).")
        user = auth.learner_signin(data["learner_id"], str(data.get("pin", "")))
    else:
        user = auth.staff_signin(str(data.get("username", "")), str(data.get("password", "")))
    return jsonify(user=_user_json(user), csrf_token=generate_csrf())


@bp.put("/session/language")
def set_language():
    """This device's language, and the signed-in user's (anyone: the sign-in pages too)."""
    languages.choose(str(_body().get("language", "")))
    return jsonify(language=languages.chosen(), direction=languages.direction())


@bp.delete("/session")
def delete_session():
    access.sign_out()
    return jsonify(user=None)


@bp.get("/lessons")
@signed_in_required
def lessons():
    db = get_db()
    user = current_user()
    assigned = assignments.of_learner(db, user["id"]) if user["role"] == "learner" else []
    return jsonify(assigned=assigned, lessons=content.lessons(db))


@bp.get("/lessons/<lesson_id>")
@signed_in_required
def lesson(lesson_id: str):
    found = content.lesson(get_db(), lesson_id)
    if not found:
        abort(404)
    if current_user()["role"] == "learner":  # as the page does: the teacher's reports
        assignments.viewed(get_db(), current_user()["id"], lesson_id)
    keys = ("id", "pack_id", "subject", "title", "summary", "body_html", "updated_at")
    found_resources = [_resource(r) for r in resources.of_lesson(get_db(), lesson_id)]
    return jsonify(lesson={k: found[k] for k in keys}, resources=found_resources)


_RESOURCE_KEYS = (
    "id", "lesson_id", "kind", "title", "description", "mime", "bytes", "duration_s",
    "licence", "attribution", "url", "page_count",
)  # fmt: skip


def _resource(found: dict) -> dict:
    """A resource as a client needs it: where its file and captions are, and what it is."""
    shaped = {k: found[k] for k in _RESOURCE_KEYS}
    shaped["captions"] = [
        {**c, "url": f"{found['folder']}/resources/{c['file']}"} for c in found["captions"]
    ]
    shaped["page_url"] = url_for("resource.show", resource_id=found["id"])
    return shaped


@bp.get("/resources/<resource_id>")
@signed_in_required
def resource(resource_id: str):
    """One resource; for a learner, their progress with it (opened, done)."""
    db = get_db()
    found = resources.get(db, resource_id)
    if not found:
        abort(404)
    shaped = _resource(found)
    if current_user()["role"] == "learner":
        shaped["progress"] = resources.progress(db, current_user()["id"], [resource_id]).get(
            resource_id, "not_started"
        )
    return jsonify(resource=shaped)


@bp.post("/resources/<resource_id>/done")
@learner_required
def resource_done(resource_id: str):
    """The learner finished a resource (a player reports it at the end); saved durably."""
    db = get_db()
    if not resources.get(db, resource_id):
        abort(404)
    done_at = resources.finish(db, current_user()["id"], resource_id)
    return jsonify(resource_id=resource_id, progress="done", done_at=done_at)


def _practice_state(lesson_id: str) -> dict:
    return practice.session_progress(get_db(), session, current_user()["id"], lesson_id)


@bp.get("/lessons/<lesson_id>/next-item")
@learner_required
def next_item(lesson_id: str):
    db = get_db()
    if not content.lesson(db, lesson_id):
        abort(404)
    avoid = request.args.get("after")  # the item just answered, if the client knows it
    choice = recommend.choose_and_log(db, _home(), current_user()["id"], [lesson_id], avoid)
    return _chosen(choice, session=_practice_state(lesson_id))


@bp.get("/practice/next")
@learner_required
def practise_next():
    """What to practise next across the learner's assigned lessons (none: item is null)."""
    return _chosen(recommend.next_assigned(get_db(), _home(), current_user()["id"]))


def _chosen(choice, **extra):
    """A chosen item as JSON, opened for the tutor's answer guard."""
    item = content.item(get_db(), choice.item_id) if choice else None
    tutor_http.open_item(item["id"] if item else None)
    return jsonify(
        item=content.public_item(item) if item else None,
        reason=choice.reason if choice else None,
        **extra,
    )


def _home():
    return current_app.config["SCHOOLBOX"].home


@bp.get("/items/<item_id>/hints/<int:number>")
@learner_required
def hint(item_id: str, number: int):
    item = content.item(get_db(), item_id)
    if not item or not 1 <= number <= len(item["hints"] or []):
        abort(404)
    if item_id in quizzes.live_item_ids(get_db(), current_user()["id"]):
        fail(409, "This question is in a quiz you are taking: no hints there.")
    return jsonify(hint_html=item["hints"][number - 1], number=number, of=len(item["hints"]))


@bp.post("/attempts")
@learner_required
def submit_attempt():
    data = _body()
    for key, kind in (("hints_used", int), ("duration_ms", int)):
        if data.get(key) is not None and (
            not isinstance(data[key], kind) or isinstance(data[key], bool)
        ):
            fail(400, f"{key} must be a whole number.")
    if not isinstance(data.get("response"), str | int | float) or isinstance(
        data.get("response"), bool
    ):
        fail(400, "response must be text or a number.")
    try:
        result = practice.submit(
            get_db(),
            current_user()["id"],
            str(data.get("item_id", "")),
            str(data["response"]),
            data.get("hints_used") or 0,
            data.get("duration_ms"),
            data.get("client_key"),
            home=_home(),
        )
    except practice.AnswerError as error:
        fail(error.status, str(error))
    item = result.pop("item")
    next_id = result.pop("next_item_id")
    next_found = content.item(get_db(), next_id) if next_id else None
    tutor_http.open_item(next_found["id"] if next_found else None)  # the reply opens it
    return jsonify(
        **result,
        session=_practice_state(item["lesson_id"]),
        next_item=content.public_item(next_found) if next_found else None,
    ), (201 if result["recorded"] else 200)


@bp.get("/progress")
@learner_required
def my_progress():
    return _progress(current_user()["id"])


@bp.get("/learners/<int:learner_id>/progress")
@signed_in_required
def learner_progress(learner_id: int):
    if not classes.can_see_learner(get_db(), current_user(), learner_id):
        abort(404)
    return _progress(learner_id)


def _with_response_html(attempt: dict) -> dict:
    """An answer as the API has always given it: `response_html`, what the learner chose
    (the choice's HTML) or typed (escaped)."""
    chosen = attempt.pop("chosen_html")
    return {
        **attempt,
        "response_html": chosen if chosen is not None else str(escape(attempt["response"])),
    }


def _progress(learner_id: int):
    db = get_db()
    return jsonify(
        learner=_user_json(users.get(db, learner_id)),
        skills=attempts.skill_progress(db, learner_id),
        mastery=mastery.of_learner(db, learner_id),  # the model's estimates, when it has one
        assigned=assignments.of_learner(db, learner_id),
        recent=[_with_response_html(a) for a in attempts.recent(db, learner_id, limit=20)],
    )


@bp.get("/classes")
@signed_in_required
def my_classes():
    return jsonify(classes=classes.for_user(get_db(), current_user()))


@bp.get("/classes/<int:class_id>/progress")
@teacher_required
def class_progress(class_id: int):
    db = get_db()
    if not classes.can_manage(db, current_user(), class_id):
        abort(404)
    roster = [{"id": r["id"], "name": r["display_name"]} for r in classes.roster(db, class_id)]
    skills = [{"id": s["id"], "name": s["name"]} for s in content.skills(db)]
    grid = attempts.class_grid(db, class_id)
    cells, flags = insight.class_view(db, class_id, grid, {s["id"]: s["name"] for s in skills})
    return jsonify(
        learners=roster,
        skills=skills,
        grid={str(k): v for k, v in grid.items()},
        # Estimated mastery (or the share right, where "estimated" is false) per cell.
        mastery={str(k): v for k, v in cells.items()},
        flags=[vars(f) for f in flags],
        assignments=assignments.of_class(db, class_id),
    )


# --- groups and assignments (a teacher's own classes) ----------------------------------


def _id_list(data: dict, key: str) -> list[int]:
    values = data.get(key, [])
    if not isinstance(values, list) or not all(is_id(v) for v in values):
        fail(400, f"'{key}' must be a list of ids.")
    return values


@bp.get("/classes/<int:class_id>/groups")
@teacher_required
def class_groups(class_id: int):
    access.managed_class(class_id)
    return jsonify(groups=_groups_json(class_id))


@bp.post("/classes/<int:class_id>/groups")
@teacher_required
def create_group(class_id: int):
    access.managed_class(class_id)
    data = _body()
    db = get_db()
    try:
        with transaction(db):
            group_id = groups.create(
                db, access.actor(), class_id, str(data.get("name", "")),
                _id_list(data, "learners"),
            )  # fmt: skip
    except groups.GroupError as error:
        fail(400, str(error))
    return jsonify(group=_group_json(groups.get(db, class_id, group_id))), 201


@bp.put("/classes/<int:class_id>/groups/<int:group_id>")
@teacher_required
def update_group(class_id: int, group_id: int):
    access.managed_class(class_id)
    db = get_db()
    group = groups.get(db, class_id, group_id) or abort(404)
    data = _body()
    try:
        with transaction(db):
            groups.update(
                db, access.actor(), group, str(data.get("name", "")), _id_list(data, "learners")
            )
    except groups.GroupError as error:
        fail(400, str(error))
    return jsonify(group=_group_json(groups.get(db, class_id, group_id)))


@bp.delete("/classes/<int:class_id>/groups/<int:group_id>")
@teacher_required
def delete_group(class_id: int, group_id: int):
    access.managed_class(class_id)
    db = get_db()
    group = groups.get(db, class_id, group_id) or abort(404)
    try:
        with transaction(db):
            groups.delete(db, access.actor(), group)
    except groups.GroupError as error:
        fail(409, str(error))
    return jsonify(deleted=group_id)


def _group_json(group: dict) -> dict:
    return {"id": group["id"], "name": group["name"], "learners": group["members"]}


def _groups_json(class_id: int) -> list[dict]:
    return [_group_json(g) for g in groups.of_class(get_db(), class_id)]


@bp.get("/classes/<int:class_id>/assignments")
@teacher_required
def class_assignments(class_id: int):
    access.managed_class(class_id)
    return jsonify(assignments=assignments.of_class(get_db(), class_id))


@bp.get("/classes/<int:class_id>/assignments/<lesson_id>")
@teacher_required
def class_assignment(class_id: int, lesson_id: str):
    access.managed_class(class_id)
    db = get_db()
    found = next((a for a in assignments.of_class(db, class_id) if a["lesson_id"] == lesson_id),
                 None) or abort(404)  # fmt: skip
    return jsonify(assignment=found, learners=assignments.progress(db, class_id, lesson_id))


@bp.put("/classes/<int:class_id>/assignments/<lesson_id>")
@teacher_required
def set_assignment(class_id: int, lesson_id: str):
    access.managed_class(class_id)
    db = get_db()
    if not content.lesson(db, lesson_id):
        abort(404)
    data = _body()
    due_on = data.get("due_on")
    try:
        due = date.fromisoformat(due_on) if due_on is not None else None
    except (TypeError, ValueError):
        fail(400, "'due_on' must be a day as YYYY-MM-DD, or null.")
    try:
        with transaction(db):
            created = assignments.set_lesson(
                db, access.actor(), class_id, lesson_id, due_on=due,
                groups=_id_list(data, "groups"), learners=_id_list(data, "learners"),
            )  # fmt: skip
    except assignments.AssignmentError as error:
        fail(400, str(error))
    found = next(a for a in assignments.of_class(db, class_id) if a["lesson_id"] == lesson_id)
    return jsonify(assignment=found), 201 if created else 200


@bp.delete("/classes/<int:class_id>/assignments/<lesson_id>")
@teacher_required
def delete_assignment(class_id: int, lesson_id: str):
    access.managed_class(class_id)
    db = get_db()
    if not any(a["lesson_id"] == lesson_id for a in assignments.of_class(db, class_id)):
        abort(404)
    with transaction(db):
        assignments.unassign(db, access.actor(), class_id, lesson_id)
    return jsonify(deleted=lesson_id)


# --- reports -------------------------------------------------------------------------------


@bp.get("/classes/<int:class_id>/reports/lessons")
@teacher_required
def lessons_report(class_id: int):
    access.managed_class(class_id)
    report = reports.lesson_completion(get_db(), class_id)
    return jsonify(
        lessons=report["lessons"],
        learners=[{"id": r["id"], "name": r["display_name"]} for r in report["learners"]],
        cells=[
            {"learner_id": learner, "lesson_id": lesson} | cell
            for (learner, lesson), cell in report["cells"].items()
        ],
    )


@bp.get("/classes/<int:class_id>/reports/difficult-questions")
@teacher_required
def difficult_report(class_id: int):
    access.managed_class(class_id)
    found = reports.difficult_questions(get_db(), class_id, practice.response_html)
    keys = ("item_id", "lesson_id", "lesson_title", "prompt_html", "answers", "wrong",
            "share_wrong", "common_wrong")  # fmt: skip
    return jsonify(questions=[{k: q[k] for k in keys} for q in found])


# --- roster import --------------------------------------------------------------------------


def _roster_reply(preview: roster.Preview, add):
    """The preview as JSON; with ?dry_run=0 and every line fine, the lines added (201)."""
    lines = [vars(line) for line in preview.lines]
    if request.args.get("dry_run", "1") != "0" or not preview.ok:
        return jsonify(ok=preview.ok, lines=lines, new_classes=preview.new_classes)
    db = get_db()
    try:
        with transaction(db):
            added = add(db)
    except (roster.RosterError, users.UserError, classes.ClassError) as error:
        fail(400, str(error))
    return jsonify(ok=True, added=added, new_classes=preview.new_classes), 201


def _csv_body() -> bytes:
    data = request.get_data(cache=False)
    if len(data) > roster.MAX_BYTES or not data:
        fail(
            400,
            f"Send the CSV file as the request body (text/csv), up to {roster.MAX_BYTES} bytes.",
        )
    return data


@bp.post("/roster/learners")
@access.admin_required
def import_learners():
    db = get_db()
    every = {c["name"].casefold(): c["id"] for c in classes.all_classes(db)}
    try:
        preview = roster.read_learners(db, _csv_body(), pin_digits=site.pin_digits(db),
                                       allowed_classes=every, may_make_classes=True)  # fmt: skip
    except roster.RosterError as error:
        fail(400, str(error))
    key = current_app.config["PIN_KEY"]
    return _roster_reply(
        preview, lambda w: roster.add_learners(w, access.actor(), preview, key, site.pin_digits(w))
    )


@bp.post("/classes/<int:class_id>/roster")
@teacher_required
def import_class_learners(class_id: int):
    found = access.managed_class(class_id)
    db = get_db()
    try:
        preview = roster.read_learners(
            db, _csv_body(), pin_digits=site.pin_digits(db),
            allowed_classes={found["name"].casefold(): class_id}, may_make_classes=False,
            default_class=found["name"],
        )  # fmt: skip
    except roster.RosterError as error:
        fail(400, str(error))
    key = current_app.config["PIN_KEY"]
    return _roster_reply(
        preview, lambda w: roster.add_learners(w, access.actor(), preview, key, site.pin_digits(w))
    )


@bp.post("/roster/staff")
@access.admin_required
def import_staff():
    db = get_db()
    try:
        preview = roster.read_staff(db, _csv_body())
    except roster.RosterError as error:
        fail(400, str(error))
    return _roster_reply(preview, lambda w: roster.add_staff(w, access.actor(), preview))


# --- lessons a teacher composed ------------------------------------------------------------


def _class_lesson_json(lesson: dict) -> dict:
    parts = [{"position": p["position"], "lesson_id": p["lesson_id"], "item_id": p["item_id"],
              "resource_id": p["resource_id"], "source_title": p["source_title"]}
             for p in lesson["parts"]]  # fmt: skip
    keys = ("id", "class_id", "title", "due_on", "created_at", "groups", "learners")
    return {k: lesson[k] for k in keys} | {"parts": parts}


@bp.get("/classes/<int:class_id>/lessons")
@teacher_required
def class_made_lessons(class_id: int):
    access.managed_class(class_id)
    return jsonify(lessons=class_lessons.of_class(get_db(), class_id))


@bp.post("/classes/<int:class_id>/lessons")
@teacher_required
def create_class_lesson(class_id: int):
    access.managed_class(class_id)
    data = _body()
    parts = data.get("parts", [])
    if not isinstance(parts, list) or not all(
        isinstance(p, dict) and isinstance(p.get("lesson_id"), str)
        and isinstance(p.get("item_id"), str | None)
        and isinstance(p.get("resource_id"), str | None) for p in parts
    ):  # fmt: skip
        fail(
            400, "'parts' is a list of {lesson_id, item_id or resource_id (neither: the reading)}."
        )
    due = data.get("due_on")
    try:
        due_on = date.fromisoformat(due) if due is not None else None
    except (TypeError, ValueError):
        fail(400, "'due_on' must be a day as YYYY-MM-DD, or null.")
    db = get_db()
    try:
        with transaction(db):
            made = class_lessons.create(
                db, access.actor(), class_id, str(data.get("title", "")),
                [(p["lesson_id"], p.get("item_id"), p.get("resource_id")) for p in parts],
                due_on=due_on,
                groups_=_id_list(data, "groups"), learners=_id_list(data, "learners"),
            )  # fmt: skip
    except class_lessons.ClassLessonError as error:
        fail(400, str(error))
    return jsonify(lesson=_class_lesson_json(class_lessons.get(db, made))), 201


def _made_lesson(class_id: int, class_lesson_id: int) -> dict:
    return access.class_work(class_id, class_lesson_id, class_lessons.get)[1]


@bp.get("/classes/<int:class_id>/lessons/<int:class_lesson_id>")
@teacher_required
def class_made_lesson(class_id: int, class_lesson_id: int):
    lesson = _made_lesson(class_id, class_lesson_id)
    return jsonify(
        lesson=_class_lesson_json(lesson), learners=class_lessons.progress(get_db(), lesson)
    )


@bp.delete("/classes/<int:class_id>/lessons/<int:class_lesson_id>")
@teacher_required
def delete_class_lesson(class_id: int, class_lesson_id: int):
    lesson = _made_lesson(class_id, class_lesson_id)
    db = get_db()
    with transaction(db):
        class_lessons.delete(db, access.actor(), lesson)
    return jsonify(deleted=class_lesson_id)


@bp.get("/class-lessons")
@learner_required
def my_class_lessons():
    return jsonify(lessons=class_lessons.of_learner(get_db(), current_user()["id"]))


@bp.get("/class-lessons/<int:class_lesson_id>")
@learner_required
def my_class_lesson(class_lesson_id: int):
    """A composed lesson's parts in order: readings' text and questions (never their
    keys), with how far the learner got."""
    db = get_db()
    learner_id = current_user()["id"]
    lesson = class_lessons.for_learner(db, class_lesson_id, learner_id) or abort(404)
    parts = []
    for part in lesson["parts"]:
        if part["resource_id"] is not None:
            parts.append({"kind": "resource", "lesson_id": part["lesson_id"],
                          "resource": _resource(part["resource"])})  # fmt: skip
        elif part["item_id"] is None:
            assignments.viewed(db, learner_id, part["lesson_id"], wait=True)
            body = (content.lesson(db, part["lesson_id"]) or {}).get("body_html", "")
            parts.append({"kind": "reading", "lesson_id": part["lesson_id"], "body_html": body})
        else:
            parts.append({"kind": "question", "lesson_id": part["lesson_id"],
                          "item": content.public_item(part["item"])})  # fmt: skip
    progress = class_lessons.progress_of(db, class_lesson_id, learner_id, lesson["due_on"])
    return jsonify(lesson={"id": lesson["id"], "title": lesson["title"],
                           "due_on": lesson["due_on"]} | progress, parts=parts)  # fmt: skip


# --- quizzes ------------------------------------------------------------------------------


def _class_quiz(class_id: int, quiz_id: int) -> dict:
    return access.class_work(class_id, quiz_id, quizzes.get)[1]


_QUIZ_KEYS = ("id", "class_id", "title", "state", "phase", "opens_at", "closes_at",
              "started_at", "closed_at")  # fmt: skip


def _quiz_json(quiz: dict) -> dict:
    """A quiz for its teacher: with whom it is set for."""
    return _learners_quiz_json(quiz) | {"groups": quiz["groups"], "learners": quiz["learners"]}


def _learners_quiz_json(quiz: dict) -> dict:
    """A quiz for a learner taking it: never who else it was set for."""
    return {k: quiz.get(k) for k in _QUIZ_KEYS} | {"item_ids": [i["id"] for i in quiz["items"]]}


def _utc_or_none(data: dict, key: str) -> str | None:
    found = data.get(key)
    if found is None:
        return None
    try:
        moment = datetime.fromisoformat(str(found).replace("Z", "+00:00"))
    except ValueError:
        fail(400, f"'{key}' must be an ISO 8601 time with its zone, or null.")
    if moment.tzinfo is None:
        fail(400, f"'{key}' must say its time zone (for example 2027-03-19T09:30:00Z).")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@bp.get("/classes/<int:class_id>/quizzes")
@teacher_required
def class_quizzes(class_id: int):
    access.managed_class(class_id)
    return jsonify(quizzes=quizzes.of_class(get_db(), class_id))


@bp.post("/classes/<int:class_id>/quizzes")
@teacher_required
def create_quiz(class_id: int):
    access.managed_class(class_id)
    data = _body()
    items = data.get("items", [])
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        fail(400, "'items' must be a list of item ids.")
    draw = data.get("random") or {}
    count, skills = draw.get("count", 0), draw.get("skills", [])
    if not (isinstance(count, int) and 0 <= count <= quizzes.MAX_ITEMS) or not (
        isinstance(skills, list) and all(isinstance(k, str) for k in skills)
    ):
        fail(400, "'random' is {count: 0-50, skills: [skill ids]}.")
    db = get_db()
    drawn = quizzes.random_items(db, skills, count, random.SystemRandom())
    try:
        with transaction(db):
            quiz_id = quizzes.create(
                db, access.actor(), class_id, str(data.get("title", "")),
                items + [i for i in drawn if i not in items],
                groups_=_id_list(data, "groups"), learners=_id_list(data, "learners"),
                opens_at=_utc_or_none(data, "opens_at"), closes_at=_utc_or_none(data, "closes_at"),
            )  # fmt: skip
    except quizzes.QuizError as error:
        fail(400, str(error))
    return jsonify(quiz=_quiz_json(quizzes.get(db, quiz_id))), 201


@bp.get("/classes/<int:class_id>/quizzes/<int:quiz_id>")
@teacher_required
def class_quiz(class_id: int, quiz_id: int):
    quiz = _class_quiz(class_id, quiz_id)
    db = get_db()

    def shown(item: dict, response: str) -> str:
        return practice.response_html(item, response)

    return jsonify(
        quiz=_quiz_json(quiz),
        learners=quizzes.progress(db, quiz),
        questions=quizzes.item_results(db, quiz, shown),
    )


@bp.post("/classes/<int:class_id>/quizzes/<int:quiz_id>/start")
@teacher_required
def start_quiz(class_id: int, quiz_id: int):
    quiz = _class_quiz(class_id, quiz_id)
    db = get_db()
    try:
        with transaction(db):
            quizzes.start(db, access.actor(), quiz)
    except quizzes.QuizError as error:
        fail(409, str(error))
    return jsonify(quiz=_quiz_json(quizzes.get(db, quiz_id)))


@bp.post("/classes/<int:class_id>/quizzes/<int:quiz_id>/close")
@teacher_required
def close_quiz(class_id: int, quiz_id: int):
    quiz = _class_quiz(class_id, quiz_id)
    db = get_db()
    with transaction(db):
        quizzes.close(db, access.actor(), quiz)
    return jsonify(quiz=_quiz_json(quizzes.get(db, quiz_id)))


@bp.delete("/classes/<int:class_id>/quizzes/<int:quiz_id>")
@teacher_required
def delete_quiz(class_id: int, quiz_id: int):
    quiz = _class_quiz(class_id, quiz_id)
    db = get_db()
    try:
        with transaction(db):
            quizzes.delete(db, access.actor(), quiz)
    except quizzes.QuizError as error:
        fail(409, str(error))
    return jsonify(deleted=quiz_id)


@bp.get("/quizzes")
@learner_required
def my_quizzes():
    return jsonify(quizzes=quizzes.of_learner(get_db(), current_user()["id"]))


@bp.get("/quizzes/<int:quiz_id>")
@learner_required
def my_quiz(quiz_id: int):
    """The quiz's questions (never their keys) while it is open, and what the learner
    answered; once closed, the grade, the right answer and the explanation of each."""
    db = get_db()
    learner_id = current_user()["id"]
    quiz = quizzes.for_learner(db, quiz_id, learner_id) or abort(404)
    given = quizzes.answers(db, quiz_id, learner_id)
    handed_in = quizzes.finished(db, quiz_id, learner_id)
    if quiz["phase"] == "open" and not handed_in:
        quizzes.note_begun(db, quiz, learner_id)
    questions = []
    for item in quiz["items"] if quiz["phase"] != "scheduled" else []:
        attempt = given.get(item["id"])
        question = content.public_item(item) | {
            "position": item["position"],
            "answered": attempt is not None,
            "response": attempt["response"] if attempt else None,
        }
        if quiz["phase"] == "closed":
            question |= {
                "correct": bool(attempt and attempt["correct"]),
                "right_answer_html": practice.right_answer_html(item),
                "explanation_html": item["explanation_html"] or "",
            }
        questions.append(question)
    return jsonify(quiz=_learners_quiz_json(quiz) | {"handed_in": handed_in}, questions=questions)


@bp.post("/quizzes/<int:quiz_id>/answers")
@learner_required
def answer_quiz(quiz_id: int):
    data = _body()
    db = get_db()
    learner_id = current_user()["id"]
    quiz = quizzes.for_learner(db, quiz_id, learner_id) or abort(404)
    if data.get("duration_ms") is not None and not is_id(data["duration_ms"]):
        fail(400, "duration_ms must be a whole number.")
    response = data.get("response")
    if not isinstance(response, str | int | float) or isinstance(response, bool):
        fail(400, "response must be text or a number.")
    try:
        result = practice.submit_quiz_answer(
            db, quiz, learner_id, str(data.get("item_id", "")), str(response),
            data.get("duration_ms"), data.get("client_key"),
        )  # fmt: skip
    except practice.AnswerError as error:
        fail(error.status, str(error))
    return jsonify(result), 201 if result["recorded"] else 200


@bp.post("/quizzes/<int:quiz_id>/finish")
@learner_required
def finish_quiz(quiz_id: int):
    db = get_db()
    learner_id = current_user()["id"]
    quiz = quizzes.for_learner(db, quiz_id, learner_id) or abort(404)
    if quiz["phase"] != "open":
        fail(409, "This quiz is not open.")
    quizzes.hand_in(db, quiz, learner_id)
    return jsonify(handed_in=True)


@bp.post("/tutor/answers")
@learner_required
def ask_tutor():
    data = _body()
    question, lesson_id, item_id = (data.get(k) for k in ("question", "lesson_id", "item_id"))
    if not isinstance(question, str):
        fail(400, "Send a 'question' string.")
    if not all(v is None or isinstance(v, str) for v in (lesson_id, item_id)):
        fail(400, "'lesson_id' and 'item_id' must be strings.")
    answer = tutor_http.start(question, lesson_id, item_id)
    if data.get("stream") is True:
        return tutor_http.sse(answer)
    return jsonify(tutor_http.collect(answer))


@bp.get("/search")
@signed_in_required
def search():
    query = request.args.get("q", "")[:200]
    db, user = get_db(), current_user()
    hidden = quizzes.live_item_ids(db, user["id"]) if user["role"] == "learner" else set()
    return jsonify(
        results=content.search(db, query),  # lesson passages
        questions=content.search_items(db, query, hidden),
        resources=content.search_resources(db, query),
    )
