"""The admin's pages: status, staff, classes, learners (export, erase), content, audit, consent."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from werkzeug.utils import secure_filename

from appliance import __version__, health, paths
from appliance.config import secret_is_private
from appliance.knowledge import monitor as model_monitor
from appliance.messages import LANGUAGES
from appliance.packs.importer import import_pack
from appliance.packs.loader import PackError
from appliance.store import attempts, audit, classes, content, site, throttle, transaction, users
from appliance.web.access import actor, admin_required
from appliance.web.db import get_db
from appliance.web.metrics import database_bytes
from appliance.web.validate import small_int
from models.registry import installed as store
from models.tutor import client as tutor
from sync import enrolment
from sync.box import backup as school_backup
from sync.box import outbox
from sync.box import updates as box_updates
from sync.keys import private_bytes

bp = Blueprint("admin", __name__, url_prefix="/admin")


def box_status() -> dict:
    """The figures on the status page (and in the API)."""
    config = current_app.config["SCHOOLBOX"]
    db = get_db()
    disk = health.disk(config)
    counts = {
        role: n
        for role, n in db.conn.execute(
            "SELECT role, count(*) FROM users WHERE erased_at IS NULL GROUP BY role"
        )
    }
    return {
        "version": __version__,
        "site": site.get(db),
        "disk_free_bytes": disk.free,
        "disk_total_bytes": disk.total,
        "disk_low": disk.low,
        "secret_exposed": not secret_is_private(config),
        "database_bytes": database_bytes(config.db_path),
        "packs": content.packs(db),
        "users": counts,
        "attempts": attempts.count(db),
        "http": current_app.extensions["schoolbox_metrics"].summary(),
        "tutor": _tutor_status(config),
        "knowledge": model_monitor.report(db, config.home),
        "sync": _sync_status(db, config),
        "signin": _signin_status(db, config),
        "services": health.service_memory(),
        "system": health.system(config.home),
    }


def _signin_status(db, config) -> dict:
    """Wrong sign-in tries on the box now: a guessing storm is raised to the admin."""
    rules = throttle.Limits.of(config)
    wrong = throttle.count(db, "box", rules.window_s)
    return {"wrong_tries": wrong, "minutes": rules.window_s // 60, "alarm": wrong >= rules.alarm_at}


def _sync_status(db, config) -> dict:
    """The sync queue and whether the box can sync at all, for the admin."""

    return {
        "consented": site.is_consented(db, "sync"),
        "district": bool(enrolment.district_keys(config.home)),
        "hub": config.sync_url or None,
        **outbox.status(db, config.home, outbox.Settings.of(config)),
        "updates": box_updates.recent(db),
        "backup": _backup_status(config),
        "federated": {
            "consented": site.is_consented(db, "federated"),
            "invited": paths.federation_invitation(config.home).exists(),
            "hours": config.federated_hours,
            "weekends": config.federated_weekends,
        },
    }


def _backup_status(config) -> dict:
    """The school's recovery key and the last backup the hub took (docs/image.md)."""
    key = school_backup.recovery_key(config.home)
    return {
        "recovery_key": key.fingerprint() if key else None,
        "last_sent": school_backup.last_sent(config.home),
    }


def _tutor_status(config) -> dict:
    """The active tutor model and whether the tutor service is up, for the admin."""

    active = store.active(config.home, "tutor-llm")
    return {
        "model": active.to_json() if active else None,
        "service": tutor.status(config.tutor_socket_path),  # None when it is not running
    }


@bp.get("/")
@admin_required
def status():
    return render_template("admin/status.html", status=box_status())


@bp.get("/users")
@admin_required
def staff():
    db = get_db()
    rules = throttle.Limits.of(current_app.config["SCHOOLBOX"])
    key = current_app.config["PIN_KEY"]
    found = [
        {**u, "lock": throttle.lock_state(db, throttle.staff_account(key, u["username"]), rules)}
        for u in users.staff(db)
    ]
    return render_template("admin/users.html", staff=found)


