"""A whole school day over HTTP against the real `schoolbox serve` (waitress) on loopback."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from tests.conftest import SCHOOLBOX, free_port, init_box, wait_ready
from tests.over_http import LESSON, answers_seen_by_teacher, post_form, practise, set_up_a_class

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    home = tmp_path / "box"
    password = init_box(home)
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [SCHOOLBOX, "--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, tmp_path / "serve.log")
    yield base, password, home, tmp_path / "serve.log"
    process.terminate()
    process.wait(timeout=10)
    log.close()


def test_a_whole_school_day_over_http(server):
    base, password, home, log = server
    admin = requests.Session()
    r = post_form(
        admin, base, "/signin/staff", "/signin/staff", {"username": "admin", "password": password}
    )
    assert r.url.endswith("/admin/")
    # The admin imports the pack and adds a teacher; the teacher makes a class, pastes a
    # roster and assigns a lesson; a learner signs in with class, name and PIN.
    room = set_up_a_class(base, admin)
    teacher, learner, class_path = room.teacher, room.learner, room.class_path
    assert "<h1 " in learner.get(f"{base}/learn/lessons/{LESSON}").text
    practise(base, learner, 3)
    # The teacher sees the attempts.
    learner_id = room.learner_id
    assert answers_seen_by_teacher(base, teacher, learner_id) == 3
    history = teacher.get(f"{base}/teach/learners/{learner_id}").text
    assert "chance of success" in history  # why each item was offered: the model's estimate
    # The follower job traces the answers: mastery per skill appears within seconds.
    for _ in range(100):
        estimates = learner.get(f"{base}/api/v1/progress").json()["mastery"]
        if sum(e["attempts"] for e in estimates.values()) >= 3:
            break
        time.sleep(0.1)
    assert estimates and all(0 < e["p"] < 1 for e in estimates.values())
    class_id = class_path.rsplit("/", 1)[1]
    grid = teacher.get(f"{base}/api/v1/classes/{class_id}/progress").json()["grid"]
    assert sum(c["attempts"] for c in grid[learner_id].values()) >= 3
    # Operations: health, metrics from loopback, and nothing personal in the logs.
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    metrics = requests.get(f"{base}/metrics", timeout=5).text
    assert (
        'schoolbox_requests_total{endpoint="learner.answer",method="POST",status="200"} 3.0'
        in metrics
    )
    logs = log.read_text()
    assert '"route": "/learn/practice/<lesson_id>"' in logs
    for secret in (
        "Tendai",
        "Luz R.",
        password,
        "teach-fractions",
    ):  # (a 4-digit PIN could match a port)
        assert secret not in logs
