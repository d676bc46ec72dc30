"""The JSON API: the OpenAPI document matches the routes; practice over JSON; bad input."""

from __future__ import annotations

import re

import pytest

from appliance.demo.seed import ADMIN
from tests.conftest import Browser, as_role


def test_every_api_route_is_described_in_openapi_and_nothing_else(app, browser):
    doc = browser.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v1") :])
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routed.add((path, method.lower()))
    assert described == routed


def test_sign_in_over_json_for_staff_and_learners(app, ids):
    staff = Browser(app)
    response = staff.api("POST", "/api/v1/session", {"username": ADMIN[0], "password": ADMIN[2]})
    assert response.status_code == 200 and response.get_json()["user"]["role"] == "admin"
    assert staff.get("/api/v1/session").get_json()["user"]["role"] == "admin"
    learner = Browser(app)
    class_id = ids["classes"]["Class 4A"]
    roster = learner.get(f"/api/v1/signin/classes/{class_id}/learners").get_json()["learners"]
    response = learner.api(
        "POST", "/api/v1/session", {"learner_id": roster[0]["id"], "pin": "1234"}
    )
    assert response.get_json()["user"]["role"] == "learner"
    assert learner.api("DELETE", "/api/v1/session").status_code == 200
    assert learner.get("/api/v1/progress").status_code == 401
    wrong = Browser(app).api(
        "POST", "/api/v1/session", {"learner_id": roster[0]["id"], "pin": "0000"}
    )
    assert wrong.status_code == 401 and "PIN" in wrong.get_json()["error"]["message"]


def test_practice_over_json_never_sends_the_answer_key(app, ids, db):
    learner = as_role(app, "learner", ids)
    lessons = learner.get("/api/v1/lessons").get_json()
    lesson_id = lessons["assigned"][0]["id"]
    first = learner.get(f"/api/v1/lessons/{lesson_id}/next-item").get_json()
    item = first["item"]
    assert set(item) == {"id", "lesson_id", "type", "prompt_html", "choices", "hint_count"}
    before = db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    answer = {"item_id": item["id"], "response": "0", "hints_used": 0, "client_key": "abcdefgh1"}
    if item["type"] != "multiple_choice":
        answer["response"] = "1"
    result = learner.api("POST", "/api/v1/attempts", answer)
    assert result.status_code == 201
    body = result.get_json()
    assert body["recorded"] and isinstance(body["correct"], bool)
    assert body["session"]["answered"] == 1 and body["next_item"]["id"] != item["id"]
    assert "answer" not in body["next_item"]
    again = learner.api("POST", "/api/v1/attempts", answer)
    assert again.status_code == 200 and again.get_json()["attempt_id"] == body["attempt_id"]
    assert db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0] == before + 1
    hint = learner.get(f"/api/v1/items/{item['id']}/hints/1").get_json()
    assert hint["hint_html"] and hint["number"] == 1
    assert learner.get(f"/api/v1/items/{item['id']}/hints/99").status_code == 404


@pytest.mark.parametrize(
    "payload",
    [None, [], {"item_id": "x"}, {"item_id": "fr01-01", "response": True},
     {"item_id": "fr01-01", "response": "0", "hints_used": "two"},
     {"item_id": "fr01-01", "response": "0", "duration_ms": 1.5},
     {"item_id": "fr01-01", "response": "x" * 1000},
     {"item_id": "fr01-01", "response": "0", "client_key": "<script>"}],
)  # fmt: skip
def test_bad_attempts_get_a_clear_4xx_and_change_nothing(app, ids, db, payload):
    learner = as_role(app, "learner", ids)
    before = db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    response = learner.client.post(
        "/api/v1/attempts", json=payload, headers={"X-CSRFToken": learner.csrf()}
    )
    assert 400 <= response.status_code < 500
    assert response.get_json()["error"]["message"]
    assert db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0] == before


def test_class_progress_grid_for_the_teacher(app, ids):
    teacher = as_role(app, "teacher", ids)
    class_id = ids["classes"]["Class 4A"]
    grid = teacher.get(f"/api/v1/classes/{class_id}/progress").get_json()
    assert {x["id"] for x in grid["learners"]} == set(ids["learners"]["Class 4A"])
    cells = [cell for row in grid["grid"].values() for cell in row.values()]
    assert cells and all(0 <= c["correct"] <= c["attempts"] for c in cells)


def test_search_finds_lesson_passages(app, ids):
    learner = as_role(app, "learner", ids)
    results = learner.get("/api/v1/search?q=number+line").get_json()["results"]
    assert results and results[0]["lesson_id"] == "fractions-02-number-line"


def test_unknown_api_paths_and_methods_answer_in_json(app, ids):
    learner = as_role(app, "learner", ids)
    missing = learner.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["error"]["status"] == 404
    wrong_method = learner.api("PUT", "/api/v1/attempts", {})
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]


def test_a_database_held_too_long_gives_503_with_retry_after_and_records_nothing(
    app, ids, db, monkeypatch
):
    import appliance.store

    monkeypatch.setattr(appliance.store, "BUSY_TIMEOUT_MS", 50)
    learner = as_role(app, "learner", ids)
    item = learner.get("/api/v1/lessons/fractions-01-parts-of-a-whole/next-item").get_json()["item"]
    token = learner.csrf()
    before = db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    from appliance.web.db import close_thread_connections

    close_thread_connections()  # reopen with the short timeout
    db.conn.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        response = learner.client.post(
            "/api/v1/attempts",
            json={"item_id": item["id"], "response": "0", "client_key": "held-lock-1"},
            headers={"X-CSRFToken": token},
        )
    finally:
        db.conn.execute("ROLLBACK")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.get_json()["error"]["message"]
    assert db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0] == before
