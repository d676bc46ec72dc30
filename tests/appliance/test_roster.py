"""Importing learners and staff from CSV: a preview naming every line's problem, then all
added or none, with the PINs and passwords shown once; spreadsheets' other separators and
a byte-order mark read right."""

from __future__ import annotations

import io

import pytest

from appliance.store import roster, users
from tests.conftest import Browser, as_role, form_value


def _upload(browser, url, text: str, **fields):
    data = {"file": (io.BytesIO(text.encode("utf-8")), "roster.csv"), **fields}
    data.setdefault("csrf_token", browser.csrf())
    return browser.client.post(url, data=data, content_type="multipart/form-data")


def _count(db, sql, *args) -> int:
    return db.conn.execute(sql, args).fetchone()[0]


def test_an_admin_previews_then_adds_learners_into_classes_old_and_new(app, db, ids):
    admin = as_role(app, "admin", ids)
    text = "\ufeffName;Class;PIN\nAda Obi;Class 4A;4821\nBen Ali;Class 6;\n\nCara Mwangi;class 6;\n"
    preview = _upload(admin, "/admin/learners/import", text)
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "All 3 lines can be added" in page
    assert "New classes will be made: Class 6" in page
    assert _count(db, "SELECT count(*) FROM users WHERE display_name = 'Ada Obi'") == 0
    carried = form_value(preview.data, "confirm")  # the preview carries the file onwards
    assert carried == "yes"
    csv_text = page.split('name="csv" hidden>')[1].split("</textarea>")[0]
    added = admin.post(
        "/admin/learners/import", {"confirm": "yes", "csv": csv_text.replace("&#39;", "'")}
    )
    sheet = added.get_data(as_text=True)
    assert "4821" in sheet and "Ben Ali" in sheet and "not shown again" in sheet
    class6 = _count(db, "SELECT id FROM classes WHERE name = 'Class 6'")
    assert _count(db, "SELECT count(*) FROM enrolments WHERE class_id = ?", class6) == 2
    ada = db.conn.execute("SELECT id FROM users WHERE display_name = 'Ada Obi'").fetchone()[0]
    learner = Browser(app)
    assert learner.signin_learner(ada, "4821").status_code == 302


def test_every_bad_line_is_named_and_nothing_is_added(app, db, ids):
    admin = as_role(app, "admin", ids)
    existing = db.conn.execute(
        "SELECT u.display_name FROM enrolments e JOIN users u ON u.id = e.learner_id"
        " WHERE e.class_id = ?", (ids["classes"]["Class 4A"],)).fetchone()[0]  # fmt: skip
    text = (
        "name,class,pin\n"
        f"{existing},Class 4A,\n"  # line 2: already in the class
        ",Class 4A,\n"  # line 3: no name
        "Dan K.,Class 4A,12ab\n"  # line 4: not a PIN
        "Eve L.,,\n"  # line 5: no class
        "Fay M.,Class 4B,\n"  # line 6: fine
        "Fay M.,Class 4B,\n"  # line 7: twice
    )
    before = _count(db, "SELECT count(*) FROM users")
    page = _upload(admin, "/admin/learners/import", text).get_data(as_text=True)
    assert "5 of 6 lines have problems" in page
    for said in ("already has a learner called", "A name is 1 to 80", "A PIN here is 4 digits",
                 "The class is missing", "on an earlier line"):  # fmt: skip
        assert said in page, said
    assert 'name="confirm"' not in page  # no way to add a file with problems
    forced = admin.post("/admin/learners/import", {"confirm": "yes", "csv": text})
    assert forced.status_code == 200 and _count(db, "SELECT count(*) FROM users") == before


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"", "empty"),
        (b"name,class\n", "no lines under them"),
        (b"klass,pin\nA,1\n", "missing: name"),
        ("name,class\nZo\xe9,Class 4A\n".encode("latin-1"), "not UTF-8"),
        (b"name,class\n" + b"x,y\n" * 70_000, "larger than"),
        (b"name,class\n" + b"x,y\n" * 1001, "At most 1000 lines"),
    ],
)
def test_a_file_that_cannot_be_read_says_why(db, data, said):
    with pytest.raises(roster.RosterError, match=said):
        roster.read_learners(db, data, pin_digits=4, allowed_classes={}, may_make_classes=True)


def test_a_teacher_imports_into_their_own_class_only(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    teacher = as_role(app, "teacher", ids)
    fine = _upload(teacher, f"/teach/classes/{class_id}/import", "name\nGus H.\nHana I.\n")
    assert "All 2 lines can be added" in fine.get_data(as_text=True)
    other = _upload(teacher, f"/teach/classes/{class_id}/import", "name,class\nIke J.,Class 5\n")
    assert "not one of your classes" in other.get_data(as_text=True)
    tomas = Browser(app)
    tomas.signin_staff("tomas", "schoolbox-teacher")
    assert _upload(tomas, f"/teach/classes/{class_id}/import", "name\nX\n").status_code == 404
    body = "name,pin\nJo K.,5555\n"
    api = teacher.client.post(
        f"/api/v1/classes/{class_id}/roster?dry_run=0", data=body,
        headers={"X-CSRFToken": teacher.csrf(), "Content-Type": "text/csv"},
    )  # fmt: skip
    assert api.status_code == 201 and api.get_json()["added"][0]["pin"] == "5555"
    assert _count(db, "SELECT count(*) FROM users WHERE display_name = 'Jo K.'") == 1


def test_an_admin_imports_staff_who_can_sign_in_with_the_password_shown_once(app, db, ids):
    admin = as_role(app, "admin", ids)
    text = (
        "name,username,role,class\n"
        "Grace Njeri,gnjeri,teacher,Class 4A\n"
        "Grace Njeri,gnjeri,teacher,Class 7\n"
        "Sam Otieno,sotieno,admin,\n"
    )
    check = admin.client.post(
        "/api/v1/roster/staff", data=text,
        headers={"X-CSRFToken": admin.csrf(), "Content-Type": "text/csv"},
    ).get_json()  # fmt: skip
    assert check["ok"] is True and check["new_classes"] == ["Class 7"]
    assert _count(db, "SELECT count(*) FROM users WHERE username = 'gnjeri'") == 0  # dry run
    page = _upload(admin, "/admin/users/import", text).get_data(as_text=True)
    csv_text = page.split('name="csv" hidden>')[1].split("</textarea>")[0]
    sheet = admin.post("/admin/users/import", {"confirm": "yes", "csv": csv_text}).get_data(
        as_text=True
    )
    password = sheet.split("gnjeri")[1].split("<code>")[1].split("</code>")[0]
    grace = Browser(app)
    assert grace.signin_staff("gnjeri", password).status_code == 302
    taught = {c["name"] for c in grace.get("/api/v1/classes").get_json()["classes"]}
    assert taught == {"Class 4A", "Class 7"}
    assert users.get(db, db.conn.execute(
        "SELECT id FROM users WHERE username = 'sotieno'").fetchone()[0])["role"] == "admin"  # fmt: skip
    again = _upload(admin, "/admin/users/import", text).get_data(as_text=True)
    assert "is taken" in again


def test_a_made_password_is_strong_enough_for_the_boxs_own_rule():
    for _ in range(20):
        password = roster.new_password()
        assert users.validate_password(password, "gnjeri", "Grace Njeri") == password
