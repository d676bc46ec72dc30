"""A teacher's reports: lesson completion with time spent, difficult questions, quiz
results, and their CSV downloads (no other class's data, no spreadsheet formulas)."""

from __future__ import annotations

import csv
import io

from appliance.store import audit, classes, grouped, reports, transaction, users
from appliance.store.ids import uuid7
from tests.conftest import Browser, as_role

LESSON = "fractions-03-equivalent-fractions"  # set for Class 4A in the demo


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")  # so a spreadsheet reads "Tomás" right
    return list(csv.reader(io.StringIO(text[1:])))


def _new_learner(db, config, class_id: int, name: str) -> int:
    with transaction(db):
        learner_id = users.create_learner(db, audit.SYSTEM, name, "1234", b"k" * 32)
        classes.enrol(db, audit.SYSTEM, class_id, learner_id)
    return learner_id


def _event(db, table: str, learner_id: int, lesson: str, at: str, item: str | None = None):
    with transaction(db):
        if table == "views":
            db.conn.execute(
                "INSERT INTO lesson_views (learner_id, lesson_id, at) VALUES (?, ?, ?)",
                (learner_id, lesson, at),
            )
        else:
            db.conn.execute(
                "INSERT INTO attempts (id, learner_id, item_id, lesson_id, response, correct,"
                " hints_used, created_at) VALUES (?, ?, ?, ?, 'x', 0, 0, ?)",
                (uuid7(), learner_id, item, lesson, at),
            )


def test_time_spent_counts_each_step_until_the_next_and_caps_a_pause(db, ids, config):
    class_id = ids["classes"]["Class 4A"]
    learner = _new_learner(db, config, class_id, "Kemi T.")
    item = db.conn.execute("SELECT id FROM items WHERE lesson_id = ?", (LESSON,)).fetchone()[0]
    _event(db, "views", learner, LESSON, "2027-03-15T09:00:00.000Z")
    _event(db, "answers", learner, LESSON, "2027-03-15T09:01:00.000Z", item)  # +60 s
    _event(db, "answers", learner, LESSON, "2027-03-15T09:03:00.000Z", item)  # +120 s
    _event(db, "answers", learner, LESSON, "2027-03-15T11:00:00.000Z", item)  # away: 300 s
    other = "fractions-01-parts-of-a-whole"
    _event(db, "views", learner, other, "2027-03-15T11:02:00.000Z")  # +120 s, then last: 60
    spent = reports.time_spent(db, [learner])
    assert spent == {(learner, LESSON): 60 + 120 + 300 + 120, (learner, other): 60}


