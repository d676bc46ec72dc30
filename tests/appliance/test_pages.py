"""The pages people use: a learner practising, a teacher's class, an admin's tools."""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile

from appliance.store import audit, site
from tests.conftest import DEMO_PACK, as_role, form_value


def test_learner_home_lesson_practice_hint_and_feedback(app, ids, db):
    learner = as_role(app, "learner", ids)
    home = learner.get("/learn/").data.decode()
    lesson_id = re.search(r'/learn/practice/([\w-]+)"', home).group(1)
    lesson = learner.get(f"/learn/lessons/{lesson_id}")
    assert lesson.status_code == 200 and b"<h1 " in lesson.data
    page = learner.get(f"/learn/practice/{lesson_id}")
    assert b"Question 1 of 10" in page.data
    item_id = form_value(page.data, "item_id")
    with_hint = learner.get(f"/learn/practice/{lesson_id}?item={item_id}&hints=1")
    assert b"Hints" in with_hint.data and form_value(with_hint.data, "hints_used") == "1"
    key = json.loads(
        db.conn.execute("SELECT answer FROM items WHERE id = ?", (item_id,)).fetchone()[0]
    )
    assert json.dumps(key) not in with_hint.data.decode()  # the key never reaches the page
    response = {"item_id": item_id, "client_key": form_value(with_hint.data, "client_key"),
                "hints_used": "1", "response": _right_answer(key)}  # fmt: skip
    feedback = learner.post(f"/learn/practice/{lesson_id}", response)
    assert feedback.status_code == 200 and b"that is right" in feedback.data
    row = db.conn.execute(
        "SELECT correct, hints_used FROM attempts ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert tuple(row) == (1, 1)
    assert b"Question 2 of 10" in learner.get(f"/learn/practice/{lesson_id}").data


def _right_answer(key: dict) -> str:
    if "index" in key:
        return str(key["index"])
    if "value" in key:
        return str(key["value"])
    return key["accepted"][0]


def test_a_malformed_answer_shows_the_question_again_with_a_message(app, ids, db):
    learner = as_role(app, "learner", ids)
    lesson_id = "fractions-02-number-line"
    item_id = db.conn.execute(
        "SELECT id FROM items WHERE lesson_id = ? AND type = 'numeric'", (lesson_id,)
    ).fetchone()[0]
    before = db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    page = learner.post(f"/learn/practice/{lesson_id}", {"item_id": item_id, "response": "banana"})
    assert page.status_code == 400 and b"Please type a number" in page.data
    assert form_value(page.data, "item_id") == item_id
    assert db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0] == before


def test_a_practice_session_ends_after_ten_questions(app, ids):
    learner = as_role(app, "learner", ids)
    lesson_id = "reading-01-finding-facts"
    for _ in range(10):
        page = learner.get(f"/learn/practice/{lesson_id}")
        learner.post(f"/learn/practice/{lesson_id}", {
            "item_id": form_value(page.data, "item_id"), "response": "1",
            "client_key": form_value(page.data, "client_key")})  # fmt: skip
    done = learner.get(f"/learn/practice/{lesson_id}")
    assert b"You finished this practice" in done.data
    again = learner.get(f"/learn/practice/{lesson_id}?restart=1")
    assert b"Question 1 of 10" in again.data


