"""From run to classroom: the district exports, cards and signs the global model; a box
activates it only if it is not worse on the box's own recent answers, and otherwise
keeps its model and says why (admin page, audit log)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from appliance.config import Config
from appliance.store import open_db
from appliance.web.app import create_app
from federated import ship, task
from models.knowledge_tracing import gate as kt_gate
from models.registry import default
from models.registry import installed as store
from sync import enrolment, updates
from sync.box import updates as box_updates
from sync.hub import home as hub_store
from tests.conftest import as_role
from tests.federated.conftest import make_box

pytestmark = pytest.mark.slow  # trains and exports real models, then runs the gate


@pytest.fixture
def box(tmp_path, federated_template):
    home = make_box(federated_template, tmp_path / "box")
    default.install_knowledge_tracing(home)  # the shipped model is active
    return home


@pytest.fixture
def hub_home(tmp_path, box):
    home = tmp_path / "hub"
    hub_store.init(home)
    enrolment.pin_district(box, json.loads((home / "district.json").read_text()))
    return home


def finished_run(tmp_path, arrays, name="20261125-200000", complete="yes") -> object:
    run_dir = tmp_path / "runs" / name
    run_dir.mkdir(parents=True)
    np.savez(run_dir / "global.npz", *arrays)
    summary = {"complete": complete, "rounds": 2, "secure_aggregation": True, "epsilon": 7.9,
               "settings": {"local-epochs": 1, "dp-epsilon": 8.0, "dp-delta": 1e-5},
               "initial": {"auc": 0.5}, "final": {"auc": 0.51, "boxes_trained": 3},
               "history": []}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(summary))
    return run_dir


def test_a_worse_model_is_shipped_signed_but_the_box_keeps_its_own_and_says_why(
    tmp_path, box, hub_home
):
    untrained = task.weights(task.new_model(seed=3))  # far worse than the shipped model
    folder = ship.ship(hub_home, finished_run(tmp_path, untrained))
    envelope = json.loads((folder / updates.ENVELOPE).read_text())
    assert envelope["model_kind"] == "knowledge-tracing"
    assert envelope["name"] == "kt-federated-20261125-200000"
    db = open_db(box / "schoolbox.db")
    outcome = box_updates.apply(db, box, folder)
    assert outcome.startswith("kept the active model: the new model is worse here (AUC")
    assert not store.active(box, "knowledge-tracing").name.startswith("kt-federated")
    logged = db.conn.execute(
        "SELECT detail FROM audit_log WHERE action = 'sync.update'").fetchall()  # fmt: skip
    assert any("the new model is worse here" in row[0] for row in logged)
    db.conn.close()
    page = as_role(create_app(Config(home=box, testing=True)), "admin", {}).get("/admin/")
    assert "the new model is worse here" in page.text


def test_a_model_not_worse_on_the_box_is_activated(tmp_path, box, hub_home):
    same = tmp_path / "kt-next.int8.onnx"
    shutil.copy(default.KT_FILE, same)
    folder = updates.sign(hub_store.district_keys(hub_home), same, "model", "kt-next", "2",
                          tmp_path / "update", "knowledge-tracing")  # fmt: skip
    db = open_db(box / "schoolbox.db")
    assert box_updates.apply(db, box, folder) == "applied"
    db.conn.close()
    assert store.active(box, "knowledge-tracing").name == "kt-next"


def test_the_card_records_sites_rounds_privacy_and_scores(tmp_path, hub_home):
    run_dir = finished_run(tmp_path, task.weights(task.new_model()))
    ship.ship(hub_home, run_dir)
    card = json.loads((run_dir / "kt-federated-20261125-200000.int8.card.json").read_text())
    assert card["rounds"] == 2 and card["secure_aggregation"] is True
    assert card["privacy"]["epsilon"] == 7.9 and card["privacy"]["delta"] == 1e-5
    assert card["metrics_federated_evaluation"]["final_auc"] == 0.51
    assert "3 school boxes" in card["data"]
    assert ship.latest_weights(hub_home).exists()


def test_the_gate_cannot_judge_without_enough_recent_answers(tmp_path):
    verdict = kt_gate.judge(default.KT_FILE, default.KT_FILE, [], [])
    assert verdict.accept and "too few recent answers" in verdict.reason


def test_the_card_travels_signed_with_the_model_and_a_changed_card_is_refused(
    tmp_path, box, hub_home
):
    folder = ship.ship(hub_home, finished_run(tmp_path, task.weights(task.new_model())))
    card_file = folder / "kt-federated-20261125-200000.int8.card.json"
    original = card_file.read_text()
    card_file.write_text(original.replace('"rounds": 2', '"rounds": 9'))  # same size
    db = open_db(box / "schoolbox.db")
    with pytest.raises(updates.UpdateError, match="card does not match its signature"):
        box_updates.apply(db, box, folder)
    assert store.get(box, "kt-federated-20261125-200000") is None  # nothing changed
    card_file.write_text(original)
    box_updates.apply(db, box, folder)
    db.conn.close()
    kept = store.card(box, store.get(box, "kt-federated-20261125-200000"))
    assert kept["rounds"] == 2 and kept["privacy"]["epsilon"] == 7.9


def test_every_run_ships_under_its_own_name_so_a_later_model_is_taken_too(tmp_path, box, hub_home):
    db = open_db(box / "schoolbox.db")
    for name, seed in (("20261125-200000", 3), ("20261126-200000", 4)):
        folder = ship.ship(hub_home, finished_run(tmp_path, task.weights(task.new_model(seed)),
                                                  name))  # fmt: skip
        assert box_updates.apply(db, box, folder).startswith("kept the active model")
    db.conn.close()
    names = {m.name for m in store.models(box)}
    assert {"kt-federated-20261125-200000", "kt-federated-20261126-200000"} <= names


def test_an_incomplete_run_is_not_shipped(tmp_path, hub_home):
    run_dir = finished_run(tmp_path, task.weights(task.new_model()),
                           complete="rounds [2] had fewer than 3 boxes")  # fmt: skip
    with pytest.raises(ship.ShipError, match="not shipped: rounds \\[2\\] had fewer than 3"):
        ship.ship(hub_home, run_dir)
    assert not list(hub_store.updates_folder(hub_home).glob("model-*"))
