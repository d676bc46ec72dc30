"""Schoolbox's web app: `create_app(config)` builds the Flask app the box serves."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

from flask import Flask, g, request
from flask_babel import Babel
from flask_babel import gettext as babel_gettext
from flask_compress import Compress
from flask_wtf.csrf import CSRFProtect
from werkzeug.routing import IntegerConverter

from appliance import __version__, messages
from appliance import config as config_module
from appliance.logs import event
from appliance.messages import LANGUAGES
from appliance.store import migrations, open_db, quick_check
from appliance.web import (
    admin,
    api,
    auth,
    class_lessons,
    db,
    devices,
    errors,
    languages,
    learner,
    ops,
    quizzes,
    reports,
    resources,
    roster,
    teacher,
)
from appliance.web import tutor as tutor_http
from appliance.web.access import current_user
from appliance.web.days import due_text, local_input, local_time
from appliance.web.metrics import Metrics
from appliance.web.ops import asset_url
from appliance.web.sessions import RememberingSessions

log = logging.getLogger("schoolbox.http")
# Pages run only the box's own scripts and styles: no inline script, so an injected
# <script> or on*= attribute does nothing; nothing loads from or posts to another host.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)
PERSONAL_TYPES = ("text/html", "application/json", "text/event-stream", "text/csv")
csrf = CSRFProtect()
compress = Compress()
babel = Babel()


def create_app(config: config_module.Config | dict | None = None) -> Flask:
    """Build the app for one box. `config` is a Config, a dict of overrides, or None (defaults)."""
    if not isinstance(config, config_module.Config):
        config = config_module.load(**(config or {}))
    config.home.mkdir(parents=True, exist_ok=True)
    database_fault = _prepare_database(config)

    app = SchoolboxFlask(__name__, static_folder=None)
    app.session_interface = RememberingSessions()
    app.url_map.converters["int"] = BoundedInt
    app.config.update(
        SCHOOLBOX=config,
        SECRET_KEY=config_module.ensure_secret(config),
        PIN_KEY=config_module.pin_key(config),
        TESTING=config.testing,
        MAX_CONTENT_LENGTH=config.max_upload_mb * 1024 * 1024,
        SESSION_COOKIE_NAME="schoolbox_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session, not an hour
        WTF_CSRF_HEADERS=["X-CSRFToken"],
        COMPRESS_ALGORITHM=["gzip"],  # what every old browser understands
        COMPRESS_MIN_SIZE=512,
        # Checked for a conditional request after compressing: only pages and API answers
        # get there (files are streamed, and flask-compress skips them), and they carry no
        # ETag, so the check never matched and cost 6% of a quiz answer's CPU.
        COMPRESS_EVALUATE_CONDITIONAL_REQUEST=False,
        COMPRESS_MIMETYPES=[
            "text/html",
            "text/css",
            "application/json",
            "application/javascript",
            "image/svg+xml",
            "text/plain",
        ],  # fmt: skip
        BABEL_DEFAULT_LOCALE="en",
        BABEL_TRANSLATION_DIRECTORIES=str(Path(__file__).parent / "translations"),
    )
    csrf.init_app(app)
    compress.init_app(app)
    babel.init_app(app, locale_selector=languages.chosen)
    messages.use(babel_gettext)  # the data layer's messages, in the request's language
    db.init_app(app)
    devices.install(app)
    errors.init_app(app)
    metrics = Metrics(app)
    app.extensions["schoolbox_metrics"] = metrics
    app.extensions["schoolbox_database_fault"] = database_fault  # for /readyz
    metrics.install(app)
    _register_blueprints(app)
    _install_request_log(app)
    _install_template_globals(app)
    return app


class SchoolboxFlask(Flask):
    def log_exception(self, exc_info) -> None:
        """Log a failed request by route and error type only: Flask's own message carries
        the URL (with ids) and a traceback whose values may be a learner's answer."""
        event(
            log,
            "unhandled_error",
            logging.ERROR,
            route=request.url_rule.rule if request.url_rule else "unmatched",
            error=exc_info[0].__name__ if exc_info and exc_info[0] else "unknown",
        )


class BoundedInt(IntegerConverter):
    """`<int:...>` limited to SQLite's integer range: a larger id is simply not found."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def _prepare_database(config: config_module.Config) -> str | None:
    """Create or upgrade the schema in place; refuse a database from a newer Schoolbox.
    SQLite's quick check of the file: None if it is sound, else what it found."""
    database = open_db(config.db_path)
    try:
        fault = quick_check(database)
        migrations.migrate(database)
    finally:
        database.conn.close()
    return fault


def _register_blueprints(app: Flask) -> None:
    modules = (
        ops,
        auth,
        languages,
        learner,
        resources,
        teacher,
        class_lessons,
        quizzes,
        reports,
        roster,
        admin,
        api,
    )
    for module in modules:
        app.register_blueprint(module.bp)
    streams = app.config["SCHOOLBOX"].tutor_streams_per_worker
    app.extensions["tutor_slots"] = tutor_http.StreamSlots(streams)


def _install_request_log(app: Flask) -> None:
    @app.after_request
    def log_request(response):
        started = g.get("request_started", time.perf_counter())  # set by Metrics
        # The route rule, never the path: paths carry ids, and a log has no business with them.
        event(
            log,
            "request",
            method=request.method,
            route=request.url_rule.rule if request.url_rule else "unmatched",
            status=response.status_code,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        # Each header only where the view set none; werkzeug's setdefault scans every
        # header each time, so the names present are read once (a class's burst: 1.5%).
        present = {name.lower() for name in response.headers.keys()}
        mimetype = response.mimetype
        for name, value in _defaults(mimetype):
            if name.lower() not in present:
                response.headers.add(name, value)
        return response


SAFETY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
)
PAGE_HEADERS = SAFETY_HEADERS + (("Content-Security-Policy", PAGE_POLICY),)
# Pages and API answers name learners and their work: a shared laptop's cache and its
# back button must not show them to the next person.
NOT_KEPT = (("Cache-Control", "no-store"),)


def _defaults(mimetype: str) -> tuple[tuple[str, str], ...]:
    """The headers every response of this type carries unless its view set them."""
    found = PAGE_HEADERS if mimetype == "text/html" else SAFETY_HEADERS
    return found + NOT_KEPT if mimetype in PERSONAL_TYPES else found


def _install_template_globals(app: Flask) -> None:
    app.jinja_env.filters["due"] = due_text
    app.jinja_env.filters["local_time"] = local_time
    app.jinja_env.filters["local_input"] = local_input
    app.jinja_env.globals.update(
        language=languages.chosen,
        text_direction=languages.direction,
        languages=LANGUAGES,
        asset_url=asset_url,
        current_user=current_user,
        schoolbox_version=__version__,
    )
