"""Knowledge tracing: training on a slice, ONNX export and int8, the incremental path, bad
models. Trains on the public assist2009 data in ../shared/data (skipped where absent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.knowledge_tracing import contract
from models.knowledge_tracing import data as kt_data
from models.knowledge_tracing import runtime as kt_runtime
from models.knowledge_tracing.runtime import KTModelError, KTRuntime
from models.knowledge_tracing.training import build as kt_build
from models.knowledge_tracing.training import datasets
from models.knowledge_tracing.training import export as kt_export
from models.knowledge_tracing.training import model as kt_train
from models.registry import installed as store
from tests.conftest import kt_graph

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data():
    if not datasets.ASSIST2009.is_dir():
        pytest.skip(
            f"the public data set {datasets.ASSIST2009} is not here (shared/data/README.md)"
        )
    fold = kt_data.fold(1, datasets.ASSIST2009)
    train = fold["train"][:500]
    return train, fold["valid"][:150], fold["test"][:60], kt_data.difficulty(train)


@pytest.fixture(scope="module")
def trained(data):
    train, valid, _, diff = data
    return kt_train.train(train, valid, diff, epochs=3, log=lambda _: None)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kt")
    float_path = kt_export.export(trained.model, folder / "kt.onnx", {"title": "test model"})
    return float_path, kt_export.quantise(float_path, folder / "kt.int8.onnx")


def incremental(runtime: KTRuntime, learners, diff) -> np.ndarray:
    """Each answer's prediction as the box makes it: one step per answer, states kept."""
    return kt_runtime.step_by_step(runtime, learners, diff)[0]


def test_twin_rows_of_a_multi_skill_problem_are_one_answer():
    answers = kt_data.fold_twins([5, 5, 5, 7, 7], [1, 2, 2, 3, 3], [1, 1, 1, 0, 1])
    assert answers == [
        kt_data.Answer(5, (1, 2), 1),
        kt_data.Answer(5, (2,), 1),  # the same skill again: a second answer
        kt_data.Answer(7, (3,), 0),
        kt_data.Answer(7, (3,), 1),
    ]


@pytest.mark.slow  # trains a model (torch)
def test_a_short_training_run_learns_from_a_slice(trained, data):
    _, _, test, diff = data
    assert trained.valid_auc > 0.65
    assert kt_train.evaluate(trained.model, test, diff)["auc"] > 0.65


def test_the_box_step_by_step_gives_the_full_history_predictions(trained, exported, data):
    _, _, test, diff = data
    full_history, _ = kt_train.predict(trained.model, test, diff)
    step_by_step = incremental(KTRuntime(exported[0]), test, diff)
    assert len(step_by_step) == len(full_history) > 1000
    assert np.abs(step_by_step - full_history).max() < 1e-5


def test_the_int8_model_stays_close_to_float(trained, exported, data):
    _, _, test, diff = data
    _, labels = kt_train.predict(trained.model, test, diff)
    as_float = incremental(KTRuntime(exported[0]), test, diff)
    as_int8 = incremental(KTRuntime(exported[1]), test, diff)
    assert np.abs(as_int8 - as_float).mean() < 0.01
    auc_float = kt_train.metrics(as_float, labels)["auc"]
    assert abs(kt_train.metrics(as_int8, labels)["auc"] - auc_float) < 0.005
    assert exported[1].stat().st_size < exported[0].stat().st_size


def test_an_exported_model_imports_into_the_store(exported, tmp_path):
    manifest = store.import_file(tmp_path / "home", exported[1], name="kt-test")
    assert manifest.kind == "knowledge-tracing" and manifest.format == "onnx"
    assert manifest.title == "test model"


def test_wrong_inputs_outputs_or_opset_are_refused_naming_what_is_wrong(tmp_path):
    wrong_inputs = kt_graph(tmp_path / "a.onnx", inputs=["x", "h", "item", "skill", "correct"])
    wrong_outputs = kt_graph(
        tmp_path / "b.onnx", outputs=["p", "next_skill_state", "next_learner_state"]
    )
    # On import (the onnx checker) and on load (onnxruntime alone), the same refusals.
    for check in (contract.check, KTRuntime):
        with pytest.raises(KTModelError, match="inputs"):
            check(wrong_inputs)
        with pytest.raises(KTModelError, match="outputs"):
            check(wrong_outputs)
    damaged = tmp_path / "d.onnx"
    damaged.write_bytes(kt_graph(tmp_path / "whole.onnx").read_bytes()[:100])
    with pytest.raises(KTModelError, match="not a valid ONNX model"):
        KTRuntime(damaged)
    with pytest.raises(store.ModelStoreError, match="opset"):
        store.import_file(tmp_path / "home", kt_graph(tmp_path / "c.onnx", opset=99))
    assert store.models(tmp_path / "home") == []


def test_a_model_that_gives_nan_is_caught(tmp_path):
    runtime = KTRuntime(kt_graph(tmp_path / "nan.onnx", nan=True))
    with pytest.raises(KTModelError, match="not a number"):
        runtime.update(np.zeros((1, 4)), np.zeros(4), 0.0, [0.0], 1)
    fine = KTRuntime(kt_graph(tmp_path / "fine.onnx"))
    assert fine.update(np.zeros((1, 4)), np.zeros(4), 0.0, [0.0], 1).p_correct == 0.5


def test_loading_a_model_leaves_the_onnx_package_out_of_the_process():
    """A web worker loads the model: the onnx package would cost it about 24 MB."""
    code = (
        "import sys; from models.knowledge_tracing.runtime import KTRuntime; "
        f"KTRuntime(__import__('pathlib').Path({str(kt_build.SHIPPED / 'kt.int8.onnx')!r})); "
        "sys.exit('onnx' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_the_shipped_default_model_loads_and_carries_its_card():
    shipped = kt_build.SHIPPED / "kt.int8.onnx"
    card = json.loads(shipped.with_suffix(".card.json").read_text())
    assert card["metrics_test_int8"]["auc"] >= 0.76 and "fold 1" in card["split"]
    assert shipped.stat().st_size < 2 * 1024 * 1024
    runtime = KTRuntime(shipped)
    fresh = runtime.update(np.zeros((1, runtime.skill_hidden)), runtime.new_learner_state(),
                           0.0, [0.0], 1)  # fmt: skip
    assert 0.0 < fresh.p_correct < 1.0


def test_the_shipped_model_installs_into_the_store_and_becomes_active(tmp_path):
    from models.registry import default

    manifest = default.install_knowledge_tracing(tmp_path / "home")
    assert manifest.kind == "knowledge-tracing" and manifest.quantisation.startswith("int8")
    assert store.active(tmp_path / "home", "knowledge-tracing").name == default.KT_NAME
