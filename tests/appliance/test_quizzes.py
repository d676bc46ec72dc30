"""Quizzes end to end: a teacher builds one from any pack's items, sets it for a group,
starts, watches and closes it; learners take it without hints or feedback, practice and
the tutor keep off its questions while it is live, and results come when it closes.
Through the pages and the JSON API of the real app over the demo school's SQLite file."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from appliance.knowledge import tracing as knowledge
from appliance.store import audit, quizzes, transaction
from models.registry import default
from tests.conftest import Browser, as_role

LESSON = "fractions-03-equivalent-fractions"


def _items(db, lesson=LESSON, n=3) -> list[str]:
    return [
        r[0]
        for r in db.conn.execute(
            "SELECT id FROM items WHERE lesson_id = ? AND retired = 0 ORDER BY position LIMIT ?",
            (lesson, n),
        )
    ]


def _key(db, item_id: str, right: bool) -> str:
    found = db.conn.execute("SELECT type, answer FROM items WHERE id = ?", (item_id,)).fetchone()
    key = json.loads(found["answer"])
    if right:
        return str(key.get("index", key.get("value", (key.get("accepted") or [""])[0])))
    return {"multiple_choice": str(1 - min(key.get("index", 0), 1)), "numeric": "-7777",
            "short_text": "zzz"}[found["type"]]  # fmt: skip


def _learner(app, learner_id) -> Browser:
    browser = Browser(app)
    assert browser.signin_learner(learner_id).status_code == 302
    return browser


def _make_quiz(app, db, ids, **extra) -> int:
    class_id = ids["classes"]["Class 4A"]
    teacher = as_role(app, "teacher", ids)
    body = {"title": "Friday check", "items": _items(db)} | extra
    made = teacher.api("POST", f"/api/v1/classes/{class_id}/quizzes", body)
    assert made.status_code == 201, made.get_json()
    return made.get_json()["quiz"]["id"]


def test_a_teacher_builds_starts_and_closes_a_quiz_a_group_takes_without_feedback(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    learners = ids["learners"]["Class 4A"]
    teacher = as_role(app, "teacher", ids)
    group = teacher.api(
        "POST", f"/api/v1/classes/{class_id}/groups", {"name": "Quiz group",
                                                      "learners": learners[:2]}
    ).get_json()["group"]  # fmt: skip
    items = _items(db)
    skill = db.conn.execute(
        "SELECT skill_id FROM item_skills WHERE item_id = ?", (items[0],)
    ).fetchone()[0]
    assert teacher.get(f"/teach/classes/{class_id}/quizzes/new").status_code == 200
    made = teacher.post(
        f"/teach/classes/{class_id}/quizzes",
        {"title": "Equivalent fractions", "item": items, "random_count": "2", "skill": skill,
         "group": str(group["id"])},
    )  # fmt: skip
    assert made.status_code == 302
    quiz_id = int(re.search(r"/quizzes/(\d+)", made.location).group(1))
    quiz = quizzes.get(db, quiz_id)
    assert quiz["phase"] == "draft" and 3 <= len(quiz["items"]) <= 5
    assert [i["id"] for i in quiz["items"]][:3] == items  # chosen first, in order

    member, outsider = _learner(app, learners[0]), _learner(app, learners[5])
    assert member.get(f"/learn/quizzes/{quiz_id}").status_code == 404  # a draft is not shown
    teacher.post(f"/teach/classes/{class_id}/quizzes/{quiz_id}/start")
    assert "Equivalent fractions" in member.get("/learn/").get_data(as_text=True)
    assert outsider.get(f"/learn/quizzes/{quiz_id}").status_code == 404

    page = member.get(f"/learn/quizzes/{quiz_id}").get_data(as_text=True)
    assert "Send my answer" in page and "Show a hint" not in page and "tutor" not in page.lower()
    first = quiz["items"][0]
    answered = member.post(
        f"/learn/quizzes/{quiz_id}",
        {"item_id": first["id"], "response": _key(db, first["id"], right=False),
         "client_key": "quiz-answer-0001"},
    )  # fmt: skip
    assert answered.status_code == 302
    after = member.get(answered.location).get_data(as_text=True)
    assert "not right" not in after and "Well done" not in after  # no feedback while open
    assert "1 of" in after
    again = member.post(
        f"/learn/quizzes/{quiz_id}",
        {"item_id": first["id"], "response": _key(db, first["id"], right=True),
         "client_key": "quiz-answer-0002"},
    )  # fmt: skip
    assert "already answered" in member.get(again.location).get_data(as_text=True)
    stored = db.conn.execute(
        "SELECT correct, quiz_id FROM attempts WHERE learner_id = ? AND item_id = ?"
        " AND quiz_id IS NOT NULL",
        (learners[0], first["id"]),
    ).fetchall()
    assert [tuple(r) for r in stored] == [(0, quiz_id)]  # one answer, the first, marked

    watching = teacher.get(f"/teach/classes/{class_id}/quizzes/{quiz_id}").get_data(as_text=True)
    assert "Started" in watching and "Not started" in watching

    member.post(f"/learn/quizzes/{quiz_id}/finish")
    assert "handed this quiz in" in member.get(f"/learn/quizzes/{quiz_id}").get_data(as_text=True)
    teacher.post(f"/teach/classes/{class_id}/quizzes/{quiz_id}/close")
    results = member.get(f"/learn/quizzes/{quiz_id}").get_data(as_text=True)
    assert "Your score: 0 of" in results and "The right answer:" in results
    report = teacher.get(f"/teach/classes/{class_id}/quizzes/{quiz_id}").get_data(as_text=True)
    assert "Handed in" in report and "Commonest wrong answers" in report
    late = member.post(
        f"/learn/quizzes/{quiz_id}",
        {"item_id": quiz["items"][1]["id"], "response": "1", "client_key": "quiz-answer-0003"},
    )
    assert "closed" in member.get(late.location).get_data(as_text=True)
    assert db.conn.execute(
        "SELECT count(*) FROM attempts WHERE quiz_id = ?", (quiz_id,)
    ).fetchone()[0] == 1  # fmt: skip


def test_practice_hints_and_the_tutor_keep_off_a_live_quizs_questions(app, db, ids):
    quiz_id = _make_quiz(app, db, ids)
    teacher = as_role(app, "teacher", ids)
    class_id = ids["classes"]["Class 4A"]
    learner_id = ids["learners"]["Class 4A"][0]
    learner = _learner(app, learner_id)
    item = _items(db)[0]
    # Before the quiz starts, its questions are ordinary practice.
    assert learner.get(f"/learn/practice/{LESSON}?item={item}").status_code == 200
    teacher.api("POST", f"/api/v1/classes/{class_id}/quizzes/{quiz_id}/start")
    assert learner.get(f"/learn/practice/{LESSON}?item={item}").status_code == 409
    assert learner.get(f"/api/v1/items/{item}/hints/1").status_code == 409
    refused = learner.api("POST", "/api/v1/attempts", {"item_id": item, "response": "1"})
    assert refused.status_code == 409
    offered = {
        learner.get(f"/api/v1/lessons/{LESSON}/next-item").get_json()["item"]["id"]
        for _ in range(5)
    }
    assert not offered & set(_items(db))
    learner.get(f"/api/v1/quizzes/{quiz_id}")  # begins the quiz
    asked = learner.api("POST", "/api/v1/tutor/answers", {"question": "what is a half?"})
    assert asked.status_code == 403 and "quiz" in asked.get_json()["error"]["message"]
    learner.api("POST", f"/api/v1/quizzes/{quiz_id}/finish")
    assert learner.api("POST", "/api/v1/tutor/answers", {"question": "hi"}).status_code != 403
    teacher.api("POST", f"/api/v1/classes/{class_id}/quizzes/{quiz_id}/close")
    assert learner.get(f"/learn/practice/{LESSON}?item={item}").status_code == 200


def test_the_api_takes_a_quiz_once_per_question_and_grades_it_only_when_closed(app, db, ids):
    quiz_id = _make_quiz(app, db, ids)
    class_id = ids["classes"]["Class 4A"]
    teacher = as_role(app, "teacher", ids)
    assert (
        teacher.api("POST", f"/api/v1/classes/{class_id}/quizzes/{quiz_id}/start").status_code
        == 200
    )
    learner = _learner(app, ids["learners"]["Class 4A"][1])
    mine = learner.get("/api/v1/quizzes").get_json()["quizzes"]
    assert quiz_id in {q["id"] for q in mine}
    opened = learner.get(f"/api/v1/quizzes/{quiz_id}").get_json()
    assert opened["quiz"]["phase"] == "open"
    assert all("answer" not in q and "correct" not in q for q in opened["questions"])
    item = opened["questions"][0]["id"]
    body = {"item_id": item, "response": _key(db, item, right=True), "client_key": "api-quiz-01"}
    first = learner.api("POST", f"/api/v1/quizzes/{quiz_id}/answers", body)
    assert first.status_code == 201 and set(first.get_json()) == {"attempt_id", "recorded"}
    resend = learner.api("POST", f"/api/v1/quizzes/{quiz_id}/answers", body)
    assert resend.status_code == 200 and resend.get_json()["recorded"] is False
    other = learner.api(
        "POST", f"/api/v1/quizzes/{quiz_id}/answers", body | {"client_key": "api-quiz-02"}
    )
    assert other.status_code == 409
    bad = learner.api("POST", f"/api/v1/quizzes/{quiz_id}/answers", {"item_id": "nope",
                                                                      "response": "1"})  # fmt: skip
    assert bad.status_code == 404
    live = teacher.get(f"/api/v1/classes/{class_id}/quizzes/{quiz_id}").get_json()
    me = next(r for r in live["learners"] if r["learner_id"] == ids["learners"]["Class 4A"][1])
    assert me["status"] == "started" and me["answered"] == 1
    assert teacher.api("DELETE", f"/api/v1/classes/{class_id}/quizzes/{quiz_id}").status_code == 409
    teacher.api("POST", f"/api/v1/classes/{class_id}/quizzes/{quiz_id}/close")
    closed = learner.get(f"/api/v1/quizzes/{quiz_id}").get_json()
    graded = {q["id"]: q for q in closed["questions"]}
    assert graded[item]["correct"] is True and graded[item]["right_answer_html"]
    assert next(q for q in learner.get("/api/v1/quizzes").get_json()["quizzes"]
                if q["id"] == quiz_id)["score"] == 1  # fmt: skip
    questions = teacher.get(f"/api/v1/classes/{class_id}/quizzes/{quiz_id}").get_json()["questions"]
    assert questions[0]["right"] == 1 and questions[0]["answered"] == 1


def test_a_window_keeps_a_quiz_shut_before_and_closes_it_after(app, db, ids):
    soon = datetime.now(UTC) + timedelta(hours=2)
    quiz_id = _make_quiz(app, db, ids, opens_at=soon.isoformat(), closes_at=None)
    class_id = ids["classes"]["Class 4A"]
    teacher = as_role(app, "teacher", ids)
    teacher.api("POST", f"/api/v1/classes/{class_id}/quizzes/{quiz_id}/start")
    learner = _learner(app, ids["learners"]["Class 4A"][2])
    assert "This quiz opens" in learner.get(f"/learn/quizzes/{quiz_id}").get_data(as_text=True)
    item = _items(db)[0]
    early = learner.api("POST", f"/api/v1/quizzes/{quiz_id}/answers",
                        {"item_id": item, "response": "1"})  # fmt: skip
    assert early.status_code == 409
    with transaction(db):  # the window's end passes
        db.conn.execute(
            "UPDATE quizzes SET opens_at = '2020-01-01T00:00:00.000Z',"
            " closes_at = '2020-01-02T00:00:00.000Z' WHERE id = ?",
            (quiz_id,),
        )
    assert quizzes.get(db, quiz_id)["phase"] == "closed"
    assert "Your score" in learner.get(f"/learn/quizzes/{quiz_id}").get_data(as_text=True)
    bad = teacher.api("POST", f"/api/v1/classes/{class_id}/quizzes",
                      {"title": "x", "items": [item], "opens_at": "tomorrow"})  # fmt: skip
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"title": ""}, "1 to 80 characters"),
        ({"items": []}, "1 to 50 questions"),
        ({"items": ["no-such-item"]}, "no longer available"),
        ({"learners": [999_999]}, "of this class"),
        ({"opens_at": "2027-03-19T10:00:00Z", "closes_at": "2027-03-19T09:00:00Z"}, "close after"),
    ],
)
def test_a_quiz_that_cannot_be_made_says_why_and_nothing_is_stored(app, db, ids, change, message):
    class_id = ids["classes"]["Class 4A"]
    teacher = as_role(app, "teacher", ids)
    before = db.conn.execute("SELECT count(*) FROM quizzes").fetchone()[0]
    made = teacher.api(
        "POST", f"/api/v1/classes/{class_id}/quizzes",
        {"title": "Check", "items": _items(db)} | change,
    )  # fmt: skip
    assert made.status_code == 400 and message in made.get_json()["error"]["message"]
    assert db.conn.execute("SELECT count(*) FROM quizzes").fetchone()[0] == before


def test_quiz_answers_are_traced_like_practice_answers(app, config, db, ids):
    default.install_knowledge_tracing(config.home)
    knowledge.follow(db, config.home)
    quiz_id = _make_quiz(app, db, ids)
    with transaction(db):
        quizzes.start(db, audit.SYSTEM, quizzes.get(db, quiz_id))
    learner = _learner(app, ids["learners"]["Class 4A"][3])
    item = _items(db)[0]
    answered = learner.api(
        "POST", f"/api/v1/quizzes/{quiz_id}/answers",
        {"item_id": item, "response": _key(db, item, right=True)},
    )  # fmt: skip
    attempt_id = answered.get_json()["attempt_id"]
    assert knowledge.follow(db, config.home) == 1
    traced = db.conn.execute(
        "SELECT count(*) FROM predictions WHERE attempt_id = ?", (attempt_id,)
    ).fetchone()[0]
    assert traced == 1


def test_the_demo_school_has_a_closed_quiz_with_results(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    quiz = quizzes.of_class(db, class_id)[0]
    assert quiz["phase"] == "closed" and quiz["finished"] == quiz["learners"] - 2
    teacher = as_role(app, "teacher", ids)
    page = teacher.get(f"/teach/classes/{class_id}/quizzes/{quiz['id']}").get_data(as_text=True)
    assert "Question by question" in page and "right of" in page


def test_erasing_a_learner_takes_their_quiz_answers_and_record_of_taking_it(app, db, ids):
    quiz_id = _make_quiz(app, db, ids)
    with transaction(db):
        quizzes.start(db, audit.SYSTEM, quizzes.get(db, quiz_id))
    learner_id = ids["learners"]["Class 4A"][4]
    learner = _learner(app, learner_id)
    item = _items(db)[0]
    learner.api("POST", f"/api/v1/quizzes/{quiz_id}/answers", {"item_id": item, "response": "1"})
    admin = as_role(app, "admin", ids)
    assert (
        admin.post(f"/admin/learners/{learner_id}/erase", {"confirm": "erase"}).status_code == 302
    )
    for table in ("attempts", "quiz_takers"):
        left = db.conn.execute(
            f"SELECT count(*) FROM {table} WHERE learner_id = ?",  # noqa: S608
            (learner_id,),
        ).fetchone()[0]
        assert left == 0, table
    assert quizzes.get(db, quiz_id) is not None  # the class's quiz stays


def test_a_quizs_questions_follow_a_pack_upgrade_though_kept_per_process(db, config, tmp_path):
    """quizzes.get keeps a quiz's items per process; an import that rewords one is seen."""
    import shutil

    from appliance.packs.importer import import_pack
    from tests.conftest import DEMO_PACK

    class_id = db.conn.execute("SELECT id FROM classes ORDER BY id LIMIT 1").fetchone()[0]
    item_id = db.conn.execute(
        "SELECT id FROM items WHERE lesson_id = 'fractions-01-parts-of-a-whole'"
        " ORDER BY position LIMIT 1"
    ).fetchone()[0]
    with transaction(db):
        quiz_id = quizzes.create(db, audit.SYSTEM, class_id, "Kept", [item_id])
    before = quizzes.get(db, quiz_id)["items"][0]["prompt_html"]
    assert quizzes.get(db, quiz_id)["items"][0]["prompt_html"] == before  # from the cache
    pack = tmp_path / "pack"
    shutil.copytree(DEMO_PACK, pack)
    manifest = pack / "pack.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.1.0", "version: 1.9.0"))
    items = pack / "items" / "fractions-01-parts-of-a-whole.yaml"
    items.write_text(items.read_text().replace("prompt: ", "prompt: (Reworded) ", 1))
    import_pack(db, config.media_dir, pack, audit.SYSTEM)
    assert "(Reworded)" in quizzes.get(db, quiz_id)["items"][0]["prompt_html"]


