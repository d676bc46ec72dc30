"""Groups in a class, lessons set for a group or chosen learners, and due days: in the store,
through the teacher's pages, the learner's home page and the JSON API."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from appliance.store import assignments, audit, classes, groups, resources, transaction, users
from appliance.store.ids import uuid7
from appliance.web.days import due_text
from tests.conftest import Browser, as_role

TODAY = date(2027, 3, 15)  # a Monday


def _class(db, ids, name="Class 4A"):
    return ids["classes"][name], ids["learners"][name]


def _unset_lesson(db, class_id) -> str:
    """A lesson of the demo pack the class was not given."""
    return db.conn.execute(
        "SELECT id FROM lessons WHERE id NOT IN (SELECT lesson_id FROM assignments"
        " WHERE class_id = ?) ORDER BY id",
        (class_id,),
    ).fetchone()[0]


def _sees(db, learner_id, lesson_id) -> bool:
    return lesson_id in {a["id"] for a in assignments.of_learner(db, learner_id)}


def test_a_lesson_set_for_a_group_reaches_its_members_only(db, ids):
    class_id, learners = _class(db, ids)
    lesson = _unset_lesson(db, class_id)
    with transaction(db):
        group = groups.create(db, audit.SYSTEM, class_id, "Table 3", learners[:2])
        assignments.set_lesson(db, audit.SYSTEM, class_id, lesson, groups=[group])
    assert _sees(db, learners[0], lesson) and _sees(db, learners[1], lesson)
    assert not _sees(db, learners[2], lesson)
    # The same lesson for the whole class: no recipients named.
    with transaction(db):
        assert assignments.set_lesson(db, audit.SYSTEM, class_id, lesson) is False
    assert all(_sees(db, learner, lesson) for learner in learners)


def test_a_lesson_set_for_chosen_learners_and_a_group_together(db, ids):
    class_id, learners = _class(db, ids)
    lesson = _unset_lesson(db, class_id)
    with transaction(db):
        group = groups.create(db, audit.SYSTEM, class_id, "Table 1", [learners[0]])
        assignments.set_lesson(
            db, audit.SYSTEM, class_id, lesson, groups=[group], learners=[learners[5]]
        )
    assert [_sees(db, learner, lesson) for learner in learners[:6]] == [
        True, False, False, False, False, True,
    ]  # fmt: skip
    listed = next(a for a in assignments.of_class(db, class_id) if a["lesson_id"] == lesson)
    assert [g["name"] for g in listed["groups"]] == ["Table 1"]
    assert [learner["id"] for learner in listed["learners"]] == [learners[5]]
    assert listed["counts"]["learners"] == 2


def test_membership_follows_the_class_and_a_group_in_use_cannot_be_removed(db, ids):
    class_id, learners = _class(db, ids)
    other_class, others = _class(db, ids, "Class 5")
    lesson = _unset_lesson(db, class_id)
    with transaction(db):
        group_id = groups.create(db, audit.SYSTEM, class_id, "Readers", learners[:3])
    with pytest.raises(groups.GroupError, match="Only learners of this class"):
        groups.create(db, audit.SYSTEM, class_id, "Mixed", [others[0]])
    with pytest.raises(groups.GroupError, match="already has a group called"):
        groups.create(db, audit.SYSTEM, class_id, "readers", [])
    with pytest.raises(assignments.AssignmentError):
        assignments.set_lesson(db, audit.SYSTEM, other_class, lesson, groups=[group_id])
    with transaction(db):
        classes.unenrol(db, audit.SYSTEM, class_id, learners[0])
    assert groups.get(db, class_id, group_id)["members"] == sorted(learners[1:3])
    with transaction(db):
        assignments.set_lesson(db, audit.SYSTEM, class_id, lesson, groups=[group_id])
    group = groups.get(db, class_id, group_id)
    with pytest.raises(groups.GroupError, match="Lessons or quizzes are set for this group"):
        groups.delete(db, audit.SYSTEM, group)
    assert groups.get(db, class_id, group_id) is not None
    assert not _sees(db, learners[3], lesson)  # still the group's, not the whole class's


def test_erasing_the_only_learner_a_lesson_was_set_for_removes_that_lesson(db, ids, config):
    class_id, learners = _class(db, ids)
    lesson = _unset_lesson(db, class_id)
    with transaction(db):
        assignments.set_lesson(db, audit.SYSTEM, class_id, lesson, learners=[learners[0]])
        users.erase_learner(db, audit.SYSTEM, learners[0])
    # Not quietly turned into a lesson for the whole class.
    assert not any(_sees(db, learner, lesson) for learner in learners[1:])
    assert lesson not in {a["lesson_id"] for a in assignments.of_class(db, class_id)}


def test_status_not_started_in_progress_done_and_late(db, ids):
    class_id, learners = _class(db, ids)
    lesson = _unset_lesson(db, class_id)
    items = [
        r[0]
        for r in db.conn.execute(
            "SELECT id FROM items WHERE lesson_id = ? AND retired = 0", (lesson,)
        )
    ]
    assert items, "the demo lesson has practice items"
    due = TODAY - timedelta(days=1)
    with transaction(db):
        assignments.set_lesson(
            db, audit.SYSTEM, class_id, lesson, due_on=due, learners=learners[:3]
        )
    _answer(db, learners[1], lesson, items[:1], correct=False)
    _answer(db, learners[2], lesson, items, correct=True)
    for resource in resources.of_lesson(db, lesson):  # done needs its resources done too
        resources.finish(db, learners[2], resource["id"])
    found = {r["learner_id"]: r for r in assignments.progress(db, class_id, lesson, TODAY)}
    assert [found[learner]["status"] for learner in learners[:3]] == [
        "not_started", "in_progress", "done",
    ]  # fmt: skip
    assert [found[learner]["late"] for learner in learners[:3]] == [True, True, False]
    counts = next(a for a in assignments.of_class(db, class_id, TODAY) if a["lesson_id"] == lesson)[
        "counts"
    ]
    assert counts == {"not_started": 1, "in_progress": 1, "done": 1, "late": 2, "learners": 3}
    on_time = assignments.progress(db, class_id, lesson, due)
    assert not any(r["late"] for r in on_time)  # the due day itself is not late


def _answer(db, learner_id, lesson, items, correct):
    with transaction(db):
        for item in items:
            db.conn.execute(
                "INSERT INTO attempts (id, learner_id, item_id, lesson_id, response, correct,"
                " hints_used, created_at) VALUES (?, ?, ?, ?, 'x', ?, 0, '2027-03-14T10:00:00Z')",
                (uuid7(), learner_id, item, lesson, int(correct)),
            )


@pytest.mark.parametrize(
    ("due", "said"),
    [
        (TODAY, "due today"),
        (TODAY + timedelta(days=1), "due tomorrow"),
        (TODAY + timedelta(days=4), "due Friday"),
        (TODAY + timedelta(days=20), "due on 4 April"),
        (TODAY - timedelta(days=1), "was due yesterday"),
        (TODAY - timedelta(days=3), "was due Friday"),
        (TODAY - timedelta(days=30), "was due on 13 February"),
    ],
)
def test_a_due_day_reads_as_a_person_says_it(app, due, said):
    with app.test_request_context("/"):
        assert due_text(due.isoformat(), TODAY) == said
    with app.test_request_context("/"):
        assert due_text(None, TODAY) == ""


def test_a_teacher_makes_a_group_and_sets_it_a_lesson_due_in_three_days(app, db, ids):
    class_id, learners = _class(db, ids)
    lesson = _unset_lesson(db, class_id)
    teacher = as_role(app, "teacher", ids)
    made = teacher.post(
        f"/teach/classes/{class_id}/groups",
        {"name": "Fast readers", "learner": [str(learners[0]), str(learners[1])]},
    )
    assert made.status_code == 302
    group_id = db.conn.execute(
        "SELECT id FROM class_groups WHERE class_id = ? AND name = 'Fast readers'", (class_id,)
    ).fetchone()[0]
    due = date.today() + timedelta(days=3)
    set_it = teacher.post(
        f"/teach/classes/{class_id}/assignments",
        {"lesson_id": lesson, "due_on": due.isoformat(), "group": str(group_id)},
    )
    assert set_it.status_code == 302
    page = teacher.get(f"/teach/classes/{class_id}").get_data(as_text=True)
    assert "Fast readers" in page and due.isoformat() in page
    detail = teacher.get(f"/teach/classes/{class_id}/assignments/{lesson}").get_data(as_text=True)
    assert detail.count("Not started") >= 2 and "of 2 learners" in detail

    member, outsider = Browser(app), Browser(app)
    member.signin_learner(learners[0])
    outsider.signin_learner(learners[4])
    home = member.get("/learn/").get_data(as_text=True)
    title = db.conn.execute("SELECT title FROM lessons WHERE id = ?", (lesson,)).fetchone()[0]
    assert title in home
    with app.test_request_context("/"):
        assert due_text(due.isoformat()) in home  # "due Thursday", in the learner's words
    assert title not in outsider.get("/learn/").get_data(as_text=True)


def test_a_bad_due_day_or_a_learner_of_another_class_changes_nothing(app, db, ids):
    class_id, _ = _class(db, ids)
    _, others = _class(db, ids, "Class 5")
    lesson = _unset_lesson(db, class_id)
    teacher = as_role(app, "teacher", ids)
    before = db.conn.execute("SELECT count(*) FROM assignments").fetchone()[0]
    bad_day = teacher.post(
        f"/teach/classes/{class_id}/assignments", {"lesson_id": lesson, "due_on": "next week"}
    )
    assert bad_day.status_code == 302
    assert "as a date" in teacher.get(f"/teach/classes/{class_id}").get_data(as_text=True)
    stranger = teacher.post(
        f"/teach/classes/{class_id}/assignments", {"lesson_id": lesson, "learner": str(others[0])}
    )
    assert stranger.status_code == 302
    assert db.conn.execute("SELECT count(*) FROM assignments").fetchone()[0] == before


def test_the_api_sets_lessons_for_groups_and_reports_who_is_late(app, db, ids):
    class_id, learners = _class(db, ids)
    lesson = _unset_lesson(db, class_id)
    teacher = as_role(app, "teacher", ids)
    made = teacher.api(
        "POST", f"/api/v1/classes/{class_id}/groups", {"name": "Pairs", "learners": learners[:2]}
    )
    assert made.status_code == 201
    group = made.get_json()["group"]
    assert group["learners"] == sorted(learners[:2])
    path = f"/api/v1/classes/{class_id}/assignments/{lesson}"
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    first = teacher.api("PUT", path, {"due_on": yesterday, "groups": [group["id"]]})
    assert first.status_code == 201
    assert first.get_json()["assignment"]["counts"]["late"] == 2
    again = teacher.api("PUT", path, {"due_on": None, "groups": [group["id"]]})
    assert again.status_code == 200 and again.get_json()["assignment"]["due_on"] is None
    bad = teacher.api("PUT", path, {"due_on": "Friday"})
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.get_json()["error"]["message"]
    detail = teacher.get(path).get_json()
    assert {r["learner_id"] for r in detail["learners"]} == set(learners[:2])
    in_use = teacher.api("DELETE", f"/api/v1/classes/{class_id}/groups/{group['id']}")
    assert in_use.status_code == 409
    assert teacher.api("DELETE", path).status_code == 200
    assert (
        teacher.api("DELETE", f"/api/v1/classes/{class_id}/groups/{group['id']}").status_code == 200
    )
    # Another teacher's class: not found, not forbidden.
    tomas = Browser(app)
    tomas.signin_staff("tomas", "schoolbox-teacher")
    assert tomas.get(f"/api/v1/classes/{class_id}/groups").status_code == 404
    assert tomas.api("PUT", path, {}).status_code == 404


def test_a_teacher_renames_a_group_and_changes_who_is_in_it(app, db, ids):
    class_id, learners = _class(db, ids)
    group_id = db.conn.execute(
        "SELECT id FROM class_groups WHERE class_id = ?", (class_id,)
    ).fetchone()[0]
    teacher = as_role(app, "teacher", ids)
    page = teacher.get(f"/teach/classes/{class_id}/groups/{group_id}").get_data(as_text=True)
    assert "Reading group" in page
    saved = teacher.post(
        f"/teach/classes/{class_id}/groups/{group_id}",
        {"name": "Red table", "learner": [str(learners[4]), str(learners[5])]},
    )
    assert saved.status_code == 302
    assert groups.get(db, class_id, group_id) | {"created_at": None} == {
        "id": group_id, "class_id": class_id, "name": "Red table", "created_at": None,
        "members": sorted(learners[4:6]),
    }  # fmt: skip
    removed = teacher.post(f"/teach/classes/{class_id}/groups/{group_id}/delete")
    assert removed.status_code == 302 and groups.get(db, class_id, group_id) is None
    assert set(classes.roster(db, class_id)[i]["id"] for i in range(6)) == set(learners)
