"""The Flower app on Flower's Simulation Engine (the same ServerApp and ClientApp the
Deployment Engine runs), over three real demo boxes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from flwr.simulation import run_simulation

from appliance.store import training_data
from federated import client_app, server_app, task

pytestmark = pytest.mark.slow  # Flower's Simulation Engine (Ray) over real boxes


def simulate(boxes, output, **settings) -> dict:
    """Run the app over `boxes` on the Simulation Engine; the run's summary."""
    os.environ["SCHOOLBOX_FEDERATED_BOXES"] = os.pathsep.join(str(b) for b in boxes)
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    run_simulation(
        server_app=server_app.make_app({"output": str(output), "min-nodes": len(boxes),
                                        **settings}),
        client_app=client_app.app,
        num_supernodes=len(boxes),
        backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}},
    )  # fmt: skip
    return json.loads((output / "run.json").read_text())


def global_weights(output) -> list[np.ndarray]:
    with np.load(output / "global.npz") as stored:
        return [stored[k] for k in stored.files]


def test_two_rounds_of_fedavg_change_the_model_and_improve_held_out_auc(boxes, tmp_path):
    summary = simulate(boxes, tmp_path / "run", **{"num-server-rounds": 2, "local-epochs": 2})
    assert [h["round"] for h in summary["history"]] == [1, 2]
    assert all(h["boxes_trained"] == 3 and h["boxes_evaluated"] == 3 for h in summary["history"])
    assert summary["final"]["auc"] > summary["initial"]["auc"] + 0.02
    start = task.weights(task.new_model())
    final = global_weights(tmp_path / "run")
    assert [a.shape for a in final] == [a.shape for a in start]
    assert any(not np.allclose(a, b) for a, b in zip(final, start, strict=True))
    assert summary["epsilon"] == 0 and not summary["secure_aggregation"]


def test_secure_aggregation_gives_the_same_global_model_as_plain_fedavg(boxes, tmp_path):
    plain = simulate(boxes, tmp_path / "plain", **{"num-server-rounds": 1})
    secure = simulate(boxes, tmp_path / "secure", **{"num-server-rounds": 1,
                                                     "secure-aggregation": True})  # fmt: skip
    assert secure["secure_aggregation"] and secure["history"][0]["boxes_trained"] == 3
    for a, b in zip(global_weights(tmp_path / "plain"), global_weights(tmp_path / "secure"),
                    strict=True):  # fmt: skip
        np.testing.assert_allclose(a, b, atol=1e-3)  # SecAgg+ quantises the masked sums
    assert secure["final"]["auc"] == pytest.approx(plain["final"]["auc"], abs=0.01)


def test_a_private_run_reports_the_epsilon_its_boxes_spent(boxes, tmp_path):
    summary = simulate(boxes, tmp_path / "dp", **{"num-server-rounds": 2, "dp-epsilon": 8.0})
    spent = [h["epsilon"] for h in summary["history"]]
    assert 0 < spent[0] < spent[1] <= 8.0 * 1.01
    assert summary["epsilon"] == spent[1] and summary["settings"]["dp-epsilon"] == 8.0


def test_a_private_run_starts_from_given_weights_and_keeps_what_they_know(boxes, tmp_path):
    # "Public" weights: a fresh model trained without DP on one box's answers.
    data = training_data.read(boxes[0] / "schoolbox.db")
    public = task.train_locally(task.weights(task.new_model()), data, epochs=4).arrays
    np.savez(tmp_path / "public.npz", *public)
    fresh = simulate(boxes, tmp_path / "fresh", **{"num-server-rounds": 1, "dp-epsilon": 8.0})
    summary = simulate(boxes, tmp_path / "tuned", **{"num-server-rounds": 1, "dp-epsilon": 8.0,
                                                      "initial": str(tmp_path / "public.npz")})  # fmt: skip
    assert summary["initial"]["auc"] > fresh["initial"]["auc"] + 0.02  # it started there
    assert summary["final"]["auc"] > summary["initial"]["auc"] - 0.01  # DP did not undo it
    assert summary["final"]["auc"] > fresh["final"]["auc"]


def test_secure_aggregation_survives_a_third_of_its_boxes_dropping_out():
    assert server_app.secagg_shares({}, 10) == (10, 7)  # 3 of 10 may drop; 7 to unmask one
    assert server_app.secagg_shares({}, 3) == (3, 2)  # one of three, as the kill test does
    assert server_app.secagg_shares({"secagg-threshold": 9}, 10) == (10, 9)  # a run's choice