def test_opening_a_lesson_starts_it_and_the_report_shows_status_and_minutes(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    learner_id = ids["learners"]["Class 4A"][0]
    learner = Browser(app)
    learner.signin_learner(learner_id)
    before = reports.lesson_completion(db, class_id)["cells"][(learner_id, LESSON)]
    learner.get(f"/learn/lessons/{LESSON}")
    grouped(db, lambda writer: None)  # the page did not wait for its note: commit it now
    learner.get(f"/learn/lessons/{LESSON}")  # a reload is the same reading
    grouped(db, lambda writer: None)
    views = db.conn.execute(
        "SELECT count(*) FROM lesson_views WHERE learner_id = ? AND lesson_id = ?",
        (learner_id, LESSON),
    ).fetchone()[0]
    assert views == 1
    after = reports.lesson_completion(db, class_id)["cells"][(learner_id, LESSON)]
    if before["status"] == "not_started":
        assert after["status"] == "in_progress"
    assert after["seconds"] >= before["seconds"]
    teacher = as_role(app, "teacher", ids)
    page = teacher.get(f"/teach/classes/{class_id}/reports").get_data(as_text=True)
    assert "Difficult questions" in page and "min" in page


def test_the_lessons_csv_has_one_row_per_learner_of_the_class_only(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    teacher = as_role(app, "teacher", ids)
    table = _csv(teacher.get(f"/teach/classes/{class_id}/reports/lessons.csv"))
    titles = [
        r[0]
        for r in db.conn.execute(
            "SELECT l.title FROM assignments a JOIN lessons l ON l.id = a.lesson_id"
            " WHERE a.class_id = ? ORDER BY a.assigned_at, a.id",
            (class_id,),
        )
    ]
    assert table[0] == ["Learner"] + [x for t in titles for x in (t, f"{t}: minutes")]
    names = {r[1] for r in db.conn.execute(
        "SELECT e.learner_id, u.display_name FROM enrolments e JOIN users u"
        " ON u.id = e.learner_id WHERE e.class_id = ?", (class_id,))}  # fmt: skip
    assert {row[0] for row in table[1:]} == names
    statuses = {cell for row in table[1:] for cell in row[1::2]}
    assert statuses <= {"done", "in progress", "not started", "done (late)",
                        "in progress (late)", "not started (late)"}  # fmt: skip
    tomas = Browser(app)
    tomas.signin_staff("tomas", "schoolbox-teacher")
    assert tomas.get(f"/teach/classes/{class_id}/reports/lessons.csv").status_code == 404
    assert tomas.get(f"/teach/classes/{class_id}/reports").status_code == 404


def test_difficult_questions_show_the_commonest_wrong_answer_and_never_a_formula(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    item = db.conn.execute(
        "SELECT id, lesson_id FROM items WHERE type = 'short_text' AND lesson_id LIKE 'reading%'"
        " ORDER BY id"
    ).fetchone()
    learner_id = ids["learners"]["Class 4A"][1]
    with transaction(db):
        for n in range(25):
            db.conn.execute(
                "INSERT INTO attempts (id, learner_id, item_id, lesson_id, response, correct,"
                " hints_used, created_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?)",
                (uuid7(), learner_id, item["id"], item["lesson_id"],
                 "=HYPERLINK(\"http://evil\")" if n % 5 else "no idea",
                 "2027-03-15T09:00:00.000Z"),
            )  # fmt: skip
    found = reports.difficult_questions(db, class_id, lambda i, r: r)
    worst = next(q for q in found if q["item_id"] == item["id"])
    assert worst["share_wrong"] == 1.0 and worst["common_wrong"][0] == (
        '=HYPERLINK("http://evil")',
        20,
    )
    teacher = as_role(app, "teacher", ids)
    table = _csv(teacher.get(f"/teach/classes/{class_id}/reports/difficult-questions.csv"))
    mine = next(row for row in table[1:] if row[4] == "100%" and "HYPERLINK" in row[5])
    assert mine[5].startswith("'=HYPERLINK")  # a spreadsheet shows it, never runs it
    api = teacher.get(f"/api/v1/classes/{class_id}/reports/difficult-questions").get_json()
    assert item["id"] in {q["item_id"] for q in api["questions"]}


def test_the_quiz_csv_lists_each_learner_with_status_score_and_each_question(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    quiz_id = db.conn.execute("SELECT id FROM quizzes WHERE class_id = ?", (class_id,)).fetchone()[
        0
    ]
    teacher = as_role(app, "teacher", ids)
    table = _csv(teacher.get(f"/teach/classes/{class_id}/quizzes/{quiz_id}/report.csv"))
    assert table[0][:4] == ["Learner", "Status", "Score", "Out of"] and table[0][4] == "Q1"
    rows = {row[0]: row for row in table[1:]}
    assert len(rows) == len(ids["learners"]["Class 4A"])
    away = [row for row in rows.values() if row[1] == "not started"]
    assert len(away) == 2 and all(set(row[4:]) == {""} for row in away)
    taken = [row for row in rows.values() if row[1] == "handed in"]
    assert all(int(row[2]) == row[4:].count("right") for row in taken)
    lessons = teacher.get(f"/api/v1/classes/{class_id}/reports/lessons").get_json()
    assert {c["lesson_id"] for c in lessons["cells"]} == {
        a["lesson_id"] for a in lessons["lessons"]
    }
