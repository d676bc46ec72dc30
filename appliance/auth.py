"""Signing in and out: staff with username and password, learners by class, name and PIN."""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from . import access
from .db import get_db
from .errors import fail
from .store import audit, classes, site, throttle, transaction, users
from .validate import local_path

bp = Blueprint("auth", __name__)

HOME_BY_ROLE = {"learner": "learner.home", "teacher": "teacher.home", "admin": "admin.status"}


def home_url(user: dict) -> str:
    return url_for(HOME_BY_ROLE[user["role"]])


def _safe_next(default: str) -> str:
    """Only a path on this box: an open redirect would let a link send a learner elsewhere."""
    return local_path(request.values.get("next", "")) or default


@bp.get("/")
def index():
    user = access.current_user()
    if user:
        return redirect(home_url(user))
    if site.get(get_db()) is None:
        return render_template("not_set_up.html"), 503
    return redirect(url_for("auth.signin"))


@bp.get("/signin")
def signin():
    db = get_db()
    return render_template("signin.html", classes=classes.all_classes(db), site=site.get(db))


@bp.get("/signin/class/<int:class_id>")
def signin_class(class_id: int):
    db = get_db()
    found = classes.get(db, class_id)
    if not found:
        abort(404)
    learners = [r for r in classes.roster(db, class_id) if r["active"]]
    return render_template("signin_class.html", cls=found, learners=learners)


def _wait_seconds(db, subjects: tuple[str, ...]) -> int:
    """Seconds until every subject may try again (0: now)."""
    config = current_app.config["SCHOOLBOX"]
    limits = {"addr": config.login_max_per_address}
    return max(
        throttle.wait_seconds(
            db, subject, limits.get(subject.split(":", 1)[0], config.login_max_per_account),
            config.login_window_s,
        )
        for subject in subjects
    )  # fmt: skip


def _too_many(wait: int) -> None:
    fail(429, _("Too many wrong tries. Please wait %(n)d minutes.", n=wait // 60 + 1), wait)


def _record(db, user: dict | None, subjects: tuple[str, ...], kind: str, target_id) -> None:
    """Audit the outcome; a success forgets the account's failures, a failure counts."""
    if user is None:
        throttle.prune(db, current_app.config["SCHOOLBOX"].login_window_s)
        throttle.fail(db, *subjects)
        audit.record(db, audit.SYSTEM, "signin.failure", "user", target_id, kind=kind)
    else:
        throttle.clear(db, subjects[0])
        audit.record(
            db, audit.Actor(user["id"], user["role"]), "signin.success", "user", user["id"]
        )


def learner_signin(learner_id: int, pin: str) -> dict:
    """Check a learner's PIN with throttling; the signed-in learner, or an HTTP error.

    The check, the count and the PIN comparison happen in one write transaction, so
    parallel guesses cannot slip past the limit (comparing an HMAC takes microseconds).
    """
    subjects = (f"learner:{learner_id}", f"addr:{access.client_address()}")
    db = get_db()
    with transaction(db):
        wait = _wait_seconds(db, subjects)
        user = None if wait else users.check_pin(db, learner_id, pin, current_app.config["PIN_KEY"])
        if not wait:
            _record(db, user, subjects, "learner", learner_id)
    if wait:
        _too_many(wait)
    if user is None:
        fail(401, _("That PIN is not right. Please try again, or ask your teacher."))
    access.sign_in(user)
    return user


def _account_subject(username: str) -> str:
    """A throttling key for a typed username, never the text itself (it may be a password
    typed into the wrong box)."""
    digest = hmac.new(current_app.config["PIN_KEY"], username.encode(), hashlib.sha256)
    return "user:" + digest.hexdigest()[:32]


def staff_signin(username: str, password: str) -> dict:
    """Check a staff password with throttling; the signed-in user, or an HTTP error.

    scrypt is too slow to run while holding the write lock, so the try is counted as a
    failure first (atomically with the limit check) and taken back if it succeeds.
    """
    username = (username or "").strip().lower()[:64]
    subjects = (_account_subject(username), f"addr:{access.client_address()}")
    db = get_db()
    with transaction(db):
        wait = _wait_seconds(db, subjects)
        counted = [] if wait else throttle.fail(db, *subjects)
    if wait:
        _too_many(wait)
    user = users.check_password(db, username, password)
    if user is not None and user["role"] == "learner":
        user = None
    with transaction(db):
        if user is None:
            audit.record(db, audit.SYSTEM, "signin.failure", "user", None, kind="staff")
        else:
            throttle.forget(db, counted)
            _record(db, user, subjects, "staff", user["id"])
    if user is None:
        fail(401, _("That username and password do not match."))
    access.sign_in(user)
    return user


@bp.route("/signin/learner/<int:learner_id>", methods=["GET", "POST"])
def signin_learner(learner_id: int):
    db = get_db()
    learner = users.get(db, learner_id)
    if not learner or learner["role"] != "learner" or not learner["active"]:
        abort(404)
    if request.method == "POST":
        try:
            user = learner_signin(learner_id, _typed_secret(learner))
        except HTTPException as error:  # show the form again, with what went wrong
            page = _learner_form(learner, error.description)
            return page, error.code, _retry_header(error)
        return redirect(_safe_next(home_url(user)))
    return _learner_form(learner)


def _typed_secret(learner: dict) -> str:
    """The PIN typed, or the four pictures tapped (fields picture1..picture4) as digits."""
    if learner["sign_in_with"] == "pictures":
        return "".join(request.form.get(f"picture{n}", "")[:1] for n in range(1, 5))
    return request.form.get("pin", "")


def _learner_form(learner: dict, error: str = ""):
    return render_template(
        "signin_learner.html", learner=learner, error=error, pictures=users.PICTURES
    )


@bp.route("/signin/staff", methods=["GET", "POST"])
def signin_staff():
    if request.method == "POST":
        try:
            user = staff_signin(request.form.get("username", ""), request.form.get("password", ""))
        except HTTPException as error:
            page = render_template("signin_staff.html", error=error.description)
            return page, error.code, _retry_header(error)
        return redirect(_safe_next(home_url(user)))
    return render_template("signin_staff.html")


def _retry_header(error: HTTPException) -> dict:
    retry = getattr(error, "retry_after", None)
    return {"Retry-After": str(retry)} if retry else {}


@bp.post("/signout")
def signout():
    access.sign_out()
    return redirect(url_for("auth.signin"))
