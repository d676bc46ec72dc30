"""A school over HTTP, as browsers use it, against any real server: `schoolbox serve` on
loopback (tests/appliance/test_e2e_serve.py) or the box in a booted image
(tests/image/test_boot.py)."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

import requests

from tests.conftest import DEMO_PACK

LESSON = "fractions-03-equivalent-fractions"
TEACHER = ("amina", "teach-fractions")


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def post_form(session: requests.Session, base: str, page: str, action: str, data: dict, **kw):
    """Submit a form as a browser does: open its page for the CSRF token, then post."""
    token = csrf(session.get(base + page).text)
    return session.post(base + action, data={**data, "csrf_token": token}, **kw)


def pack_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in DEMO_PACK.rglob("*"):
            if file.is_file():
                archive.write(file, "demo/" + file.relative_to(DEMO_PACK).as_posix())
    return buffer.getvalue()


@dataclass
class Classroom:
    teacher: requests.Session
    learner: requests.Session
    class_path: str
    learner_id: str
    pin: str


def set_up_a_class(base: str, admin: requests.Session) -> Classroom:
    """The admin imports the demo pack and adds a teacher; the teacher makes a class of
    two, and assigns a lesson; a learner signs in with class, name and PIN."""
    token = csrf(admin.get(f"{base}/admin/content").text)
    r = admin.post(f"{base}/admin/content", data={"csrf_token": token},
                   files={"pack": ("demo.zip", pack_zip(), "application/zip")})  # fmt: skip
    assert "added to version 1.1.0" in r.text, r.text[:2000]
    post_form(admin, base, "/admin/users", "/admin/users", {
        "display_name": "Ms Amina", "username": TEACHER[0], "password": TEACHER[1],
        "role": "teacher"})  # fmt: skip
    teacher = requests.Session()
    post_form(teacher, base, "/signin/staff", "/signin/staff",
              {"username": TEACHER[0], "password": TEACHER[1]})  # fmt: skip
    r = post_form(teacher, base, "/teach/", "/teach/classes", {"name": "Class 3"})
    class_path = r.url[len(base) :]
    r = post_form(teacher, base, class_path, class_path + "/roster", {"names": "Tendai M.\nLuz R."})
    pin = re.search(r"Tendai M\.</th>\s*<td class=\"pin\">(\d{4})<", r.text).group(1)
    post_form(teacher, base, class_path, class_path + "/assignments", {"lesson_id": LESSON})
    learner = requests.Session()
    signin = learner.get(base + "/signin").text
    class_link = re.search(r'href="(/signin/class/\d+)">Class 3<', signin).group(1)
    learner_link = re.search(
        r'href="(/signin/learner/\d+)">Tendai M\.<', learner.get(base + class_link).text
    ).group(1)
    r = post_form(learner, base, learner_link, learner_link, {"pin": pin})
    assert r.url.endswith("/learn/") and "Equivalent" in r.text
    return Classroom(teacher, learner, class_path, learner_link.rsplit("/", 1)[1], pin)


def practise(base: str, learner: requests.Session, answers: int = 3) -> None:
    """The learner answers `answers` practice items of the assigned lesson."""
    for _ in range(answers):
        page = learner.get(f"{base}/learn/practice/{LESSON}").text
        item_id = re.search(r'name="item_id" value="([^"]+)"', page).group(1)
        r = learner.post(f"{base}/learn/practice/{LESSON}", data={
            "csrf_token": csrf(page), "item_id": item_id, "response": "1", "hints_used": "0",
            "client_key": re.search(r'name="client_key" value="([^"]+)"', page).group(1)})  # fmt: skip
        assert r.status_code == 200 and "Next question" in r.text


def answers_seen_by_teacher(base: str, teacher: requests.Session, learner_id: str) -> int:
    history = teacher.get(f"{base}/teach/learners/{learner_id}").text
    return history.split("Latest answers")[1].count("<time datetime=")
