"""Reading what the next bundle carries out of the box's database, under the data policy.

Event records (answers, erasures) are taken after a mark per type, so each goes into
exactly one bundle; the marks move only when the bundle is safely in the outbox
(sync/box/outbox.py). Snapshots (mastery, class aggregates, usage, health) carry the latest
values; the hub keeps the last one it received.

Times go up no finer than the district needs (docs/data-policy.md, "Times"): an answer's
id carries its time to the second, an erasure its day.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from appliance import __version__
from appliance.store import rows
from sync import policy

EVENTS = ("attempts", "erasures")


@dataclass
class Collected:
    records: dict[str, dict]
    marks: dict[str, str]  # the marks once these records are sent
    remaining: int = 0  # answers left for later bundles
    events: int = field(default=0)


def collect(db: sqlite_utils.Database, home: Path, marks: dict[str, str], limit: int) -> Collected:
    """The records after `marks`, at most `limit` rows of each type, every row cut to the
    policy."""
    names = policy.fields(home)
    pseudonym = policy.pseudonymiser(home)
    found: dict[str, list[list]] = {}
    new_marks = dict(marks)
    attempts, new_marks["attempts"] = _attempts(db, marks, limit, names, pseudonym)
    found["attempts"] = attempts
    found["erasures"], new_marks["erasures"] = _erasures(db, marks, pseudonym, limit)
    found["mastery"], new_marks["mastery"] = _mastery(db, marks, pseudonym, limit)
    found["usage"], new_marks["usage"] = _usage(db, marks, limit)
    events = sum(len(found[kind]) for kind in (*EVENTS, "mastery", "usage"))
    remaining = rows(db, "SELECT count(*) FROM attempts WHERE rowid > ?",
                     (int(new_marks["attempts"] or 0),))[0][0]  # fmt: skip
    # Snapshots go with the bundle that catches up, not with every bundle of a backlog.
    last = events and not remaining
    found["class_skills"] = _class_skills(db, pseudonym) if last else []
    found["health"] = [_health(db, home, remaining)] if last else []
    records = {
        kind: {"fields": names[kind], "rows": table} for kind, table in found.items() if table
    }
    return Collected(records, new_marks, remaining, events)


def _attempts(db, marks, limit, names, pseudonym) -> tuple[list[list], str]:
    with_response = "response" in names["attempts"]
    found = rows(
        db,
        "SELECT a.rowid, a.id, u.public_id, a.item_id, a.lesson_id, a.correct, a.hints_used,"
        " a.duration_ms, a.response FROM attempts a JOIN users u ON u.id = a.learner_id"
        " WHERE a.rowid > ? ORDER BY a.rowid LIMIT ?",
        (int(marks.get("attempts") or 0), limit),
    )
    table = [
        [upstream_id(r[1]), pseudonym("learner", r[2]), r[3], r[4], r[5], r[6], r[7]]
        + ([r[8]] if with_response else [])
        for r in found
    ]
    return table, str(found[-1][0]) if found else marks.get("attempts", "0")


def _erasures(db, marks, pseudonym, limit) -> tuple[list[list], str]:
    found = rows(
        db,
        "SELECT rowid, public_id, erased_at FROM tombstones WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (int(marks.get("erasures") or 0), limit),
    )
    table = [[pseudonym("learner", r[1]), r[2][:10]] for r in found]  # the day
    return table, str(found[-1][0]) if found else marks.get("erasures", "0")


def upstream_id(answer_id: str) -> str:
    """The id an answer goes up under: its UUIDv7 with the time cut to the second, every
    other bit kept. Still unique and the same on every sealing, so the hub applies it
    once; it orders a learner's answers and their gaps, which is what the district's
    reports and training use, without a millisecond to match against other clocks."""
    ms = int(answer_id[:8] + answer_id[9:13], 16)  # a UUIDv7's first 48 bits: its time
    cut = f"{ms - ms % 1000:012x}"
    return f"{cut[:8]}-{cut[8:]}{answer_id[13:]}"  # text, not uuid.UUID: 3x faster a row


def _mastery(db, marks, pseudonym, limit) -> tuple[list[list], str]:
    """Estimates changed since the last bundle, paged in (change, row) order: the mark is
    "change/rowid" of the last row sent, from counters that only go up."""
    change, rowid = (int(part) for part in (marks.get("mastery") or "0/0").split("/"))
    found = rows(
        db,
        "SELECT u.public_id, m.skill_id, m.p, m.attempts, m.model, m.changed, m.rowid"
        " FROM mastery m JOIN users u ON u.id = m.learner_id"
        " WHERE (m.changed, m.rowid) > (?, ?) ORDER BY m.changed, m.rowid LIMIT ?",
        (change, rowid, limit),
    )
    table = [[pseudonym("learner", r[0]), r[1], round(r[2], 3), r[3], r[4]] for r in found]
    mark = f"{found[-1][5]}/{found[-1][6]}" if found else marks.get("mastery") or "0/0"
    return table, mark


def _usage(db, marks, limit) -> tuple[list[list], str]:
    """Whole days only (before today), after the last day sent."""
    today = datetime.now(UTC).date().isoformat()
    after = marks.get("usage", "")
    answers = rows(
        db,
        "SELECT substr(created_at, 1, 10) AS day, count(*), count(DISTINCT learner_id)"
        " FROM attempts WHERE created_at >= ? AND substr(created_at, 1, 10) > ?"
        " AND substr(created_at, 1, 10) < ? GROUP BY day ORDER BY day LIMIT ?",
        (after, after, today, min(limit, 366)),
    )
    tutor: dict[str, int] = {
        r[0]: r[1]
        for r in rows(
            db,
            "SELECT substr(created_at, 1, 10) AS day, count(*) FROM tutor_messages"
            " WHERE substr(created_at, 1, 10) > ? AND substr(created_at, 1, 10) < ?"
            " GROUP BY day",
            (after, today),
        )
    }

    table = [[r[0], r[1], r[2], tutor.get(r[0], 0)] for r in answers]
    return table, table[-1][0] if table else after


def _class_skills(db, pseudonym) -> list[list]:
    found = rows(
        db,
        "SELECT e.class_id, m.skill_id, count(*), avg(m.p), sum(m.attempts) FROM mastery m"
        " JOIN enrolments e ON e.learner_id = m.learner_id GROUP BY e.class_id, m.skill_id"
        " ORDER BY e.class_id, m.skill_id",
    )
    return [[pseudonym("class", str(r[0])), r[1], r[2], round(r[3], 3), r[4]] for r in found]


def _health(db, home: Path, backlog: int) -> list:
    database = sum(
        p.stat().st_size for p in home.glob("schoolbox.db*") if p.is_file()
    )  # fmt: skip
    free = shutil.disk_usage(home).free
    return [__version__, free // (1 << 20), database // (1 << 20), backlog]
