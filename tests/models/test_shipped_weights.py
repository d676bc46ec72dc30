"""The shipped float weights (models/shipped/kt.float.npz) are the shipped int8 model's:
they load as the federated task's model, the way `federated run --initial` reads them,
and predict what the int8 ONNX the box runs predicts, to int8 rounding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.knowledge_tracing import data as kt_data
from models.knowledge_tracing import runtime as kt_runtime
from models.knowledge_tracing.runtime import KTRuntime
from models.knowledge_tracing.training import build as kt_build
from models.knowledge_tracing.training import datasets
from models.knowledge_tracing.training import model as kt_train

WEIGHTS = kt_build.SHIPPED / kt_build.WEIGHTS
ONNX = kt_build.SHIPPED / "kt.int8.onnx"


def test_the_shipped_weights_load_as_the_federated_model_and_match_the_int8_onnx():
    task = pytest.importorskip("federated.task", reason="the federated extra is not installed")
    if not datasets.ASSIST2009.is_dir():
        pytest.skip(
            f"the public data set {datasets.ASSIST2009} is not here (shared/data/README.md)"
        )
    with np.load(WEIGHTS) as stored:  # as federated/server_app.py reads --initial
        model = task.with_weights([stored[k] for k in stored.files])
    fold = kt_data.fold(1, datasets.ASSIST2009)
    diff = kt_data.difficulty(fold["train"])
    test = fold["test"][:80]
    as_float, labels = kt_train.predict(model, test, diff)
    as_int8, _ = kt_runtime.step_by_step(KTRuntime(ONNX), test, diff)
    assert len(as_float) == len(as_int8) > 3000
    assert np.abs(as_float - as_int8).mean() < 0.01 and np.abs(as_float - as_int8).max() < 0.1
    card = json.loads(ONNX.with_suffix(".card.json").read_text())
    assert kt_build.WEIGHTS in card["weights"]
    # The same model as the card's: an untrained one is far from it.
    fresh, _ = kt_train.predict(task.new_model(), test, diff)
    assert np.abs(fresh - as_int8).mean() > 0.05
    auc = kt_train.metrics(as_float, labels)["auc"]
    assert auc == pytest.approx(kt_train.metrics(as_int8, labels)["auc"], abs=0.005)
