"""The one SQLite file: opening it, transactions, and the query modules beside this one."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlite_utils

BUSY_TIMEOUT_MS = 5000
# Writers in one process queue on a lock instead of on SQLite's busy handler, which polls
# with sleeps of up to 100 ms: a lock handed over at once keeps a class's answers flowing.
_writer_locks: dict[str, threading.Lock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(db: sqlite_utils.Database) -> threading.Lock:
    """The lock shared by every connection of this process to the same database file."""
    lock = getattr(db, "_schoolbox_writer_lock", None)
    if lock is None:
        path = db.conn.execute("PRAGMA database_list").fetchone()[2]
        with _writer_locks_guard:
            lock = _writer_locks.setdefault(path, threading.Lock())
        db._schoolbox_writer_lock = lock
    return lock


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
    with _writer_lock(db):
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


def days_ago(days: int) -> str:
    """The time `days` ago, in the same text form as now(), for "older than" queries."""
    return (
        (datetime.now(UTC) - timedelta(days=days))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def one(db: sqlite_utils.Database, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
    """The first row of a query, or None."""
    return db.conn.execute(sql, params).fetchone()


def rows(db: sqlite_utils.Database, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
    """All rows of a query."""
    return db.conn.execute(sql, params).fetchall()
