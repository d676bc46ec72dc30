"""Mastery per learner x skill, the knowledge-tracing states behind it, the model's
prediction for each answer, and the follower's cursor over the attempts log."""

from __future__ import annotations

import json
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np
import sqlite_utils

from appliance.store import now, one, rows, value

HISTORY = 10  # mastery values kept per learner x skill, to see a fall


@dataclass(frozen=True)
class Cursor:
    last_rowid: int  # the attempts' rowid traced up to; 0 before the first answer
    model: str


@dataclass
class Answer:
    rowid: int
    id: str
    learner_id: int
    item_id: str
    correct: int
    skills: list[str] = field(default_factory=list)


def cursor(db: sqlite_utils.Database) -> Cursor | None:
    found = one(db, "SELECT last_rowid, model FROM knowledge_cursor WHERE id = 1")
    return Cursor(found[0], found[1]) if found else None


def start_over(db: sqlite_utils.Database, model: str) -> None:
    """Forget every state (they belong to another model) and trace from the first answer.
    Predictions stay: each is labelled with the model that made it."""
    for table in ("mastery", "learner_states", "answer_counts", "chances"):
        db.conn.execute(f"DELETE FROM {table}")  # noqa: S608 - constant names
    db.conn.execute(
        "INSERT INTO knowledge_cursor (id, last_rowid, model, updated_at)"
        " VALUES (1, 0, ?, ?) ON CONFLICT(id) DO UPDATE SET last_rowid = 0,"
        " model = excluded.model, updated_at = excluded.updated_at",
        (model, now()),
    )


def pending(db: sqlite_utils.Database, after_rowid: int, limit: int) -> list[Answer]:
    """The next answers not yet traced, in the order they were stored, with their items'
    skills."""
    found = [
        Answer(r[0], r[1], r[2], r[3], r[4])
        for r in rows(
            db,
            "SELECT rowid, id, learner_id, item_id, correct FROM attempts WHERE rowid > ?"
            " ORDER BY rowid LIMIT ?",
            (after_rowid, limit),
        )
    ]
    skills = skills_of(db, {a.item_id for a in found})
    for answer in found:
        answer.skills = skills.get(answer.item_id, [])
    return found


def backlog(db: sqlite_utils.Database) -> int:
    """Answers the follower has not traced yet."""
    position = cursor(db)
    after = position.last_rowid if position else 0
    return value(db, "SELECT count(*) FROM attempts WHERE rowid > ?", (after,))


def skills_of(db: sqlite_utils.Database, item_ids: set[str]) -> dict[str, list[str]]:
    """Item id -> its skills, in a stable order."""
    found: dict[str, list[str]] = {}
    ids = sorted(item_ids)
    for start in range(0, len(ids), 500):  # SQLite's limit on parameters
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for r in rows(
            db,
            f"SELECT item_id, skill_id FROM item_skills WHERE item_id IN ({marks})"  # noqa: S608
            " ORDER BY item_id, skill_id",
            tuple(chunk),
        ):
            found.setdefault(r["item_id"], []).append(r["skill_id"])
    return found


def counts(
    db: sqlite_utils.Database, items: set[str] | None = None, skills: set[str] | None = None
) -> dict[tuple[str, str], list[int]]:
    """(kind, id) -> [answers, right answers] traced so far: for every item and skill, or
    only for the `items` and `skills` named."""
    if items is None and skills is None:
        query = "SELECT kind, id, answers, right_answers FROM answer_counts"
        params: tuple[str, ...] = ()
    else:
        keys = [("item", i) for i in sorted(items or ())] + [
            ("skill", s) for s in sorted(skills or ())
        ]
        marks = ",".join("(?, ?)" for _ in keys) or "(NULL, NULL)"  # only "?"s go into the text
        query = f"SELECT kind, id, answers, right_answers FROM answer_counts WHERE (kind, id) IN (VALUES {marks})"  # noqa: E501, S608
        params = tuple(part for key in keys for part in key)
    return {(r[0], r[1]): [r[2], r[3]] for r in rows(db, query, params)}


