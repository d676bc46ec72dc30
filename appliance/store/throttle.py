"""Sign-in throttling: failures per account and per address, counted in the database."""

from __future__ import annotations

import time

import sqlite_utils

from . import one


def wait_seconds(db: sqlite_utils.Database, subject: str, limit: int, window_s: int) -> int:
    """Seconds until `subject` may try again; 0 if it may try now."""
    cutoff = time.time() - window_s
    row = one(
        db,
        "SELECT count(*) AS n, min(at) AS first FROM login_failures WHERE subject = ? AND at > ?",
        (subject, cutoff),
    )
    if row["n"] < limit:
        return 0
    return max(1, int(row["first"] + window_s - time.time()) + 1)


def fail(db: sqlite_utils.Database, *subjects: str) -> list[int]:
    """Count one failed sign-in against each subject; the rows' ids."""
    at = time.time()
    return [
        db.conn.execute(
            "INSERT INTO login_failures (subject, at) VALUES (?, ?)", (subject, at)
        ).lastrowid
        for subject in subjects
    ]


def forget(db: sqlite_utils.Database, ids: list[int]) -> None:
    """Take back failures counted in advance for a try that succeeded."""
    db.conn.executemany("DELETE FROM login_failures WHERE id = ?", [(i,) for i in ids])


def clear(db: sqlite_utils.Database, subject: str) -> None:
    """Forget an account's failures after it signs in."""
    # Check first: nearly every sign-in has no failures, and a read takes no write lock.
    if one(db, "SELECT 1 FROM login_failures WHERE subject = ? LIMIT 1", (subject,)):
        db.conn.execute("DELETE FROM login_failures WHERE subject = ?", (subject,))


def prune(db: sqlite_utils.Database, older_than_s: int) -> int:
    """Drop failures older than the window; return how many."""
    cutoff = time.time() - older_than_s
    return db.conn.execute("DELETE FROM login_failures WHERE at < ?", (cutoff,)).rowcount
