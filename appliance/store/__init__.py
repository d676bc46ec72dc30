"""The one SQLite file: opening it, transactions, and the query modules beside this one."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

BUSY_TIMEOUT_MS = 5000


def open_db(path: str | Path) -> sqlite_utils.Database:
    """Open the box's database with the settings every connection needs."""
    # isolation_level=None: we issue BEGIN ourselves, so a write transaction is
    # always BEGIN IMMEDIATE and never fails half-way on a lock upgrade.
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL, not NORMAL: in WAL mode only FULL makes a commit survive power loss, and
    # a learner's answer is acknowledged only after its commit.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return sqlite_utils.Database(conn)


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """Run a block as one write transaction: all of it is committed, or none."""
    if db.conn.in_transaction:  # nested: let the outer transaction decide
        with db.atomic():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


def now() -> str:
    """The current time as the ISO-8601 UTC text every table stores."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def one(db: sqlite_utils.Database, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
    """The first row of a query, or None."""
    return db.conn.execute(sql, params).fetchone()


def rows(db: sqlite_utils.Database, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
    """All rows of a query."""
    return db.conn.execute(sql, params).fetchall()