def test_a_learner_taking_a_quiz_never_sees_whom_else_it_was_set_for(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    chosen = ids["learners"]["Class 4A"][:2]
    quiz_id = _make_quiz(app, db, ids, learners=chosen)
    teacher = as_role(app, "teacher", ids)
    teacher.api("POST", f"/api/v1/classes/{class_id}/quizzes/{quiz_id}/start")
    shown = teacher.get(f"/api/v1/classes/{class_id}/quizzes/{quiz_id}").get_json()["quiz"]
    assert {person["id"] for person in shown["learners"]} == set(chosen)  # the teacher's view
    other = db.conn.execute("SELECT display_name FROM users WHERE id = ?", (chosen[1],)).fetchone()
    taking = _learner(app, chosen[0]).get(f"/api/v1/quizzes/{quiz_id}")
    assert taking.status_code == 200
    assert "learners" not in taking.get_json()["quiz"] and "groups" not in taking.get_json()["quiz"]
    assert other[0] not in taking.get_data(as_text=True)


def test_a_quiz_in_another_language_keeps_its_own_direction_on_the_page(app, db, ids):
    """An Arabic pack's question in a French interface (or the other way round): the
    title, the question, each choice and the answer box follow their own text."""
    class_id = ids["classes"]["Class 4A"]
    quiz_id = _make_quiz(app, db, ids)
    teacher = as_role(app, "teacher", ids)
    teacher.api("POST", f"/api/v1/classes/{class_id}/quizzes/{quiz_id}/start")
    learner = _learner(app, ids["learners"]["Class 4A"][0])
    page = learner.get(f"/learn/quizzes/{quiz_id}").get_data(as_text=True)
    assert '<h1 dir="auto">Friday check</h1>' in page
    assert 'class="prompt"' in page and re.search(r'class="prompt"[^>]*dir="auto"', page)
    fields = re.findall(r'<label for="choice-\d+"[^>]*>|<input id="response"[^>]*>', page)
    assert fields and all('dir="auto"' in field for field in fields)
