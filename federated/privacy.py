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

import math
import secrets
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models import kt_data, kt_train
from models.kt_data import Answer
from models.kt_train import KTModel

# Rényi orders the accountant tries: Opacus's defaults plus higher ones, which small
# schools (few learners, so little subsampling) and large epsilons need for a tight bound.
ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + list(range(64, 1025, 16))


@dataclass(frozen=True)
class Budget:
    epsilon: float  # for the whole run, per box, over its learners
    delta: float = 1e-5
    max_grad_norm: float = 1.0  # each learner's gradient is clipped to this L2 norm
    learners_per_step: int = 32  # expected; the actual number varies (Poisson sampling)


def sample_rate(budget: Budget, learners: int) -> float:
    return min(1.0, budget.learners_per_step / max(learners, 1))


def steps_per_epoch(rate: float) -> int:
    return max(1, math.ceil(1 / rate))


def noise_for(
    budget: Budget, rate: float, steps: int, history: list[tuple[float, float, int]] = ()
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
    """Epsilon spent by steps (noise multiplier, sample rate, steps) taken so far."""
    if not history:
        return 0.0
    from opacus.accountants import RDPAccountant  # Opacus and SciPy: ~120 MB, private runs only

    accountant = RDPAccountant()
    accountant.history = [(float(z), float(q), int(n)) for z, q, n in history]
    return float(accountant.get_epsilon(delta=delta, alphas=ALPHAS))


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
        torch.optim.Adam(model.parameters(), lr=lr),
        noise_multiplier=noise,
        max_grad_norm=budget.max_grad_norm,
        expected_batch_size=budget.learners_per_step,
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
        per_learner = [_gradient(model, params, loss_fn, learners[i], diff) for i in chosen]
        optimiser.zero_grad()
        for k, p in enumerate(params):
            # An empty draw still takes a step: noise alone, as the accountant counts it.
            stacked = [g[k] for g in per_learner] or [torch.zeros_like(p)]
            p.grad_sample = torch.stack(stacked)
        optimiser.step()
    return steps


def _gradient(model, params, loss_fn, answers: list[Answer], diff) -> list[torch.Tensor]:
    """The gradient of one learner's mean loss over all their answers."""
    batch = kt_train.batch_of(kt_train.windows([answers]), diff)
    loss = loss_fn(model(batch), batch["row_label"])
    return [g.detach() for g in torch.autograd.grad(loss, params)]
