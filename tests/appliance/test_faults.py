"""Faults a box meets in a school: a full disk, a damaged database, a lost key or model file."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from appliance import server
from appliance.demo.seed import ADMIN, LEARNER_PIN
from appliance.store import open_db
from tests.conftest import start_serve, wait_ready
from tests.full_disk import fill

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_disk(tmp_path):
    """A real 48 MB filesystem (tmpfs) that a test can fill to the last byte."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"no small filesystem to fill: mounting a tmpfs needs root ({done.stderr})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _practice(session: requests.Session, base: str, lesson: str) -> requests.Response:
    page = session.get(f"{base}/learn/practice/{lesson}").text
    return session.post(f"{base}/learn/practice/{lesson}", data={
        "csrf_token": _csrf(page), "hints_used": "0", "response": "1",
        "item_id": re.search(r'name="item_id" value="([^"]+)"', page).group(1),
        "client_key": re.search(r'name="client_key" value="([^"]+)"', page).group(1)})  # fmt: skip


def _signin(base: str, learner_id: int) -> requests.Response:
    """A learner signing in on a new device; the response carries its session."""
    session = requests.Session()
    page = session.get(f"{base}/signin/learner/{learner_id}").text
    response = session.post(f"{base}/signin/learner/{learner_id}",
                            data={"pin": LEARNER_PIN, "csrf_token": _csrf(page)})  # fmt: skip
    response.session = session
    return response


@pytest.mark.slow
def test_a_full_disk_is_a_kind_503_and_the_box_recovers_when_space_returns(
    small_disk, school_template, tmp_path
):
    home = small_disk / "home"
    shutil.copytree(school_template, home)
    db = open_db(home / "schoolbox.db")
    learner_id, lesson = db.conn.execute(
        "SELECT e.learner_id, a.lesson_id FROM enrolments e JOIN assignments a USING (class_id) "
        "LIMIT 1"
    ).fetchone()
    db.conn.close()
    process, port = start_serve(
        home, tmp_path / "serve.log", tutor_service="false", disk_warn_mb=24, disk_full_mb=8
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, tmp_path / "serve.log")
        learner, admin = _signin(base, learner_id).session, requests.Session()
        page = admin.get(f"{base}/signin/staff").text
        admin.post(f"{base}/signin/staff", data={
            "username": ADMIN[0], "password": ADMIN[2], "csrf_token": _csrf(page)})  # fmt: skip
        assert _practice(learner, base, lesson).status_code == 200

        assert "disk is nearly full" not in admin.get(f"{base}/admin/").text
        filler = fill(small_disk)

        for refused in (learner.get(f"{base}/learn/practice/{lesson}"), _signin(base, learner_id)):
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "60"
            assert "storage is full" in refused.text and "Nothing you did before" in refused.text
        status = admin.get(f"{base}/admin/")
        assert status.status_code == 200 and "the disk is nearly full" in status.text
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 503 and "the disk is full" in ready.json()["problems"]

        filler.unlink()  # space returns: the box picks up again by itself
        assert _practice(learner, base, lesson).status_code == 200
        assert _signin(base, learner_id).url.endswith("/learn/")
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
        assert "disk is nearly full" not in admin.get(f"{base}/admin/").text
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


# A worker on a full disk: reserve its metric files (or not), then count 300 new routes.
_COUNT_ON_A_FULL_DISK = """
import os, sys
from pathlib import Path
from appliance import server
from tests.full_disk import fill
reserved = server._reserve_metric_files() if sys.argv[1] == "reserve" else False
fill(Path(sys.argv[2]))
from prometheus_client import Counter, Histogram
requests, seconds = Counter("requests", "r", ["route"]), Histogram("seconds", "s", ["route"])
for route in range(300):
    requests.labels(str(route)).inc()
    seconds.labels(str(route)).observe(0.1)
print("counted", reserved, server.METRICS_ENV in os.environ)
"""


@pytest.mark.parametrize("reserve", [True, False])
def test_a_full_disk_cannot_kill_a_worker_through_its_metric_files(small_disk, reserve):
    # prometheus_client memory-maps a sparse file: on a full disk a write to a new page
    # is a SIGBUS. The reserved files have their blocks, so counting carries on.
    folder = small_disk / "metrics"
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_ON_A_FULL_DISK, "reserve" if reserve else "no", str(small_disk)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}, cwd=ROOT,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if reserve:
        assert (done.returncode, done.stdout.strip()) == (0, "counted True True"), done.stderr
    else:  # what the reservation prevents
        assert done.returncode == -signal.SIGBUS, (done.returncode, done.stdout, done.stderr)


def test_a_worker_started_on_a_full_disk_counts_in_its_own_memory(small_disk, monkeypatch):
    folder = small_disk / "metrics"
    folder.mkdir()
    monkeypatch.setenv(server.METRICS_ENV, str(folder))
    fill(small_disk)
    assert server._reserve_metric_files() is False
    assert server.METRICS_ENV not in os.environ  # prometheus_client then counts in memory
    assert all(path.stat().st_blocks * 512 < server.METRIC_FILE_BYTES for path in folder.iterdir())


def _problems(app) -> list[str]:
    response = app.test_client().get("/readyz")
    return [] if response.status_code == 200 else response.get_json()["problems"]


def test_readyz_is_ready_on_a_sound_box(app):
    assert app.test_client().get("/readyz").get_json() == {"status": "ready"}


@pytest.mark.parametrize("damage", ["empty", "unreadable"])
def test_readyz_is_not_ready_without_a_usable_secret_key(app, config, damage):
    config.secret_path.unlink()
    if damage == "empty":
        config.secret_path.write_text("")
    else:  # a directory in its place: reading fails as it would without permission
        config.secret_path.mkdir()
    assert _problems(app) == ["secret.key is empty or cannot be read"]


def test_readyz_is_not_ready_when_the_database_fails_its_check_at_start(config):
    db = open_db(config.db_path)
    page = db.conn.execute("PRAGMA page_size").fetchone()[0]
    root = db.conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'attempts'"
    ).fetchone()[0]
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()
    with open(config.db_path, "r+b") as file:  # an index page scrambled, as by a bad SD card
        file.seek((root - 1) * page)
        file.write(b"\xa5" * page)
    from appliance.web.app import create_app

    problems = _problems(create_app(config))
    assert len(problems) == 1
    assert problems[0].startswith("the database failed its integrity check at start: ")


def test_readyz_is_not_ready_when_the_active_model_file_is_missing(app, config):
    from models.registry import default
    from models.registry import installed as store

    manifest = default.install_knowledge_tracing(config.home)
    assert store.active(config.home, "knowledge-tracing").name == manifest.name
    assert _problems(app) == []
    store.file_path(config.home, manifest).unlink()
    assert _problems(app) == [
        "the active knowledge-tracing model's file is missing: import it again"
    ]


def test_the_status_page_warns_of_a_readable_secret_key_and_low_disk(config, ids):
    from dataclasses import replace

    from appliance.web.app import create_app
    from tests.conftest import as_role

    quiet = as_role(create_app(config), "admin", ids).get("/admin/").get_data(as_text=True)
    assert "can read the box" not in quiet and "disk is nearly full" not in quiet
    config.secret_path.chmod(0o644)
    low = replace(config, disk_warn_mb=1 << 40)  # more than any disk has free
    page = as_role(create_app(low), "admin", ids).get("/admin/").get_data(as_text=True)
    print(page[:3000])
    assert "other users of this computer can read the box's secret key" in page
    assert "the disk is nearly full" in page
