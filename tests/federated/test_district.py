"""The district's side without a run: where a run starts, when its model ships, and a
SuperLink that will not expose its Control API by accident."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from appliance.cli import main
from federated import server_app, ship, task
from models.knowledge_tracing.training import build as kt_build
from sync.hub import home as hub_store


def test_a_run_starts_from_the_shipped_models_float_weights_unless_told_otherwise(tmp_path):
    hub_home = tmp_path / "hub"
    hub_store.init(hub_home)
    shipped = kt_build.SHIPPED / "kt.float.npz"
    assert ship.starting_weights(hub_home, None) == shipped
    with np.load(shipped) as stored:  # the format `--initial` takes: the task model's arrays
        task.with_weights([stored[k] for k in stored.files])
    latest = hub_home / "federation" / "models" / "latest.npz"
    latest.parent.mkdir(parents=True)
    np.savez(latest, *task.weights(task.new_model()))
    assert ship.starting_weights(hub_home, None) == latest  # the last shipped run's, next
    given = tmp_path / "public.npz"
    assert ship.starting_weights(hub_home, given) == given


def test_a_run_ships_only_when_it_beats_its_start():
    history = [{"round": 1, "boxes_trained": 3, "auc": 0.70}]
    assert server_app._complete(history, 1, 3, {"auc": 0.69}) == "yes"
    assert "did not beat the start (0.7000 <= 0.7000)" in server_app._complete(
        history, 1, 3, {"auc": 0.70}
    )
    assert "starting model was not scored" in server_app._complete(history, 1, 3, {})


def test_a_run_where_no_box_trained_did_nothing():
    sat_out = {"history": [{"round": 1, "boxes_trained": 0, "skipped": 1}, {"round": 2}]}
    assert ship.nothing_trained(sat_out)
    assert not ship.nothing_trained({"history": [{"round": 1, "boxes_trained": 2}]})


def test_serve_refuses_to_expose_the_control_api_without_a_proxy_in_front(tmp_path):
    hub_home = tmp_path / "hub"
    hub_store.init(hub_home)
    for host in ("0.0.0.0", "192.0.2.7", "hub.district.example", "::"):  # noqa: S104
        result = CliRunner().invoke(main, ["federated", "serve", "--hub-home", str(hub_home),
                                           "--host", host])  # fmt: skip
        assert result.exit_code != 0
        assert f"Refusing to listen on {host}" in result.output
        assert "--behind-proxy" in result.output and "Traceback" not in result.output
    assert not (hub_home / "federation" / "invitation.json").exists()  # nothing was started
