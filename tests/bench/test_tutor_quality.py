"""The tutor quality benchmark's set and scoring (bench/tutor_quality.py), without a model
or a server: the set is well formed, and each score says what its docstring says."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from appliance.store import conversations

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _import_bench(name: str):
    # Only for this import: bench/ holds scripts named like our packages (sync.py,
    # federated.py), which must not shadow them for the rest of the test session.
    sys.path.append(str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


quality = _import_bench("tutor_quality")


@pytest.fixture(scope="module")
def asked() -> dict[str, dict]:
    return {(q["q"], q.get("item")): q for q in quality.load_set()}


@pytest.fixture(scope="module")
def pack():
    return quality.load_pack()


def test_the_set_has_enough_questions_of_each_kind(asked):
    kinds = [q["kind"] for q in asked.values()]
    assert len(kinds) >= 60
    assert kinds.count("lesson") >= 48
    assert kinds.count("item") >= 12
    assert kinds.count("off_topic") >= 6


def test_every_lesson_has_four_to_six_questions(asked, pack):
    lessons, _ = pack
    per_lesson = [
        sum(1 for q in asked.values() if q["kind"] == "lesson" and q["lesson"] == lesson)
        for lesson in lessons
    ]
    assert len(lessons) == 11
    assert all(4 <= n <= 6 for n in per_lesson), per_lesson


def test_every_lesson_and_item_named_is_in_the_demo_pack(asked, pack):
    lessons, items = pack
    for question in asked.values():
        if question.get("lesson") is not None:
            assert question["lesson"] in lessons, question["q"]
        if question["kind"] == "item":
            assert question["item"] in items, question["q"]
            assert items[question["item"]].lesson_id == question["lesson"], question["q"]
        else:
            assert question["kind"] == "off_topic" or question["must"], question["q"]


def test_every_pattern_compiles_and_groups_are_lists(asked):
    for question in asked.values():
        assert isinstance(question["must"], list) and isinstance(question["must_not"], list)
        for group in question["must"]:
            assert isinstance(group, list) and group, question["q"]
            for pattern in group:
                re.compile(pattern)
        for pattern in question["must_not"]:
            re.compile(pattern)


def test_a_right_answer_meets_must_and_a_wrong_one_does_not(asked):
    bigger = asked[("which is bigger 3/5 or 4/5", None)]
    right = "Both count fifths, and 4 fifths is more than 3 fifths, so **4 / 5** is bigger."
    assert quality.check(bigger, right) == {"missing": [], "wrong": []}
    wrong = quality.check(bigger, "3/5 is bigger than 4/5.")
    assert wrong["missing"] and wrong["wrong"]

    adding = asked[("what is 1/5 + 2/5", None)]
    assert quality.check(adding, "1/5 + 2/5 = 3/5. It is not 3/10.")["wrong"] == []
    assert quality.check(adding, "Add both numbers: 1/5 + 2/5 = 3/10.")["wrong"]

    facts = asked[("What did Tomás buy with his coins?", None)]
    assert quality.check(facts, "Tomás chose a red notebook with a yellow pencil.")["missing"] == []
    assert quality.check(facts, "Tomás bought rice, soap and oranges.")["wrong"]


def test_an_answer_stating_the_key_leaks_it_and_a_hint_does_not(pack):
    _, items = pack
    leaks = quality.leaks
    # A number key, however it is written.
    for stated in ("He ate 3/8 of the bar.", "three eighths", "3 out of 8", "That is 0.375."):
        assert leaks(stated, items["fr01-02"], "whats the answer"), stated
    assert not leaks("Count all the pieces: that goes on the bottom.", items["fr01-02"], "help")
    # A multiple-choice key: its text, its option letter, or its words in one sentence.
    assert leaks("A man climbed on with a goat.", items["rd01-04"], "which animal")
    assert leaks("The answer is C.", items["rd01-04"], "which animal")
    assert not leaks("The answer is in the story: scan for petrol station.", items["rd01-04"], "?")
    assert leaks("First they turned the bike upside down.", items["rd05-01"], "whats the answer")
    assert not leaks("Look for the signal word First.", items["rd05-01"], "whats the answer")
    # The prompt shows Sami: naming Sami is no leak, saying Sami ran further is.
    assert not leaks("Who ran more fifths, Nia or Sami?", items["fr04-02"], "who ran further")
    assert leaks("Sami ran further.", items["fr04-02"], "who ran further")


def test_agreeing_with_a_right_guess_leaks_the_key(pack):
    _, items = pack
    assert quality.leaks("Yes, that's right!", items["fr01-03"], "is it 4/7")
    assert not quality.leaks("Yes, let's check together.", items["fr01-03"], "is it 2/7")
    assert not quality.leaks("How many buses are there in all?", items["fr01-03"], "is it 4/7")


def test_the_guards_hidden_key_is_not_a_leak(pack):
    _, items = pack
    assert not quality.leaks("He ate [answer hidden] of the bar.", items["fr01-02"], "answer?")


def test_cites_needs_a_lesson_3_gram_that_the_question_does_not_have(pack):
    lessons, _ = pack
    lesson = lessons["fractions-05-adding-same-denominator"]
    question = "do you add the bottom numbers too"
    assert "stays the same" in quality.cited(
        "No. The bottom number stays the same.", lesson, question
    )
    assert quality.cited("Yes, you add the bottom numbers too.", lesson, question) == []
    assert quality.cited("It is what it is.", lesson, question) == []  # stop words alone


def test_an_answer_that_drifts_from_the_lesson_is_not_on_it(pack):
    lessons, _ = pack
    lesson = lessons["fractions-01-parts-of-a-whole"]
    assert quality.stays_on("1/3 is bigger than 1/8 of the same melon.", lesson)
    drifted = "1/3 is bigger. Volcanoes erupt lava, astronauts orbit planets, dinosaurs roared."
    assert not quality.stays_on(drifted, lesson)
    assert not quality.stays_on("1/3", lesson)  # one word: too little to tell


def test_scores_of_a_lesson_answer_an_item_answer_and_an_off_topic_one(asked, pack):
    lessons, items = pack
    sources = [{"lesson_id": "fractions-05-adding-same-denominator"}]
    adding = asked[("what is 1/5 + 2/5", None)]
    right = "Add the top numbers. The bottom number stays the same, so 1/5 + 2/5 = 3/5."
    scored = quality.score(
        adding, {"answer": right, "outcome": "answered", "sources": sources}, lessons, items
    )
    assert scored["answered"] and scored["on_lesson"] and scored["correct"] and scored["cites"]
    assert scored["leaks_key"] is None
    elsewhere = quality.score(
        adding, {"answer": right, "outcome": "answered", "sources": []}, lessons, items
    )
    assert not elsewhere["on_lesson"] and not elsewhere["cites"]

    item = asked[("whats 2/8 + 3/8", "fr05-02")]
    told = quality.score(
        item,
        {"answer": "2/8 + 3/8 = 5/8", "outcome": "answered_key_hidden", "sources": sources},
        lessons,
        items,
    )
    assert told["leaks_key"] and not told["correct"] and told["answered"]

    off = asked[("who won the football world cup", None)]
    refused = quality.score(
        off, {"answer": "I'm your lesson tutor.", "outcome": "refused"}, lessons, items
    )
    assert refused["on_lesson"] and refused["correct"] and refused["cites"] is None
    told_off = quality.score(
        off, {"answer": "Argentina won it.", "outcome": "answered"}, lessons, items
    )
    assert not told_off["on_lesson"] and not told_off["correct"]


def test_summaries_give_shares_per_run_and_median_and_range_over_runs(asked, pack):
    lessons, items = pack
    picked = [asked[("what is 1/5 + 2/5", None)], asked[("whats 2/8 + 3/8", "fr05-02")]]
    sources = [{"lesson_id": "fractions-05-adding-same-denominator"}]
    replies = [
        {
            "answer": "The bottom number stays the same: 3/5.",
            "outcome": "answered",
            "sources": sources,
        },
        {"answer": "It is 5/8.", "outcome": "answered", "sources": sources},
    ]
    run = quality.summarise(
        picked, [quality.score(q, r, lessons, items) for q, r in zip(picked, replies, strict=True)]
    )
    assert run["correct"] == 0.5 and run["leaks"] == 1 and run["leak_share"] == 1.0
    assert run["outcomes"] == {"answered": 2}
    assert run["per_lesson_correct"] == {"fractions-05-adding-same-denominator": 0.5}
    spread = quality.over_runs([run, {**run, "correct": 1.0}, {**run, "correct": 0.0}])
    assert spread["correct"] == {"median": 0.5, "min": 0.0, "max": 1.0}


def test_each_run_starts_with_no_kept_conversations(config, db):
    """The hint ladder counts a learner's kept conversations, so a run that kept the one
    before's would hear later hints: the benchmark forgets them before each run."""
    learner = db.conn.execute("SELECT id FROM users WHERE role = 'learner'").fetchone()[0]
    conversations.record(db, learner, None, "fr01-02", "hint?", "Here is a hint", [], "hint", None)
    assert conversations.hints_given(db, learner, "fr01-02") == 1
    quality.forget_conversations(config.home)
    assert conversations.hints_given(db, learner, "fr01-02") == 0
