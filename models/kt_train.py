"""Training the content-agnostic knowledge-tracing model (PyTorch, the `train` extra only).

The model never sees an item or skill id, so one set of weights serves any content pack:

- a *skill state* per learner x skill: a GRU stepped only by that learner's answers on
  that skill (input: right or wrong, the item's difficulty, the skill's difficulty);
- a *learner state*: a GRU stepped by every answer (right or wrong, item difficulty);
- a small head that reads both states plus the next item's and skill's difficulty and
  gives the chance of a right answer.

Difficulties are smoothed log-odds of success (kt_data.difficulty), which a box computes
from its own learners' answers. An item with several skills is predicted as the mean of
its skills' predictions and steps each of their states. On the box one answer is one
step of each state (kt_runtime.py), never a replay of the history.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .kt_data import Answer, Difficulty, difficulty

WINDOW = 200  # answers per training sequence; states carry on past it on the box


@dataclass(frozen=True)
class Shape:
    skill_hidden: int = 32
    learner_hidden: int = 32
    head_hidden: int = 32


class KTModel(nn.Module):
    def __init__(self, shape: Shape = Shape()):
        super().__init__()
        self.shape = shape
        self.skill_gru = nn.GRU(3, shape.skill_hidden, batch_first=True)
        self.learner_gru = nn.GRU(2, shape.learner_hidden, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(shape.skill_hidden + shape.learner_hidden + 2, shape.head_hidden),
            nn.ReLU(),
            nn.Linear(shape.head_hidden, 1),
        )

    def forward(self, batch: dict) -> torch.Tensor:
        """Logits for every (answer, skill) row of the batch, from the states before it."""
        learner_states = _run(self.learner_gru, batch["learner_x"], batch["learner_len"])
        skill_states = _run(self.skill_gru, batch["skill_x"], batch["skill_len"])
        features = torch.cat(
            [
                skill_states[batch["row_pair"], batch["row_step"]],
                learner_states[batch["row_learner"], batch["row_answer"]],
                batch["row_item"].unsqueeze(1),
                batch["row_skill"].unsqueeze(1),
            ],
            dim=1,
        )
        return self.head(features).squeeze(1)


def _run(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """States *before* each step: a zero state, then the state after each input."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = gru(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)


def batch_of(sequences: list[list[Answer]], diff: Difficulty | list[Difficulty]) -> dict:
    """Tensors for a batch of answer sequences, with one row per (answer, skill).
    `diff` is one Difficulty for all, or one per sequence."""
    learner_x, pairs, rows = [], {}, []
    skill_x: list[list[list[float]]] = []
    diffs = diff if isinstance(diff, list) else [diff] * len(sequences)
    for b, (answers, diff) in enumerate(zip(sequences, diffs, strict=True)):
        steps = []
        for t, a in enumerate(answers):
            item = diff.of_item(a.problem, a.skills)
            steps.append([float(a.correct), item])
            for s in a.skills:
                pair = pairs.setdefault((b, s), len(pairs))
                if pair == len(skill_x):
                    skill_x.append([])
                rows.append((pair, len(skill_x[pair]), b, t, item, diff.of_skill(s), a.correct))
                skill_x[pair].append([float(a.correct), item, diff.of_skill(s)])
        learner_x.append(steps)
    return {
        "learner_x": _pad(learner_x, 2),
        "learner_len": torch.tensor([len(x) for x in learner_x]),
        "skill_x": _pad(skill_x, 3),
        "skill_len": torch.tensor([len(x) for x in skill_x]),
        "row_pair": torch.tensor([r[0] for r in rows]),
        "row_step": torch.tensor([r[1] for r in rows]),
        "row_learner": torch.tensor([r[2] for r in rows]),
        "row_answer": torch.tensor([r[3] for r in rows]),
        "row_item": torch.tensor([r[4] for r in rows], dtype=torch.float32),
        "row_skill": torch.tensor([r[5] for r in rows], dtype=torch.float32),
        "row_label": torch.tensor([r[6] for r in rows], dtype=torch.float32),
        # Which answer each row belongs to, to score an answer once (mean of its skills).
        "row_key": [(r[2], r[3]) for r in rows],
    }


def _pad(sequences: list[list[list[float]]], width: int) -> torch.Tensor:
    longest = max(len(s) for s in sequences)
    out = np.zeros((len(sequences), longest, width), dtype=np.float32)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = seq
    return torch.from_numpy(out)


