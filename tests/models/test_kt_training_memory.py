"""What keeps a box's training round small: states read from packed GRU outputs (never a
padded copy), gradients built up in parts, prediction in bounded groups, and Adam that
never loads torch's compiler. Each is checked against the plain computation it replaces."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pad_packed_sequence

from models.knowledge_tracing import data as kt_data
from models.knowledge_tracing.data import Answer
from models.knowledge_tracing.training import datasets
from models.knowledge_tracing.training import model as kt_train
from models.knowledge_tracing.training import optim as kt_optim

pytestmark = pytest.mark.slow  # torch training in fresh interpreters

REPO = datasets.REPO


def learners(count: int, seed: int = 3) -> list[list[Answer]]:
    """Made-up learners: 5 skills, 40 items (some with two skills), 3 to 90 answers each."""
    rng = random.Random(seed)
    items = {p: tuple(sorted({rng.randrange(5), rng.randrange(5)})) for p in range(40)}
    out = []
    for _ in range(count):
        skill = rng.random()
        out.append(
            [
                Answer(p, items[p], int(rng.random() < 0.3 + 0.5 * skill))
                for p in (rng.randrange(40) for _ in range(rng.randint(3, 90)))
            ]
        )
    return out


def padded_forward(model: kt_train.KTModel, batch: dict) -> torch.Tensor:
    """The model's logits computed the plain way: padded outputs, shifted by one step."""

    def before(gru, x, lengths):
        packed = kt_train._packed(x, lengths)
        out, _ = pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=x.shape[1])
        return torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)

    learner = before(model.learner_gru, batch["learner_x"], batch["learner_len"])
    skill = before(model.skill_gru, batch["skill_x"], batch["skill_len"])
    features = torch.cat(
        [
            skill[batch["row_pair"], batch["row_step"]],
            learner[batch["row_learner"], batch["row_answer"]],
            batch["row_item"].unsqueeze(1),
            batch["row_skill"].unsqueeze(1),
        ],
        dim=1,
    )
    return model.head(features).squeeze(1)


def test_states_read_from_packed_outputs_equal_the_padded_computation():
    group = learners(30)
    batch = kt_train.batch_of(group, kt_data.difficulty(group))
    torch.manual_seed(0)
    model = kt_train.KTModel()
    ours, plain = model(batch), padded_forward(model, batch)
    assert torch.allclose(ours, plain, atol=1e-6)
    ours.sum().backward()
    ours_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    plain.sum().backward()
    for mine, theirs in zip(ours_grads, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5)


def test_a_gradient_built_in_parts_equals_one_batch(monkeypatch):
    group = learners(40)
    diff = kt_data.difficulty(group)
    chunks = [(c, diff) for c in kt_train.windows(group)]
    torch.manual_seed(0)
    model = kt_train.KTModel()
    batch = kt_train.batch_of([c for c, _ in chunks], diff)
    torch.nn.BCEWithLogitsLoss()(model(batch), batch["row_label"]).backward()
    whole = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    monkeypatch.setattr(kt_train, "ROWS_AT_ONCE", 200)  # several parts
    kt_train._accumulate_gradient(model, chunks)
    for one, parts in zip(whole, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(one, parts, atol=1e-6)


def test_prediction_in_small_groups_equals_one_group(monkeypatch):
    group = learners(25)
    diff = kt_data.difficulty(group)
    torch.manual_seed(0)
    model = kt_train.KTModel()
    together, labels = kt_train.predict(model, group, diff)
    monkeypatch.setattr(kt_train, "ROWS_AT_ONCE", 100)
    apart, labels_apart = kt_train.predict(model, group, diff)
    assert len(together) == sum(len(x) for x in group)
    assert np.allclose(together, apart, atol=1e-6)
    assert (labels == labels_apart).all()
    assert labels.tolist() == [a.correct for learner in group for a in learner]


def test_our_adam_takes_torchs_adam_steps():
    torch.manual_seed(0)
    ours, theirs = kt_train.KTModel(), kt_train.KTModel()
    theirs.load_state_dict(ours.state_dict())
    mine = kt_optim.Adam(ours.parameters(), lr=0.01)
    reference = torch.optim.Adam(theirs.parameters(), lr=0.01)
    for step in range(3):
        for model, optimiser in ((ours, mine), (theirs, reference)):
            optimiser.zero_grad()
            for p in model.parameters():
                p.grad = torch.full_like(p, 0.1 * (step + 1)) + p.detach()
            optimiser.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_local_round_never_loads_torchs_compiler():
    # A fresh interpreter: whatever else this test session imported does not count.
    script = (
        "import sys\n"
        "from models.knowledge_tracing import data as kt_data\n"
        "from models.knowledge_tracing.training import model as kt_train\n"
        "from tests.models.test_kt_training_memory import learners\n"
        "group = learners(12)\n"
        "kt_train.train(group, [], kt_data.difficulty(group), epochs=1, log=lambda _: None)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip().splitlines()[-1] == "False"
