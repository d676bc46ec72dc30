"""Error pages and JSON errors: a clear message for the person, never a stack trace."""

from __future__ import annotations

import errno
import logging
import sqlite3

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, default_exceptions

from appliance.logs import event

log = logging.getLogger("schoolbox.errors")
# A full disk is cleared by a person (old exports, a bigger card); the box picks up again
# by itself once there is room, so clients are asked to come back in a minute.
DISK_FULL_RETRY_S = 60


def _messages() -> dict[int, str]:
    return {
        400: _("Something in that request was not right. Please check it and try again."),
        401: _("Please sign in first."),
        403: _("You do not have access to that page."),
        404: _("We could not find that page."),
        405: _("That action is not possible here."),
        413: _("That file is too large to upload."),
        429: _("Too many tries. Please wait a little and try again."),
        500: _("Something went wrong on the box. Your work is safe; please try again."),
        503: _("The box is busy. Please try again in a moment."),
    }


def error_response(status: int, message: str | None = None, headers: dict | None = None):
    """One error as JSON (API) or as a page (browser)."""
    message = message or _messages().get(status, _messages()[400])
    wants_json = "text/event-stream" in request.headers.get("Accept", "")  # the tutor panel
    if request.blueprint == "api" or request.path.startswith("/api/") or wants_json:
        response = jsonify(error={"status": status, "message": message})
    else:
        response = render_template("error.html", status=status, message=message)
    return response, status, headers or {}


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return error_response(
            400, _("This form has expired. Please go back, reload the page and try again.")
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        message = error.description if getattr(error, "schoolbox_message", False) else None
        headers = {}
        if error.code in (429, 503) and getattr(error, "retry_after", None):
            headers["Retry-After"] = str(error.retry_after)
        if error.code == 405 and error.valid_methods:
            headers["Allow"] = ", ".join(error.valid_methods)
        return error_response(error.code or 500, message, headers)

    @app.errorhandler(sqlite3.OperationalError)
    def database_busy(error: sqlite3.OperationalError):
        # Another writer held the database past the busy timeout. Nothing was written
        # (the transaction rolled back), and a resent answer is safe (client_key).
        if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "is full" in str(
            error
        ):
            return disk_full(error)
        if "locked" not in str(error) and "busy" not in str(error):
            event(log, "server_error", logging.ERROR, endpoint=request.endpoint, error="sqlite")
            return error_response(500)
        event(log, "database_busy", logging.WARNING, endpoint=request.endpoint)
        return error_response(503, headers={"Retry-After": "1"})

    @app.errorhandler(OSError)
    def os_error(error: OSError):
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return disk_full(error)
        event(log, "server_error", logging.ERROR, endpoint=request.endpoint,
              error=type(error).__name__)  # fmt: skip
        return error_response(500)

    def disk_full(_error: Exception):
        # SQLite rolled the transaction back: nothing was half-written, and a resent answer
        # is safe (client_key). The admin's status page says what to do.
        event(log, "disk_full", logging.ERROR, endpoint=request.endpoint)
        message = _(
            "The box's storage is full, so this could not be saved. Nothing you did before "
            "is lost. Please try again in a minute, and tell your teacher or the school's "
            "administrator."
        )
        return error_response(503, message, {"Retry-After": str(DISK_FULL_RETRY_S)})

    @app.errorhandler(InternalServerError)
    def server_error(error: InternalServerError):
        # Logged already, by route and type only (SchoolboxFlask.log_exception).
        return error_response(500)


def fail(status: int, message: str, retry_after: int | None = None):
    """Abort the request with `status` and a message written for the person."""
    error = default_exceptions[status](description=message)
    error.schoolbox_message = True
    error.retry_after = retry_after
    raise error
