"""Automated accessibility check: axe-core (WCAG 2 A and AA rules) in headless Chromium.

Each page is rendered by the app, its stylesheet inlined (contrast needs it), and axe-core
run over it by Chromium's --dump-dom; any violation fails the test with its rule and node.
`make test` fetches axe-core from the npm registry and `.ci/run` installs Chromium.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import render_template

from tests.conftest import as_role, form_value

ROOT = Path(__file__).parents[2]
AXE = ROOT / ".cache" / "axe-core" / "axe.min.js"
STYLE = ROOT / "appliance" / "web" / "static" / "style.css"
RUN_AXE = """<script>axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']})
.then(function (r) { var p = document.createElement('pre'); p.id = 'axe-result';
p.textContent = JSON.stringify(r.violations.map(function (v) { return {id: v.id,
impact: v.impact, nodes: v.nodes.slice(0, 3).map(function (n) { return n.target.join(' '); })}; }));
document.body.appendChild(p); });</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is needed for the accessibility check: sudo apt-get install chromium"
    assert AXE.exists(), f"axe-core is missing at {AXE}: run `make test`, which fetches it"
    return found


def _violations(chromium: str, html: str, folder: Path, name: str) -> list[dict]:
    html = re.sub(r'<link rel="stylesheet"[^>]*>', f"<style>{STYLE.read_text()}</style>", html)
    html = html.replace("</body>", f"<script>{AXE.read_text()}</script>{RUN_AXE}</body>")
    page = folder / f"{name}.html"
    page.write_text(html)
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={folder / ('profile-' + name)}",
         "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    match = re.search(r'<pre id="axe-result">(.*?)</pre>', out, re.S)
    assert match, f"axe did not finish on {name}"
    return json.loads(
        match.group(1)
        .replace("&quot;", '"')
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&amp;", "&")
    )


