"""Importing people from a CSV file: learners by an admin (into any class, new ones made)
or by a teacher (into their class), staff by an admin. Upload, read the preview with
every line's problems, then add them all, and print the PINs or passwords once."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request, url_for
from flask_babel import gettext as _

from appliance.store import classes, roster, site, transaction, users
from appliance.web.access import actor, admin_required, managed_class, teacher_required
from appliance.web.db import get_db

bp = Blueprint("roster", __name__)


def _upload() -> bytes | None:
    """The file sent (first step) or the text carried by the preview (confirm step)."""
    sent = request.files.get("file")
    if sent and sent.filename:
        return sent.read(roster.MAX_BYTES + 1)
    carried = request.form.get("csv", "")
    return carried.encode("utf-8") if carried else None


@bp.route("/admin/learners/import", methods=["GET", "POST"])
@admin_required
def import_learners():
    db = get_db()
    every_class = {c["name"].casefold(): c["id"] for c in classes.all_classes(db)}
    return _learners_step(
        db, action=url_for(".import_learners"), back=url_for("admin.learners"),
        heading=_("Import learners"), allowed=every_class, may_make=True, default_class="",
    )  # fmt: skip


@bp.route("/teach/classes/<int:class_id>/import", methods=["GET", "POST"])
@teacher_required
def import_class_learners(class_id: int):
    found = managed_class(class_id)
    return _learners_step(
        get_db(), action=url_for(".import_class_learners", class_id=class_id),
        back=url_for("teacher.class_page", class_id=class_id),
        heading=_("Import learners into %(cls)s", cls=found["name"]),
        allowed={found["name"].casefold(): class_id}, may_make=False,
        default_class=found["name"],
    )  # fmt: skip


def _learners_step(db, *, action, back, heading, allowed, may_make, default_class):
    page = {"action": action, "back": back, "heading": heading, "kind": "learners"}
    data = _upload() if request.method == "POST" else None
    if data is None:
        if request.method == "POST":
            page["error"] = _("Choose a CSV file first.")
        return render_template("roster_import.html", **page)
    digits = site.pin_digits(db)
    try:
        preview = roster.read_learners(
            db, data, pin_digits=digits, allowed_classes=allowed, may_make_classes=may_make,
            default_class=default_class,
        )  # fmt: skip
        if request.form.get("confirm") == "yes" and preview.ok:
            with transaction(db):
                sheet = roster.add_learners(
                    db, actor(), preview, current_app.config["PIN_KEY"], digits
                )
            return render_template("roster_sheet.html", sheet=sheet, back=back, kind="learners")
    except (roster.RosterError, users.UserError, classes.ClassError) as error:
        return render_template("roster_import.html", **page, error=str(error))
    return render_template(
        "roster_import.html", **page, preview=preview, csv=data.decode("utf-8-sig")
    )


@bp.route("/admin/users/import", methods=["GET", "POST"])
@admin_required
def import_staff():
    db = get_db()
    page = {"action": url_for(".import_staff"), "back": url_for("admin.staff"),
            "heading": _("Import staff"), "kind": "staff"}  # fmt: skip
    data = _upload() if request.method == "POST" else None
    if data is None:
        if request.method == "POST":
            page["error"] = _("Choose a CSV file first.")
        return render_template("roster_import.html", **page)
    try:
        preview = roster.read_staff(db, data)
        if request.form.get("confirm") == "yes" and preview.ok:
            with transaction(db):
                sheet = roster.add_staff(db, actor(), preview)
            return render_template("roster_sheet.html", sheet=sheet, back=page["back"],
                                   kind="staff")  # fmt: skip
    except (roster.RosterError, users.UserError, classes.ClassError) as error:
        return render_template("roster_import.html", **page, error=str(error))
    return render_template(
        "roster_import.html", **page, preview=preview, csv=data.decode("utf-8-sig")
    )
