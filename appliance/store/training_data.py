"""The one door federated training has into the box's database: read-only, and narrow.

It opens the database file read-only (SQLite's `mode=ro`, so no write can happen through
it), and returns nothing until the school has consented to federated training. What it
returns is answer sequences, one per learner, as the knowledge-tracing model reads them:
item and skill numbers local to this call (no item, skill or learner id of the box),
right or wrong. Learners are not named or numbered; erased learners are not there (their
answers are deleted on erasure, and the learner rows are checked too). The most recent
share of each learner's answers is marked for evaluation, so a box can score a model on
what its learners did last.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from models.knowledge_tracing.data import Answer

FEATURE = "federated"  # the consent this needs (appliance/store/site.py)


@dataclass(frozen=True)
class TrainingData:
    learners: list[list[Answer]]  # each learner's answers, oldest first
    recent_from: list[int]  # per learner: answers from this index on are held out

    @property
    def answers(self) -> int:
        return sum(len(learner) for learner in self.learners)


def consented(db_path: Path) -> bool:
    """Whether the school has consented to federated training (read-only)."""
    with _read_only(db_path) as conn:
        row = conn.execute("SELECT granted FROM consents WHERE feature = ?", (FEATURE,)).fetchone()
    return bool(row and row[0])


def last_answer_at(db_path: Path) -> datetime | None:
    """When a learner last answered on this box: training yields while a class is on."""
    with _read_only(db_path) as conn:
        # The answer stored last (rowids rise in commit order): one index step, where
        # max(created_at) would scan every answer, every few seconds of a training round.
        row = conn.execute("SELECT created_at FROM attempts ORDER BY rowid DESC LIMIT 1").fetchone()
    return datetime.fromisoformat(row[0]) if row else None


@contextmanager
def _read_only(db_path: Path):
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def read(
    db_path: Path, recent_share: float = 0.2, min_answers: int = 2, for_training: bool = True
) -> TrainingData | None:
    """The box's answer sequences for training, or None without the school's consent.
    `for_training=False` is for scoring a model on the box itself (nothing leaves it)."""
    if for_training and not consented(db_path):
        return None
    items: dict[str, tuple[int, tuple[int, ...]]] = {}  # item id -> number, skill numbers
    skills: dict[str, int] = {}
    by_learner: dict[int, list[Answer]] = {}
    with _read_only(db_path) as conn:
        # Row by row, never the whole result at once: a month of a big school is ~400k
        # rows, and the box trains under a memory cap beside the web app.
        rows = conn.execute(
            "SELECT a.learner_id, a.item_id, a.correct FROM attempts a"
            " JOIN users u ON u.id = a.learner_id AND u.erased_at IS NULL"
            " WHERE EXISTS (SELECT 1 FROM item_skills x WHERE x.item_id = a.item_id)"
            " ORDER BY a.learner_id, a.rowid"
        )
        for learner_id, item_id, correct in rows:
            item = items.get(item_id)
            if item is None:
                item = items[item_id] = (len(items) + 1, _skills_of(conn, item_id, skills))
            by_learner.setdefault(learner_id, []).append(Answer(*item, int(correct)))
    learners = [answers for answers in by_learner.values() if len(answers) >= min_answers]
    recent_from = [max(1, round(len(a) * (1 - recent_share))) for a in learners]
    return TrainingData(learners, recent_from)


def _skills_of(conn: sqlite3.Connection, item_id: str, numbers: dict[str, int]) -> tuple[int, ...]:
    """An item's skills as this call's skill numbers: one tuple per item, shared by all
    its answers."""
    found = conn.execute(
        "SELECT skill_id FROM item_skills WHERE item_id = ? ORDER BY skill_id", (item_id,)
    )
    return tuple(sorted(numbers.setdefault(s, len(numbers) + 1) for (s,) in found))
