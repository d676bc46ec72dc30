"""Authorisation: every route x every role, plus ownership (whose class, whose learner).

Every route the app has must appear in POLICY, so a new route cannot ship unguarded.
"""

from __future__ import annotations

import re

import pytest

from appliance.demo.seed import TEACHERS
from appliance.store import audit, class_lessons, groups, transaction
from tests.conftest import Browser, as_role

ANYONE = {"anon", "learner", "teacher", "admin"}
SIGNED_IN = {"learner", "teacher", "admin"}
STAFF = {"teacher", "admin"}
LEARNER = {"learner"}
ADMIN = {"admin"}

POLICY = {
    "ops.healthz": ANYONE, "ops.readyz": ANYONE, "ops.metrics": ADMIN, "ops.asset": ANYONE,
    "ops.media": SIGNED_IN, "ops.favicon": ANYONE,
    "auth.index": ANYONE, "auth.signin": ANYONE, "auth.signin_class": ANYONE,
    "auth.signin_learner": ANYONE, "auth.signin_staff": ANYONE, "auth.signout": ANYONE,
    "auth.setup": ANYONE,  # the first admin claims a provisioned box (test_provisioning.py)
    "learner.home": LEARNER, "learner.library": SIGNED_IN, "learner.search": SIGNED_IN, "learner.lesson": SIGNED_IN,
    "learner.practise": LEARNER, "learner.practise_next": LEARNER, "learner.answer": LEARNER, "learner.progress": LEARNER,
    "teacher.home": STAFF, "teacher.create_class": STAFF, "teacher.class_page": STAFF,
    "teacher.add_learners": STAFF, "teacher.reset_pin": STAFF, "teacher.assign": STAFF,
    "teacher.unassign": STAFF, "teacher.set_tutor": STAFF, "teacher.class_progress": STAFF,
    "teacher.learner_history": STAFF, "teacher.tutor_conversations": STAFF,
    "teacher.unlock_learner": STAFF, "teacher.assignment_page": STAFF,
    "teacher.create_group": STAFF, "teacher.group_page": STAFF, "teacher.update_group": STAFF,
    "teacher.delete_group": STAFF,
    "quiz.new_quiz": STAFF, "quiz.create_quiz": STAFF, "quiz.quiz_page": STAFF,
    "quiz.start_quiz": STAFF, "quiz.close_quiz": STAFF, "quiz.delete_quiz": STAFF,
    "quiz.take": LEARNER, "quiz.answer": LEARNER, "quiz.finish": LEARNER,
    "reports.class_reports": STAFF, "reports.lessons_csv": STAFF, "reports.difficult_csv": STAFF,
    "reports.quiz_csv": STAFF, "roster.import_learners": ADMIN, "roster.import_staff": ADMIN,
    "roster.import_class_learners": STAFF, "class_lesson.new_lesson": STAFF,
    "class_lesson.create_lesson": STAFF, "class_lesson.lesson_page": STAFF,
    "class_lesson.delete_lesson": STAFF, "class_lesson.learn": LEARNER,
    "learner.ask_tutor": LEARNER, "api.ask_tutor": LEARNER,
    "admin.status": ADMIN, "admin.staff": ADMIN, "admin.create_staff": ADMIN,
    "admin.update_staff": ADMIN, "admin.all_classes": ADMIN, "admin.create_class": ADMIN, "admin.add_class_teacher": ADMIN,
    "admin.learners": ADMIN, "admin.export_learner": ADMIN, "admin.erase_learner": ADMIN,
    "admin.content_page": ADMIN, "admin.upload_pack": ADMIN, "admin.audit_page": ADMIN,
    "admin.consent": ADMIN, "admin.set_consent": ADMIN, "admin.unlock_staff": ADMIN,
    "admin.set_pin_digits": ADMIN, "admin.make_recovery_key": ADMIN,
    "api.openapi": ANYONE, "api.signin_classes": ANYONE, "api.signin_learners": ANYONE,
    "api.get_session": ANYONE, "api.create_session": ANYONE, "api.delete_session": ANYONE,
    "api.lessons": SIGNED_IN, "api.lesson": SIGNED_IN, "api.next_item": LEARNER,
    "api.practise_next": LEARNER,
    "api.hint": LEARNER, "api.submit_attempt": LEARNER, "api.my_progress": LEARNER,
    "api.learner_progress": SIGNED_IN, "api.my_classes": SIGNED_IN,
    "api.class_progress": STAFF, "api.search": SIGNED_IN,
    "api.class_groups": STAFF, "api.create_group": STAFF, "api.update_group": STAFF,
    "api.delete_group": STAFF, "api.class_assignments": STAFF, "api.class_assignment": STAFF,
    "api.set_assignment": STAFF, "api.delete_assignment": STAFF,
    "api.class_quizzes": STAFF, "api.create_quiz": STAFF, "api.class_quiz": STAFF,
    "api.start_quiz": STAFF, "api.close_quiz": STAFF, "api.delete_quiz": STAFF,
    "api.my_quizzes": LEARNER, "api.my_quiz": LEARNER, "api.answer_quiz": LEARNER,
    "api.finish_quiz": LEARNER, "api.lessons_report": STAFF, "api.difficult_report": STAFF,
    "api.import_learners": ADMIN, "api.import_class_learners": STAFF, "api.import_staff": ADMIN,
    "api.class_made_lessons": STAFF, "api.create_class_lesson": STAFF,
    "api.class_made_lesson": STAFF, "api.delete_class_lesson": STAFF,
    "api.my_class_lessons": LEARNER, "api.my_class_lesson": LEARNER,
    "resource.show": SIGNED_IN, "resource.done": LEARNER, "resource.file": SIGNED_IN,
    "resource.book_picture": SIGNED_IN, "resource.app_file": ANYONE,  # with the page's signature
    "api.resource": SIGNED_IN, "api.resource_done": LEARNER,
    "language.change": ANYONE, "api.set_language": ANYONE, "admin.set_language": ADMIN,
}  # fmt: skip
FILES = {"ops.media": "pizza-quarters.svg", "resource.file": "halves-and-quarters.mp4",
         "resource.book_picture": "4.svg", "resource.app_file": "index.html"}  # fmt: skip
