"""Shared sync fixtures: a district hub (keys, database, a real server) and a box
enrolled at it."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests

from appliance import knowledge
from appliance.store import audit, site, transaction
from models import default
from sync import enrolment, hub_store
from tests.conftest import SCHOOLBOX, free_port, stop


def make_box(home, hub_home, db) -> None:
    """Consent, keys, enrolment at the hub, the district's keys pinned, mastery traced."""
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, "sync", True)
    found = site.get(db)
    box_keys = enrolment.ensure_box_keys(home, found["box_id"])
    hub_db = hub_store.open_hub(hub_home)
    hub_store.enrol(hub_db, enrolment.request(box_keys, found["name"]))
    hub_db.close()
    enrolment.pin_district(home, json.loads((hub_home / "district.json").read_text()))
    default.install_knowledge_tracing(home)
    knowledge.follow(db, home)


@pytest.fixture
def hub_home(tmp_path):
    home = tmp_path / "hub"
    hub_store.init(home)
    return home


@pytest.fixture
def box(config, db, hub_home):
    make_box(config.home, hub_home, db)
    return config.home


@pytest.fixture
def hub_server(hub_home, tmp_path):
    port = free_port()
    log = open(tmp_path / "hub.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [SCHOOLBOX, "hub", "--hub-home", str(hub_home), "serve", "--port", str(port)],
        stdout=log, stderr=log,
    )  # fmt: skip
    wait_ready_hub(port, tmp_path / "hub.log")
    yield port
    stop(process)


def wait_ready_hub(port: int, log) -> None:

    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(log.read_text())
