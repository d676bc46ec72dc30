"""Shared sync fixtures: a district hub (keys, database, a real server) and a box
enrolled at it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from appliance.knowledge import tracing as knowledge
from appliance.store import audit, site, transaction
from models.registry import default
from sync import enrolment
from sync.hub import home as hub_store
from tests.conftest import SCHOOLBOX, free_port, stop, wait_ready


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


PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server (Debian's package) in a temporary directory, started with
    initdb and pg_ctl for this test session; its URL without a database name."""
    if not PG_BINS:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (make test does)")
    bin_dir = PG_BINS[-1]
    root = Path(tempfile.mkdtemp(prefix="schoolbox-pg-"))
    as_postgres = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as Debian's postgres user
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data, log = root / "data", root / "server.log"
    subprocess.run([*as_postgres, bin_dir / "initdb", "-D", data, "-U", "schoolbox", "-A",
                    "trust", "--no-sync", "-E", "UTF8"], check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", data, "-l", log, "-o", options,
                    "-w", "start"], check=True, capture_output=True)  # fmt: skip
    yield f"postgresql://schoolbox@127.0.0.1:{port}"
    subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
                   capture_output=True)  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_home(request, tmp_path):
    """A district hub's home, its records in SQLite or in a fresh PostgreSQL database."""
    home = tmp_path / "hub"
    database = ""
    if request.param == "postgresql":
        import psycopg

        server = request.getfixturevalue("postgres_url")
        name = f"hub_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        database = f"{server}/{name}"
    hub_store.init(home, database)
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
    wait_ready(f"http://127.0.0.1:{port}", tmp_path / "hub.log", "/healthz")
    yield port
    stop(process)
