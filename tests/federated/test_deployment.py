"""The Deployment Engine for real: `schoolbox federated serve` (a SuperLink with TLS and
node authentication) and `schoolbox federated join` on three boxes (SuperNodes), each a
separate process bound to its own box database, on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from appliance.store import open_db, site
from federated import district, node, task
from sync import enrolment, hub_store
from tests.conftest import SCHOOLBOX, free_port

from .conftest import make_box


def enrol(box: Path, hub_home: Path, admit: bool = True) -> None:
    """Sync enrolment at the hub and the district pinned (issue 6), then, if `admit`,
    the box's node request admitted by the district."""
    db = open_db(box / "schoolbox.db")
    box_id = site.get(db)["box_id"]
    db.conn.close()
    keys = enrolment.ensure_box_keys(box, box_id)
    hub_db = hub_store.open_hub(hub_home)
    hub_store.enrol(hub_db, enrolment.request(keys, box.name))
    hub_db.close()
    enrolment.pin_district(box, json.loads((hub_home / "district.json").read_text()))
    if admit:
        district.admit(hub_home, node.request(box, box_id))


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)  # fmt: skip


def wait_for(log: Path, text: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        time.sleep(0.5)
    raise AssertionError(f"{text!r} did not appear in {log}:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def federation(tmp_path, federated_template):
    """A district SuperLink and three admitted boxes that trust it (not yet joined)."""
    hub_home = tmp_path / "hub"
    hub_store.init(hub_home)
    boxes = [make_box(federated_template, tmp_path / f"box{n}", plain=True) for n in range(3)]
    for box in boxes:
        enrol(box, hub_home)
    port = free_port()
    log = tmp_path / "superlink.log"
    superlink = start([SCHOOLBOX, "federated", "serve", "--hub-home", str(hub_home),
                       "--port", str(port)], log)  # fmt: skip
    processes = [superlink]
    try:
        wait_for(log, "3 admitted node(s) registered")
        for box in boxes:
            subprocess.run([SCHOOLBOX, "--home", str(box), "federated", "trust",
                            str(hub_home / "federation" / "invitation.json")], check=True)  # fmt: skip
        yield {"hub_home": hub_home, "boxes": boxes, "processes": processes, "tmp": tmp_path}
    finally:
        for process in processes:
            stop(process)


def join(box: Path, logs: Path, name: str = "") -> subprocess.Popen:
    log = logs / f"{name or box.name}.log"
    return start([SCHOOLBOX, "--home", str(box), "federated", "join",
                  "--port", str(free_port())], log)  # fmt: skip


def test_three_boxes_train_two_rounds_over_tls_and_the_model_improves(federation):
    hub_home, tmp = federation["hub_home"], federation["tmp"]
    federation["processes"] += [join(box, tmp) for box in federation["boxes"]]
    result = subprocess.run(
        [SCHOOLBOX, "federated", "run", "--hub-home", str(hub_home), "--rounds", "2",
         "--min-boxes", "3", "--local-epochs", "2", "--round-timeout", "300", "--epsilon", "8",
         "--ship"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    run_dir = next((hub_home / "federation" / "runs").iterdir())
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["secure_aggregation"] and summary["complete"] == "yes"
    assert [h["boxes_trained"] for h in summary["history"]] == [3, 3]
    assert 0 < summary["epsilon"] <= 8.0 * 1.01  # DP-SGD on every box, under SecAgg+
    for box in federation["boxes"]:  # each box kept its privacy spending on disk
        assert len(json.loads((box / "federated-privacy.json").read_text()).popitem()[1]) == 2
    assert summary["final"]["auc"] > summary["initial"]["auc"] + 0.02
    with np.load(run_dir / "global.npz") as stored:
        final = [stored[k] for k in stored.files]
    start = task.weights(task.new_model())  # where a district's first run starts
    assert [a.shape for a in final] == [a.shape for a in start]
    assert any(not np.allclose(a, b) for a, b in zip(final, start, strict=True))
    assert list(run_dir.glob("kt-federated-*.int8.onnx"))
    assert list((hub_home / "updates").glob("model-kt-federated-*/update.json"))


def test_an_unregistered_node_is_refused_and_a_run_survives_a_box_killed_mid_round(
    federation, federated_template
):
    hub_home, tmp, boxes = federation["hub_home"], federation["tmp"], federation["boxes"]
    intruder = make_box(federated_template, tmp / "intruder")
    enrol(intruder, hub_home, admit=False)  # enrolled for sync, but its node not admitted
    subprocess.run([SCHOOLBOX, "--home", str(intruder), "federated", "trust",
                    str(hub_home / "federation" / "invitation.json")], check=True)  # fmt: skip
    joined = [join(box, tmp) for box in [*boxes, intruder]]
    federation["processes"] += joined
    wait_for(tmp / "superlink.log", "No SuperNode found with the given public key")
    run = subprocess.Popen(
        [SCHOOLBOX, "federated", "run", "--hub-home", str(hub_home), "--rounds", "3",
         "--min-boxes", "2", "--no-secure-aggregation", "--round-timeout", "120", "--no-ship"],
        stdout=(tmp / "run.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for(tmp / "box2.log", "Receiving: train message", seconds=180)
    os.killpg(joined[2].pid, signal.SIGKILL)  # the box dies in the middle of a round
    wait_for(tmp / "run.log", "aggregate_train: Received 2 results and 1 failures", 180)
    federation["processes"].append(join(boxes[2], tmp, "box2-again"))  # it comes back
    assert run.wait(timeout=500) == 0, (tmp / "run.log").read_text()[-4000:]
    summary = json.loads(next((hub_home / "federation" / "runs").glob("*/run.json")).read_text())
    trained = [h["boxes_trained"] for h in summary["history"]]
    assert trained[0] == 2  # the round went on without the dead box
    assert trained[-1] == 3, (tmp / "box2-again.log").read_text()[-3000:]  # and it took part again
    assert summary["final"]["auc"] > 0.5
    assert summary["initial"]["boxes_evaluated"] == 3  # the intruder never took part


def test_a_site_without_consent_never_starts_a_node(tmp_path, federated_template):
    box = make_box(federated_template, tmp_path / "box", consent=False)
    joined = subprocess.run([SCHOOLBOX, "--home", str(box), "federated", "join"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert joined.returncode != 0
    assert "has not consented to federated training, so no node was started" in joined.stderr
