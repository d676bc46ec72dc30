"""The drift warning needs evidence: enough answers and a live AUC whose confidence
interval lies below the card's figure minus DRIFT. A fresh demo (simulated learners, a
cold box) shows none; a genuinely bad model on as many answers raises it. Real SQLite,
the real shipped ONNX model and a real untrained one through onnxruntime."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from appliance.config import Config, ensure_secret
from appliance.demo.seed import seed
from appliance.knowledge import monitor as model_monitor
from appliance.knowledge import tracing as knowledge
from appliance.store import open_db
from appliance.store.migrations import migrate
from appliance.web.app import create_app
from models.knowledge_tracing.scores import auc
from models.knowledge_tracing.training import build as kt_build
from models.registry import default
from models.registry import installed as store
from tests.conftest import as_role

WARNING = "predicts this school"


def test_the_live_auc_interval_is_delongs_and_matches_a_bootstrap():
    rng = np.random.default_rng(5)
    outcomes = rng.integers(0, 2, 3000)
    predicted = np.round(0.25 * outcomes + rng.random(3000), 2)  # ties too
    value, error = model_monitor.auc_interval(predicted, outcomes)
    assert value == pytest.approx(auc(predicted, outcomes), abs=1e-12)
    resampled = [auc(predicted[i], outcomes[i]) for i in rng.integers(0, 3000, (300, 3000))]
    assert error == pytest.approx(np.std(resampled), rel=0.2)
    assert model_monitor.auc_interval(predicted, np.ones(3000)) is None


def test_the_warning_needs_enough_answers_and_an_interval_below_the_line():
    card = 0.774
    assert not model_monitor.drifting((0.60, 0.01), 499, card)  # too few answers
    assert not model_monitor.drifting((0.713, 0.0114), 2111, card)  # could be 0.74: no proof
    assert model_monitor.drifting((0.68, 0.0114), 2111, card)
    assert model_monitor.drifting((0.50, 0.01), 5000, card)
    assert not model_monitor.drifting((0.50, 0.01), 5000, None)  # no card: nothing to hold to


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    """A fresh demo school as `schoolbox demo` seeds it, the shipped model traced over it."""
    home = tmp_path_factory.mktemp("demo") / "home"
    home.mkdir()
    config = Config(home=home, testing=True)
    ensure_secret(config)
    db = open_db(config.db_path)
    migrate(db)
    seed(db, config)  # the demo's default size, as the admin sees it
    default.install_knowledge_tracing(home)
    knowledge.follow(db, home)
    db.conn.close()
    return home


def _admin_page(home) -> str:
    app = create_app(Config(home=home, testing=True))
    return as_role(app, "admin", {}).get("/admin/").get_data(as_text=True)


def test_a_fresh_demo_shows_no_drift_warning(demo_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    db = open_db(Config(home=home, testing=True).db_path)
    report = model_monitor.report(db, home)
    assert report["answers"] >= model_monitor.DRIFT_MIN_ANSWERS and report["live_auc"] < 0.75
    assert report["drift"] is False
    page = _admin_page(home)
    assert f"{report['live_auc']:.3f}" in page and WARNING not in page


@pytest.mark.slow  # traces thousands of answers through a model
def test_a_genuinely_bad_model_on_as_many_answers_raises_it(demo_home, tmp_path):
    from federated import task
    from models.knowledge_tracing.training import export as kt_export

    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    untrained = task.new_model(seed=3)  # never trained: a model that fits no one
    float_path = kt_export.export(untrained, tmp_path / "bad.onnx", {"title": "untrained"})
    bad = kt_export.quantise(float_path, tmp_path / "bad.int8.onnx")
    shutil.copyfile(kt_build.SHIPPED / "kt.int8.card.json", bad.with_suffix(".card.json"))
    store.activate(home, store.import_file(home, bad, name="kt-untrained").name)
    db = open_db(Config(home=home, testing=True).db_path)
    knowledge.follow(db, home)  # traced again from the first answer, by the bad model
    report = model_monitor.report(db, home)
    assert (
        report["model"] == "kt-untrained" and report["answers"] >= model_monitor.DRIFT_MIN_ANSWERS
    )
    assert report["drift"] is True
    assert WARNING in _admin_page(home)
