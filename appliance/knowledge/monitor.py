"""How well the knowledge-tracing model predicts this box's learners, live.

Every answer's prediction is made from the history before it (appliance/knowledge/tracing.py),
so the latest few thousand of them, against what the learners then did, measure the
model on this school: its AUC (how well it ranks right answers above wrong ones) and
its calibration (whether "70%" comes true 70% of the time). The admin page shows them
beside the figures on the model's card and warns when the live AUC has fallen more than
DRIFT below the card's: the model no longer fits these learners or this content.

A few hundred answers measure an AUC only roughly (give or take 0.03 at 1,000), and a
new box's first answers are predicted with no item difficulties yet, so the warning
needs evidence, not a point estimate below the line: at least DRIFT_MIN_ANSWERS answers,
and even the upper end of the live AUC's confidence interval (DeLong's variance, one-
sided, CONFIDENCE) below card - DRIFT. One learner's answers are not independent, which
DeLong's variance assumes, so its interval is a little narrow; the strict level is why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sqlite_utils

from appliance.store import mastery
from models.knowledge_tracing.scores import auc
from models.registry import installed as store

__all__ = ["auc", "auc_interval", "calibration", "drifting", "report"]

WINDOW = 5000  # latest answers measured
MIN_ANSWERS = 200  # fewer: too noisy to show
DRIFT_MIN_ANSWERS = 500  # fewer: too few to warn on, whatever the interval says
DRIFT = 0.05
Z_ONE_SIDED = 2.326  # 99% one-sided: a false alarm on a sound model about 1 time in 100
CONFIDENCE = "99%"
BINS = 10


def auc_interval(predicted: np.ndarray, outcomes: np.ndarray) -> tuple[float, float] | None:
    """AUC and its standard error by DeLong's method (ties counted half); None without
    both right and wrong answers. DeLong, DeLong & Clarke-Pearson, Biometrics 1988, with
    the midrank form of Sun & Xu, IEEE SPL 2014."""
    right, wrong = predicted[outcomes == 1], predicted[outcomes == 0]
    m, n = len(right), len(wrong)
    if not m or not n:
        return None
    ranks = _midranks(np.concatenate([right, wrong]))
    # Of each right answer: the share of wrong answers predicted lower; of each wrong
    # answer: the share of right answers predicted higher.
    above = (ranks[:m] - _midranks(right)) / n
    below = 1 - (ranks[m:] - _midranks(wrong)) / m
    value = float(above.mean())
    variance = above.var(ddof=1) / m if m > 1 else 0.0
    variance += below.var(ddof=1) / n if n > 1 else 0.0
    return value, float(np.sqrt(variance))


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - (counts - 1) / 2)[inverse]).astype(np.float64)


def drifting(live: tuple[float, float] | None, answers: int, card_auc: float | None) -> bool:
    """True when the answers show, beyond reasonable doubt, that the live AUC is more than
    DRIFT below the card's: enough of them, and the interval's upper end below the line."""
    if live is None or card_auc is None or answers < DRIFT_MIN_ANSWERS:
        return False
    value, error = live
    return value + Z_ONE_SIDED * error < card_auc - DRIFT


def calibration(predicted: np.ndarray, outcomes: np.ndarray, bins: int = BINS) -> dict:
    """Predicted against observed rates in equal-width bins, and the expected calibration
    error (the answers-weighted mean gap)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(predicted, edges[1:-1]), 0, bins - 1)
    table, gap = [], 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        if not n:
            continue
        mean_p, rate = float(predicted[inside].mean()), float(outcomes[inside].mean())
        table.append({"from": float(edges[b]), "to": float(edges[b + 1]), "answers": n,
                      "predicted": round(mean_p, 3), "observed": round(rate, 3)})  # fmt: skip
        gap += n * abs(mean_p - rate)
    return {"ece": round(gap / max(len(predicted), 1), 4), "bins": table}


def report(db: sqlite_utils.Database, home: Path) -> dict | None:
    """The active model's live figures beside its card's; None with no active model."""
    manifest = store.active(home, "knowledge-tracing")
    if manifest is None:
        return None
    predicted, outcomes = mastery.recent_predictions(db, manifest.name, WINDOW)
    card = store.card(home, manifest) or {}
    card_auc = (card.get("metrics_test_int8") or card.get("metrics") or {}).get("auc")
    live = auc_interval(predicted, outcomes) if len(predicted) >= MIN_ANSWERS else None
    live_auc = None if live is None else live[0]
    return {
        "model": manifest.name,
        "answers": len(predicted),
        "live_auc": None if live_auc is None else round(live_auc, 4),
        "live_auc_error": None if live is None else round(live[1], 4),
        "card_auc": None if card_auc is None else round(float(card_auc), 4),
        "card_data": card.get("data"),
        "calibration": calibration(predicted, outcomes) if len(predicted) else None,
        "drift": drifting(live, len(predicted), None if card_auc is None else float(card_auc)),
        "backlog": mastery.backlog(db),
        "min_answers": MIN_ANSWERS,
        "drift_min_answers": DRIFT_MIN_ANSWERS,
    }
