"""Lessons a teacher composes from any pack's readings and questions, in their own order:
made through the form and the API, seen by the learners they are set for, done when every
reading is opened and every question answered right once; the packs never change."""

from __future__ import annotations

import json

from werkzeug.datastructures import MultiDict

from appliance.store import class_lessons
from appliance.web.class_lessons import chosen_parts
from tests.conftest import Browser, as_role


def _right(db, item_id: str) -> str:
    key = json.loads(db.conn.execute("SELECT answer FROM items WHERE id = ?",
                                     (item_id,)).fetchone()[0])  # fmt: skip
    return str(key.get("index", key.get("value", (key.get("accepted") or [""])[0])))


def test_the_teachers_numbers_set_the_order_and_unnumbered_parts_follow():
    form = MultiDict([
        ("part", "reading-01"), ("part", "fractions-02/item-a"), ("part", "fractions-03"),
        ("part", "reading-02//book-1"),
        ("order-fractions-03", "1"), ("order-fractions-02/item-a", "2"),
    ])  # fmt: skip
    assert chosen_parts(form) == [
        ("fractions-03", None, None), ("fractions-02", "item-a", None),
        ("reading-01", None, None), ("reading-02", None, "book-1"),
    ]  # fmt: skip


def test_a_lesson_from_two_packs_subjects_reaches_a_group_and_counts_as_done(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    learners = ids["learners"]["Class 4A"]
    teacher = as_role(app, "teacher", ids)
    group = teacher.api("POST", f"/api/v1/classes/{class_id}/groups",
                        {"name": "Table 2", "learners": learners[:2]}).get_json()["group"]  # fmt: skip
    item = db.conn.execute(
        "SELECT id FROM items WHERE lesson_id = 'fractions-05-adding-same-denominator'"
        " ORDER BY position"
    ).fetchone()[0]
    body_before = db.conn.execute(
        "SELECT body_html FROM lessons WHERE id = 'reading-01-finding-facts'").fetchone()[0]  # fmt: skip
    assert teacher.get(f"/teach/classes/{class_id}/lessons/new").status_code == 200
    made = teacher.post(
        f"/teach/classes/{class_id}/lessons",
        {"title": "Facts and sums", "part": ["reading-01-finding-facts",
                                             f"fractions-05-adding-same-denominator/{item}"],
         "order-reading-01-finding-facts": "2", f"order-fractions-05-adding-same-denominator/{item}": "1",
         "group": str(group["id"]), "due_on": "2030-01-04"},
    )  # fmt: skip
    assert made.status_code == 302
    lesson_id = int(made.location.rstrip("/").split("/")[-1])
    lesson = class_lessons.get(db, lesson_id)
    assert [(p["lesson_id"], p["item_id"]) for p in lesson["parts"]] == [
        ("fractions-05-adding-same-denominator", item), ("reading-01-finding-facts", None),
    ]  # fmt: skip

    member, outsider = Browser(app), Browser(app)
    member.signin_learner(learners[0])
    outsider.signin_learner(learners[3])
    assert "Facts and sums" in member.get("/learn/").get_data(as_text=True)
    assert "Facts and sums" not in outsider.get("/learn/").get_data(as_text=True)
    assert outsider.get(f"/learn/class-lessons/{lesson_id}").status_code == 404
    page = member.get(f"/learn/class-lessons/{lesson_id}").get_data(as_text=True)
    assert "Answer it" in page and "1 of 2 parts done" in page  # the reading, now opened
    progress = class_lessons.progress_of(db, lesson_id, learners[0], lesson["due_on"])
    assert progress["parts_done"] == 1 and progress["status"] == "in_progress"  # the reading
    member.api("POST", "/api/v1/attempts", {"item_id": item, "response": _right(db, item)})
    rows = {r["learner_id"]: r for r in class_lessons.progress(db, lesson)}
    assert rows[learners[0]]["status"] == "done" and rows[learners[1]]["status"] == "not_started"
    report = teacher.get(f"/teach/classes/{class_id}/lessons/{lesson_id}").get_data(as_text=True)
    assert "2 of 2" in report and "Not started" in report
    assert db.conn.execute("SELECT body_html FROM lessons WHERE id = 'reading-01-finding-facts'"
                           ).fetchone()[0] == body_before  # the pack is untouched  # fmt: skip


def test_the_api_composes_lists_and_removes_a_lesson_and_refuses_a_bad_part(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    teacher = as_role(app, "teacher", ids)
    path = f"/api/v1/classes/{class_id}/lessons"
    bad = teacher.api("POST", path, {"title": "x", "parts": [
        {"lesson_id": "reading-01-finding-facts", "item_id": "not-an-item"}]})  # fmt: skip
    assert bad.status_code == 400 and "no longer available" in bad.get_json()["error"]["message"]
    other_lessons_item = db.conn.execute(
        "SELECT id FROM items WHERE lesson_id = 'reading-02-main-idea'").fetchone()[0]  # fmt: skip
    mixed = teacher.api("POST", path, {"title": "x", "parts": [
        {"lesson_id": "reading-01-finding-facts", "item_id": other_lessons_item}]})  # fmt: skip
    assert mixed.status_code == 400
    made = teacher.api("POST", path, {"title": "Whole class", "parts": [
        {"lesson_id": "reading-02-main-idea", "item_id": None}]})  # fmt: skip
    assert made.status_code == 201
    lesson_id = made.get_json()["lesson"]["id"]
    learner = as_role(app, "learner", ids)
    mine = learner.get(f"/api/v1/class-lessons/{lesson_id}").get_json()
    assert mine["parts"][0]["kind"] == "reading" and mine["lesson"]["status"] == "done"
    assert lesson_id in {
        m["id"] for m in learner.get("/api/v1/class-lessons").get_json()["lessons"]
    }
    assert teacher.api("DELETE", f"{path}/{lesson_id}").status_code == 200
    assert learner.get(f"/api/v1/class-lessons/{lesson_id}").status_code == 404
    tomas = Browser(app)
    tomas.signin_staff("tomas", "schoolbox-teacher")
    assert tomas.get(path).status_code == 404
