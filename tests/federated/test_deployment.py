"""The Deployment Engine for real: `schoolbox federated serve` (a SuperLink with TLS and
node authentication) and `schoolbox federated join` on three boxes (SuperNodes), each a
separate process bound to its own box database, on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from appliance.store import audit, open_db, site, transaction
from federated import district, node, ship, task
from models.knowledge_tracing.training import build as kt_build
from models.knowledge_tracing.training import export as kt_export
from models.registry import default
from models.registry import installed as store
from sync import enrolment
from sync.hub import home as hub_store
from tests.conftest import SCHOOLBOX, free_port, wait_ready
from tests.federated.conftest import make_box

pytestmark = pytest.mark.slow  # a real SuperLink and SuperNodes as processes


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


def wait_for(log: Path, text: str, seconds: float = 60, every: float = 0.5) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        time.sleep(every)
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


def worse_model(tmp_path: Path) -> Path:
    """A fresh, untrained model exported as the district would ship it."""
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = kt_export.export(task.new_model(seed=3), Path(scratch) / "kt.onnx",
                                     ship._metadata("fresh"))  # fmt: skip
        return kt_export.quantise(onnx_path, tmp_path / "kt-fresh.int8.onnx")


def test_a_run_from_the_shipped_weights_reaches_a_box_over_http_and_a_worse_model_does_not(
    federation, federated_template
):
    """A real run -> signed -> a box fetches over HTTP -> activation gate -> active."""
    hub_home, tmp = federation["hub_home"], federation["tmp"]
    federation["processes"] += [join(box, tmp) for box in federation["boxes"]]
    result = subprocess.run(
        [SCHOOLBOX, "federated", "run", "--hub-home", str(hub_home), "--rounds", "2",
         "--min-boxes", "3", "--local-epochs", "2", "--round-timeout", "300", "--ship"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert f"Starting from {kt_build.SHIPPED / 'kt.float.npz'}" in result.stdout
    run_dir = next((hub_home / "federation" / "runs").iterdir())
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["secure_aggregation"] and summary["complete"] == "yes"
    assert [h["boxes_trained"] for h in summary["history"]] == [3, 3]
    assert summary["initial"]["auc"] > 0.6  # it started from the shipped model, not from 0.5
    assert summary["final"]["auc"] > summary["initial"]["auc"]  # and beat it, so it shipped
    name = f"kt-federated-{run_dir.name}"
    signed = subprocess.run(
        [SCHOOLBOX, "hub", "--hub-home", str(hub_home), "sign", str(worse_model(tmp)), "--kind",
         "model", "--name", "kt-fresh", "--version", "1", "--model-kind", "knowledge-tracing"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    box = make_box(federated_template, tmp / "receiving-box")
    enrol(box, hub_home, admit=False)
    default.install_knowledge_tracing(box)  # the shipped model is active
    db = open_db(box / "schoolbox.db")
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, "sync", True)
    hub = start([SCHOOLBOX, "hub", "--hub-home", str(hub_home), "serve", "--port",
                 str(port := free_port())], tmp / "hub.log")  # fmt: skip
    federation["processes"].append(hub)
    wait_ready(f"http://127.0.0.1:{port}", tmp / "hub.log", "/healthz")
    synced = subprocess.run(
        [SCHOOLBOX, "--home", str(box), "sync", "now", "--url", f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert f"Update model-{name}: applied" in synced.stdout, synced.stdout
    assert "Update model-kt-fresh-1: kept the active model: the new model is worse" in (
        synced.stdout
    ), synced.stdout
    assert store.active(box, "knowledge-tracing").name == name
    assert store.card(box, store.get(box, name))["rounds"] == 2  # its signed card came too
    db.conn.close()


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


def test_secure_aggregation_survives_a_box_killed_as_key_sharing_begins(
    federation, federated_template
):
    hub_home, tmp, boxes = federation["hub_home"], federation["tmp"], federation["boxes"]
    late = make_box(federated_template, tmp / "late")
    enrol(late, hub_home, admit=False)
    admitted = subprocess.run(
        [SCHOOLBOX, "federated", "admit", str(_request(late, tmp)), "--hub-home", str(hub_home)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert admitted.returncode == 0 and "registered with the running SuperLink" in (
        admitted.stdout
    ), admitted.stdout + admitted.stderr  # that node only: the three are registered already
    joined = [join(box, tmp) for box in boxes]
    federation["processes"] += joined
    run = subprocess.Popen(
        [SCHOOLBOX, "federated", "run", "--hub-home", str(hub_home), "--rounds", "1",
         "--min-boxes", "2", "--secure-aggregation", "--round-timeout", "120", "--no-ship"],
        stdout=(tmp / "run.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    # Round 1's first message is SecAgg+'s setup (the keys); a ClientApp takes seconds to
    # start, so the box dies before it has shared its key with the others.
    wait_for(tmp / "box2.log", "Receiving: train message", seconds=240, every=0.05)
    os.killpg(joined[2].pid, signal.SIGKILL)
    assert run.wait(timeout=500) == 0, (tmp / "run.log").read_text()[-4000:]
    log = (tmp / "run.log").read_text()
    assert "Not enough shares" not in log and "Secure aggregation completed" in log
    summary = json.loads(next((hub_home / "federation" / "runs").glob("*/run.json")).read_text())
    assert summary["history"][0]["boxes_trained"] == 2  # the two others' sum was unmasked
    assert summary["final"]["auc"] > 0.5


def _request(box: Path, tmp: Path) -> Path:
    db = open_db(box / "schoolbox.db")
    box_id = site.get(db)["box_id"]
    db.conn.close()
    path = tmp / f"{box.name}-node-request.json"
    path.write_text(json.dumps(node.request(box, box_id)))
    return path


def test_a_run_outside_every_boxs_training_window_says_it_did_nothing(
    federation, federated_template
):
    hub_home, tmp, boxes = federation["hub_home"], federation["tmp"], federation["boxes"]
    for box in boxes:  # a window that never opens
        toml = box / "schoolbox.toml"
        text = toml.read_text().replace('federated_hours = "0-24"', 'federated_hours = "0-0"')
        toml.write_text(text + "federated_weekends = false\n")
    federation["processes"] += [join(box, tmp) for box in boxes]
    result = subprocess.run(
        [SCHOOLBOX, "federated", "run", "--hub-home", str(hub_home), "--rounds", "1",
         "--min-boxes", "3", "--no-secure-aggregation", "--round-timeout", "120"],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert result.returncode != 0
    assert "No box trained in any round, so this run did nothing" in result.stderr
    assert "nan" not in result.stdout + result.stderr
    assert not list(hub_store.updates_folder(hub_home).glob("model-*"))


def test_a_site_without_consent_never_starts_a_node(tmp_path, federated_template):
    box = make_box(federated_template, tmp_path / "box", consent=False)
    joined = subprocess.run([SCHOOLBOX, "--home", str(box), "federated", "join"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert joined.returncode != 0
    assert "has not consented to federated training, so no node was started" in joined.stderr
