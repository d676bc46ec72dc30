"""A whole school day over HTTP against the real `schoolbox serve` (waitress) on loopback."""

from __future__ import annotations

import io
import re
import subprocess
import time
import zipfile

import pytest
import requests

from tests.conftest import DEMO_PACK, SCHOOLBOX, free_port, init_box, wait_ready

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


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _post_form(session: requests.Session, base: str, page: str, action: str, data: dict, **kw):
    token = _csrf(session.get(base + page).text)
    return session.post(base + action, data={**data, "csrf_token": token}, **kw)


def _pack_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in DEMO_PACK.rglob("*"):
            if file.is_file():
                archive.write(file, "demo/" + file.relative_to(DEMO_PACK).as_posix())
    return buffer.getvalue()


def test_a_whole_school_day_over_http(server):
    base, password, home, log = server
    admin = requests.Session()
    r = _post_form(
        admin, base, "/signin/staff", "/signin/staff", {"username": "admin", "password": password}
    )
    assert r.url.endswith("/admin/")
    # The admin imports the pack and adds a teacher.
    token = _csrf(admin.get(f"{base}/admin/content").text)
    r = admin.post(f"{base}/admin/content", data={"csrf_token": token},
                   files={"pack": ("demo.zip", _pack_zip(), "application/zip")})  # fmt: skip
    assert "added to version 1.0.0" in r.text
    _post_form(admin, base, "/admin/users", "/admin/users", {
        "display_name": "Ms Amina", "username": "amina", "password": "teach-fractions", "role": "teacher"})  # fmt: skip
    # The teacher makes a class, pastes a roster and assigns a lesson.
    teacher = requests.Session()
    _post_form(
        teacher,
        base,
        "/signin/staff",
        "/signin/staff",
        {"username": "amina", "password": "teach-fractions"},
    )
    r = _post_form(teacher, base, "/teach/", "/teach/classes", {"name": "Class 3"})
    class_path = r.url[len(base) :]
    r = _post_form(
        teacher, base, class_path, class_path + "/roster", {"names": "Tendai M.\nLuz R."}
    )
    pin = re.search(r"Tendai M\.</th>\s*<td class=\"pin\">(\d{4})<", r.text).group(1)
    _post_form(
        teacher,
        base,
        class_path,
        class_path + "/assignments",
        {"lesson_id": "fractions-03-equivalent-fractions"},
    )
    # A learner signs in with class, name and PIN, reads and practises.
    learner = requests.Session()
    signin = learner.get(base + "/signin").text
    class_link = re.search(r'href="(/signin/class/\d+)">Class 3<', signin).group(1)
    learner_link = re.search(
        r'href="(/signin/learner/\d+)">Tendai M\.<', learner.get(base + class_link).text
    ).group(1)
    r = _post_form(learner, base, learner_link, learner_link, {"pin": pin})
    assert r.url.endswith("/learn/") and "Equivalent" in r.text
    assert "<h1 " in learner.get(f"{base}/learn/lessons/fractions-03-equivalent-fractions").text
    for _ in range(3):
        page = learner.get(f"{base}/learn/practice/fractions-03-equivalent-fractions").text
        item_id = re.search(r'name="item_id" value="([^"]+)"', page).group(1)
        r = learner.post(f"{base}/learn/practice/fractions-03-equivalent-fractions", data={
            "csrf_token": _csrf(page), "item_id": item_id, "response": "1", "hints_used": "0",
            "client_key": re.search(r'name="client_key" value="([^"]+)"', page).group(1)})  # fmt: skip
        assert r.status_code == 200 and "Next question" in r.text
    # The teacher sees the attempts.
    learner_id = learner_link.rsplit("/", 1)[1]
    history = teacher.get(f"{base}/teach/learners/{learner_id}").text
    assert history.split("Latest answers")[1].count("<time datetime=") == 3
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
