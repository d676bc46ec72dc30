"""Baselines for knowledge tracing, scored in the same harness as the deep model.

- Best-LR (Gervet, Koedinger, Schneider & Mitchell, "When is deep learning the best
  approach to knowledge tracing?", JEDM 2020): logistic regression on the item, its
  skills, and counts of the learner's earlier right and wrong answers, on these skills
  and in all (log(1 + count)). Without timestamps we leave out its time windows.
- BKT through pyBKT (`bkt_predictions`): pyBKT needs numpy 1.x, so it runs in a venv of
  its own (`make kt-baselines`) and gets the rows and returns predictions as CSV.

Every answer is scored once, from the learner's history before it; an answer with
several skills is one row here (its skills together), and the mean of its skills'
predictions for BKT.
"""

from __future__ import annotations

import csv
import math
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from models.knowledge_tracing.data import Answer
from models.knowledge_tracing.training import datasets

BKT_SCRIPT = datasets.REPO / "bench" / "kt_bkt.py"


def _best_lr_rows(learners: list[list[Answer]], items: dict, skills: dict, grow: bool):
    """Sparse rows (column, value) and labels; `grow` adds unseen items/skills as columns."""
    rows, labels = [], []
    for answers in learners:
        right: Counter[int] = Counter()
        wrong: Counter[int] = Counter()
        total_right = total_wrong = 0
        for a in answers:
            columns = []
            if grow:
                items.setdefault(a.problem, len(items))
            if a.problem in items:
                columns.append((6 + items[a.problem], 1.0))
            for s in a.skills:
                if grow:
                    skills.setdefault(s, len(skills))
                if s in skills:
                    columns.append((-1 - skills[s], 1.0))  # placed after items below
            columns += [
                (0, math.log1p(sum(right[s] for s in a.skills))),
                (1, math.log1p(sum(wrong[s] for s in a.skills))),
                (2, math.log1p(total_right)),
                (3, math.log1p(total_wrong)),
                (4, 1.0 / (1 + sum(right[s] + wrong[s] for s in a.skills))),  # first tries
                (5, 1.0),
            ]
            rows.append(columns)
            labels.append(a.correct)
            for s in a.skills:
                (right if a.correct else wrong)[s] += 1
            total_right += a.correct
            total_wrong += 1 - a.correct
    return rows, np.array(labels)


def _matrix(rows, n_items: int, n_skills: int):
    from scipy.sparse import csr_matrix

    data, indices, indptr = [], [], [0]
    for columns in rows:
        for column, value in columns:
            indices.append(column if column >= 0 else 6 + n_items + (-1 - column))
            data.append(value)
        indptr.append(len(indices))
    return csr_matrix((data, indices, indptr), shape=(len(rows), 6 + n_items + n_skills))


def best_lr(train: list[list[Answer]], test: list[list[Answer]]) -> tuple:
    """Best-LR fitted on `train`; each test answer's predicted chance and its label."""
    from sklearn.linear_model import LogisticRegression

    items: dict[int, int] = {}
    skills: dict[int, int] = {}
    train_rows, train_y = _best_lr_rows(train, items, skills, grow=True)
    test_rows, test_y = _best_lr_rows(test, items, skills, grow=False)
    model = LogisticRegression(max_iter=2000, C=1.0)
    model.fit(_matrix(train_rows, len(items), len(skills)), train_y)
    predicted = model.predict_proba(_matrix(test_rows, len(items), len(skills)))[:, 1]
    return predicted, test_y


def bkt_predictions(train: list[list[Answer]], test: list[list[Answer]], python: Path) -> tuple:
    """pyBKT (one model per skill) fitted on `train`, run in its own venv's `python`."""
    with tempfile.TemporaryDirectory() as folder:
        train_csv, test_csv, out_csv = (Path(folder) / n for n in ("train", "test", "out"))
        _bkt_rows(train, train_csv)
        keys = _bkt_rows(test, test_csv)
        subprocess.run(
            [str(python), str(BKT_SCRIPT), str(train_csv), str(test_csv), str(out_csv)],
            check=True,
        )
        predicted = [float(row[0]) for row in csv.reader(out_csv.open())]
    by_answer: dict[tuple, list[float]] = {}
    labels: dict[tuple, int] = {}
    for key, p in zip(keys, predicted, strict=True):
        by_answer.setdefault(key[:2], []).append(p)
        labels[key[:2]] = key[2]
    order = list(by_answer)
    return np.array([np.mean(by_answer[k]) for k in order]), np.array([labels[k] for k in order])


def _bkt_rows(learners: list[list[Answer]], path: Path) -> list[tuple]:
    """One row per (answer, skill) in pyBKT's column names; returns (learner, answer, y)."""
    keys = []
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["order_id", "user_id", "skill_name", "correct"])
        order = 0
        for learner, answers in enumerate(learners):
            for t, a in enumerate(answers):
                for s in a.skills:
                    writer.writerow([order, learner, s, a.correct])
                    keys.append((learner, t, a.correct))
                    order += 1
    return keys
