"""Choosing what a learner practises next, and saying why.

With an active knowledge-tracing model, every candidate item gets the model's chance
that this learner answers it right now. Items whose chance lies in the target band
(hard enough to learn from, easy enough not to discourage) come first, untried ones
before tried ones; when no item is in the band, the nearest one. Without a usable model
the rule decides: untried first, then the ones last answered wrong, then the ones
practised longest ago. Candidates come only from the lessons the caller names (one
lesson, or the learner's assigned lessons), and every choice is logged with its reason.
Either way, an item answered in the learner's last few answers waits while others are
left, so practice never circles on one question while untried ones wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from appliance.knowledge import tracing as knowledge
from appliance.store import assignments, grouped, mastery, now, quizzes, recommendations, rows
from models.knowledge_tracing import runtime as kt_runtime
from models.knowledge_tracing.runtime import KTModelError, KTRuntime

BAND = (0.5, 0.85)  # the target band of predicted success
TARGET = 0.7  # inside the band, nearer this comes first
# An item among the learner's last RECENT answers is not chosen while another is left;
# among recent ones, the one answered longest ago comes first.
RECENT = 5


@dataclass(frozen=True)
class Choice:
    item_id: str
    lesson_id: str
    rule: str  # "model" or "rule"
    reason: str  # in words, for a teacher or auditor
    p: float | None = None
    model: str | None = None


def choose(
    db: sqlite_utils.Database,
    home: Path | None,
    learner_id: int,
    lesson_ids: list[str],
    avoid: str | None = None,
) -> Choice | None:
    """The next item from `lesson_ids` for a learner, never `avoid` while another is left."""
    candidates = _candidates(db, learner_id, lesson_ids)
    if not candidates:
        return None
    runtime = kt_runtime.active(home) if home else None
    if runtime is not None:
        try:
            return _by_model(db, runtime, learner_id, candidates, avoid)
        except KTModelError as error:
            kt_runtime.unusable(runtime, error)
    return _by_rule(candidates, avoid)


def choose_and_log(
    db: sqlite_utils.Database,
    home: Path | None,
    learner_id: int,
    lesson_ids: list[str],
    avoid: str | None = None,
) -> Choice | None:
    """choose(), with the choice and its reason kept in the recommendation log before it
    is shown. The write joins other threads' writes in one commit (store.grouped), so a
    class opening questions at once shares fsyncs with the class's answers."""
    choice = choose(db, home, learner_id, lesson_ids, avoid)
    if choice is not None:
        grouped(db, lambda writer: recommendations.record(writer, learner_id, choice))
    return choice


def next_assigned(db: sqlite_utils.Database, home: Path | None, learner_id: int) -> Choice | None:
    """What to practise next across the lessons the learner's classes were given (None
    without any), logged like every choice."""
    return choose_and_log(db, home, learner_id, assigned_lessons(db, learner_id))


def assigned_lessons(db: sqlite_utils.Database, learner_id: int) -> list[str]:
    """The lessons a learner's classes were given, oldest assignment first."""
    return assignments.lesson_ids_of_learner(db, learner_id)


def _candidates(db: sqlite_utils.Database, learner_id: int, lesson_ids: list[str]) -> list[dict]:
    if not lesson_ids:
        return []
    marks = ",".join("?" * len(lesson_ids))  # only "?"s go into the text
    query = (
        "SELECT i.id, i.lesson_id, i.position, seen.tries, seen.last_id,"  # noqa: S608
        " coalesce(last.correct, 0) AS last_correct FROM items i LEFT JOIN ("
        "  SELECT item_id, max(id) AS last_id, count(*) AS tries FROM attempts"
        f"  WHERE learner_id = ? AND lesson_id IN ({marks}) GROUP BY item_id"
        " ) seen ON seen.item_id = i.id LEFT JOIN attempts last ON last.id = seen.last_id"
        f" WHERE i.lesson_id IN ({marks}) AND i.retired = 0"
        f" AND i.id NOT IN ({quizzes.LIVE_ITEMS_SQL})"  # a quiz's, while it is live
    )
    params = (learner_id, *lesson_ids, *lesson_ids, learner_id, now())
    found = [dict(r) for r in rows(db, query, params)]
    order = {lesson: n for n, lesson in enumerate(lesson_ids)}
    latest = _latest_answered(db, learner_id)
    for item in found:
        item["lesson_rank"] = order[item["lesson_id"]]
        # 0 for an item not answered lately; else how recently (RECENT: the last answer).
        item["recent"] = RECENT - latest.index(item["id"]) if item["id"] in latest else 0
    return found