def _pages(app, ids, db) -> dict[str, str]:
    pages = {}
    anon = as_role(app, "anon", ids)
    class_id = ids["classes"]["Class 4A"]
    learner_id = ids["learners"]["Class 4A"][0]
    pages["signin"] = anon.get("/signin").data
    pages["signin-class"] = anon.get(f"/signin/class/{class_id}").data
    pages["signin-pin"] = anon.get(f"/signin/learner/{learner_id}").data
    pages["signin-staff"] = anon.get("/signin/staff").data
    teacher = as_role(app, "teacher", ids)
    teacher.post(
        f"/teach/classes/{class_id}/learners/{learner_id}/pin", {"sign_in_with": "pictures"}
    )
    pages["signin-pictures"] = anon.get(f"/signin/learner/{learner_id}").data
    pages["picture-sheet"] = teacher.post(
        f"/teach/classes/{class_id}/learners/{learner_id}/pin", {"sign_in_with": "pictures"}
    ).data
    teacher.post(
        f"/teach/classes/{class_id}/learners/{learner_id}/pin",
        {"sign_in_with": "pin", "pin": "1234"},
    )
    learner = as_role(app, "learner", ids)
    lesson = "fractions-01-parts-of-a-whole"
    pages["learner-home"] = learner.get("/learn/").data
    pages["lesson"] = learner.get(f"/learn/lessons/{lesson}").data
    practice = learner.get(f"/learn/practice/{lesson}?hints=1").data
    pages["practice"] = practice
    pages["feedback"] = learner.post(f"/learn/practice/{lesson}", {
        "item_id": form_value(practice, "item_id"), "response": "0"}).data  # fmt: skip
    pages["my-progress"] = learner.get("/learn/progress").data
    pages["tutor-answer"] = learner.post(  # no tutor service here: answered from the lessons
        "/learn/tutor", {"question": "what are equal parts?", "lesson_id": lesson}
    ).data
    pages["teacher-home"] = teacher.get("/teach/").data
    pages["class"] = teacher.get(f"/teach/classes/{class_id}").data
    pages["grid"] = teacher.get(f"/teach/classes/{class_id}/progress").data
    pages["history"] = teacher.get(f"/teach/learners/{learner_id}").data
    pages["tutor-conversations"] = teacher.get(f"/teach/classes/{class_id}/tutor").data
    group_id = db.conn.execute(
        "SELECT id FROM class_groups WHERE class_id = ?", (class_id,)
    ).fetchone()[0]
    pages["group"] = teacher.get(f"/teach/classes/{class_id}/groups/{group_id}").data
    pages["delete-group"] = teacher.get(f"/teach/classes/{class_id}/groups/{group_id}/delete").data
    pages["assignment"] = teacher.get(f"/teach/classes/{class_id}/assignments/{lesson}").data
    closed_quiz = db.conn.execute(
        "SELECT id FROM quizzes WHERE class_id = ?", (class_id,)
    ).fetchone()[0]
    pages["reports"] = teacher.get(f"/teach/classes/{class_id}/reports").data
    pages["search"] = learner.get("/learn/search?q=fraction+equal+goat").data
    for resource_id in ("demo-video-halves-and-quarters", "demo-audio-six-oclock-bus",
                        "demo-pdf-equivalent-worksheet", "demo-epub-lost-goat",
                        "demo-app-which-is-bigger"):  # fmt: skip
        pages[resource_id] = learner.get(f"/learn/resources/{resource_id}").data
    pages["book-last-page"] = learner.get("/learn/resources/demo-epub-lost-goat?page=3").data
    made = db.conn.execute(
        "SELECT id FROM class_lessons WHERE class_id = ?", (class_id,)
    ).fetchone()[0]
    pages["make-lesson"] = teacher.get(f"/teach/classes/{class_id}/lessons/new").data
    pages["made-lesson"] = teacher.get(f"/teach/classes/{class_id}/lessons/{made}").data
    pages["made-lesson-delete"] = teacher.get(
        f"/teach/classes/{class_id}/lessons/{made}/delete"
    ).data
    pages["learner-made-lesson"] = learner.get(f"/learn/class-lessons/{made}").data
    pages["new-quiz"] = teacher.get(f"/teach/classes/{class_id}/quizzes/new").data
    pages["quiz-report"] = teacher.get(f"/teach/classes/{class_id}/quizzes/{closed_quiz}").data
    pages["quiz-results"] = learner.get(f"/learn/quizzes/{closed_quiz}").data
    items = [r[0] for r in db.conn.execute(
        "SELECT id FROM items WHERE lesson_id = ? ORDER BY position LIMIT 3", (lesson,))]  # fmt: skip
    made = teacher.api("POST", f"/api/v1/classes/{class_id}/quizzes",
                       {"title": "Open quiz", "items": items}).get_json()["quiz"]["id"]  # fmt: skip
    pages["quiz-delete"] = teacher.get(f"/teach/classes/{class_id}/quizzes/{made}/delete").data
    teacher.api("POST", f"/api/v1/classes/{class_id}/quizzes/{made}/start")
    pages["quiz-question"] = learner.get(f"/learn/quizzes/{made}").data
    pages["learner-home-quizzes"] = learner.get("/learn/").data
    pages["quiz-live"] = teacher.get(f"/teach/classes/{class_id}/quizzes/{made}").data
    learner.api("POST", f"/api/v1/quizzes/{made}/finish")
    pages["quiz-handed-in"] = learner.get(f"/learn/quizzes/{made}").data
    admin = as_role(app, "admin", ids)
    for path in ("", "users", "classes", "learners", "content", "audit", "consent"):
        pages[f"admin-{path or 'status'}"] = admin.get(f"/admin/{path}").data
    pages["not-found"] = admin.get("/teach/classes/99999").data
    pages["import-learners"] = admin.get("/admin/learners/import").data
    pages["import-preview"] = admin.client.post(
        "/admin/learners/import",
        data={"csrf_token": admin.csrf(), "file": (io.BytesIO(b"name,class,pin\nAda,Class 4A,\n,,1\n"),
                                                   "r.csv")},
        content_type="multipart/form-data",
    ).data  # fmt: skip
    pages["import-staff"] = admin.get("/admin/users/import").data
    pages["staff-sheet"] = admin.post("/admin/users/import", {
        "confirm": "yes", "csv": "name,username,role\nGrace N,gnjeri,teacher\n"}).data  # fmt: skip
    # First boot's pages, shown on a box set up from a site file (tests/appliance/test_provisioning.py)
    with app.test_request_context("/setup"):
        pages["first-admin-setup"] = render_template(
            "setup.html", form={}, error="That setup code is not right."
        ).encode()
        refused = {"state": "refused", "message": "The site file is not signed."}
        pages["site-file-refused"] = render_template("not_set_up.html", first_boot=refused).encode()
    # The same pages in the other languages: longer French words, right-to-left Arabic.
    for language, browser, path in (
        ("ar", learner, "/learn/"), ("ar", learner, f"/learn/lessons/{lesson}"),
        ("fr", teacher, f"/teach/classes/{class_id}"), ("fr", teacher, f"/teach/classes/{class_id}/reports"),
        ("sw", admin, "/admin/"), ("sw", learner, "/learn/resources/demo-epub-lost-goat"),
    ):  # fmt: skip
        browser.post("/language", {"language": language})
        pages[f"{language}{path.replace('/', '-')}"] = browser.get(path).data
    anon.post("/language", {"language": "ar"})
    pages["signin-ar"] = anon.get("/signin").data
    return {name: html.decode() for name, html in pages.items()}


def in_chromium(check, pages: dict[str, str], folder: Path) -> dict:
    """check(chromium, html, folder, name) for every page, two Chromiums at a time."""
    chromium = _chromium()
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = pool.map(lambda name: check(chromium, pages[name], folder, name), pages)
        return dict(zip(pages, found, strict=True))


def test_pages_pass_axe_core_wcag_a_and_aa_rules(app, ids, db, tmp_path):
    results = in_chromium(_violations, _pages(app, ids, db), tmp_path)
    failures = {name: found for name, found in results.items() if found}
    assert failures == {}


def test_the_checker_catches_a_real_violation(tmp_path):
    chromium = _chromium()
    bad = '<!doctype html><html lang="en"><head><title>x</title></head><body><main><img src="a.png"><input id="a"></main></body></html>'
    found = {v["id"] for v in _violations(chromium, bad, tmp_path, "bad")}
    assert {"image-alt", "label"} <= found


pytestmark = pytest.mark.slow
