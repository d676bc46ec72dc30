"""The teacher's pages: classes, rosters and PINs, assignments, progress, a learner's history."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from appliance.knowledge import insight
from appliance.store import (
    assignments,
    attempts,
    audit,
    class_lessons,
    classes,
    content,
    conversations,
    groups,
    mastery,
    quizzes,
    recommendations,
    site,
    throttle,
    transaction,
    users,
)
from appliance.web.access import actor, current_user, managed_class, teacher_required
from appliance.web.days import parse_day
from appliance.web.db import get_db
from appliance.web.validate import form_ids

bp = Blueprint("teacher", __name__, url_prefix="/teach")
MAX_ROSTER = 60  # names in one paste
PAGE = 100  # tutor conversations per page


@bp.get("/")
@teacher_required
def home():
    return render_template("teacher/home.html", classes=classes.for_user(get_db(), current_user()))


@bp.post("/classes")
@teacher_required
def create_class():
    db = get_db()
    user = current_user()
    try:
        with transaction(db):
            class_id = classes.create(db, actor(), request.form.get("name", ""), user["id"])
    except classes.ClassError as error:
        flash(str(error), "error")
        return redirect(url_for(".home"))
    return redirect(url_for(".class_page", class_id=class_id))


@bp.get("/classes/<int:class_id>")
@teacher_required
def class_page(class_id: int):
    found = managed_class(class_id)
    db = get_db()
    rules = throttle.Limits.of(current_app.config["SCHOOLBOX"])
    roster = [
        {**learner, "lock": throttle.lock_state(db, throttle.learner_account(learner["id"]), rules)}
        for learner in classes.roster(db, class_id)
    ]
    return render_template(
        "teacher/class.html",
        cls=found,
        roster=roster,
        pin_digits=site.pin_digits(db),
        assignments=assignments.of_class(db, class_id),
        groups=groups.of_class(db, class_id),
        quizzes=quizzes.of_class(db, class_id),
        made=class_lessons.of_class(db, class_id),
        lessons=content.lessons(db),
        today=date.today().isoformat(),
    )


def parse_roster(text: str) -> list[str]:
    """Names pasted one per line (or separated by commas/semicolons), cleaned and de-duplicated."""
    names, seen = [], set()
    for raw in text.replace(";", "\n").replace(",", "\n").splitlines():
        name = " ".join(raw.split())
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    return names


@bp.post("/classes/<int:class_id>/roster")
@teacher_required
def add_learners(class_id: int):
    found = managed_class(class_id)
    names = parse_roster(request.form.get("names", ""))
    if not names:
        flash(_("Paste at least one name, one per line."), "error")
        return redirect(url_for(".class_page", class_id=class_id))
    if len(names) > MAX_ROSTER:
        flash(_("Add at most %(n)d names at a time.", n=MAX_ROSTER), "error")
        return redirect(url_for(".class_page", class_id=class_id))
    db = get_db()
    kind = _sign_in_kind()
    created = []
    try:
        with transaction(db):
            for name in names:
                secret = users.new_secret(kind, site.pin_digits(db))
                learner_id = users.create_learner(
                    db, actor(), name, secret, current_app.config["PIN_KEY"], kind
                )
                classes.enrol(db, actor(), class_id, learner_id)
                created.append(_sheet_row(users.validate_name(name), kind, secret))
    except users.UserError as error:
        flash(str(error), "error")
        return redirect(url_for(".class_page", class_id=class_id))
    # The PINs are shown once, on a page made for printing, and never stored in clear.
    return render_template("teacher/pins.html", cls=found, learners=created)


@bp.post("/classes/<int:class_id>/learners/<int:learner_id>/pin")
@teacher_required
def reset_pin(class_id: int, learner_id: int):
    found = managed_class(class_id)
    db = get_db()
    if learner_id not in {r["id"] for r in classes.roster(db, class_id)}:
        abort(404)
    kind = _sign_in_kind()
    secret = (request.form.get("pin") or "").strip() if kind == "pin" else ""
    secret = secret or users.new_secret(kind, site.pin_digits(db))
    try:
        if kind == "pin" and len(secret) < site.pin_digits(db):
            raise users.UserError(_("This school's PINs have %(n)d digits.", n=site.pin_digits(db)))
        with transaction(db):
            users.set_pin(db, actor(), learner_id, secret, current_app.config["PIN_KEY"], kind)
    except users.UserError as error:
        flash(str(error), "error")
        return redirect(url_for(".class_page", class_id=class_id))
    learner = users.get(db, learner_id)
    return render_template(
        "teacher/pins.html", cls=found, learners=[_sheet_row(learner["display_name"], kind, secret)]
    )


@bp.post("/classes/<int:class_id>/learners/<int:learner_id>/unlock")
@teacher_required
def unlock_learner(class_id: int, learner_id: int):
    """Let a learner sign in again at once after wrong tries (theirs or a stranger's)."""
    managed_class(class_id)
    db = get_db()
    learner = next((r for r in classes.roster(db, class_id) if r["id"] == learner_id), None)
    if learner is None:
        abort(404)
    with transaction(db):
        throttle.unlock(db, throttle.learner_account(learner_id))
        audit.record(db, actor(), "signin.unlock", "user", learner_id)
    flash(_("%(name)s can sign in again.", name=learner["display_name"]), "ok")
    return redirect(url_for(".class_page", class_id=class_id))


def _sign_in_kind() -> str:
    kind = request.form.get("sign_in_with", "pin")
    return kind if kind in users.SIGN_IN_KINDS else "pin"


def _sheet_row(name: str, kind: str, secret: str) -> dict:
    """One line of the printable sheet: the PIN, or the pictures in order."""
    pictures = users.picture_names(secret) if kind == "pictures" else []
    return {"name": name, "pin": secret if kind == "pin" else "", "pictures": pictures}


@bp.post("/classes/<int:class_id>/assignments")
@teacher_required
def assign(class_id: int):
    """Set a lesson for the class, a group or chosen learners, by a day if given; the
    same form changes who has a lesson already set, and by when."""
    managed_class(class_id)
    db = get_db()
    lesson_id = request.form.get("lesson_id", "")
    back = url_for(".class_page", class_id=class_id)
    if request.form.get("back") == "assignment":  # changed from the assignment's own page
        back = url_for(".assignment_page", class_id=class_id, lesson_id=lesson_id)
    if not content.lesson(db, lesson_id):
        flash(_("Choose a lesson to assign."), "error")
        return redirect(url_for(".class_page", class_id=class_id))
    try:
        due_on = parse_day(request.form.get("due_on", ""))
    except ValueError as error:
        flash(str(error), "error")
        return redirect(back)
    try:
        with transaction(db):
            new = assignments.set_lesson(
                db, actor(), class_id, lesson_id, due_on=due_on,
                groups=form_ids(request.form.getlist("group")),
                learners=form_ids(request.form.getlist("learner")),
            )  # fmt: skip
    except assignments.AssignmentError as error:
        flash(str(error), "error")
    else:
        flash(_("Lesson assigned.") if new else _("Assignment changed."), "ok")
    return redirect(back)


@bp.get("/classes/<int:class_id>/assignments/<lesson_id>")
@teacher_required
def assignment_page(class_id: int, lesson_id: str):
    """One lesson set for the class: who has it, by when, and how far each learner got."""
    found = managed_class(class_id)
    db = get_db()
    assigned = {a["lesson_id"]: a for a in assignments.of_class(db, class_id)}
    if lesson_id not in assigned:
        abort(404)
    return render_template(
        "teacher/assignment.html",
        cls=found,
        assignment=assigned[lesson_id],
        learners=assignments.progress(db, class_id, lesson_id),
        groups=groups.of_class(db, class_id),
        roster=classes.roster(db, class_id),
    )


@bp.route("/classes/<int:class_id>/assignments/<lesson_id>/delete", methods=["GET", "POST"])
@teacher_required
def unassign(class_id: int, lesson_id: str):
    """Asks first (GET), then removes the lesson from the class (POST); answers stay."""
    found = managed_class(class_id)
    db = get_db()
    assigned = {a["lesson_id"]: a for a in assignments.of_class(db, class_id)}
    if lesson_id not in assigned:
        abort(404)
    if request.method == "GET":
        return render_template("teacher/unassign.html", cls=found, lesson=assigned[lesson_id])
    with transaction(db):
        assignments.unassign(db, actor(), class_id, lesson_id)
    flash(_("Lesson removed from the class."), "ok")
    return redirect(url_for(".class_page", class_id=class_id))


# --- groups ---------------------------------------------------------------------------


def _class_group(class_id: int, group_id: int) -> tuple[dict, dict]:
    found = managed_class(class_id)
    group = groups.get(get_db(), class_id, group_id)
    if group is None:
        abort(404)
    return found, group


@bp.post("/classes/<int:class_id>/groups")
@teacher_required
def create_group(class_id: int):
    managed_class(class_id)
    db = get_db()
    try:
        with transaction(db):
            groups.create(
                db, actor(), class_id, request.form.get("name", ""),
                form_ids(request.form.getlist("learner")),
            )  # fmt: skip
    except groups.GroupError as error:
        flash(str(error), "error")
    else:
        flash(_("Group made."), "ok")
    return redirect(url_for(".class_page", class_id=class_id) + "#groups-heading")


@bp.get("/classes/<int:class_id>/groups/<int:group_id>")
@teacher_required
def group_page(class_id: int, group_id: int):
    found, group = _class_group(class_id, group_id)
    return render_template(
        "teacher/group.html", cls=found, group=group, roster=classes.roster(get_db(), class_id)
    )


@bp.post("/classes/<int:class_id>/groups/<int:group_id>")
@teacher_required
def update_group(class_id: int, group_id: int):
    _cls, group = _class_group(class_id, group_id)
    db = get_db()
    try:
        with transaction(db):
            groups.update(
                db, actor(), group, request.form.get("name", ""),
                form_ids(request.form.getlist("learner")),
            )  # fmt: skip
    except groups.GroupError as error:
        flash(str(error), "error")
        return redirect(url_for(".group_page", class_id=class_id, group_id=group_id))
    flash(_("Group saved."), "ok")
    return redirect(url_for(".class_page", class_id=class_id) + "#groups-heading")


@bp.route("/classes/<int:class_id>/groups/<int:group_id>/delete", methods=["GET", "POST"])
@teacher_required
def delete_group(class_id: int, group_id: int):
    """Asks first (GET), then removes the group (POST); its learners stay in the class."""
    found, group = _class_group(class_id, group_id)
    if request.method == "GET":
        return render_template("teacher/delete_group.html", cls=found, group=group)
    db = get_db()
    try:
        with transaction(db):
            groups.delete(db, actor(), group)
    except groups.GroupError as error:
        flash(str(error), "error")
        return redirect(url_for(".group_page", class_id=class_id, group_id=group_id))
    flash(_("Group removed."), "ok")
    return redirect(url_for(".class_page", class_id=class_id) + "#groups-heading")


@bp.post("/classes/<int:class_id>/tutor")
@teacher_required
def set_tutor(class_id: int):
    managed_class(class_id)
    db = get_db()
    with transaction(db):
        classes.set_tutor_enabled(db, actor(), class_id, request.form.get("enabled") == "1")
    return redirect(url_for(".class_page", class_id=class_id))


@bp.get("/classes/<int:class_id>/tutor")
@teacher_required
def tutor_conversations(class_id: int):
    """What the class's learners asked the tutor and what it said (human oversight)."""
    found = managed_class(class_id)
    config = current_app.config["SCHOOLBOX"]
    before = request.args.get("before", "")[:40] or None
    messages = conversations.for_class(get_db(), class_id, before, limit=PAGE)
    return render_template(
        "teacher/tutor.html",
        cls=found,
        messages=messages,
        older=messages[-1]["id"] if len(messages) == PAGE else None,
        retention_days=config.tutor_retention_days,
    )


@bp.get("/classes/<int:class_id>/progress")
@teacher_required
def class_progress(class_id: int):
    found = managed_class(class_id)
    db = get_db()
    grid = attempts.class_grid(db, class_id)
    practised = {skill for row in grid.values() for skill in row}
    skills = content.class_skills(db, class_id, also=practised)
    roster = classes.roster(db, class_id)
    names = {learner["id"]: learner["display_name"] for learner in roster}
    cells, flags = insight.class_view(db, class_id, grid, {s["id"]: s["name"] for s in skills})
    return render_template(
        "teacher/progress.html",
        cls=found,
        roster=roster,
        skills=skills,
        cells=cells,
        flags=[f for f in flags if f.learner_id in names],
        flagged={(f.learner_id, f.skill_id): f for f in flags},
        names=names,
    )


@bp.get("/learners/<int:learner_id>")
@teacher_required
def learner_history(learner_id: int):
    db = get_db()
    if not classes.can_see_learner(db, current_user(), learner_id):
        abort(404)
    return render_template(
        "teacher/learner.html",
        learner=users.get(db, learner_id),
        skills=attempts.skill_progress(db, learner_id),
        estimates=mastery.of_learner(db, learner_id),
        recommended=recommendations.of_learner(db, learner_id, limit=20),
        recent=attempts.recent(db, learner_id, limit=100),
    )
