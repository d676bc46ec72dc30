"""Differential privacy for a box's local training: DP-SGD over learners, with Opacus.

The unit protected is a *learner*: all of one learner's answers count as one example.
Each step samples learners independently with probability q (Poisson sampling, which
the accountant assumes), takes one gradient per sampled learner, and hands them to
Opacus's DPOptimizer, which clips each to `max_grad_norm`, adds Gaussian noise and
averages. Opacus's RDP accountant turns (noise, q, steps) into the (epsilon, delta)
spent; the noise is chosen so that the whole run, every round and local epoch, stays
within the target epsilon.

What it does not cover (docs/federated.md says more): the item and skill difficulty
features a box computes from all its answers are treated as public inputs.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.knowledge_tracing import data as kt_data
from models.knowledge_tracing.data import Answer
from models.knowledge_tracing.training import model as kt_train
from models.knowledge_tracing.training import optim as kt_optim
from models.knowledge_tracing.training.model import KTModel

# Rényi orders the accountant tries: Opacus's defaults plus higher ones, which small
# schools (few learners, so little subsampling) and large epsilons need for a tight bound.
ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + list(range(64, 1025, 16))


@dataclass(frozen=True)
class Budget:
    epsilon: float  # for the whole run, per box, over its learners
    delta: float = 1e-5
    # Each learner's gradient is clipped to this L2 norm. Well below the typical norm
    # (about 0.35 from a fresh model, less from a trained one): every learner then counts
    # about equally, and the noise, which scales with it, is 10x smaller than at 1.0.
    max_grad_norm: float = 0.1
    # Expected learners per step (Poisson sampling varies it), or a quarter of a smaller
    # school (MAX_RATE). Many: the noise on a step's mean falls faster than the
    # accountant's noise multiplier rises (a 300-learner school at epsilon 8 over 5
    # epochs: 75 a step have about half the noise on their mean that 32 had).
    learners_per_step: int = 128


MAX_RATE = 0.25  # at most a quarter of a box's learners a step: 4 steps an epoch at least


def sample_rate(budget: Budget, learners: int) -> float:
    """Each learner's chance to be in a step: `learners_per_step` of them on average, or a
    quarter of a small school (so an epoch is still several steps)."""
    return min(MAX_RATE, budget.learners_per_step / max(learners, 1))


def steps_per_epoch(rate: float) -> int:
    return max(1, math.ceil(1 / rate))


def noise_for(
    budget: Budget, rate: float, steps: int, history: Sequence[tuple[float, float, int]] = ()
) -> float:
    """The smallest noise multiplier (to 1%) that keeps `history` plus `steps` more at
    sampling `rate` within budget: the remaining rounds get what is left, whatever the
    earlier rounds spent (a school's learner count can change during a run)."""
    low, high = 0.1, 1.0
    while spent([*history, (high, rate, steps)], budget.delta) > budget.epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise ValueError("The privacy budget is already spent: no round can be added.")
    while high - low > 0.01 * high:
        middle = (low + high) / 2
        if spent([*history, (middle, rate, steps)], budget.delta) > budget.epsilon:
            low = middle
        else:
            high = middle
    return high


def spent(history: list[tuple[float, float, int]], delta: float) -> float:
    """Epsilon spent by steps (noise multiplier, sample rate, steps) taken so far: Opacus's
    RDP analysis, as its RDPAccountant does it (RDP adds up over steps)."""
    if not history:
        return 0.0
    from opacus.accountants.analysis.rdp import get_privacy_spent  # Opacus, SciPy: ~120 MB

    rdp = sum(int(n) * _rdp_of_one_step(float(z), float(q)) for z, q, n in history)
    return float(get_privacy_spent(orders=ALPHAS, rdp=rdp, delta=delta)[0])


@functools.lru_cache(maxsize=1024)
def _rdp_of_one_step(noise: float, rate: float) -> np.ndarray:
    """One step's RDP at every order. Cached: searching a round's noise evaluates the
    same earlier rounds again and again, and each costs milliseconds per order."""
    from opacus.accountants.analysis.rdp import compute_rdp

    return np.asarray(compute_rdp(q=rate, noise_multiplier=noise, steps=1, orders=ALPHAS))


def train(
    model: KTModel,
    learners: list[list[Answer]],
    diff: kt_data.Difficulty,
    *,
    budget: Budget,
    noise: float,
    epochs: int,
    lr: float,
    keep_going=lambda: None,
) -> int:
    """DP-SGD over `learners` for `epochs`; returns the number of steps taken.
    `keep_going` is called before each step (it raises to stop, e.g. when a class starts).

    The noise and the choice of learners come from the operating system's randomness,
    never from a seed the district knows: a predictable draw would let it subtract the
    noise and see whose answers were used."""
    from opacus.optimizers import DPOptimizer

    rng = np.random.default_rng(secrets.randbits(128))
    generator = torch.Generator().manual_seed(secrets.randbits(63))
    rate = sample_rate(budget, len(learners))
    optimiser = DPOptimizer(
        kt_optim.Adam(model.parameters(), lr=lr),
        noise_multiplier=noise,
        max_grad_norm=budget.max_grad_norm,
        expected_batch_size=max(1, round(rate * len(learners))),  # the mean's divisor
        generator=generator,
        secure_mode=True,  # Opacus's noise robust to floating-point attacks
    )
    params = [p for p in model.parameters() if p.requires_grad]
    loss_fn = nn.BCEWithLogitsLoss()
    steps = steps_per_epoch(rate) * epochs
    model.train()
    for _ in range(steps):
        keep_going()
        chosen = np.flatnonzero(rng.random(len(learners)) < rate)
        per_learner = [_gradient(model, params, loss_fn, _window(learners[i], rng), diff)
                       for i in chosen]  # fmt: skip
        optimiser.zero_grad()
        for k, p in enumerate(params):
            # An empty draw still takes a step: noise alone, as the accountant counts it.
            stacked = [g[k] for g in per_learner] or [torch.zeros_like(p)]
            setattr(p, "grad_sample", torch.stack(stacked))  # noqa: B010 - Opacus's own slot
        optimiser.step()
    return steps


def _window(answers: list[Answer], rng: np.random.Generator) -> list[Answer]:
    """One training window of a learner's answers, drawn at random. Still one example per
    learner (the unit DP protects), at the cost of one window however long their history."""
    if len(answers) <= kt_train.WINDOW:
        return answers
    start = int(rng.integers(len(answers) - kt_train.WINDOW + 1))
    return answers[start : start + kt_train.WINDOW]


def _gradient(model, params, loss_fn, answers: list[Answer], diff) -> list[torch.Tensor]:
    """The gradient of one learner's mean loss over their answers."""
    batch = kt_train.batch_of([answers], diff)
    loss = loss_fn(model(batch), batch["row_label"])
    return [g.detach() for g in torch.autograd.grad(loss, params)]