def windows(learners: list[list[Answer]], size: int = WINDOW) -> list[list[Answer]]:
    return [a[i : i + size] for a in learners for i in range(0, len(a), size) if a[i : i + size]]


@dataclass
class Trained:
    model: KTModel
    difficulty: Difficulty
    epochs: int
    seconds: float
    valid_auc: float


def train(
    train_set: list[list[Answer]],
    valid_set: list[list[Answer]],
    diff: Difficulty,
    *,
    shape: Shape = Shape(),
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    patience: int = 2,
    held_out: bool = True,
    model: KTModel | None = None,
    log=print,
    keep_going=lambda: None,
) -> Trained:
    """Train with Adam on windows of the training learners; keep the best epoch on valid
    (with no valid set, the last). `model` continues from given weights (federated
    rounds); by default training starts afresh. `keep_going` is called before each batch
    and may raise to stop (a box yields to a class that starts)."""
    torch.manual_seed(seed)
    random.seed(seed)
    model = model if model is not None else KTModel(shape)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    chunks = (
        _with_held_out_difficulty(train_set)
        if held_out
        else [(chunk, diff) for chunk in windows(train_set)]
    )
    best, best_state, since_best, started = -1.0, None, 0, time.perf_counter()
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        random.shuffle(chunks)
        for start in range(0, len(chunks), batch_size):
            keep_going()
            group = chunks[start : start + batch_size]
            batch = batch_of([c for c, _ in group], [d for _, d in group])
            optimiser.zero_grad()
            loss = loss_fn(model(batch), batch["row_label"])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
        if not valid_set:
            continue
        auc = evaluate(model, valid_set, diff)["auc"]
        log(f"epoch {epoch}: valid AUC {auc:.4f} ({time.perf_counter() - started:.0f} s)")
        if auc > best:
            best, since_best = auc, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
            if since_best >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return Trained(model, diff, epoch, time.perf_counter() - started, best)


def _with_held_out_difficulty(learners: list[list[Answer]]) -> list[tuple]:
    """Training windows, each with difficulties learned from the *other* half of the
    learners: as on a box or a test set, an answer never counts in its own item's
    difficulty, so the model learns how far to trust those figures."""
    halves = (learners[0::2], learners[1::2])
    other = (difficulty(halves[1]), difficulty(halves[0]))
    return [(chunk, other[h]) for h in (0, 1) for chunk in windows(halves[h])]


@torch.no_grad()
def predict(model: KTModel, learners: list[list[Answer]], diff: Difficulty) -> tuple:
    """Each answer's predicted chance of being right (mean over its skills) and its label,
    learner by learner in the order given, each learner's answers in order."""
    model.eval()
    per_learner: dict[int, tuple[list[float], list[float]]] = {}
    order = sorted((i for i in range(len(learners)) if learners[i]), key=lambda i: len(learners[i]))
    for start in range(0, len(order), 32):  # similar lengths together: less padding
        group = order[start : start + 32]
        batch = batch_of([learners[i] for i in group], diff)
        chance = torch.sigmoid(model(batch)).numpy()
        by_answer: dict[tuple, list[float]] = {}
        label: dict[tuple, float] = {}
        for key, p, y in zip(batch["row_key"], chance, batch["row_label"].numpy(), strict=True):
            by_answer.setdefault(key, []).append(float(p))
            label[key] = float(y)
        for (b, _), ps in by_answer.items():
            predicted, labels = per_learner.setdefault(group[b], ([], []))
            predicted.append(sum(ps) / len(ps))
            labels.append(label[(b, _)])
    predicted = [p for i in sorted(per_learner) for p in per_learner[i][0]]
    labels = [y for i in sorted(per_learner) for y in per_learner[i][1]]
    return np.array(predicted), np.array(labels)


def evaluate(model: KTModel, learners: list[list[Answer]], diff: Difficulty) -> dict:
    return metrics(*predict(model, learners, diff))


def metrics(predicted: np.ndarray, labels: np.ndarray) -> dict:
    """AUC, accuracy (at 0.5) and RMSE over answers."""
    from sklearn.metrics import roc_auc_score

    return {
        "auc": float(roc_auc_score(labels, predicted)),
        "accuracy": float(((predicted >= 0.5) == (labels == 1)).mean()),
        "rmse": float(np.sqrt(((predicted - labels) ** 2).mean())),
        "answers": int(len(labels)),
    }