APP = "demo-app-which-is-bigger"
SIGN_IN_OUT = {"auth.signout", "auth.signin_learner", "auth.signin_staff", "api.delete_session",
               "api.create_session"}  # fmt: skip
LAN = {"REMOTE_ADDR": "10.0.0.23"}  # a device on the school Wi-Fi, not the box itself


def _values(app, db, ids) -> dict:
    lesson_id = "fractions-01-parts-of-a-whole"
    item_id = db.conn.execute(
        "SELECT id FROM items WHERE lesson_id = ? ORDER BY position", (lesson_id,)
    ).fetchone()[0]
    with app.test_request_context():
        from appliance.web.ops import asset_digests
        from appliance.web.resources import _signature

        digest = asset_digests()["style.css"]
        sig = _signature("schoolbox-demo", "1.1.0", APP)
    return {
        "class_id": ids["classes"]["Class 4A"],  # taught by the teacher in the matrix
        "learner_id": ids["learners"]["Class 4A"][0],  # the learner in the matrix
        "lesson_id": lesson_id,
        "item_id": item_id,
        "number": 1,
        "user_id": ids["teachers"][TEACHERS[1][0]],
        "digest": digest,
        "sig": sig,
        "resource_id": "demo-video-halves-and-quarters",
        "pack_id": "schoolbox-demo",
        "version": "1.1.0",
        "class_lesson_id": db.conn.execute(
            "SELECT id FROM class_lessons WHERE class_id = ?", (ids["classes"]["Class 4A"],)
        ).fetchone()[0],
        "quiz_id": db.conn.execute(
            "SELECT id FROM quizzes WHERE class_id = ?", (ids["classes"]["Class 4A"],)
        ).fetchone()[0],
        "group_id": db.conn.execute(
            "SELECT id FROM class_groups WHERE class_id = ?", (ids["classes"]["Class 4A"],)
        ).fetchone()[0],
    }


def _spares(db, ids) -> dict[str, dict]:
    """A second group and lesson of the class, for the API's removals: the page's
    removals take the first ones."""
    class_id = ids["classes"]["Class 4A"]
    with transaction(db):
        group_id = groups.create(db, audit.SYSTEM, class_id, "Spare", [])
    lesson_id = db.conn.execute(
        "SELECT lesson_id FROM assignments WHERE class_id = ? AND lesson_id != ?",
        (class_id, "fractions-01-parts-of-a-whole"),
    ).fetchone()[0]
    with transaction(db):
        made = class_lessons.create(db, audit.SYSTEM, class_id, "Spare", [(lesson_id, None)])
    return {"resource.app_file": {"resource_id": APP},
            "resource.book_picture": {"resource_id": "demo-epub-lost-goat"},
            "api.delete_group": {"group_id": group_id},
            "api.delete_assignment": {"lesson_id": lesson_id},
            "api.delete_class_lesson": {"class_lesson_id": made}}  # fmt: skip


# Routes that remove what other routes are called on: after every other route.
REMOVING = {"api.delete_assignment", "api.delete_group", "teacher.unassign",
            "teacher.delete_group", "admin.erase_learner", "api.delete_class_lesson",
            "class_lesson.delete_lesson"}  # fmt: skip


def _requests(app, values, spares=None):
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule
        for name in rule.arguments:
            if name == "filename":
                value = FILES.get(rule.endpoint, "style.css")
            else:
                value = (spares or {}).get(rule.endpoint, values).get(name, values[name])
            path = re.sub(rf"<(?:\w+:)?{name}>", str(value), path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, path))
    return sorted(found, key=lambda request: request[0] in REMOVING)


def test_every_route_has_a_policy(app):
    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.endpoint != "static"}
    assert endpoints == set(POLICY), "add new routes to POLICY with the roles allowed"


