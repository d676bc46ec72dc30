"""Scores of predicted chances against what learners answered, with numpy only (the box
has no scikit-learn)."""

from __future__ import annotations

import numpy as np


def auc(predicted: np.ndarray, outcomes: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None without both
    right and wrong answers."""
    positives = int(outcomes.sum())
    negatives = len(outcomes) - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(predicted, kind="mergesort")
    ranks = np.empty(len(predicted), dtype=np.float64)
    ranks[order] = np.arange(1, len(predicted) + 1)
    # Tied predictions share the mean of their ranks.
    values, inverse, counts = np.unique(predicted, return_inverse=True, return_counts=True)
    if len(values) < len(predicted):
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    rank_sum = ranks[outcomes == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))