@bp.post("/users/<int:user_id>/unlock")
@admin_required
def unlock_staff(user_id: int):
    """Let a teacher or admin sign in again at once after wrong tries."""
    db = get_db()
    target = users.get(db, user_id)
    if not target or target["role"] == "learner":
        abort(404)
    with transaction(db):
        account = throttle.staff_account(current_app.config["PIN_KEY"], target["username"])
        throttle.unlock(db, account)
        audit.record(db, actor(), "signin.unlock", "user", user_id)
    flash(_("%(name)s can sign in again.", name=target["display_name"]), "ok")
    return redirect(url_for(".staff"))


@bp.post("/users")
@admin_required
def create_staff():
    db = get_db()
    form = request.form
    try:
        with transaction(db):
            users.create_staff(
                db,
                actor(),
                form.get("role", "teacher"),
                form.get("display_name", ""),
                form.get("username", ""),
                form.get("password", ""),
            )
    except users.UserError as error:
        flash(str(error), "error")
    else:
        flash(_("Account created."), "ok")
    return redirect(url_for(".staff"))


@bp.post("/users/<int:user_id>")
@admin_required
def update_staff(user_id: int):
    db = get_db()
    target = users.get(db, user_id)
    if not target or target["role"] == "learner":
        abort(404)
    form = request.form
    try:
        with transaction(db):
            if form.get("role") and form["role"] != target["role"]:
                users.set_role(db, actor(), user_id, form["role"])
            if form.get("password"):
                users.set_password(db, actor(), user_id, form["password"])
                account = throttle.staff_account(current_app.config["PIN_KEY"], target["username"])
                throttle.unlock(db, account)  # a new password from the admin unlocks
            if form.get("active") in ("0", "1") and int(form["active"]) != target["active"]:
                users.set_active(db, actor(), user_id, form["active"] == "1")
    except users.UserError as error:
        flash(str(error), "error")
    else:
        flash(_("Account updated."), "ok")
    return redirect(url_for(".staff"))


@bp.get("/classes")
@admin_required
def all_classes():
    db = get_db()
    teachers = [u for u in users.staff(db) if u["role"] == "teacher" and u["active"]]
    return render_template("admin/classes.html", classes=classes.all_classes(db), teachers=teachers)


@bp.post("/classes")
@admin_required
def create_class():
    db = get_db()
    teacher = _chosen_teacher(db)
    teacher_id = teacher["id"] if teacher else None
    if request.form.get("teacher_id") and teacher is None:
        abort(400)
    try:
        with transaction(db):
            classes.create(db, actor(), request.form.get("name", ""), teacher_id)
    except classes.ClassError as error:
        flash(str(error), "error")
    else:
        flash(_("Class created."), "ok")
    return redirect(url_for(".all_classes"))


@bp.post("/classes/<int:class_id>/teachers")
@admin_required
def add_class_teacher(class_id: int):
    db = get_db()
    teacher = _chosen_teacher(db)
    if not classes.get(db, class_id):
        abort(404)
    if teacher is None:
        flash(_("Choose a teacher."), "error")
    else:
        with transaction(db):
            classes.add_teacher(db, actor(), class_id, teacher["id"])
        flash(_("Teacher added to the class."), "ok")
    return redirect(url_for(".all_classes"))


def _chosen_teacher(db) -> dict | None:
    """The teacher or admin picked in the form's teacher_id, or None."""
    teacher_id = request.form.get("teacher_id", type=small_int)
    teacher = users.get(db, teacher_id) if teacher_id else None
    return teacher if teacher and teacher["role"] != "learner" else None


@bp.get("/learners")
@admin_required
def learners():
    db = get_db()
    return render_template(
        "admin/learners.html",
        learners=users.learners(db),
        pin_digits=(site.get(db) or {}).get("pin_digits", 4),
    )


@bp.post("/learners/pin-digits")
@admin_required
def set_pin_digits():
    """The school's choice of 4- or 6-digit PINs for learners (new and reset PINs)."""
    digits = request.form.get("digits", type=small_int)
    if digits not in (4, 6):
        abort(400)
    db = get_db()
    with transaction(db):
        site.set_pin_digits(db, actor(), digits)
    flash(_("New PINs will have %(n)d digits. Existing PINs keep working.", n=digits), "ok")
    return redirect(url_for(".learners"))


