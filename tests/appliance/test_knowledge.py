"""Knowledge tracing on the box: mastery after real answers through the HTTP API."""

from __future__ import annotations

import json

from models import default
from tests.conftest import as_role

LESSON = "fractions-01-parts-of-a-whole"


def _answer(learner, item_id: str, response: str):
    return learner.api("POST", "/api/v1/attempts", {"item_id": item_id, "response": response})


def test_each_answer_keeps_its_prediction_and_moves_mastery(app, config, ids, db):
    default.install_knowledge_tracing(config.home)
    learner_id = ids["learners"]["Class 4A"][0]
    learner = as_role(app, "learner", ids)
    item = learner.get(f"/api/v1/lessons/{LESSON}/next-item").get_json()["item"]
    first = _answer(learner, item["id"], "0")  # wrong
    assert first.status_code == 201
    row = db.conn.execute(
        "SELECT p_before FROM attempts WHERE learner_id = ? ORDER BY id DESC", (learner_id,)
    ).fetchone()
    assert 0.0 < row["p_before"] < 1.0
    skills = db.conn.execute(
        "SELECT skill_id FROM item_skills WHERE item_id = ?", (item["id"],)
    ).fetchall()
    after_wrong = {
        r["skill_id"]: r["p"]
        for r in db.conn.execute("SELECT * FROM mastery WHERE learner_id = ?", (learner_id,))
    }
    assert set(after_wrong) == {s["skill_id"] for s in skills}
    # Right answers on the same skills raise the estimate.
    for _ in range(3):
        nxt = learner.get(f"/api/v1/lessons/{LESSON}/next-item").get_json()["item"]
        full = db.conn.execute(
            "SELECT answer, type, choices FROM items WHERE id = ?", (nxt["id"],)
        ).fetchone()
        key = json.loads(full["answer"])
        right = str(key.get("index", key.get("value", (key.get("accepted") or [""])[0])))
        assert _answer(learner, nxt["id"], right).get_json()["correct"]
    later = {
        r["skill_id"]: (r["p"], r["attempts"])
        for r in db.conn.execute("SELECT * FROM mastery WHERE learner_id = ?", (learner_id,))
    }
    skill = next(iter(after_wrong))
    assert later[skill][0] > after_wrong[skill] and later[skill][1] >= 2


def test_without_a_model_answers_are_recorded_with_no_prediction(app, ids, db):
    learner = as_role(app, "learner", ids)
    item = learner.get(f"/api/v1/lessons/{LESSON}/next-item").get_json()["item"]
    assert _answer(learner, item["id"], "0").status_code == 201
    assert db.conn.execute("SELECT p_before FROM attempts").fetchone()["p_before"] is None
    assert db.conn.execute("SELECT count(*) FROM mastery").fetchone()[0] == 0


def test_a_resent_answer_steps_mastery_once(app, config, ids, db):
    default.install_knowledge_tracing(config.home)
    learner = as_role(app, "learner", ids)
    item = learner.get(f"/api/v1/lessons/{LESSON}/next-item").get_json()["item"]
    body = {"item_id": item["id"], "response": "0", "client_key": "resend-key-0001"}
    assert learner.api("POST", "/api/v1/attempts", body).status_code == 201
    assert learner.api("POST", "/api/v1/attempts", body).status_code == 200
    counts = {r[0] for r in db.conn.execute("SELECT attempts FROM mastery")}
    assert counts == {1}
