"""The request's database connection, opened on first use and closed on teardown."""

from __future__ import annotations

import sqlite_utils
from flask import Flask, current_app, g

from .store import open_db


def get_db() -> sqlite_utils.Database:
    """This request's connection to the box's database."""
    if "db" not in g:
        g.db = open_db(current_app.config["SCHOOLBOX"].db_path)
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.conn.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
