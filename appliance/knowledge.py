"""Knowledge tracing on the box: after each answer, one step of the active model.

The model (the store's active knowledge-tracing ONNX file, through models/kt_runtime)
reads how hard the item and its skills are on this box and the learner's states, and
gives the chance it had for this answer and the states after it. Mastery per skill is
the chance of a right answer on an average item of that skill. With no usable model,
nothing is estimated and practice uses its rule.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import sqlite_utils

from models import kt_runtime
from models.kt_runtime import KTModelError

from .store import mastery


def tracer(home: Path, db: sqlite_utils.Database, learner_id: int, item: dict, correct: bool):
    """The step to run inside the answer's transaction (attempts.record's before_insert)."""
    return lambda: on_answer(db, home, learner_id, item, correct)


def on_answer(
    db: sqlite_utils.Database, home: Path, learner_id: int, item: dict, correct: bool
) -> float | None:
    """Step the learner's states for one answer; return the prediction it had, or None."""
    runtime = kt_runtime.active(home)
    skills = mastery.skills_of(db, item["id"])
    if runtime is None or not skills:
        return None
    item_logit, skill_logits = mastery.difficulty(db, item["id"], skills, runtime.overall_logit)
    known, learner_state = mastery.states(db, learner_id, skills, runtime.name)
    if learner_state is None:
        learner_state = runtime.new_learner_state()
    before = np.stack([known.get(s, runtime.new_skill_state()) for s in skills])
    try:
        step = runtime.update(before, learner_state, item_logit, skill_logits, int(correct))
        levels = runtime.predict(
            step.skill_states,
            np.repeat(step.learner_state[None, :], len(skills), axis=0),
            np.array(skill_logits),
            np.array(skill_logits),
        )
    except KTModelError:
        kt_runtime.log.error("knowledge-tracing model gave unusable values; using the rule")
        return None
    mastery.save(
        db, learner_id, runtime.name,
        dict(zip(skills, step.skill_states, strict=True)),
        dict(zip(skills, levels.tolist(), strict=True)),
        step.learner_state,
    )  # fmt: skip
    return step.p_correct


Tracer = Callable[[], float | None]