def _latest_answered(db: sqlite_utils.Database, learner_id: int) -> list[str]:
    """The items of the learner's last RECENT answers, newest first."""
    query = "SELECT item_id FROM attempts WHERE learner_id = ? ORDER BY id DESC LIMIT ?"
    return [r["item_id"] for r in rows(db, query, (learner_id, RECENT))]


def _by_rule(candidates: list[dict], avoid: str | None) -> Choice:
    best = min(
        candidates,
        key=lambda c: (
            c["id"] == avoid, c["recent"], c["tries"] is not None, c["last_correct"],
            c["last_id"] or "",
            c["lesson_rank"], c["position"],
        ),
    )  # fmt: skip
    if best["tries"] is None:
        why = "not tried yet"
    elif not best["last_correct"]:
        why = "answered wrong last time"
    else:
        why = "practised longest ago"
    reason = f"rule (no knowledge-tracing model in use): {why}"
    return Choice(best["id"], best["lesson_id"], "rule", reason)


def _by_model(
    db: sqlite_utils.Database,
    runtime: KTRuntime,
    learner_id: int,
    candidates: list[dict],
    avoid: str | None,
) -> Choice:
    chances = predicted(db, runtime, learner_id, [c["id"] for c in candidates])
    low, high = BAND

    def distance(p: float) -> float:
        return 0.0 if low <= p <= high else min(abs(p - low), abs(p - high))

    best = min(
        candidates,
        key=lambda c: (
            c["id"] == avoid, c["recent"], distance(chances[c["id"]]) > 0, c["tries"] is not None,
            c["last_correct"], distance(chances[c["id"]]), abs(chances[c["id"]] - TARGET),
            c["lesson_rank"], c["position"],
        ),
    )  # fmt: skip
    p = chances[best["id"]]
    tried = "not tried yet" if best["tries"] is None else f"tried {best['tries']} times before"
    if distance(p) == 0:
        reason = f"predicted {p:.0%} chance of success, inside the target {low:.0%}-{high:.0%}"
    else:
        reason = (
            f"predicted {p:.0%} chance of success; no item left was inside the target "
            f"{low:.0%}-{high:.0%}, this one is nearest"
        )
    return Choice(best["id"], best["lesson_id"], "model", f"{reason}; {tried}", p, runtime.name)


def predicted(
    db: sqlite_utils.Database, runtime: KTRuntime, learner_id: int, item_ids: list[str]
) -> dict[str, float]:
    """Item id -> the model's chance that the learner answers it right now. The follower
    keeps these for the lessons a learner practises; the rest (a lesson not practised
    since the last answer was traced) are worked out here, in one call."""
    found = mastery.stored_chances(db, learner_id, runtime.name, item_ids)
    missing = [item_id for item_id in item_ids if item_id not in found]
    if missing:
        skills = mastery.skills_of(db, set(missing))
        needed = {skill for item_skills in skills.values() for skill in item_skills}
        states = {learner_id: mastery.skill_states(db, learner_id, runtime.name, needed)}
        counts = mastery.counts(db, set(missing), needed)
        worked_out = knowledge.chances(
            runtime, counts, states, [(learner_id, item) for item in missing], skills
        )
        found.update({item: p for (_, item), p in worked_out.items()})
    return found