@bp.post("/language")
@admin_required
def set_language():
    """The box's language: every page's, until a user picks their own."""
    language = request.form.get("language", "")
    if language not in LANGUAGES:
        abort(400)
    db = get_db()
    with transaction(db):
        site.set_language(db, actor(), language)
    flash(_("The box's language is now %(name)s.", name=LANGUAGES[language]), "ok")
    return redirect(url_for(".status"))


@bp.post("/learners/<int:learner_id>/export")
@admin_required
def export_learner(learner_id: int):
    db = get_db()
    with transaction(db):
        data = users.export_learner(db, actor(), learner_id)
    if data is None:
        abort(404)
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="learner-{learner_id}.json"'},
    )


@bp.post("/learners/<int:learner_id>/erase")
@admin_required
def erase_learner(learner_id: int):
    db = get_db()
    if request.form.get("confirm") != "erase":
        flash(_("Type erase in the box to confirm."), "error")
        return redirect(url_for(".learners"))
    with transaction(db):
        erased = users.erase_learner(db, actor(), learner_id)
    if not erased:
        abort(404)
    flash(_("The learner's personal data and answers were erased."), "ok")
    return redirect(url_for(".learners"))


@bp.post("/recovery-key")
@admin_required
def make_recovery_key():
    """A new recovery key for the school's backups: the private half is this response, a
    download the school keeps; the box keeps only the public half."""
    if request.form.get("confirm") != "keep":
        flash(_("Tick the box to say the school will keep the key safe."), "error")
        return redirect(url_for(".status") + "#backup")
    config = current_app.config["SCHOOLBOX"]
    keys = school_backup.new_recovery_key(config.home)
    fingerprint = keys.public().fingerprint()
    with transaction(get_db()) as db:
        audit.record(db, actor(), "recovery_key.create", "recovery_key", fingerprint)
    return Response(
        private_bytes(keys),
        mimetype="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="schoolbox-recovery-{fingerprint}.key"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/content")
@admin_required
def content_page():
    db = get_db()
    return render_template("admin/content.html", packs=content.packs(db))


@bp.post("/content")
@admin_required
def upload_pack():
    upload = request.files.get("pack")
    if not upload or not upload.filename:
        flash(_("Choose a content pack (.zip) to upload."), "error")
        return redirect(url_for(".content_page"))
    config = current_app.config["SCHOOLBOX"]
    with tempfile.TemporaryDirectory(dir=config.home) as folder:
        # Saved under the chosen file's own (made safe) name: the pack's errors name it.
        path = Path(folder) / (secure_filename(upload.filename) or "pack.zip")
        upload.save(path)
        try:
            result = import_pack(get_db(), config.media_dir, path, actor())
        except PackError as error:
            return render_template(
                "admin/content.html", packs=content.packs(get_db()), problems=error.problems
            ), 400
    flash(result.message, "ok")
    return redirect(url_for(".content_page"))


@bp.get("/audit")
@admin_required
def audit_page():
    db = get_db()
    entries = audit.search(
        db,
        action=request.args.get("action") or None,
        actor_id=request.args.get("actor", type=small_int),
        target_id=request.args.get("target") or None,
    )
    return render_template(
        "admin/audit.html", entries=audit.readable(db, entries), actions=audit.actions(db)
    )


@bp.get("/consent")
@admin_required
def consent():
    return render_template(
        "admin/consent.html", consents=site.consents(get_db()), features=site.FEATURES
    )


@bp.post("/consent")
@admin_required
def set_consent():
    db = get_db()
    feature = request.form.get("feature", "")
    if feature not in site.FEATURES:
        abort(400)
    with transaction(db):
        site.set_consent(db, actor(), feature, request.form.get("granted") == "1")
    flash(_("Saved."), "ok")
    return redirect(url_for(".consent"))
