"""Lessons a teacher composes from any pack's readings and questions: the teacher's
compose form and progress page, and the learner's page that walks through the parts."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from appliance.richtext import text_of
from appliance.store import (
    assignments,
    class_lessons,
    classes,
    content,
    groups,
    resources,
    transaction,
)
from appliance.web.access import (
    actor,
    class_work,
    current_user,
    learner_required,
    managed_class,
    teacher_required,
)
from appliance.web.days import parse_day
from appliance.web.db import get_db
from appliance.web.validate import form_ids

bp = Blueprint("class_lesson", __name__)


def _class_lesson(class_id: int, lesson_id: int) -> tuple[dict, dict]:
    return class_work(class_id, lesson_id, class_lessons.get)


@bp.get("/teach/classes/<int:class_id>/lessons/new")
@teacher_required
def new_lesson(class_id: int):
    """The form: readings and questions from every pack, each with an optional place in
    the order (parts without one follow, in the page's order)."""
    found = managed_class(class_id)
    db = get_db()
    sources = []
    for lesson in content.lessons(db):
        items = [
            {"id": r[0], "text": text_of(r[1])[:140]}
            for r in db.conn.execute(
                "SELECT id, prompt_html FROM items WHERE lesson_id = ? AND retired = 0"
                " ORDER BY position",
                (lesson["id"],),
            )
        ]
        sources.append(
            {**lesson, "items": items, "resources": resources.of_lesson(db, lesson["id"])}
        )
    return render_template(
        "teacher/class_lesson_new.html",
        cls=found,
        sources=sources,
        groups=groups.of_class(db, class_id),
        roster=classes.roster(db, class_id),
        max_parts=class_lessons.MAX_PARTS,
    )


def chosen_parts(form) -> list[tuple[str, str | None, str | None]]:
    """The parts ticked, in the order the teacher numbered them (unnumbered ones after,
    in the page's order). A part's value is "lesson-id" (its reading), "lesson-id/item-id"
    (a question) or "lesson-id//resource-id" (a resource)."""
    picked = []
    for index, value in enumerate(form.getlist("part")):
        lesson_id, item_id, resource_id = (value.split("/") + ["", ""])[:3]
        place = form.get(f"order-{value}", type=int)
        key = (place if place is not None else 10_000, index)
        picked.append((key, (lesson_id, item_id or None, resource_id or None)))
    return [part for _key, part in sorted(picked)]


@bp.post("/teach/classes/<int:class_id>/lessons")
@teacher_required
def create_lesson(class_id: int):
    managed_class(class_id)
    db = get_db()
    form = request.form
    try:
        due_on = parse_day(form.get("due_on", ""))
        with transaction(db):
            lesson_id = class_lessons.create(
                db, actor(), class_id, form.get("title", ""), chosen_parts(form), due_on=due_on,
                groups_=form_ids(form.getlist("group")), learners=form_ids(form.getlist("learner")),
            )  # fmt: skip
    except (ValueError, class_lessons.ClassLessonError) as error:
        flash(str(error), "error")
        return redirect(url_for(".new_lesson", class_id=class_id))
    flash(_("Lesson made and set."), "ok")
    return redirect(url_for(".lesson_page", class_id=class_id, class_lesson_id=lesson_id))


@bp.get("/teach/classes/<int:class_id>/lessons/<int:class_lesson_id>")
@teacher_required
def lesson_page(class_id: int, class_lesson_id: int):
    found, lesson = _class_lesson(class_id, class_lesson_id)
    return render_template(
        "teacher/class_lesson.html",
        cls=found,
        lesson=lesson,
        learners=class_lessons.progress(get_db(), lesson),
    )


@bp.route(
    "/teach/classes/<int:class_id>/lessons/<int:class_lesson_id>/delete", methods=["GET", "POST"]
)
@teacher_required
def delete_lesson(class_id: int, class_lesson_id: int):
    """Asks first (GET), then removes the composed lesson (POST); answers stay."""
    found, lesson = _class_lesson(class_id, class_lesson_id)
    if request.method == "GET":
        return render_template("teacher/class_lesson_delete.html", cls=found, lesson=lesson)
    db = get_db()
    with transaction(db):
        class_lessons.delete(db, actor(), lesson)
    flash(_("Lesson removed. The packs and every answer stay."), "ok")
    return redirect(url_for("teacher.class_page", class_id=class_id) + "#made-heading")


@bp.get("/learn/class-lessons/<int:class_lesson_id>")
@learner_required
def learn(class_lesson_id: int):
    """The parts in the teacher's order: each reading in full, each question with a link
    to practise it; opening the page counts as opening its readings."""
    db = get_db()
    learner_id = current_user()["id"]
    lesson = class_lessons.for_learner(db, class_lesson_id, learner_id)
    if lesson is None:
        abort(404)
    readings = {p["lesson_id"] for p in lesson["parts"] if p["item_id"] is None
                and p["resource_id"] is None}  # fmt: skip
    for source in sorted(readings):
        assignments.viewed(db, learner_id, source, wait=True)  # counted on this page
    texts = {source: content.lesson(db, source) for source in readings}
    return render_template(
        "learner/class_lesson.html",
        lesson=lesson,
        texts=texts,
        kind_names=resources.KIND_NAMES,
        progress=class_lessons.progress_of(db, class_lesson_id, learner_id, lesson["due_on"]),
    )