def test_teacher_creates_a_class_pastes_a_roster_assigns_and_sees_progress(app, ids, db):
    teacher = as_role(app, "teacher", ids)
    created = teacher.post("/teach/classes", {"name": "Reading club"})
    class_id = int(created.location.rsplit("/", 1)[1])
    pins = teacher.post(
        f"/teach/classes/{class_id}/roster", {"names": "Zola M.\nKwame O.\n\nzola m.\nLi W."}
    )
    text = pins.data.decode()
    assert pins.status_code == 200 and text.count('class="pin"') == 3  # duplicate dropped
    pin = re.search(r'<th scope="row">Kwame O\.</th>\s*<td class="pin">(\d{4})</td>', text).group(1)
    stored = db.conn.execute(
        "SELECT pin_hash FROM users WHERE display_name = 'Kwame O.'"
    ).fetchone()[0]
    assert pin not in stored
    teacher.post(f"/teach/classes/{class_id}/assignments", {"lesson_id": "reading-02-main-idea"})
    page = teacher.get(f"/teach/classes/{class_id}").data.decode()
    title = db.conn.execute(
        "SELECT title FROM lessons WHERE id = 'reading-02-main-idea'"
    ).fetchone()[0]
    assert "Zola M." in page and title in page
    kwame = db.conn.execute("SELECT id FROM users WHERE display_name = 'Kwame O.'").fetchone()[0]
    assert as_role(app, "anon", ids).signin_learner(kwame, pin).status_code == 302
    grid = teacher.get(f"/teach/classes/{class_id}/progress")
    assert grid.status_code == 200 and b"Kwame O." in grid.data
    history = teacher.get(f"/teach/learners/{ids['learners']['Class 4A'][0]}")
    assert history.status_code == 200 and b"Latest answers" in history.data


def test_teacher_resets_a_pin_and_it_is_audited(app, ids, db):
    teacher = as_role(app, "teacher", ids)
    class_id, learner_id = ids["classes"]["Class 4A"], ids["learners"]["Class 4A"][3]
    page = teacher.post(f"/teach/classes/{class_id}/learners/{learner_id}/pin", {"pin": "2468"})
    assert b"2468" in page.data
    assert audit.search(db, action="learner.pin_reset", target_id=str(learner_id))
    bad = teacher.post(f"/teach/classes/{class_id}/learners/{learner_id}/pin", {"pin": "12"})
    assert bad.status_code == 302


def test_bad_roster_input_is_refused_without_half_writing(app, ids, db):
    teacher = as_role(app, "teacher", ids)
    class_id = ids["classes"]["Class 4A"]
    before = db.conn.execute("SELECT count(*) FROM users").fetchone()[0]
    teacher.post(f"/teach/classes/{class_id}/roster", {"names": "Good Name\n" + "x" * 200})
    assert db.conn.execute("SELECT count(*) FROM users").fetchone()[0] == before
    teacher.post(
        f"/teach/classes/{class_id}/roster", {"names": "\n".join(f"n{i}" for i in range(61))}
    )
    assert db.conn.execute("SELECT count(*) FROM users").fetchone()[0] == before


def test_admin_status_page_shows_the_box(app, ids):
    admin = as_role(app, "admin", ids)
    page = admin.get("/admin/").data.decode()
    for label in (
        "Software version",
        "Disk free",
        "Database size",
        "Learners",
        "Fractions and reading",
    ):
        assert label in page


def test_admin_creates_staff_and_changes_roles(app, ids, db):
    admin = as_role(app, "admin", ids)
    admin.post("/admin/users", {"display_name": "Wanjiru K.", "username": "wanjiru",
                                "password": "a-long-password", "role": "teacher"})  # fmt: skip
    new_id = db.conn.execute("SELECT id FROM users WHERE username = 'wanjiru'").fetchone()[0]
    admin.post(f"/admin/users/{new_id}", {"role": "admin"})
    assert (
        db.conn.execute("SELECT role FROM users WHERE id = ?", (new_id,)).fetchone()[0] == "admin"
    )
    assert audit.search(db, action="user.role_change", target_id=str(new_id))
    short = admin.post(
        "/admin/users",
        {"display_name": "X", "username": "x2", "password": "short", "role": "teacher"},
    )
    assert short.status_code == 302
    assert db.conn.execute("SELECT count(*) FROM users WHERE username = 'x2'").fetchone()[0] == 0


