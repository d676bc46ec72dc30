"""The request's database connection: one per worker thread, reused across requests.

Opening and closing a SQLite connection costs more than a whole answer's queries (closing
the last one even checkpoints the WAL), so each waitress thread keeps its own connection.
Teardown makes sure no transaction is left open on it.
"""

from __future__ import annotations

import threading

import sqlite_utils
from flask import Flask, current_app, g

from appliance.store import open_db

_local = threading.local()


def get_db() -> sqlite_utils.Database:
    """This thread's connection to the box's database."""
    if "db" not in g:
        path = str(current_app.config["SCHOOLBOX"].db_path)
        connections = _local.__dict__.setdefault("connections", {})
        if path not in connections:
            connections[path] = open_db(path)
        g.db = connections[path]
    return g.db


def release_db(_error: BaseException | None = None) -> None:
    """End of request: roll back anything a failed request left uncommitted."""
    db = g.pop("db", None)
    if db is not None and db.conn.in_transaction:
        db.conn.execute("ROLLBACK")


def close_thread_connections() -> None:
    """Close this thread's connections (tests and shutdown)."""
    for db in _local.__dict__.pop("connections", {}).values():
        db.conn.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(release_db)
