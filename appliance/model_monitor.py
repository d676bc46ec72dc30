"""How well the knowledge-tracing model predicts this box's learners, live.

Every answer's prediction is made from the history before it (appliance/knowledge.py),
so the latest few thousand of them, against what the learners then did, measure the
model on this school: its AUC (how well it ranks right answers above wrong ones) and
its calibration (whether "70%" comes true 70% of the time). The admin page shows them
beside the figures on the model's card and warns when the live AUC has fallen more than
DRIFT below the card's: the model no longer fits these learners or this content.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sqlite_utils

from models import store
from models.scores import auc

from .store import mastery

WINDOW = 5000  # latest answers measured
MIN_ANSWERS = 200  # fewer: too noisy to judge
DRIFT = 0.05
BINS = 10


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
    live_auc = auc(predicted, outcomes) if len(predicted) >= MIN_ANSWERS else None
    return {
        "model": manifest.name,
        "answers": len(predicted),
        "live_auc": None if live_auc is None else round(live_auc, 4),
        "card_auc": None if card_auc is None else round(float(card_auc), 4),
        "card_data": card.get("data"),
        "calibration": calibration(predicted, outcomes) if len(predicted) else None,
        "drift": live_auc is not None and card_auc is not None and live_auc < card_auc - DRIFT,
        "backlog": mastery.backlog(db),
        "min_answers": MIN_ANSWERS,
    }