def test_admin_exports_then_erases_a_learner(app, ids, db):
    admin = as_role(app, "admin", ids)
    learner_id = ids["learners"]["Class 4B"][0]
    export = admin.post(f"/admin/learners/{learner_id}/export", {})
    data = json.loads(export.data)
    assert export.headers["Content-Disposition"].startswith("attachment")
    assert data["learner"]["name"] and data["attempts"] and data["classes"]
    unconfirmed = admin.post(f"/admin/learners/{learner_id}/erase", {"confirm": "no"})
    assert unconfirmed.status_code == 302
    assert (
        db.conn.execute("SELECT erased_at FROM users WHERE id = ?", (learner_id,)).fetchone()[0]
        is None
    )
    admin.post(f"/admin/learners/{learner_id}/erase", {"confirm": "erase"})
    assert (
        db.conn.execute(
            "SELECT count(*) FROM attempts WHERE learner_id = ?", (learner_id,)
        ).fetchone()[0]
        == 0
    )
    actions = [e["action"] for e in audit.search(db, target_id=str(learner_id))]
    assert "learner.export" in actions and "learner.erase" in actions
    assert data["learner"]["name"].encode() not in admin.get("/admin/learners").data


def test_admin_uploads_a_pack_zip_and_a_bad_one_is_explained(app, ids, db, tmp_path):
    admin = as_role(app, "admin", ids)
    folder = tmp_path / "p"
    shutil.copytree(DEMO_PACK, folder)
    manifest = folder / "pack.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.1.0", "version: 1.3.0"))
    ok = admin.post(
        "/admin/content", {"pack": (_zip(folder), "pack.zip")}, content_type="multipart/form-data"
    )
    assert ok.status_code == 302
    assert db.conn.execute("SELECT version FROM packs").fetchone()[0] == "1.3.0"
    manifest.write_text(
        manifest.read_text()
        .replace("version: 1.3.0", "version: 1.4.0")
        .replace("licence: CC-BY-4.0", "")
    )
    bad = admin.post(
        "/admin/content", {"pack": (_zip(folder), "pack.zip")}, content_type="multipart/form-data"
    )
    assert bad.status_code == 400 and b"pack.yaml:.licence" in bad.data
    assert db.conn.execute("SELECT version FROM packs").fetchone()[0] == "1.3.0"
    junk = admin.post(
        "/admin/content",
        {"pack": (io.BytesIO(b"not a zip"), "x.zip")},
        content_type="multipart/form-data",
    )
    assert junk.status_code == 400 and b"not a folder or a .zip" in junk.data


def _zip(folder) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in folder.rglob("*"):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())
    buffer.seek(0)
    return buffer


def test_admin_filters_the_audit_log(app, ids):
    admin = as_role(app, "admin", ids)
    page = admin.get("/admin/audit?action=content.import").data.decode()
    assert "content.import" in page and "class.enrol</td>" not in page


def test_consent_is_off_until_switched_on_and_records_who(app, ids, db):
    assert not site.is_consented(db, "sync")
    admin = as_role(app, "admin", ids)
    admin.post("/admin/consent", {"feature": "sync", "granted": "1"})
    consent = site.consents(db)["sync"]
    assert consent["granted"] == 1 and consent["set_by"] == ids["admin"] and consent["set_at"]
    assert admin.post("/admin/consent", {"feature": "nonsense", "granted": "1"}).status_code == 400


def test_an_upload_over_the_limit_is_refused_with_413(config):
    from dataclasses import replace

    from appliance.web.app import create_app

    app = create_app(replace(config, max_upload_mb=1))
    admin = as_role(app, "admin", ids={})
    big = io.BytesIO(b"0" * (2 * 1024 * 1024))
    response = admin.post(
        "/admin/content", {"pack": (big, "big.zip")}, content_type="multipart/form-data"
    )
    assert response.status_code == 413 and b"too large" in response.data


def test_a_learners_history_shows_the_chosen_answer_as_text(app, ids, db):
    learner_id = ids["learners"]["Class 4A"][0]
    row = db.conn.execute(
        "SELECT a.response, i.choices FROM attempts a JOIN items i ON i.id = a.item_id"
        " WHERE a.learner_id = ? AND i.type = 'multiple_choice' ORDER BY a.id DESC LIMIT 1",
        (learner_id,),
    ).fetchone()
    choice_html = json.loads(row["choices"])[int(row["response"])]
    page = as_role(app, "teacher", ids).get(f"/teach/learners/{learner_id}").data.decode()
    assert f"<td>{choice_html}</td>" in page


