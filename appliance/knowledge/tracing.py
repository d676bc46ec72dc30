"""Knowledge tracing on the box: a follower that steps the active model over new answers.

An answer's request only stores the answer: running the model inside it cost a class
a third of its answers per second (the model's step held the database's write lock).
Instead this follower reads the append-only attempts log in the order the answers were
stored (their rowid), from where it last stopped, and for each answer:

- predicts the chance of a right answer from the history before it (kept in
  `predictions`, which is how the box knows its model's live AUC and calibration);
- steps the learner's states and stores mastery per skill: the chance of a right
  answer on an average item of that skill;
- works out the learner's chance on each item of the lesson just practised (`chances`),
  which choosing their next item looks up (appliance/knowledge/recommend.py).

It runs every second in the supervisor (appliance/jobs.py) and in batches, each batch
one transaction, so a crash repeats a batch instead of losing or doubling one. When
the active model changes it starts again from the first answer under the new model.
Without a usable model nothing is traced and practice uses its rule.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import sqlite_utils

from appliance.store import mastery, transaction, value
from appliance.store.mastery import HISTORY, Answer, LearnerStates
from models.knowledge_tracing import runtime as kt_runtime
from models.knowledge_tracing.data import logit, rate_of, smoothed
from models.knowledge_tracing.runtime import KTModelError, KTRuntime

log = logging.getLogger("schoolbox.knowledge")
BATCH = 200  # answers per transaction: short enough not to hold up a class's writes


def follow(
    db: sqlite_utils.Database, home: Path, batch: int = BATCH, until: float | None = None
) -> int:
    """Trace every answer not traced yet (or until time.monotonic() reaches `until`);
    return how many were traced."""
    done = 0
    while until is None or time.monotonic() < until:
        runtime = kt_runtime.active(home, fresh=True)
        if runtime is None:
            return done
        traced = _trace_batch(db, runtime, batch)
        if traced is None:
            _prepare_chances(db, runtime)
            return done
        done += traced
    return done


def _prepare_chances(db: sqlite_utils.Database, runtime: KTRuntime, limit: int = 300) -> int:
    """Work out chances for learners' assigned lessons that have none yet (a new model,
    a new assignment, a new learner), so even a first question is a lookup."""
    missing = mastery.without_chances(db, runtime.name, limit)
    if not missing:
        return 0
    lessons = mastery.lesson_items(db, lesson_ids={lesson for _, lesson in missing})
    wanted = [(learner, item) for learner, lesson in missing for item in lessons.get(lesson, [])]
    learners = {learner for learner, _ in missing}
    states = {}
    for learner in learners:
        found = mastery.states(db, learner, runtime.name)
        states[learner] = (found.learner, found.skills)
    skills = mastery.skills_of(db, {item for _, item in wanted})
    try:
        fresh = chances(runtime, mastery.counts(db), states, wanted, skills)
    except KTModelError as error:
        kt_runtime.unusable(runtime, error)
        return 0
    with transaction(db):
        mastery.save_chances(db, runtime.name, fresh)
    return len(missing)


def _trace_batch(db: sqlite_utils.Database, runtime: KTRuntime, batch: int) -> int | None:
    """Trace the next batch; None when there is nothing (more) to do."""
    position = mastery.cursor(db)
    if position is None or position.model != runtime.name:
        with transaction(db):
            mastery.start_over(db, runtime.name)
        position = mastery.cursor(db)
        if position is None:  # start_over has just written it
            raise LookupError("the knowledge-tracing cursor is missing after a restart")
    answers = mastery.pending(db, position.last_rowid, batch)
    if not answers:
        return None
    tracer = _Tracer(db, runtime)
    try:
        tracer.trace(answers)
        fresh = tracer.chances_on_practised_lessons(answers)
    except KTModelError as error:
        kt_runtime.unusable(runtime, error)  # logged once; the box uses its rule
        return None
    counted = {key: tracer.counts[key] for key in tracer.counted}
    rows = mastery.prepare(runtime.name, tracer.learners, tracer.predictions, counted,
                           answers[-1].rowid, fresh)  # fmt: skip
    with transaction(db):
        # Another follower (a second process on the same box), or an erasure, got in
        # between: drop this batch; the next one starts from what is stored now.
        still = value(
            db, "SELECT count(*) FROM attempts WHERE rowid > ? AND rowid <= ?",
            (position.last_rowid, answers[-1].rowid),
        )  # fmt: skip
        if mastery.cursor(db) != position or still != len(answers):
            return 0
        mastery.save(db, rows)
    return len(answers)


class _Tracer:
    """One batch's steps, held in memory until the batch is stored.

    Answers are stepped in waves, the n-th answer of every learner in the batch together,
    so a class's burst costs a few onnxruntime calls instead of one per answer. Rows never
    read each other, and each answer's difficulties are fixed first in the log's order, so
    the result is what one answer at a time would give (to int8 rounding: the model's
    dynamic quantisation scales each call's activations together).
    """

    def __init__(self, db: sqlite_utils.Database, runtime: KTRuntime):
        self.db, self.runtime = db, runtime
        self.learners: dict[int, LearnerStates] = {}
        self.predictions: list[tuple[str, float]] = []
        self.counts = mastery.counts(db)
        self.counted: set[tuple[str, str]] = set()  # the counts this batch changed

    def trace(self, answers: list[Answer]) -> None:
        waves: dict[int, list[tuple[Answer, float, list[float]]]] = {}
        seen: dict[int, int] = {}
        for answer in answers:
            if not answer.skills:  # an item tagged with no skill tells the model nothing
                continue
            item_logit, skill_logits = difficulty(
                self.counts, answer.item_id, answer.skills, self.runtime.overall_logit
            )
            self._count(answer)
            turn = seen.get(answer.learner_id, 0)
            seen[answer.learner_id] = turn + 1
            waves.setdefault(turn, []).append((answer, item_logit, skill_logits))
        for turn in sorted(waves):
            self._step(waves[turn])

    def _step(self, wave: list[tuple[Answer, float, list[float]]]) -> None:
        """One answer of each of several learners: one call to step, one for mastery."""
        runtime = self.runtime
        skill_rows, learner_rows, items, skills, correct = [], [], [], [], []
        for answer, item_logit, skill_logits in wave:
            states = self._learner(answer.learner_id)
            learner = runtime.new_learner_state() if states.learner is None else states.learner
            for skill, skill_logit in zip(answer.skills, skill_logits, strict=True):
                skill_rows.append(states.skills.get(skill, runtime.new_skill_state()))
                learner_rows.append(learner)
                items.append(item_logit)
                skills.append(skill_logit)
                correct.append(answer.correct)
        p, next_skill, next_learner = runtime.step_rows(
            np.stack(skill_rows), np.stack(learner_rows), np.array(items), np.array(skills),
            np.array(correct),
        )  # fmt: skip
        # Mastery: the chance of a right answer on an average item of each skill, after.
        levels = runtime.predict(next_skill, next_learner, np.array(skills), np.array(skills))
        row = 0
        for answer, _, _ in wave:
            rows = slice(row, row + len(answer.skills))
            row = rows.stop
            self.predictions.append((answer.id, float(p[rows].mean())))
            self._keep(answer, next_skill[rows], next_learner[rows.start], levels[rows])

    def chances_on_practised_lessons(self, answers: list[Answer]) -> dict[tuple[int, str], float]:
        """Each learner's chance now on every item of the lessons they just practised, in
        one onnxruntime call: what choosing their next item will look up."""
        answered: dict[int, set[str]] = {}
        for answer in answers:
            if answer.learner_id in self.learners:
                answered.setdefault(answer.learner_id, set()).add(answer.item_id)
        if not answered:
            return {}
        lessons = mastery.lesson_items(self.db, set().union(*answered.values()))
        lesson_of = {item: lesson for lesson, items in lessons.items() for item in items}
        wanted = []
        for learner_id, items in answered.items():
            for lesson in sorted({lesson_of[i] for i in items if i in lesson_of}):
                wanted += [(learner_id, item) for item in lessons[lesson]]
        skills = mastery.skills_of(self.db, {item for _, item in wanted})
        states = {k: (v.learner, v.skills) for k, v in self.learners.items()}
        return chances(self.runtime, self.counts, states, wanted, skills)

    def _keep(self, answer: Answer, skill_states, learner_state, levels) -> None:
        states = self._learner(answer.learner_id)
        states.learner = learner_state
        for skill, state, level in zip(answer.skills, skill_states, levels, strict=True):
            states.skills[skill] = state
            states.stepped.add(skill)
            known = states.mastery.setdefault(skill, {"p": 0.0, "attempts": 0, "history": []})
            known["p"] = round(float(level), 4)
            known["attempts"] += 1
            known["history"] = (known["history"] + [known["p"]])[-HISTORY:]

    def _learner(self, learner_id: int) -> LearnerStates:
        if learner_id not in self.learners:
            self.learners[learner_id] = mastery.states(self.db, learner_id, self.runtime.name)
        return self.learners[learner_id]

    def _count(self, answer: Answer) -> None:
        for key in [("item", answer.item_id)] + [("skill", s) for s in answer.skills]:
            self.counted.add(key)
            found = self.counts.setdefault(key, [0, 0])
            found[0] += 1
            found[1] += answer.correct


def chances(
    runtime: KTRuntime,
    counts: dict,
    states: dict[int, tuple[np.ndarray | None, dict[str, np.ndarray]]],
    wanted: list[tuple[int, str]],
    skills: dict[str, list[str]],
) -> dict[tuple[int, str], float]:
    """(learner, item) -> the model's chance of a right answer now, for every pair in
    `wanted`, in one call: the mean over the item's skills (the box's overall rate for an
    item with none). `states` holds each learner's state and skill states."""
    owners, skill_rows, learner_rows, item_logits, skill_logits = [], [], [], [], []
    for index, (learner_id, item_id) in enumerate(wanted):
        learner, known = states.get(learner_id, (None, {}))
        learner = runtime.new_learner_state() if learner is None else learner
        item_skills = skills.get(item_id, [])
        item_logit, logits = difficulty(counts, item_id, item_skills, runtime.overall_logit)
        for skill, skill_logit in zip(item_skills, logits, strict=True):
            owners.append(index)
            skill_rows.append(known.get(skill, runtime.new_skill_state()))
            learner_rows.append(learner)
            item_logits.append(item_logit)
            skill_logits.append(skill_logit)
    overall = rate_of(runtime.overall_logit)
    if not skill_rows:
        return dict.fromkeys(wanted, overall)
    predicted = runtime.predict(
        np.stack(skill_rows), np.stack(learner_rows), np.array(item_logits),
        np.array(skill_logits),
    )  # fmt: skip
    sums = np.bincount(owners, weights=predicted, minlength=len(wanted))
    sizes = np.bincount(owners, minlength=len(wanted))
    return {
        pair: round(float(sums[i] / sizes[i]), 4) if sizes[i] else overall
        for i, pair in enumerate(wanted)
    }


def difficulty(
    counts: dict, item_id: str, skills: list[str], prior_logit: float
) -> tuple[float, list[float]]:
    """The item's and its skills' log-odds of a right answer on this box, each pulled
    towards the level above it (all answers -> skill -> item) while answers are few."""
    skill_logits = []
    for skill in skills:
        answers, right = counts.get(("skill", skill), (0, 0))
        skill_logits.append(logit(smoothed(right, answers, rate_of(prior_logit))))
    answers, right = counts.get(("item", item_id), (0, 0))
    prior = rate_of(sum(skill_logits) / len(skill_logits)) if skills else rate_of(prior_logit)
    return logit(smoothed(right, answers, prior)), skill_logits
