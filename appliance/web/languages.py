"""The interface's language: the user's own choice, else the one picked on this device
before signing in, else the box's (the admin's choice); and text direction for it.

Each request's language is chosen here for Flask-Babel. A choice is a plain form (the
footer's), so it works without JavaScript, on the sign-in pages too.
"""

from __future__ import annotations

from flask import Blueprint, g, redirect, request, session

from appliance.messages import DEFAULT_LANGUAGE, LANGUAGES, RIGHT_TO_LEFT
from appliance.store import site, transaction, users
from appliance.web.access import current_user
from appliance.web.db import get_db
from appliance.web.errors import fail
from appliance.web.validate import local_path

bp = Blueprint("language", __name__)


def chosen() -> str:
    """This request's language (Flask-Babel's locale selector)."""
    if "language" not in g:
        user = current_user()
        picked = (user or {}).get("language") or session.get("language")
        if picked not in LANGUAGES:
            found = site.get(get_db())
            picked = found["language"] if found else DEFAULT_LANGUAGE
        g.language = picked if picked in LANGUAGES else DEFAULT_LANGUAGE
    return g.language


def direction() -> str:
    """ "rtl" for a right-to-left language (Arabic), else "ltr": for <html dir>."""
    return "rtl" if chosen() in RIGHT_TO_LEFT else "ltr"


def choose(language: str) -> None:
    """Use `language` from now on: this device's session, and a signed-in user's account."""
    if language not in LANGUAGES:
        fail(400, f"Choose one of: {', '.join(LANGUAGES)}.")
    session["language"] = language
    user = current_user()
    if user is not None:
        db = get_db()
        with transaction(db):
            users.set_language(db, user["id"], language)
    g.language = language  # Flask-Babel keeps this request's; the next one follows


@bp.post("/language")
def change():
    """The footer's language form; back to the page it was sent from."""
    choose(request.form.get("language", ""))
    return redirect(local_path(request.form.get("next", "")) or "/", 303)
