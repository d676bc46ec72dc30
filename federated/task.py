"""The federated task: the shared knowledge-tracing model, training it on one box's
answers, and scoring it on their most recent answers (Flower's `task.py`).

Weights travel as a list of numpy arrays in the model's own parameter order; nothing
else about a box's learners leaves `train_locally` but the number of answers it used
and its mean loss. A box trains only on each learner's older answers and scores on the
most recent ones (appliance/store/training_data.py marks them), so its evaluation is
on answers the model has not seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from appliance.store.training_data import TrainingData
from federated import privacy
from models.knowledge_tracing import data as kt_data
from models.knowledge_tracing import scores
from models.knowledge_tracing.training import model as kt_train
from models.knowledge_tracing.training.model import KTModel

# FedAvg weighs a box by its learners, up to this many: a school counts by its size, and
# SecAgg+ (whose masked sums carry the weights) keeps its precision with a bounded weight.
MAX_WEIGHT = 1000


def new_model(seed: int = 0) -> KTModel:
    torch.manual_seed(seed)
    return KTModel()


def weights(model: KTModel) -> list[np.ndarray]:
    return [tensor.detach().cpu().numpy().copy() for tensor in model.state_dict().values()]


def with_weights(arrays: list[np.ndarray]) -> KTModel:
    """A model holding `arrays` (as `weights` gives them); refuses arrays of other shapes."""
    model = KTModel()
    names = list(model.state_dict())
    if len(arrays) != len(names):
        raise ValueError(f"expected {len(names)} arrays, got {len(arrays)}")
    state = {}
    for name, array, current in zip(names, arrays, model.state_dict().values(), strict=True):
        if tuple(array.shape) != tuple(current.shape):
            raise ValueError(f"{name} has shape {array.shape}, not {tuple(current.shape)}")
        state[name] = torch.as_tensor(np.asarray(array, dtype=np.float32))
    model.load_state_dict(state)
    return model


def older_answers(data: TrainingData) -> list[list[kt_data.Answer]]:
    return [learner[:cut] for learner, cut in zip(data.learners, data.recent_from, strict=True)]


@dataclass(frozen=True)
class LocalRound:
    """What one box's round produced: new weights, how much it learned from, and (with
    DP) the privacy history so far and the epsilon it adds up to."""

    arrays: list[np.ndarray]
    learners: int
    answers: int
    history: list[tuple[float, float, int]] = field(default_factory=list)
    epsilon: float = 0.0


def train_locally(
    arrays: list[np.ndarray],
    data: TrainingData,
    *,
    epochs: int = 1,
    lr: float = 3e-3,
    seed: int = 0,
    budget: privacy.Budget | None = None,
    rounds: int = 1,
    history: list[tuple[float, float, int]] | None = None,
    keep_going=lambda: None,
) -> LocalRound:
    """One box's round: `epochs` over its learners' older answers from the given weights.
    With a `budget`, DP-SGD whose noise keeps this round and the rest of the run's
    `rounds` within it, after this box's `history` from its earlier rounds of the run.
    `keep_going` is called between steps and raises to stop (a class has started)."""
    older = [learner for learner in older_answers(data) if learner]
    answers = sum(len(learner) for learner in older)
    diff = kt_data.difficulty(older)
    model = with_weights(arrays)
    if budget is None:
        trained = kt_train.train(older, [], diff, epochs=epochs, lr=lr, seed=seed, model=model,
                                 log=lambda _: None, keep_going=keep_going)  # fmt: skip
        return LocalRound(weights(trained.model), len(older), answers)
    history = list(history or [])
    rate = privacy.sample_rate(budget, len(older))
    left = max(1, rounds - len(history)) * epochs * privacy.steps_per_epoch(rate)
    noise = privacy.noise_for(budget, rate, left, history)
    steps = privacy.train(model, older, diff, budget=budget, noise=noise, epochs=epochs, lr=lr,
                          keep_going=keep_going)  # fmt: skip
    history.append((noise, rate, steps))
    return LocalRound(weights(model), len(older), answers, history,
                      privacy.spent(history, budget.delta))  # fmt: skip


def evaluate_recent(arrays: list[np.ndarray], data: TrainingData) -> dict:
    """AUC and count over each learner's most recent answers, predicted from all before."""
    diff = kt_data.difficulty([learner for learner in older_answers(data) if learner])
    predicted, labels = kt_train.predict(with_weights(arrays), data.learners, diff)
    mask = np.concatenate(
        [np.arange(len(learner)) >= cut for learner, cut in zip(data.learners, data.recent_from,
                                                                 strict=True)]
    )  # fmt: skip
    found = scores.auc(predicted[mask], labels[mask])  # numpy: no scikit-learn on a box
    return {"auc": float("nan") if found is None else found, "answers": int(mask.sum())}
