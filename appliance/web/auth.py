"""Signing in and out: staff with username and password, learners by class, name and PIN."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from appliance import provisioning, setup_code
from appliance.logs import event
from appliance.store import audit, classes, site, throttle, transaction, users
from appliance.web import access, devices
from appliance.web.db import get_db
from appliance.web.errors import fail
from appliance.web.validate import local_path

bp = Blueprint("auth", __name__)
log = logging.getLogger("schoolbox.auth")

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
    db = get_db()
    if site.get(db) is None:
        first_boot = provisioning.last_status(_home())
        return render_template("not_set_up.html", first_boot=first_boot), 503
    if setup_code.waiting(_home(), db):
        return redirect(url_for("auth.setup"))
    return redirect(url_for("auth.signin"))


def _home():
    return current_app.config["SCHOOLBOX"].home


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


def limits() -> throttle.Limits:
    return throttle.Limits.of(current_app.config["SCHOOLBOX"])


def _try(account: str, class_ids: tuple[int, ...] = ()) -> throttle.Try:
    address = access.client_address()
    return throttle.Try(
        account=account,
        source=devices.source(address),
        address=address,
        known_device=devices.knows(account),
        class_ids=class_ids,
    )


def _too_many(wait: int, scope: str) -> None:
    minutes = wait // 60 + 1
    if scope == "account":
        message = _(
            "There were too many wrong tries for this name from other devices. Sign in on "
            "a device you have used before, ask your teacher to unlock it, or wait "
            "%(n)d minutes.",
            n=minutes,
        )
    elif scope == "box":
        message = _(
            "There were too many wrong tries on this box just now. Please wait %(n)d "
            "minutes, or sign in on a device you have used before.",
            n=minutes,
        )
    else:
        message = _(
            "Too many wrong tries on this device. Please wait %(n)d minutes, or ask your teacher.",
            n=minutes,
        )
    fail(429, message, wait)


def _count_failure(db, attempt: throttle.Try) -> list[int]:
    rules = limits()
    throttle.prune(db, rules.window_s)
    return throttle.fail(db, attempt, rules)


def _count_first(db, attempt: throttle.Try) -> list[int]:
    """A try checked slowly (scrypt, a file) is counted as a failure before the check,
    atomically with the limit, and taken back (`throttle.forget`) if it succeeds; a
    blocked try is refused with 429 and not counted."""
    with transaction(db):
        wait, scope = throttle.blocked(db, attempt, limits())
        counted = [] if wait else _count_failure(db, attempt)
    if wait:
        _too_many(wait, scope)
    return counted


def _audit_failure(db, attempt: throttle.Try, kind: str, target_id) -> None:
    """Audit a wrong try, and alert the admin when the box is being guessed at."""
    audit.record(db, audit.SYSTEM, "signin.failure", "user", target_id, kind=kind)
    rules = limits()
    if not attempt.known_device and throttle.count(db, "box", rules.window_s) == rules.alarm_at:
        audit.record(
            db, audit.SYSTEM, "signin.alarm", "box", None,
            wrong_tries=rules.alarm_at, minutes=rules.window_s // 60,
        )  # fmt: skip
        event(log, "signin_alarm", logging.WARNING, wrong_tries=rules.alarm_at)


def _succeeded(db, attempt: throttle.Try, user: dict) -> None:
    throttle.clear_source(db, attempt)
    audit.record(db, audit.Actor(user["id"], user["role"]), "signin.success", "user", user["id"])
    devices.remember(attempt.account)


def learner_signin(learner_id: int, pin: str) -> dict:
    """Check a learner's PIN with throttling; the signed-in learner, or an HTTP error.

    The check, the count and the PIN comparison happen in one write transaction, so
    parallel guesses cannot slip past the limit (comparing an HMAC takes microseconds).
    """
    db = get_db()
    account = throttle.learner_account(learner_id)
    attempt = _try(account, tuple(classes.of_learner(db, learner_id)))
    with transaction(db):
        wait, scope = throttle.blocked(db, attempt, limits())
        user = None if wait else users.check_pin(db, learner_id, pin, current_app.config["PIN_KEY"])
        if not wait:  # a blocked try is not counted: waiting must end
            if user is None:
                _count_failure(db, attempt)
                _audit_failure(db, attempt, "learner", learner_id)
            else:
                _succeeded(db, attempt, user)
    if wait:
        _too_many(wait, scope)
    if user is None:
        fail(401, _("That PIN is not right. Please try again, or ask your teacher."))
    access.sign_in(user)
    return user


def staff_signin(username: str, password: str) -> dict:
    """Check a staff password with throttling; the signed-in user, or an HTTP error.
    scrypt is too slow to run while holding the write lock: see `_count_first`."""
    username = (username or "").strip().lower()[:64]
    attempt = _try(throttle.staff_account(current_app.config["PIN_KEY"], username))
    db = get_db()
    counted = _count_first(db, attempt)
    user = users.check_password(db, username, password)
    if user is not None and user["role"] == "learner":
        user = None
    with transaction(db):
        if user is None:
            _audit_failure(db, attempt, "staff", None)
        else:
            throttle.forget(db, counted)
            _succeeded(db, attempt, user)
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


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """The first admin claims a box that set itself up from a site file, with the
    one-time code first boot showed on the screen and wrote to the stick."""
    db = get_db()
    if site.get(db) is None or not setup_code.waiting(_home(), db):
        return redirect(url_for("auth.index"))
    if request.method == "GET":
        return render_template("setup.html", form={})
    try:
        user = _claim(request.form)
    except HTTPException as error:
        page = render_template("setup.html", error=error.description, form=request.form)
        return page, error.code, _retry_header(error)
    return redirect(url_for(HOME_BY_ROLE[user["role"]]))


def _claim(form) -> dict:
    """Check the code with sign-in throttling, then create the first admin, once: the
    check that no admin exists and the creation are one write transaction."""
    attempt = _try("setup-code")
    db = get_db()
    counted = _count_first(db, attempt)
    if not setup_code.matches(_home(), form.get("code", "")):
        with transaction(db):
            _audit_failure(db, attempt, "setup-code", None)
        fail(401, _("That setup code is not right. It is on the box's screen and in "
                    "schoolbox-setup.txt on the stick the site file came from."))  # fmt: skip
    if form.get("password", "") != form.get("password_again", ""):
        fail(400, _("The two passwords are not the same."))
    try:
        with transaction(db):
            if setup_code.has_admin(db):
                fail(409, _("This box already has an admin: sign in instead."))
            user_id = users.create_staff(
                db, audit.SYSTEM, "admin", form.get("display_name", ""),
                form.get("username", ""), form.get("password", ""),
            )  # fmt: skip
            throttle.forget(db, counted)
            audit.record(db, audit.SYSTEM, "site.claim", "user", user_id)
    except users.UserError as error:
        fail(400, str(error))
    setup_code.use(_home())
    user = users.get(db, user_id)
    with transaction(db):
        _succeeded(db, attempt, user)
    access.sign_in(user)
    return user


@bp.post("/signout")
def signout():
    access.sign_out()
    return redirect(url_for("auth.signin"))
