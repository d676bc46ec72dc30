"""Grading answers and choosing the next item (the rule used before knowledge tracing)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from appliance import practice
from appliance.knowledge import recommend
from appliance.store import attempts, content


@pytest.mark.parametrize(
    "typed, value",
    [("0.5", Fraction(1, 2)), ("0,5", Fraction(1, 2)), ("1/2", Fraction(1, 2)), ("-3", -3),
     (" 1 1/2 ", Fraction(3, 2)), ("3 / 4", Fraction(3, 4)), ("+2", 2)],
)  # fmt: skip
def test_numbers_are_read_the_ways_learners_type_them(typed, value):
    assert practice.parse_number(typed) == value


@pytest.mark.parametrize("typed", ["", "abc", "1/0", "1 5", "1..2", "½"])
def test_things_that_are_not_numbers_are_not_read_as_numbers(typed):
    assert practice.parse_number(typed) is None


def test_grading_each_item_type():
    mc = {"type": "multiple_choice", "answer": {"index": 2}, "choices": ["a", "b", "c"]}
    assert practice.grade(mc, "2") and not practice.grade(mc, "1")
    num = {"type": "numeric", "answer": {"value": 0.75, "tolerance": 0.01}}
    assert practice.grade(num, "3/4") and practice.grade(num, "0.755")
    assert not practice.grade(num, "0.8") and not practice.grade(num, "lots")
    text = {
        "type": "short_text",
        "answer": {"accepted": ["Blue", "light blue"], "case_sensitive": False},
    }
    assert practice.grade(text, "  blue ") and practice.grade(text, "Light   Blue")
    assert not practice.grade(text, "green")
    strict = {"type": "short_text", "answer": {"accepted": ["Nile"], "case_sensitive": True}}
    assert practice.grade(strict, "Nile") and not practice.grade(strict, "nile")


def test_a_malformed_answer_is_explained_not_graded():
    mc = {"type": "multiple_choice", "answer": {"index": 0}, "choices": ["a", "b"]}
    assert practice.is_well_formed(mc, "5") == "Please choose one of the answers."
    assert practice.is_well_formed(mc, "") == "Please give an answer first."
    num = {"type": "numeric", "answer": {"value": 1, "tolerance": 0}}
    assert "number" in practice.is_well_formed(num, "one")
    assert practice.is_well_formed(num, "x" * 501) == "That answer is too long."


def _rule(db, learner: int, lesson_id: str, avoid: str | None = None) -> str:
    """The item the rule (no model) offers next."""
    choice = recommend.choose(db, None, learner, [lesson_id], avoid=avoid)
    assert choice.rule == "rule"
    return choice.item_id


def test_next_item_prefers_unseen_then_wrong_and_never_repeats_the_last_one(db, ids):
    learner = ids["learners"]["Class 4A"][0]
    db.conn.execute("DELETE FROM attempts WHERE learner_id = ?", (learner,))
    lesson_id = content.lessons(db)[0]["id"]
    order = [r[0] for r in db.conn.execute(
        "SELECT id FROM items WHERE lesson_id = ? ORDER BY position", (lesson_id,))]  # fmt: skip
    assert _rule(db, learner, lesson_id) == order[0]
    first = content.item(db, order[0])
    attempts.record(db, learner, first, "nonsense", False, 0, None, None)
    # unseen items come before the one answered wrong
    assert _rule(db, learner, lesson_id, avoid=order[0]) == order[1]
    for item_id in order[1:]:
        attempts.record(db, learner, content.item(db, item_id), "x", True, 0, None, None)
    # all seen: the wrong one comes back first, unless it was just answered
    assert _rule(db, learner, lesson_id) == order[0]
    assert _rule(db, learner, lesson_id, avoid=order[0]) != order[0]


def test_submit_records_once_per_client_key_and_never_for_bad_input(db, ids):
    learner = ids["learners"]["Class 4A"][0]
    item = next(i for i in (content.item(db, r[0]) for r in db.conn.execute("SELECT id FROM items"))
                if i["type"] == "multiple_choice")  # fmt: skip
    before = attempts.count(db)
    right = str(item["answer"]["index"])
    first = practice.submit(db, learner, item["id"], right, client_key="key-000001")
    again = practice.submit(db, learner, item["id"], right, client_key="key-000001")
    assert first["recorded"] and first["correct"] and not again["recorded"]
    assert first["attempt_id"] == again["attempt_id"]
    assert attempts.count(db) == before + 1
    with pytest.raises(practice.AnswerError):
        practice.submit(db, learner, item["id"], "99")
    with pytest.raises(practice.AnswerError) as missing:
        practice.submit(db, learner, "no-such-item", "1")
    assert missing.value.status == 404
    with pytest.raises(practice.AnswerError):
        practice.submit(db, learner, item["id"], right, client_key="bad key!")
    assert attempts.count(db) == before + 1
