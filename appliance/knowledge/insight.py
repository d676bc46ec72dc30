"""Who needs help: a class's mastery as a heat map, and flags explained in plain words.

A learner is flagged on a skill when they are stuck (a low estimate after many answers)
or falling (the estimate dropped well below where it was a few answers ago). Each flag
says why in words a teacher can act on, from the answers themselves: "6 of the last 8
answers on Equivalent fractions were wrong". Without a knowledge-tracing model the
share of right answers among the latest ones stands in for the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from appliance.store import mastery, rows

RECENT = 8  # latest answers per learner x skill that explain a flag
STUCK_AFTER = 6  # answers on a skill before "stuck" can be said
STUCK_BELOW = 0.5
FALL = 0.2  # a drop this large from the recent best is "falling"


@dataclass(frozen=True)
class Flag:
    learner_id: int
    skill_id: str
    kind: str  # "stuck" or "falling"
    text: str


def class_view(
    db: sqlite_utils.Database, class_id: int, grid: dict, skill_names: dict[str, str]
) -> tuple[dict[int, dict[str, dict]], list[Flag]]:
    """The heat map's cells and the flags for a class, from one read of its estimates.
    `grid` is attempts.class_grid; `skill_names` maps skill ids to what teachers read."""
    estimates = mastery.of_class(db, class_id)
    return _cells(grid, estimates), _flags(db, class_id, estimates, skill_names)


def _cells(grid: dict, estimates: dict) -> dict[int, dict[str, dict]]:
    """Learner -> skill -> {level, answers, estimated}: the model's mastery where there is
    one, else the share of right answers."""
    found: dict[int, dict[str, dict]] = {}
    for learner_id, skills in grid.items():
        for skill_id, cell in skills.items():
            estimate = estimates.get(learner_id, {}).get(skill_id)
            level = estimate["p"] if estimate else cell["correct"] / cell["attempts"]
            found.setdefault(learner_id, {})[skill_id] = {
                "level": level, "answers": cell["attempts"], "estimated": estimate is not None
            }  # fmt: skip
    return found


def _flags(db, class_id: int, estimates: dict, skill_names: dict[str, str]) -> list[Flag]:
    """Every stuck or falling learner x skill in a class, most worrying first."""
    found = []
    for (learner_id, skill_id), recent in _recent_answers(db, class_id).items():
        estimate = estimates.get(learner_id, {}).get(skill_id)
        name = skill_names.get(skill_id, skill_id)
        flag = _judge(learner_id, skill_id, name, recent, estimate)
        if flag:
            found.append(flag)
    return sorted(found, key=lambda f: (f.kind != "stuck", f.learner_id, f.skill_id))


def _judge(
    learner_id: int, skill_id: str, name: str, recent: list[int], estimate: dict | None
) -> Flag | None:
    wrong = len(recent) - sum(recent)
    record = f"{wrong} of the last {len(recent)} answers on {name} were wrong"
    history = estimate["history"] if estimate else []
    if estimate and len(history) >= 4:
        best = max(history[:-1])
        if best - estimate["p"] >= FALL and estimate["p"] < 0.6:
            since = max(i for i, value in enumerate(history[:-1]) if value == best)
            text = (
                f"Estimated mastery of {name} fell from {best:.0%} to {estimate['p']:.0%} "
                f"over the last {len(history) - 1 - since} answers; {record}."
            )
            return Flag(learner_id, skill_id, "falling", text)
    answers = estimate["attempts"] if estimate else len(recent)
    level = estimate["p"] if estimate else sum(recent) / len(recent)
    if answers >= STUCK_AFTER and level < STUCK_BELOW and wrong * 2 >= len(recent):
        why = f"estimated mastery {level:.0%}" if estimate else "no model estimate yet"
        return Flag(learner_id, skill_id, "stuck", f"{record} ({why}).")
    return None


def _recent_answers(db: sqlite_utils.Database, class_id: int) -> dict[tuple[int, str], list]:
    """(learner, skill) -> right (1) or wrong (0) for the latest RECENT answers, oldest first."""
    found: dict[tuple[int, str], list[int]] = {}
    for r in rows(
        db,
        "SELECT learner_id, skill_id, correct FROM ("
        " SELECT a.learner_id, x.skill_id, a.correct, a.id, row_number() OVER ("
        "  PARTITION BY a.learner_id, x.skill_id ORDER BY a.id DESC) AS n"
        " FROM enrolments e JOIN attempts a ON a.learner_id = e.learner_id"
        " JOIN item_skills x ON x.item_id = a.item_id WHERE e.class_id = ?"
        ") WHERE n <= ? ORDER BY learner_id, skill_id, id",
        (class_id, RECENT),
    ):
        found.setdefault((r["learner_id"], r["skill_id"]), []).append(r["correct"])
    return found