@pytest.mark.parametrize("role", ["anon", "learner", "teacher", "admin"])
def test_role_by_endpoint_matrix(app, db, ids, role):
    values = _values(app, db, ids)
    browser = as_role(app, role, ids)
    browser.client.environ_base.update(LAN)
    checked = 0
    for endpoint, method, path in _requests(app, values, _spares(db, ids)):
        if method != "GET" and endpoint in SIGN_IN_OUT:
            continue  # these change who is signed in; covered in test_auth
        if method == "GET":
            response = browser.get(path)
        elif endpoint.startswith("api."):
            response = browser.api(method, path, json={})
        else:
            response = browser.post(path, {})
        allowed = role in POLICY[endpoint]
        status = response.status_code
        where = f"{role} {method} {path} -> {status}"
        assert status < 500, where
        if allowed:
            assert status not in (401, 403, 404), where
            if endpoint != "auth.index":  # the start page sends visitors to sign in
                assert not (status == 302 and "/signin" in response.location), where
        elif role == "anon":
            assert status == 401 or (status == 302 and "/signin" in response.location), where
        else:
            assert status == 403, where
        checked += 1
    assert checked >= len(POLICY) - 3


def test_a_teacher_cannot_see_another_teachers_class_or_learners(app, ids):
    tomas = Browser(app)
    assert tomas.signin_staff(TEACHERS[1][0], TEACHERS[1][2]).status_code == 302
    amina_class = ids["classes"]["Class 4A"]
    amina_learner = ids["learners"]["Class 4A"][0]
    assert tomas.get(f"/teach/classes/{amina_class}").status_code == 404
    assert tomas.get(f"/teach/classes/{amina_class}/progress").status_code == 404
    assert tomas.get(f"/teach/classes/{amina_class}/tutor").status_code == 404
    assert tomas.get(f"/teach/learners/{amina_learner}").status_code == 404
    assert tomas.get(f"/api/v1/classes/{amina_class}/progress").status_code == 404
    assert tomas.get(f"/api/v1/learners/{amina_learner}/progress").status_code == 404
    assert (
        tomas.post(f"/teach/classes/{amina_class}/learners/{amina_learner}/pin", {}).status_code
        == 404
    )
    names = {c["name"] for c in tomas.get("/api/v1/classes").get_json()["classes"]}
    assert names == {"Class 5"}
    own = ids["classes"]["Class 5"]
    assert tomas.get(f"/teach/classes/{own}").status_code == 200


def test_a_learner_sees_only_their_own_work(app, ids):
    me, classmate = ids["learners"]["Class 4A"][:2]
    learner = as_role(app, "learner", ids)
    assert learner.get(f"/api/v1/learners/{me}/progress").status_code == 200
    assert learner.get(f"/api/v1/learners/{classmate}/progress").status_code == 404
    mine = learner.get("/api/v1/progress").get_json()
    assert mine["learner"]["id"] == me
    assert {c["name"] for c in learner.get("/api/v1/classes").get_json()["classes"]} == {"Class 4A"}


def test_unknown_ids_are_404_for_everyone_including_admins(app, ids):
    admin = as_role(app, "admin", ids)
    for path in ("/teach/classes/99999", "/teach/learners/99999", "/api/v1/lessons/nope",
                 "/learn/lessons/nope", "/api/v1/classes/99999/progress"):  # fmt: skip
        assert admin.get(path).status_code == 404, path
    assert admin.post("/admin/learners/99999/erase", {"confirm": "erase"}).status_code == 404


GARBAGE = {
    "name": "x" * 500, "names": "\x00\n" * 3, "pin": "12ab", "lesson_id": "../../etc",
    "role": "root", "password": "", "active": "maybe", "feature": "everything", "granted": "2",
    "confirm": "erase", "teacher_id": "-1", "username": "Robert'); DROP TABLE users;--",
    "display_name": "", "item_id": "%00", "response": "\u202e\u0000ﷺ", "hints_used": "many",
    "client_key": "k" * 300, "enabled": "yes",
}  # fmt: skip


@pytest.mark.parametrize("role", ["learner", "teacher", "admin"])
def test_garbage_in_every_form_field_never_causes_a_server_error(app, db, ids, role):
    values = _values(app, db, ids)
    values["learner_id"] = ids["learners"]["Class 4A"][1]  # keep the signed-in learner
    browser = as_role(app, role, ids)
    for endpoint, method, path in _requests(app, values):
        if method == "GET" or endpoint in SIGN_IN_OUT:
            continue
        if endpoint.startswith("api."):
            response = browser.api(method, path, json=GARBAGE)
        else:
            response = browser.post(path, GARBAGE)
        assert response.status_code < 500, f"{role} {method} {path} -> {response.status_code}"
    assert (
        db.conn.execute("SELECT count(*) FROM users WHERE username LIKE 'robert%'").fetchone()[0]
        == 0
    )
