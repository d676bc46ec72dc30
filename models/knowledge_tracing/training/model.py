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
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from models.knowledge_tracing.data import Answer, Difficulty, difficulty
from models.knowledge_tracing.training import optim as kt_optim

WINDOW = 200  # answers per training sequence; states carry on past it on the box
# Answers in one forward pass, training or predicting: bounds the padded activations, so a
# box's round fits its memory cap whatever its learners' histories (gradients add up).
ROWS_AT_ONCE = 4000


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
        learner = self.learner_gru(_packed(batch["learner_x"], batch["learner_len"]))[0]
        skill = self.skill_gru(_packed(batch["skill_x"], batch["skill_len"]))[0]
        features = torch.cat(
            [
                _state_before(skill, batch["row_pair"], batch["row_step"]),
                _state_before(learner, batch["row_learner"], batch["row_answer"]),
                batch["row_item"].unsqueeze(1),
                batch["row_skill"].unsqueeze(1),
            ],
            dim=1,
        )
        return self.head(features).squeeze(1)


def _packed(x: torch.Tensor, lengths: torch.Tensor) -> PackedSequence:
    return pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)


def _state_before(out: PackedSequence, sequence: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Each row's state *before* `step` of `sequence`: zero before the first step, else the
    output after the step before. Read straight from the packed output, never padded: a
    padded copy is sequences x longest x hidden, mostly zeros, and took more of a box's
    memory than anything else in training."""
    # Packed data holds time step t's outputs at rows start[t] .. start[t] + batch_sizes[t],
    # sequences in sorted order; row 0 of `data` below is the zero state.
    start = torch.cumsum(out.batch_sizes, 0) - out.batch_sizes
    if out.unsorted_indices is None:  # pack_padded_sequence(enforce_sorted=False) sets it
        raise ValueError("the packed sequences carry no unsorted indices")
    rank = out.unsorted_indices[sequence]
    previous = (step - 1).clamp(min=0)
    index = torch.where(step > 0, start[previous] + rank + 1, torch.zeros_like(step))
    data = torch.cat([out.data.new_zeros(1, out.data.shape[1]), out.data])
    return data[index]


def batch_of(sequences: list[list[Answer]], diff: Difficulty | list[Difficulty]) -> dict:
    """Tensors for a batch of answer sequences, with one row per (answer, skill).
    `diff` is one Difficulty for all, or one per sequence."""
    learner_x: list = []
    pairs: dict[tuple[int, int], int] = {}
    rows: list = []
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
    optimiser = kt_optim.Adam(model.parameters(), lr=lr)
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
            optimiser.zero_grad()
            _accumulate_gradient(model, chunks[start : start + batch_size])
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


def _accumulate_gradient(model: KTModel, group: list[tuple]) -> None:
    """The gradient of the mean loss over every (answer, skill) row of `group`'s windows,
    built up over parts of at most ROWS_AT_ONCE answers: the same gradient as one batch
    in bounded memory (a box trains under a cap, and padded skill states grow with the
    batch)."""
    total = sum(len(a.skills) for chunk, _ in group for a in chunk)
    part: list[tuple] = []
    answers = 0
    for n, chunk in enumerate(group):
        part.append(chunk)
        answers += len(chunk[0])
        if n + 1 < len(group) and answers + len(group[n + 1][0]) <= ROWS_AT_ONCE:
            continue
        batch = batch_of([c for c, _ in part], [d for _, d in part])
        loss = nn.functional.binary_cross_entropy_with_logits(
            model(batch), batch["row_label"], reduction="sum"
        )
        (loss / total).backward()
        part, answers = [], 0


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
    per_learner: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    order = sorted((i for i in range(len(learners)) if learners[i]), key=lambda i: len(learners[i]))
    for group in _groups(order, [len(x) for x in learners]):  # similar lengths: less padding
        batch = batch_of([learners[i] for i in group], diff)
        chance = torch.sigmoid(model(batch)).numpy().astype(np.float64)
        # Rows to answers: answer t of the group's b-th learner is number start[b] + t.
        start = np.cumsum([0] + [len(learners[i]) for i in group])
        answer = start[batch["row_learner"].numpy()] + batch["row_answer"].numpy()
        rows_per_answer = np.bincount(answer, minlength=start[-1])
        mean = np.bincount(answer, weights=chance, minlength=start[-1]) / rows_per_answer
        label = np.zeros(start[-1])
        label[answer] = batch["row_label"].numpy()
        for b, i in enumerate(group):
            per_learner[i] = (mean[start[b] : start[b + 1]], label[start[b] : start[b + 1]])
    if not per_learner:
        return np.array([]), np.array([])
    ordered = [per_learner[i] for i in sorted(per_learner)]
    return np.concatenate([p for p, _ in ordered]), np.concatenate([y for _, y in ordered])


def _groups(order: list[int], lengths: list[int], most: int = 32) -> list[list[int]]:
    """`order` cut into groups of at most `most` learners and ROWS_AT_ONCE answers (a
    learner longer than that is a group alone)."""
    groups: list[list[int]] = [[]]
    answers = 0
    for i in order:
        if groups[-1] and (len(groups[-1]) == most or answers + lengths[i] > ROWS_AT_ONCE):
            groups.append([])
            answers = 0
        groups[-1].append(i)
        answers += lengths[i]
    return [g for g in groups if g]


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
