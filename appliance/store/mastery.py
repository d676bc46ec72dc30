"""Mastery per learner x skill and the knowledge-tracing states behind it, and the item
and skill difficulties the model reads, from this box's own answers."""

from __future__ import annotations

import numpy as np
import sqlite_utils

from models.kt_data import logit, rate_of, smoothed

from . import now, one, rows


def skills_of(db: sqlite_utils.Database, item_id: str) -> list[str]:
    return [
        r[0] for r in rows(db, "SELECT skill_id FROM item_skills WHERE item_id = ?", (item_id,))
    ]


def difficulty(
    db: sqlite_utils.Database, item_id: str, skills: list[str], prior_logit: float
) -> tuple[float, list[float]]:
    """The item's and its skills' log-odds of a right answer on this box, each pulled
    towards the level above it (overall -> skill -> item) while answers are few."""
    skill_logits = []
    for skill in skills:
        found = one(
            db,
            "SELECT count(*), coalesce(sum(a.correct), 0) FROM attempts a"
            " JOIN item_skills x ON x.item_id = a.item_id WHERE x.skill_id = ?",
            (skill,),
        )
        skill_logits.append(logit(smoothed(found[1], found[0], rate_of(prior_logit))))
    found = one(
        db, "SELECT count(*), coalesce(sum(correct), 0) FROM attempts WHERE item_id = ?", (item_id,)
    )
    prior = rate_of(sum(skill_logits) / len(skill_logits)) if skills else rate_of(prior_logit)
    return logit(smoothed(found[1], found[0], prior)), skill_logits


def states(
    db: sqlite_utils.Database, learner_id: int, skills: list[str], model: str
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The learner's states under `model` (states of another model do not carry over)."""
    placeholders = ",".join("?" * len(skills))  # only "?"s go into the text
    query = f"SELECT skill_id, state FROM mastery WHERE learner_id = ? AND model = ? AND skill_id IN ({placeholders})"  # noqa: E501, S608
    found = {
        r["skill_id"]: np.frombuffer(r["state"], dtype=np.float32)
        for r in rows(db, query, (learner_id, model, *skills))
    }
    learner = one(
        db, "SELECT state FROM learner_states WHERE learner_id = ? AND model = ?",
        (learner_id, model),
    )  # fmt: skip
    return found, np.frombuffer(learner["state"], dtype=np.float32) if learner else None


def save(
    db: sqlite_utils.Database,
    learner_id: int,
    model: str,
    skill_states: dict[str, np.ndarray],
    mastery: dict[str, float],
    learner_state: np.ndarray,
) -> None:
    """Keep the states and mastery after an answer (inside the answer's transaction)."""
    at = now()
    for skill, state in skill_states.items():
        db.conn.execute(
            "INSERT INTO mastery (learner_id, skill_id, p, attempts, state, model, updated_at)"
            " VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT(learner_id, skill_id) DO UPDATE SET"
            " p = excluded.p, state = excluded.state, updated_at = excluded.updated_at,"
            " attempts = CASE WHEN model = excluded.model THEN attempts + 1 ELSE 1 END,"
            " model = excluded.model",
            (learner_id, skill, float(mastery[skill]), state.astype(np.float32).tobytes(),
             model, at),
        )  # fmt: skip
    db.conn.execute(
        "INSERT INTO learner_states (learner_id, state, model, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(learner_id) DO UPDATE SET state = excluded.state, model = excluded.model,"
        " updated_at = excluded.updated_at",
        (learner_id, learner_state.astype(np.float32).tobytes(), model, at),
    )


def of_learner(db: sqlite_utils.Database, learner_id: int) -> dict[str, dict]:
    """Skill id -> {p, attempts} for one learner."""
    return {
        r["skill_id"]: {"p": r["p"], "attempts": r["attempts"]}
        for r in rows(
            db, "SELECT skill_id, p, attempts FROM mastery WHERE learner_id = ?", (learner_id,)
        )
    }
