"""Young learners sign in with four pictures instead of a number PIN."""

from __future__ import annotations

import re

from appliance.store import open_db, users
from appliance.store.migrations import MIGRATIONS, migrate
from tests.conftest import Browser, as_role

NAME_TO_DIGIT = {str(name): digit for digit, _, name in users.PICTURES}


def _picture_class(app, ids) -> tuple[Browser, int, dict[str, str]]:
    """A class of two picture learners; the teacher and each learner's code as digits."""
    teacher = as_role(app, "teacher", ids)
    created = teacher.post("/teach/classes", {"name": "Reception"})
    class_id = int(created.location.rsplit("/", 1)[1])
    sheet = teacher.post(
        f"/teach/classes/{class_id}/roster",
        {"names": "Ama K.\nJoão P.", "sign_in_with": "pictures"},
    ).data.decode()
    codes = {}
    for name, cell in re.findall(
        r'<th scope="row">([^<]+)</th>\s*<td class="pictures">(.*?)</td>', sheet, re.S
    ):
        labels = re.findall(r"</svg> (\w+)</span>", cell)
        codes[name] = "".join(NAME_TO_DIGIT[label] for label in labels)
    return teacher, class_id, codes


def test_a_teacher_gives_a_class_picture_codes_shown_once_as_pictures(app, ids, db):
    _, _, codes = _picture_class(app, ids)
    assert set(codes) == {"Ama K.", "João P."}
    assert all(re.fullmatch(r"[1-9]{4}", code) for code in codes.values())
    row = db.conn.execute(
        "SELECT sign_in_with, pin_hash FROM users WHERE display_name = 'Ama K.'"
    ).fetchone()
    assert row["sign_in_with"] == "pictures" and codes["Ama K."] not in row["pin_hash"]


def test_a_learner_signs_in_by_tapping_four_pictures(app, ids, db):
    _, class_id, codes = _picture_class(app, ids)
    learner_id = db.conn.execute("SELECT id FROM users WHERE display_name = 'Ama K.'").fetchone()[0]
    browser = Browser(app)
    form = browser.get(f"/signin/learner/{learner_id}").data.decode()
    assert 'name="picture4"' in form and 'name="pin"' not in form
    wrong = "".join("1" if d != "1" else "2" for d in codes["Ama K."])
    refused = browser.post(
        f"/signin/learner/{learner_id}", {f"picture{i + 1}": d for i, d in enumerate(wrong)}
    )
    assert refused.status_code == 401 and b'name="picture1"' in refused.data
    fields = {f"picture{i + 1}": d for i, d in enumerate(codes["Ama K."])}
    assert browser.post(f"/signin/learner/{learner_id}", fields).location.endswith("/learn/")
    api = Browser(app).api(
        "POST", "/api/v1/session", {"learner_id": learner_id, "pin": codes["Ama K."]}
    )
    assert api.get_json()["user"]["id"] == learner_id


def test_a_teacher_can_switch_one_learner_between_pin_and_pictures(app, ids, db):
    teacher = as_role(app, "teacher", ids)
    class_id, learner_id = ids["classes"]["Class 4A"], ids["learners"]["Class 4A"][0]
    sheet = teacher.post(
        f"/teach/classes/{class_id}/learners/{learner_id}/pin", {"sign_in_with": "pictures"}
    )
    assert b'class="pictures"' in sheet.data
    assert (
        db.conn.execute("SELECT sign_in_with FROM users WHERE id = ?", (learner_id,)).fetchone()[0]
        == "pictures"
    )
    teacher.post(
        f"/teach/classes/{class_id}/learners/{learner_id}/pin",
        {"sign_in_with": "pin", "pin": "8642"},
    )
    assert Browser(app).signin_learner(learner_id, "8642").status_code == 302


def test_a_version_1_database_upgrades_to_picture_codes_in_place(tmp_path, monkeypatch):
    from appliance.store import migrations, transaction

    db = open_db(tmp_path / "old.db")
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:1])
    monkeypatch.setattr(migrations, "CURRENT_VERSION", 1)
    migrations.migrate(db)
    with transaction(db):
        db.conn.execute(
            "INSERT INTO users (public_id, role, display_name, pin_hash, created_at)"
            " VALUES ('p1', 'learner', 'Old', 'x', 'now')"
        )
    monkeypatch.undo()
    assert migrate(db) == len(MIGRATIONS) - 1
    assert db.conn.execute("SELECT sign_in_with FROM users").fetchone()[0] == "pin"
