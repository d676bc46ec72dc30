"""Search for learners and teachers: lesson text and questions, and never a live quiz's
questions for a learner taking it."""

from __future__ import annotations

from appliance.richtext import text_of
from appliance.store import audit, content, quizzes, transaction
from tests.conftest import as_role


def _word_of(db, item_id: str) -> str:
    """The word of the question's prompt that the fewest questions share, to find it."""
    prompt = db.conn.execute("SELECT prompt_html FROM items WHERE id = ?", (item_id,)).fetchone()[0]
    words = {"".join(c for c in w if c.isalpha()) for w in text_of(prompt).split()}

    def sharing(word: str) -> int:
        query = "SELECT count(*) FROM item_search WHERE item_search MATCH ?"
        return db.conn.execute(query, (f'"{word}"',)).fetchone()[0]

    return min((w for w in words if len(w) > 3), key=sharing)


def test_a_learner_finds_lessons_and_questions_and_opens_a_question_to_practise(app, db, ids):
    item_id, lesson_id = db.conn.execute(
        "SELECT id, lesson_id FROM items WHERE retired = 0 ORDER BY id LIMIT 1"
    ).fetchone()
    word = _word_of(db, item_id)
    learner = as_role(app, "learner", ids)
    page = learner.get(f"/learn/search?q={word}").get_data(as_text=True)
    assert f"/learn/practice/{lesson_id}?item={item_id}" in page
    assert "In lessons" in page and "In questions" in page
    api = learner.get(f"/api/v1/search?q={word}").get_json()
    assert item_id in {q["item_id"] for q in api["questions"]}
    found = learner.get("/api/v1/search?q=fractions").get_json()["results"]
    assert found and all("lesson_id" in r for r in found)
    assert "Search lessons and questions" in learner.get("/learn/lessons").get_data(as_text=True)


def test_a_live_quizs_questions_are_hidden_from_its_learners_but_not_from_teachers(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    item_id = db.conn.execute(
        "SELECT id FROM items WHERE lesson_id = 'fractions-03-equivalent-fractions'"
        " ORDER BY position LIMIT 1"
    ).fetchone()[0]
    word = _word_of(db, item_id)
    with transaction(db):
        quiz_id = quizzes.create(db, audit.SYSTEM, class_id, "Hidden", [item_id])
        quizzes.start(db, audit.SYSTEM, quizzes.get(db, quiz_id))
    learner = as_role(app, "learner", ids)
    teacher = as_role(app, "teacher", ids)
    mine = {q["item_id"] for q in learner.get(f"/api/v1/search?q={word}").get_json()["questions"]}
    theirs = {q["item_id"] for q in teacher.get(f"/api/v1/search?q={word}").get_json()["questions"]}
    assert item_id not in mine and item_id in theirs
    assert item_id not in learner.get(f"/learn/search?q={word}").get_data(as_text=True)


def test_the_question_index_follows_the_packs_current_items(db):
    indexed = db.conn.execute("SELECT count(*) FROM item_search").fetchone()[0]
    current = db.conn.execute("SELECT count(*) FROM items WHERE retired = 0").fetchone()[0]
    assert indexed == current > 50
    with transaction(db):
        db.conn.execute("UPDATE items SET retired = 1 WHERE lesson_id = 'reading-01-finding-facts'")
        content.index_items(db, "schoolbox-demo")
    left = db.conn.execute(
        "SELECT count(*) FROM item_search WHERE lesson_id = 'reading-01-finding-facts'"
    ).fetchone()[0]
    assert left == 0
