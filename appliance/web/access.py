"""Who is signed in, and the decorators that guard every view and API call by role."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import abort, g, redirect, request, session, url_for

from appliance.store import audit, classes, transaction, users
from appliance.web.db import get_db


def sign_in(user: dict) -> None:
    """Start a fresh session for `user` (a new cookie, so a planted one is useless)."""
    session.clear()
    session["uid"] = user["id"]
    session["sv"] = user["session_version"]
    session.permanent = (
        user["role"] != "learner"
    )  # shared class devices: learners end with the browser


def sign_out() -> None:
    """End this user's sessions everywhere: a copied cookie dies with the one signed out.

    Sessions are cookies signed by the box, so the only way to void a copy is to move the
    user's session version on (checked on every request by current_user)."""
    user = current_user()
    if user is not None:
        db = get_db()
        with transaction(db):
            users.end_sessions(db, user["id"])
    session.clear()


def current_user() -> dict | None:
    """The signed-in user, or None. A session is void once the user's version moves on."""
    if "user" not in g:
        g.user = None
        uid = session.get("uid")
        if uid is not None:
            user = users.get(get_db(), uid)
            if user and user["active"] and user["session_version"] == session.get("sv"):
                g.user = user
            else:
                session.clear()
    return g.user


def actor() -> audit.Actor:
    """The signed-in user as the audit log's actor."""
    user = current_user()
    return audit.Actor(user["id"], user["role"]) if user else audit.SYSTEM


def managed_class(class_id: int) -> dict:
    """The class if the signed-in teacher (or an admin) manages it; 404 otherwise (not
    403: whether another teacher's class exists is not theirs to know)."""
    db = get_db()
    if not classes.can_manage(db, current_user(), class_id):
        abort(404)
    return classes.get(db, class_id)


def class_work(class_id: int, work_id: int, get: Callable) -> tuple[dict, dict]:
    """(the class, its work) for a quiz or composed lesson of a class the teacher manages,
    loaded by `get(db, work_id)`; 404 if either is not theirs or not there."""
    found = managed_class(class_id)
    work = get(get_db(), work_id)
    if work is None or work["class_id"] != class_id:
        abort(404)
    return found, work


def is_api() -> bool:
    return request.blueprint == "api"


def roles_required(*roles: str) -> Callable:
    """Allow a view only to signed-in users with one of `roles`."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            user = current_user()
            if user is None:
                if is_api() or request.method != "GET":
                    abort(401)
                return redirect(url_for("auth.signin", next=request.full_path.rstrip("?")))
            if user["role"] not in roles:
                abort(403)
            return view(*args, **kwargs)

        guarded.allowed_roles = roles  # read by the role x endpoint test
        return guarded

    return decorate


learner_required = roles_required("learner")
teacher_required = roles_required("teacher", "admin")
admin_required = roles_required("admin")
signed_in_required = roles_required("learner", "teacher", "admin")


def client_address() -> str:
    """The client's address, for throttling only (never logged with a person)."""
    return request.remote_addr or "unknown"