def test_the_progress_grid_shows_only_the_classs_skills(app, ids, db):
    teacher = as_role(app, "teacher", ids)
    class_id = ids["classes"]["Class 4A"]  # fractions lessons only
    page = teacher.get(f"/teach/classes/{class_id}/progress").data.decode()
    names = dict(db.conn.execute("SELECT id, name FROM skills").fetchall())
    assert names["fractions.equivalent"] in page
    assert names["reading.main-idea"] not in page


def test_admin_gives_an_existing_class_another_teacher(app, ids, db):
    from appliance.demo.seed import TEACHERS
    from tests.conftest import Browser

    class_id, tomas = ids["classes"]["Class 4A"], ids["teachers"][TEACHERS[1][0]]
    as_role(app, "admin", ids).post(
        f"/admin/classes/{class_id}/teachers", {"teacher_id": str(tomas)}
    )
    browser = Browser(app)
    browser.signin_staff(TEACHERS[1][0], TEACHERS[1][2])
    assert browser.get(f"/teach/classes/{class_id}").status_code == 200
    assert audit.search(db, action="class.add_teacher", target_id=str(class_id))


def test_a_broken_pack_is_named_by_the_file_the_admin_chose(app, ids):
    admin = as_role(app, "admin", ids)
    junk = admin.post(
        "/admin/content",
        {"pack": (io.BytesIO(b"PK\x03\x04 cut short"), "maths-grade4.zip")},
        content_type="multipart/form-data",
    )
    assert junk.status_code == 400
    assert b"maths-grade4.zip" in junk.data and b"upload.zip" not in junk.data


def test_the_audit_log_names_people_and_spells_out_details(app, ids, db):
    admin = as_role(app, "admin", ids)
    page = admin.get("/admin/audit?action=class.enrol").data.decode()
    learner = db.conn.execute(
        "SELECT display_name FROM users WHERE id = ?", (ids["learners"]["Class 4A"][0],)
    ).fetchone()[0]
    assert "class: Class 4A" in page and f"learner: {learner}" in page
    everything = admin.get("/admin/audit").data.decode()
    assert "<code></code>" not in everything and "<code>" not in everything


def test_removing_an_assigned_lesson_asks_first(app, ids, db):
    teacher = as_role(app, "teacher", ids)
    class_id = ids["classes"]["Class 4A"]
    lesson = db.conn.execute(
        "SELECT lesson_id FROM assignments WHERE class_id = ? LIMIT 1", (class_id,)
    ).fetchone()[0]
    url = f"/teach/classes/{class_id}/assignments/{lesson}/delete"
    assert f'href="{url}"' in teacher.get(f"/teach/classes/{class_id}").data.decode()
    ask = teacher.get(url)
    assert ask.status_code == 200 and b"Keep it" in ask.data
    assigned = "SELECT count(*) FROM assignments WHERE class_id = ? AND lesson_id = ?"
    assert (
        db.conn.execute(assigned, (class_id, lesson)).fetchone()[0] == 1
    )  # asking changes nothing
    assert teacher.post(url).status_code == 302
    assert db.conn.execute(assigned, (class_id, lesson)).fetchone()[0] == 0


def test_the_pin_sheet_has_a_print_button_run_by_an_external_script(app, ids):
    teacher = as_role(app, "teacher", ids)
    class_id = ids["classes"]["Class 4A"]
    sheet = teacher.post(f"/teach/classes/{class_id}/roster", {"names": "Nia K."}).data.decode()
    assert 'class="print-button" hidden' in sheet
    script = re.search(r'<script src="([^"]+print\.js)"', sheet).group(1)
    assert b"window.print()" in teacher.get(script).data
