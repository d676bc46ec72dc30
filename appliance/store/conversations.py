"""Tutor conversations: kept on the box for teachers to read, deleted after a while."""

from __future__ import annotations

import json

import sqlite_utils

from appliance.store import days_ago, now, one, rows, site
from appliance.store.ids import uuid7


def record(
    db: sqlite_utils.Database,
    learner_id: int,
    lesson_id: str | None,
    item_id: str | None,
    question: str,
    answer: str,
    sources: list[dict],
    outcome: str,
    model: str | None,
) -> str:
    """Keep one question and its answer. `question` must already be masked."""
    message_id = uuid7()
    db.conn.execute(
        "INSERT INTO tutor_messages (id, learner_id, lesson_id, item_id, question, answer,"
        " sources, outcome, model, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (message_id, learner_id, lesson_id, item_id, question, answer,
         json.dumps(sources), outcome, model, now()),
    )  # fmt: skip
    return message_id


def for_class(
    db: sqlite_utils.Database, class_id: int, before: str | None = None, limit: int = 100
) -> list[dict]:
    """Conversations of the class's current learners (from any lesson), newest first;
    `before` (a message id) pages back through older ones."""
    found = rows(
        db,
        "SELECT m.*, u.display_name AS learner_name, l.title AS lesson_title"
        " FROM tutor_messages m JOIN enrolments e ON e.learner_id = m.learner_id"
        " JOIN users u ON u.id = m.learner_id LEFT JOIN lessons l ON l.id = m.lesson_id"
        " WHERE e.class_id = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?",
        (class_id, before or "~", limit),  # "~" sorts after every UUID
    )
    return [dict(r, sources=json.loads(r["sources"])) for r in found]


def for_learner(db: sqlite_utils.Database, learner_id: int, limit: int = 20) -> list[dict]:
    """One learner's recent conversations, newest first."""
    found = rows(
        db,
        "SELECT * FROM tutor_messages WHERE learner_id = ? ORDER BY id DESC LIMIT ?",
        (learner_id, limit),
    )
    return [dict(r, sources=json.loads(r["sources"])) for r in found]


GUARD_HOURS = 12  # a school day: items shown since then keep their keys hidden


def guarded_item_ids(
    db: sqlite_utils.Database, learner_id: int, hours: float = GUARD_HOURS
) -> set[str]:
    """Items the learner was shown (recommended, opened or tried) in the last `hours`
    and has not answered correctly since: the tutor hides every one of their keys, in
    any session or tab. Read from what practice already records, nothing new."""
    found = rows(
        db,
        "SELECT shown.item_id FROM (SELECT item_id, max(created_at) AS last FROM ("
        "  SELECT item_id, created_at FROM recommendations"
        "  WHERE learner_id = :learner AND created_at >= :since"
        "  UNION ALL SELECT item_id, created_at FROM attempts"
        "  WHERE learner_id = :learner AND created_at >= :since"
        ") GROUP BY item_id) shown WHERE NOT EXISTS ("
        "  SELECT 1 FROM attempts a WHERE a.learner_id = :learner AND a.item_id = shown.item_id"
        "  AND a.correct = 1 AND a.created_at >= shown.last)",
        {"learner": learner_id, "since": days_ago(hours / 24)},
    )
    return {r["item_id"] for r in found}


def hints_given(
    db: sqlite_utils.Database, learner_id: int, item_id: str, hours: float = GUARD_HOURS
) -> int:
    """How many of an item's hints the tutor gave the learner lately (the next is due)."""
    found = one(
        db,
        "SELECT count(*) AS n FROM tutor_messages WHERE learner_id = ? AND item_id = ?"
        " AND outcome = 'hint' AND created_at >= ?",
        (learner_id, item_id, days_ago(hours / 24)),
    )
    return found["n"] if found else 0


def prune(db: sqlite_utils.Database, days: int) -> int:
    """Delete conversations older than `days`; return how many went."""
    cutoff = days_ago(days)
    return db.conn.execute("DELETE FROM tutor_messages WHERE created_at < ?", (cutoff,)).rowcount


def tutor_allowed(db: sqlite_utils.Database, learner_id: int) -> bool:
    """The school consented to the tutor, and none of the learner's classes switched it off."""
    if not site.is_consented(db, "tutor"):
        return False
    switched_off = one(
        db,
        "SELECT 1 FROM enrolments e JOIN classes c ON c.id = e.class_id"
        " WHERE e.learner_id = ? AND c.tutor_enabled = 0 AND c.archived = 0",
        (learner_id,),
    )
    return switched_off is None
