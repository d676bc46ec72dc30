"""Why each practice item was chosen: the recommendation log a teacher or auditor reads."""

from __future__ import annotations

import sqlite_utils

from appliance.store import days_ago, now, rows
from appliance.store.ids import uuid7


def record(db: sqlite_utils.Database, learner_id: int, choice) -> None:
    """Log one choice (an appliance.knowledge.recommend.Choice) inside the caller's transaction."""
    db.conn.execute(
        "INSERT INTO recommendations (id, learner_id, item_id, lesson_id, p, rule, reason,"
        " model, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (uuid7(), learner_id, choice.item_id, choice.lesson_id, choice.p, choice.rule,
         choice.reason, choice.model, now()),
    )  # fmt: skip


def of_learner(db: sqlite_utils.Database, learner_id: int, limit: int = 20) -> list[dict]:
    """A learner's latest recommendations with the lesson's title, newest first."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT r.item_id, r.lesson_id, l.title AS lesson_title, i.prompt_html, r.p, r.rule,"
            " r.reason, r.model, r.created_at FROM recommendations r"
            " JOIN lessons l ON l.id = r.lesson_id JOIN items i ON i.id = r.item_id"
            " WHERE r.learner_id = ? ORDER BY r.id DESC LIMIT ?",
            (learner_id, limit),
        )
    ]


def prune(db: sqlite_utils.Database, days: int) -> int:
    """Delete recommendations older than `days`; return how many went."""
    cutoff = days_ago(days)
    return db.conn.execute("DELETE FROM recommendations WHERE created_at < ?", (cutoff,)).rowcount
