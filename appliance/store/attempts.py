"""The append-only attempts log, and the progress figures read from it."""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlite_utils

from appliance.store import grouped, now, one, rows, the_row, value
from appliance.store.ids import uuid7


def record(
    db: sqlite_utils.Database,
    learner_id: int,
    item: dict,
    response: str,
    correct: bool,
    hints_used: int,
    duration_ms: int | None,
    client_key: str | None,
    also: Callable[[sqlite_utils.Database], None] | None = None,
    quiz_id: int | None = None,
) -> tuple[dict, bool]:
    """Store one answer durably; return (attempt, created). A resend is not stored twice.

    The answer is committed together with other threads' answers waiting at the same
    moment (store.grouped: one fsync for all). `also(db)` runs in the answer's
    transaction, only when the answer is new (practice logs its recommendations there).
    A quiz answer names its quiz; a second one to the same item is not stored."""
    if client_key:
        earlier = _by_client_key(db, learner_id, client_key)
        if earlier:
            return earlier, False
    attempt = {
        "id": uuid7(),
        "learner_id": learner_id,
        "item_id": item["id"],
        "lesson_id": item["lesson_id"],
        "response": response,
        "correct": int(correct),
        "hints_used": hints_used,
        "duration_ms": duration_ms,
        "created_at": now(),
        "client_key": client_key,
        "quiz_id": quiz_id,
    }

    def insert(writer: sqlite_utils.Database) -> int:
        inserted = writer.conn.execute(
            "INSERT OR IGNORE INTO attempts (id, learner_id, item_id, lesson_id, response,"
            " correct, hints_used, duration_ms, created_at, client_key, quiz_id) VALUES"
            " (:id, :learner_id, :item_id, :lesson_id, :response, :correct, :hints_used,"
            " :duration_ms, :created_at, :client_key, :quiz_id)",
            attempt,
        ).rowcount
        if inserted and also is not None:
            also(writer)
        return inserted

    if not grouped(db, insert):  # a concurrent resend (or quiz answer) won the race
        if client_key and (earlier := _by_client_key(db, learner_id, client_key)):
            return earlier, False
        if quiz_id is not None:
            query = "SELECT * FROM attempts WHERE quiz_id = ? AND learner_id = ? AND item_id = ?"
            return dict(the_row(db, query, (quiz_id, learner_id, item["id"]))), False
    return attempt, True


_BY_CLIENT_KEY = "SELECT * FROM attempts WHERE learner_id = ? AND client_key = ?"


def _by_client_key(db: sqlite_utils.Database, learner_id: int, client_key: str) -> dict | None:
    row = one(db, _BY_CLIENT_KEY, (learner_id, client_key))
    return dict(row) if row else None


def count(db: sqlite_utils.Database) -> int:
    return value(db, "SELECT count(*) FROM attempts")


def recent(db: sqlite_utils.Database, learner_id: int, limit: int = 50) -> list[dict]:
    """A learner's latest answers with the lesson they belong to, newest first.

    For multiple choice, `chosen_html` is the chosen choice as the pack wrote it (its
    sanitised HTML), not its index; for other items it is None and `response` is what the
    learner typed, plain text for the page to escape.
    """
    found = []
    for r in rows(
        db,
        "SELECT a.id, a.item_id, a.lesson_id, l.title AS lesson_title, i.prompt_html,"
        " i.type, i.choices, a.response, a.correct, a.hints_used, a.created_at FROM attempts a"
        " JOIN lessons l ON l.id = a.lesson_id JOIN items i ON i.id = a.item_id"
        " WHERE a.learner_id = ? ORDER BY a.id DESC LIMIT ?",
        (learner_id, limit),
    ):
        attempt = dict(r)
        choices = json.loads(attempt.pop("choices") or "null")
        attempt["chosen_html"] = None
        if attempt["type"] == "multiple_choice" and attempt["response"].isdigit():
            index = int(attempt["response"])
            attempt["chosen_html"] = choices[index] if index < len(choices) else ""
        found.append(attempt)
    return found


def since(db: sqlite_utils.Database, learner_id: int, lesson_id: str, after_id: str) -> dict:
    """Answers and correct answers in one lesson after a given attempt id (a practice session)."""
    row = the_row(
        db,
        "SELECT count(*) AS answered, coalesce(sum(correct), 0) AS correct FROM attempts"
        " WHERE learner_id = ? AND lesson_id = ? AND id > ?",
        (learner_id, lesson_id, after_id),
    )
    return dict(row)


def skill_progress(db: sqlite_utils.Database, learner_id: int) -> list[dict]:
    """Per skill: attempts and share correct for one learner."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT s.id AS skill_id, s.name, s.subject, count(a.id) AS attempts,"
            " coalesce(sum(a.correct), 0) AS correct FROM attempts a"
            " JOIN item_skills x ON x.item_id = a.item_id JOIN skills s ON s.id = x.skill_id"
            " WHERE a.learner_id = ? GROUP BY s.id ORDER BY s.subject, s.name",
            (learner_id,),
        )
    ]


def class_grid(db: sqlite_utils.Database, class_id: int) -> dict:
    """Learners x skills for a class: attempts and correct answers in each cell."""
    cells = rows(
        db,
        "SELECT a.learner_id, x.skill_id, count(*) AS attempts, sum(a.correct) AS correct"
        " FROM enrolments e JOIN attempts a ON a.learner_id = e.learner_id"
        " JOIN item_skills x ON x.item_id = a.item_id WHERE e.class_id = ?"
        " GROUP BY a.learner_id, x.skill_id",
        (class_id,),
    )
    grid: dict[int, dict[str, dict]] = {}
    for cell in cells:
        grid.setdefault(cell["learner_id"], {})[cell["skill_id"]] = {
            "attempts": cell["attempts"],
            "correct": cell["correct"],
        }
    return grid


def after_deleted(db: sqlite_utils.Database) -> None:
    """Keep every reader's position in the log at or below the last stored answer after
    answers were deleted (an erasure; inside its transaction). SQLite gives a new row the
    largest rowid plus one, so once the latest answers are gone a new answer can get a
    rowid a reader has already passed. Lowering a position skips nothing, since every
    answer still stored below it was read. The readers: the knowledge-tracing follower
    and sync's sealing of answers."""
    last = "(SELECT coalesce(max(rowid), 0) FROM attempts)"
    db.conn.execute(f"UPDATE knowledge_cursor SET last_rowid = min(last_rowid, {last})")  # noqa: S608
    db.conn.execute(
        f"UPDATE sync_marks SET mark = CAST(min(CAST(mark AS INTEGER), {last}) AS TEXT)"  # noqa: S608
        " WHERE kind = 'attempts'"
    )
