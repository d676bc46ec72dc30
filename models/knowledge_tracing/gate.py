"""Whether a new knowledge-tracing model may replace the active one on this box.

Both models replay the box's own answers step by step through onnxruntime, exactly as
the box would have run them, and are scored on each learner's most recent answers (the
same held-out share federated training never trains on). The new model is activated
only if its AUC there is at most TOLERANCE below the active model's. With too few
recent answers to tell, the new model is activated on the district's figures, and the
reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.knowledge_tracing.data import Answer, difficulty
from models.knowledge_tracing.runtime import KTRuntime, step_by_step
from models.knowledge_tracing.scores import auc

TOLERANCE = 0.005
MIN_RECENT = 200  # recent answers, both right and wrong ones, needed to compare


@dataclass(frozen=True)
class Verdict:
    accept: bool
    reason: str
    new_auc: float | None = None
    active_auc: float | None = None
    answers: int = 0


def judge(new: Path, active: Path | None, learners: list[list[Answer]],
          recent_from: list[int]) -> Verdict:  # fmt: skip
    """Compare `new` with `active` on each learner's answers from `recent_from` on."""
    if active is None:
        return Verdict(True, "no model was active")
    mask = np.concatenate(
        [np.arange(len(a)) >= cut for a, cut in zip(learners, recent_from, strict=True)]
        or [np.zeros(0, dtype=bool)]
    )
    labels = np.array([a.correct for learner in learners for a in learner])[mask]
    if len(labels) < MIN_RECENT or labels.min() == labels.max():
        return Verdict(True, f"too few recent answers on this box to compare ({len(labels)}); "
                       "activated on the district's figures", answers=len(labels))  # fmt: skip
    diff = difficulty([learner[:cut] for learner, cut in zip(learners, recent_from, strict=True)])
    new_auc = auc(step_by_step(KTRuntime(new), learners, diff)[0][mask], labels)
    active_auc = auc(step_by_step(KTRuntime(active), learners, diff)[0][mask], labels)
    if new_auc is None or active_auc is None:  # the labels hold both: never None here
        raise ValueError("an AUC needs both right and wrong answers")
    figures = f"AUC {new_auc:.4f} against {active_auc:.4f} on {len(labels)} recent answers"
    if new_auc < active_auc - TOLERANCE:
        return Verdict(False, f"the new model is worse here ({figures}); the active model stays",
                       new_auc, active_auc, len(labels))  # fmt: skip
    return Verdict(True, f"the new model is not worse here ({figures})", new_auc, active_auc,
                   len(labels))  # fmt: skip