def skill_states(
    db: sqlite_utils.Database, learner_id: int, model: str, skills: set[str]
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """The learner state and the states of some skills, under `model`: what a prediction
    needs, without the mastery figures."""
    learner = one(
        db, "SELECT state FROM learner_states WHERE learner_id = ? AND model = ?",
        (learner_id, model),
    )  # fmt: skip
    names = sorted(skills)
    marks = ",".join("?" * len(names))
    query = f"SELECT skill_id, state FROM mastery WHERE learner_id = ? AND model = ? AND skill_id IN ({marks})"  # noqa: E501, S608
    found = {
        r[0]: np.frombuffer(r[1], dtype=np.float32)
        for r in rows(db, query, (learner_id, model, *names))
    }
    return (np.frombuffer(learner[0], dtype=np.float32) if learner else None), found


@dataclass
class LearnerStates:
    learner: np.ndarray | None
    skills: dict[str, np.ndarray]
    mastery: dict[str, dict]  # skill -> {"p", "attempts", "history"}
    stepped: set[str] = field(default_factory=set)  # skills stepped since loaded


def states(db: sqlite_utils.Database, learner_id: int, model: str) -> LearnerStates:
    """One learner's states under `model` (states of another model do not carry over)."""
    learner = one(
        db, "SELECT state FROM learner_states WHERE learner_id = ? AND model = ?",
        (learner_id, model),
    )  # fmt: skip
    skills, levels = {}, {}
    for r in rows(
        db,
        "SELECT skill_id, p, attempts, history, state FROM mastery"
        " WHERE learner_id = ? AND model = ?",
        (learner_id, model),
    ):
        skills[r["skill_id"]] = np.frombuffer(r["state"], dtype=np.float32)
        levels[r["skill_id"]] = {
            "p": r["p"], "attempts": r["attempts"], "history": json.loads(r["history"])
        }  # fmt: skip
    found = np.frombuffer(learner["state"], dtype=np.float32) if learner else None
    return LearnerStates(found, skills, levels)


@dataclass
class TracedBatch:
    """A traced batch as the rows it writes, made ready before its transaction: the
    follower then holds the write lock only to write them, while a class's answers wait."""

    traced_to: int
    learner_rows: list[tuple]
    mastery_rows: list[tuple]
    prediction_rows: list[tuple]
    count_rows: list[tuple]
    chance_rows: list[tuple]


def prepare(
    model: str,
    learners: dict[int, LearnerStates],
    predictions: list[tuple[str, float]],
    answer_counts: dict[tuple[str, str], list[int]],
    traced_to: int,
    chances: dict[tuple[int, str], float],
) -> TracedBatch:
    """The rows of a traced batch: learners' states, mastery of the skills it stepped,
    predictions, the answer counts given, chances, and how far the trace has got."""
    at = now()
    learner_rows, mastery_rows = [], []
    for learner_id, found in learners.items():
        if found.learner is None:  # a traced learner always has a state by now
            raise ValueError(f"learner {learner_id} was traced without a learner state")
        learner_rows.append((learner_id, found.learner.astype(np.float32).tobytes(), model, at))
        for skill in sorted(found.stepped):  # a skill not stepped has not changed
            level, state = found.mastery[skill], found.skills[skill]
            history = json.dumps(level["history"][-HISTORY:])
            state_bytes = state.astype(np.float32).tobytes()
            mastery_rows.append(
                (learner_id, skill, level["p"], level["attempts"], history, state_bytes, model, at)
            )
    return TracedBatch(
        traced_to, learner_rows, mastery_rows,
        [(attempt_id, model, p, at) for attempt_id, p in predictions],
        [(kind, key, n, right) for (kind, key), (n, right) in answer_counts.items()],
        _chance_rows(model, chances, at),
    )  # fmt: skip


def save(db: sqlite_utils.Database, batch: TracedBatch) -> None:
    """Write a prepared batch (inside the caller's transaction). Each mastery row written
    takes the next change number, which is how sync finds what changed."""
    db.conn.execute("UPDATE knowledge_cursor SET changes = changes + 1 WHERE id = 1")
    db.conn.executemany(_CHANCE_UPSERT, batch.chance_rows)
    db.conn.executemany(
        "INSERT INTO learner_states (learner_id, state, model, updated_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT(learner_id) DO UPDATE SET"
        " state = excluded.state, model = excluded.model, updated_at = excluded.updated_at",
        batch.learner_rows,
    )
    db.conn.executemany(
        "INSERT INTO mastery (learner_id, skill_id, p, attempts, history, state, model,"
        " updated_at, changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
        " (SELECT changes FROM knowledge_cursor WHERE id = 1))"
        " ON CONFLICT(learner_id, skill_id) DO UPDATE SET p = excluded.p,"
        " attempts = excluded.attempts, history = excluded.history, state = excluded.state,"
        " model = excluded.model, updated_at = excluded.updated_at,"
        " changed = excluded.changed",
        batch.mastery_rows,
    )
    db.conn.executemany(
        "INSERT OR REPLACE INTO predictions (attempt_id, model, p, made_at) VALUES (?, ?, ?, ?)",
        batch.prediction_rows,
    )
    db.conn.executemany(
        "INSERT INTO answer_counts (kind, id, answers, right_answers) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(kind, id) DO UPDATE SET answers = excluded.answers,"
        " right_answers = excluded.right_answers",
        batch.count_rows,
    )
    db.conn.execute(
        "UPDATE knowledge_cursor SET last_rowid = ?, updated_at = ? WHERE id = 1",
        (batch.traced_to, now()),
    )


def stored_chances(
    db: sqlite_utils.Database, learner_id: int, model: str, item_ids: list[str]
) -> dict[str, float]:
    """Item id -> the chance the follower last worked out, for those it has."""
    marks = ",".join("?" * len(item_ids))  # only "?"s go into the text
    query = f"SELECT item_id, p FROM chances WHERE learner_id = ? AND model = ? AND item_id IN ({marks})"  # noqa: E501, S608
    return {r[0]: r[1] for r in rows(db, query, (learner_id, model, *item_ids))}


def without_chances(db: sqlite_utils.Database, model: str, limit: int) -> list[tuple[int, str]]:
    """(learner, lesson) pairs of assigned lessons for which no chance under `model` is
    kept yet: a learner's first question in such a lesson would run the model."""
    return [
        (r[0], r[1])
        for r in rows(
            db,
            "SELECT DISTINCT a.learner_id, a.lesson_id FROM assigned_lessons a"
            " JOIN users u ON u.id = a.learner_id AND u.erased_at IS NULL"
            " WHERE NOT EXISTS (SELECT 1 FROM chances c JOIN items i ON i.id = c.item_id"
            "  WHERE c.learner_id = a.learner_id AND i.lesson_id = a.lesson_id"
            "  AND c.model = ?)"
            " AND EXISTS (SELECT 1 FROM items i WHERE i.lesson_id = a.lesson_id"
            "  AND i.retired = 0) LIMIT ?",
            (model, limit),
        )
    ]


_CHANCE_UPSERT = (
    "INSERT INTO chances (learner_id, item_id, p, model, updated_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(learner_id, item_id) DO UPDATE SET p = excluded.p,"
    " model = excluded.model, updated_at = excluded.updated_at"
)


def save_chances(
    db: sqlite_utils.Database, model: str, chances: dict[tuple[int, str], float]
) -> None:
    """Keep (learner, item) chances under `model` (inside the caller's transaction)."""
    db.conn.executemany(_CHANCE_UPSERT, _chance_rows(model, chances, now()))


def _chance_rows(model: str, chances: dict[tuple[int, str], float], at: str) -> list[tuple]:
    return [(learner_id, item_id, p, model, at) for (learner_id, item_id), p in chances.items()]


def lesson_items(
    db: sqlite_utils.Database,
    item_ids: AbstractSet[str] = frozenset(),
    lesson_ids: AbstractSet[str] = frozenset(),
) -> dict[str, list[str]]:
    """Lesson id -> its current items, for the lessons of `item_ids` and `lesson_ids`."""
    items, lessons = sorted(item_ids), sorted(lesson_ids)
    query = (
        "SELECT lesson_id, id FROM items WHERE retired = 0 AND (lesson_id IN"  # noqa: S608
        f" (SELECT lesson_id FROM items WHERE id IN ({','.join('?' * len(items))}))"
        f" OR lesson_id IN ({','.join('?' * len(lessons))})) ORDER BY lesson_id, position"
    )
    found: dict[str, list[str]] = {}
    for r in rows(db, query, (*items, *lessons)):
        found.setdefault(r[0], []).append(r[1])
    return found


def of_learner(db: sqlite_utils.Database, learner_id: int) -> dict[str, dict]:
    """Skill id -> {p, attempts, history} for one learner."""
    return {
        r["skill_id"]: {"p": r["p"], "attempts": r["attempts"], "history": json.loads(r["history"])}
        for r in rows(
            db,
            "SELECT skill_id, p, attempts, history FROM mastery WHERE learner_id = ?",
            (learner_id,),
        )
    }


def of_class(db: sqlite_utils.Database, class_id: int) -> dict[int, dict[str, dict]]:
    """Learner id -> skill id -> {p, attempts, history} for a class."""
    grid: dict[int, dict[str, dict]] = {}
    for r in rows(
        db,
        "SELECT m.learner_id, m.skill_id, m.p, m.attempts, m.history FROM mastery m"
        " JOIN enrolments e ON e.learner_id = m.learner_id WHERE e.class_id = ?",
        (class_id,),
    ):
        grid.setdefault(r["learner_id"], {})[r["skill_id"]] = {
            "p": r["p"], "attempts": r["attempts"], "history": json.loads(r["history"])
        }  # fmt: skip
    return grid


def recent_predictions(db: sqlite_utils.Database, model: str, limit: int) -> tuple:
    """The model's predictions for the latest `limit` answers it saw, and their outcomes."""
    found = rows(
        db,
        "SELECT p.p, a.correct FROM predictions p JOIN attempts a ON a.id = p.attempt_id"
        " WHERE p.model = ? ORDER BY p.attempt_id DESC LIMIT ?",
        (model, limit),
    )
    return (
        np.array([r[0] for r in found], dtype=np.float64),
        np.array([r[1] for r in found], dtype=np.int8),
    )


def forget_learner(db: sqlite_utils.Database, learner_id: int) -> None:
    """Remove what knowledge tracing holds on one learner (erasure, inside its transaction).
    Item and skill answer counts stay: they are totals over everyone, not about anyone."""
    db.conn.execute(
        "DELETE FROM predictions WHERE attempt_id IN"
        " (SELECT id FROM attempts WHERE learner_id = ?)",
        (learner_id,),
    )
    for table in ("mastery", "learner_states", "recommendations", "chances"):
        db.conn.execute(f"DELETE FROM {table} WHERE learner_id = ?", (learner_id,))  # noqa: S608
