"""Answers written side by side: the batcher's scheduling, prefix cache and memory, with a
fake engine that checks every batch (tests/models/tutor_fakes.py), then the same with real
llama.cpp and the default GGUF."""

from __future__ import annotations

import json
import threading
import time

import pytest

from models.registry import installed as store
from models.tutor import client as tutor
from models.tutor.runtime import Busy, Settings, TutorRuntime
from tests.models.tutor_fakes import FIRST_WORD, WORDS, FakeEngine, answer_of

LESSON_A = "Rules. Lesson A: a fraction names equal parts of a whole. " * 2
LESSON_B = "Rules. Lesson B: the main idea is what a text is mostly about. " * 2


def batched(home, gate=None, engine_args=None, **settings):
    engines: list[FakeEngine] = []

    def loader(path, _settings):
        engines.append(FakeEngine(path.parent.name, gate=gate, **(engine_args or {})))
        return engines[-1]

    settings = {"queue_size": 16, **settings}
    runtime = TutorRuntime(home, Settings(**settings), loader=loader).start()
    return runtime, engines


def ask(runtime, learner, question, lesson=LESSON_A, **kw):
    messages = [{"role": "system", "content": lesson}, {"role": "user", "content": question}]
    return runtime.submit(messages, learner, **kw)


def prompt_tokens_read(engine: FakeEngine) -> int:
    """Prompt tokens decoded, counted once however many sequences share each."""
    return sum(1 for batch in engine.batches for feed in batch if feed.token < FIRST_WORD)


def test_a_class_is_answered_side_by_side(home):
    gate = threading.Event()
    runtime, engines = batched(home, gate, parallel=4)
    try:
        jobs = [ask(runtime, f"learner-{n}", f"question {n}") for n in range(4)]
        time.sleep(0.2)
        gate.set()
        answers = [answer_of(job) for job in jobs]
        assert all(text == "".join(WORDS) and end["reason"] == "stop" for text, end in answers)
        # One batch carried the next word of all four answers at once.
        widest = max(len({f.seqs for f in batch if f.logits}) for batch in engines[0].batches)
        assert widest == 4
        assert sorted(engines[0].asked) == [f"question {n}" for n in range(4)]
    finally:
        runtime.stop()


def test_the_lesson_is_read_once_for_the_class_and_kept_for_later_questions(home):
    gate = threading.Event()
    runtime, engines = batched(home, gate, parallel=4)
    try:
        first = [ask(runtime, f"learner-{n}", f"q{n}") for n in range(3)]
        time.sleep(0.2)
        gate.set()
        for job in first:
            answer_of(job)
        own = len("q0") + 2  # the question and its two markers
        assert prompt_tokens_read(engines[0]) == len(LESSON_A) + 3 * own
        # Nobody asks now: the lesson's cells leave the cache, a copy stays in memory.
        assert runtime.status()["cells_used"] == 0 and runtime.status()["lessons_kept"] == 1
        answer_of(ask(runtime, "learner-9", "q9"))  # later, on the same lesson
        assert prompt_tokens_read(engines[0]) == len(LESSON_A) + 4 * own  # not read again
        assert engines[0].restored == 1
    finally:
        runtime.stop()


def test_a_question_joins_a_lesson_whose_reading_has_begun(home):
    # The first question's lesson is read in pieces (8 tokens a step); a second question
    # on it arrives midway, shares what was read and waits for the rest, never rereads it.
    runtime, engines = batched(home, engine_args={"batch_tokens": 8, "delay": 0.05}, parallel=4)
    try:
        first = ask(runtime, "a", "first")
        time.sleep(0.3)
        second = ask(runtime, "b", "second")
        for job in (first, second):
            assert answer_of(job)[0] == "".join(WORDS)
        own = len("first") + 2 + len("second") + 2
        assert prompt_tokens_read(engines[0]) == len(LESSON_A) + own
    finally:
        runtime.stop()


def test_past_its_memory_the_least_recently_used_lesson_is_forgotten_first(home):
    third = "Rules. Lesson C: a story's events come in an order. " * 2
    kept = sum(len(json.dumps([ord(c) for c in lesson])) for lesson in (LESSON_A, third))
    runtime, engines = batched(home, parallel=2, parked_mb=(kept + 10) / 2**20)
    try:
        for lesson in (LESSON_A, LESSON_B, LESSON_A, third):  # C pushes B out, not A
            answer_of(ask(runtime, "a", "q", lesson=lesson))
        read = prompt_tokens_read(engines[0])
        answer_of(ask(runtime, "a", "q", lesson=LESSON_A))  # still kept
        assert prompt_tokens_read(engines[0]) == read + 3
        answer_of(ask(runtime, "a", "q", lesson=LESSON_B))  # forgotten: read again
        assert prompt_tokens_read(engines[0]) == read + 3 + len(LESSON_B) + 3
    finally:
        runtime.stop()


RULES = "Rules: be kind, be brief, use the lesson. "  # every lesson's prompt starts so


def test_a_new_lesson_reads_only_what_differs_from_a_kept_one(home):
    first, second = RULES + "Lesson A: equal parts.", RULES + "Lesson B: the main idea."
    runtime, engines = batched(home, parallel=2)
    try:
        answer_of(ask(runtime, "a", "q", lesson=first))  # answered, then parked
        read = prompt_tokens_read(engines[0])
        text, _ = answer_of(ask(runtime, "a", "q", lesson=second))
        assert text == "".join(WORDS)  # the fake checks every cell's place on each decode
        common = len(RULES + "Lesson ")
        assert prompt_tokens_read(engines[0]) == read + len(second) - common + 3
        assert engines[0].restored == 1  # the rules came back from the parked copy
    finally:
        runtime.stop()


def test_a_new_lesson_shares_the_rules_with_a_lesson_being_answered(home):
    gate = threading.Event()
    first, second = RULES + "Lesson A: equal parts.", RULES + "Lesson B: the main idea."
    runtime, engines = batched(home, gate, parallel=4)
    try:
        jobs = [ask(runtime, "a", "q", lesson=first)]
        time.sleep(0.2)  # lesson A is in the cache, its answer waiting on the gate
        jobs.append(ask(runtime, "b", "q", lesson=second))
        time.sleep(0.2)
        gate.set()
        assert all(answer_of(job)[0] == "".join(WORDS) for job in jobs)
        common = len(RULES + "Lesson ")
        assert prompt_tokens_read(engines[0]) == len(first) + len(second) - common + 2 * 3
        assert engines[0].restored == 0  # shared from the cache, not copied
    finally:
        runtime.stop()


def test_a_question_without_room_in_memory_waits_for_an_answer_to_end(home):
    # Room for the lesson and one answer's reserve (its tokens and max_tokens), not two.
    gate = threading.Event()
    cells = len(LESSON_A) + (4 + 3) + 3
    runtime, engines = batched(home, gate, engine_args={"cells": cells}, parallel=4, max_tokens=3)
    try:
        first = ask(runtime, "a", "q1")
        time.sleep(0.2)
        second = ask(runtime, "b", "q2")
        time.sleep(0.2)
        assert runtime.status()["answering"] == 1 and runtime.status()["queued"] == 1
        gate.set()
        assert answer_of(first)[1]["reason"] in ("stop", "length")
        assert answer_of(second)[1]["reason"] in ("stop", "length")
        assert runtime.status()["cells_used"] == 0  # the lesson is parked in memory
    finally:
        runtime.stop()


def test_a_prompt_that_could_never_fit_is_refused_at_once(home):
    runtime, _ = batched(home, engine_args={"cells": 64}, parallel=2, max_tokens=8)
    try:
        events = list(ask(runtime, "a", "q", lesson="x" * 100).stream(timeout=10))
        assert events[-1] == {"event": "error", "error": "prompt_too_long"}
        assert answer_of(ask(runtime, "a", "q", lesson="short"))[1]["reason"] == "stop"
    finally:
        runtime.stop()


def test_a_learner_who_leaves_mid_answer_gives_back_the_sequence_and_its_memory(home):
    gate = threading.Event()
    runtime, engines = batched(home, gate, parallel=2)
    try:
        staying, leaving = ask(runtime, "a", "stay"), ask(runtime, "b", "leave")
        time.sleep(0.2)
        runtime.cancel(leaving)
        gate.set()
        assert answer_of(leaving)[1]["reason"] == "cancelled"
        assert answer_of(staying)[1]["reason"] == "stop"
        assert runtime.status()["answering"] == 0 and runtime.status()["cells_used"] == 0
        assert engines[0].kv == {}  # every sequence forgotten; the lesson parked
    finally:
        runtime.stop()


def test_a_new_model_waits_for_the_batch_and_new_questions_wait_for_it(home, monkeypatch):
    monkeypatch.setattr("models.tutor.runtime.IDLE_CHECK_S", 0.05)
    gate = threading.Event()
    runtime, engines = batched(home, gate, parallel=4)
    try:
        writing = ask(runtime, "a", "on model a")
        time.sleep(0.2)
        store.activate(home, "model-b")
        time.sleep(0.2)
        later = ask(runtime, "b", "after the swap")
        time.sleep(0.2)
        gate.set()
        assert answer_of(writing)[1]["model"] == "model-a"  # finished on the model it began on
        assert answer_of(later)[1]["model"] == "model-b"  # not squeezed into the old batch
        assert engines[0].closed and engines[0].asked == ["on model a"]
    finally:
        runtime.stop()


def test_a_learner_with_two_questions_waits_behind_the_class(home):
    gate = threading.Event()
    runtime, engines = batched(home, gate, parallel=2, per_learner=2)
    try:
        jobs = [ask(runtime, "busy", "b1"), ask(runtime, "busy", "b2"), ask(runtime, "x", "x1")]
        time.sleep(0.2)
        gate.set()
        for job in jobs:
            answer_of(job)
        assert engines[0].asked[-1] == "b2"  # round-robin: x1 went before busy's second
    finally:
        runtime.stop()


# --- the real engine ---------------------------------------------------------------------

PASSAGE = (
    "A fraction names equal parts of a whole. The bottom number, the denominator, says how "
    "many equal parts; the top number, the numerator, says how many we take. "
)
QUESTIONS = [
    "What does the bottom number of a fraction tell me?",
    "What is the top number called?",
    "Are the parts of a fraction equal?",
    "What does a fraction name?",
]


def test_the_real_engine_answers_four_learners_at_once_reading_the_lesson_once(tutor_home):
    runtime = TutorRuntime(tutor_home, Settings(parallel=4, cache_mb=64, max_tokens=24)).start()
    try:
        system = {"role": "system", "content": "You are a tutor. " + PASSAGE * 4}
        jobs = [
            runtime.submit([system, {"role": "user", "content": q}], f"learner-{n}")
            for n, q in enumerate(QUESTIONS)
        ]
        answers = [answer_of(job) for job in jobs]
        for text, end in answers:
            assert end["reason"] in ("stop", "length") and end["tokens"] >= 3, (text, end)
            assert text.strip()
        status = runtime.status()
        assert status["lessons_kept"] == 1 and status["answering"] == 0
        # A fifth learner on the same lesson reads only the question: the first word
        # comes much sooner than for the first four, who waited for the lesson.
        text, end = answer_of(
            runtime.submit([system, {"role": "user", "content": QUESTIONS[0]}], "learner-5")
        )
        assert end["ttft_s"] < min(e["ttft_s"] for _, e in answers)
    finally:
        runtime.stop()


def test_the_real_engine_gives_the_same_answer_with_the_rules_taken_from_another_lesson(
    tutor_home,
):
    # Greedy sampling: the same cells give the same words. Lesson B's rules come from
    # lesson A's parked copy in one runtime, and are read afresh in the other.
    rules = "You are a tutor for children. Answer from the lesson in two short sentences. "
    lesson_a = {"role": "system", "content": rules + "Lesson: " + PASSAGE * 2}
    lesson_b = {"role": "system", "content": rules + "Lesson: the main idea is what a "
                "text is mostly about; details tell more about the main idea. " * 2}  # fmt: skip
    question = {"role": "user", "content": "What is the main idea?"}
    settings = Settings(parallel=2, cache_mb=64, max_tokens=12, temperature=0.0)
    answers, not_reread = [], []
    for asked_before in ([], [[lesson_a, question]]):
        runtime = TutorRuntime(tutor_home, settings).start()
        try:
            for messages in asked_before:
                answer_of(runtime.submit(messages, "a"))
            answers.append(answer_of(runtime.submit([lesson_b, question], "b")))
            not_reread.append(runtime.status()["tokens_not_reread"])
        finally:
            runtime.stop()
    assert not_reread[0] == 0 and not_reread[1] >= 16  # the rules and "Lesson: "
    (fresh, fresh_end), (reused, reused_end) = answers
    assert fresh_end["tokens"] >= 3 and fresh.strip()
    assert reused == fresh, (fresh, reused)


def test_the_service_batches_by_default_on_this_box(tutor_socket):
    status = tutor.status(tutor_socket)
    assert status["parallel"] > 1 and status["cells"] >= 2048
    system = {"role": "system", "content": "You are a tutor. " + PASSAGE}
    results: dict[int, list[dict]] = {}

    def one(n: int) -> None:
        messages = [system, {"role": "user", "content": QUESTIONS[n]}]
        results[n] = list(tutor.ask(tutor_socket, messages, learner=f"b{n}", max_tokens=16))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(len(QUESTIONS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == len(QUESTIONS)
    for events in results.values():
        assert events[-1]["event"] == "end" and events[-1]["tokens"] >= 1


@pytest.mark.parametrize("parallel", [1, 4])
def test_a_model_that_cannot_batch_is_answered_one_at_a_time(tutor_home, parallel, monkeypatch):
    from models.tutor import engine

    def cannot(*args, **kwargs):
        raise engine.CannotBatch("a recurrent model")

    monkeypatch.setattr(engine.LlamaEngine, "__init__", cannot)
    runtime = TutorRuntime(tutor_home, Settings(parallel=parallel, max_tokens=8)).start()
    try:
        assert runtime.status()["parallel"] == 1
        assert answer_of(runtime.submit([{"role": "user", "content": "Hi"}], "a"))[1]["tokens"]
    finally:
        runtime.stop()


def test_a_long_answer_ends_at_a_sentence_not_mid_way(home, monkeypatch):
    # Past 60% of its length cap, an answer stops at the next sentence's end: the learner
    # reads whole sentences rather than a cut one ("…").
    monkeypatch.setattr("tests.models.tutor_fakes.WORDS", ["One. ", "Two ", "three. ", "Four. "])
    runtime, _ = batched(home, parallel=2, max_tokens=4)
    try:
        text, end = answer_of(ask(runtime, "a", "q"))
        assert text == "One. Two three. " and end["reason"] == "stop" and end["tokens"] == 3
    finally:
        runtime.stop()


def test_a_lesson_a_learner_opened_is_read_before_anyone_asks(home):
    runtime, engines = batched(home, parallel=2)
    try:
        runtime.warm([{"role": "system", "content": LESSON_A}])
        runtime.warm([{"role": "system", "content": LESSON_A}])  # the class opens it too
        for _ in range(100):
            if runtime.status().get("lessons_kept") == 1 and not runtime.status()["cells_used"]:
                break
            time.sleep(0.02)
        assert prompt_tokens_read(engines[0]) == len(LESSON_A)  # read once, ahead
        assert answer_of(ask(runtime, "a", "q"))[0] == "".join(WORDS)
        assert prompt_tokens_read(engines[0]) == len(LESSON_A) + 3  # then only the question
        assert engines[0].restored == 1
    finally:
        runtime.stop()


def test_a_class_arriving_at_once_is_not_told_to_retry_while_the_batch_has_places(home):
    gate = threading.Event()
    runtime, _ = batched(home, gate, parallel=4, queue_size=1)
    try:
        jobs = [ask(runtime, f"learner-{n}", f"q{n}") for n in range(5)]  # 4 places + 1
        with pytest.raises(Busy):
            ask(runtime, "learner-6", "one too many")
        gate.set()
        assert all(answer_of(job)[1]["reason"] == "stop" for job in jobs)
    finally:
        runtime.stop()


def test_a_question_being_taken_into_the_batch_still_holds_its_place(home):
    # Between leaving the queue and joining the batch (its prompt being prepared), a
    # question is in neither: the bound must still count it, or one learner too many
    # is taken (seen in CI as a 200 where the queue's bound said 503).
    gate, entered, release = threading.Event(), threading.Event(), threading.Event()
    runtime, engines = batched(home, gate, parallel=2, queue_size=1)
    try:
        first = ask(runtime, "learner-0", "q0")
        prompt = engines[0].prompt

        def slow_prompt(messages):
            if messages[-1]["content"] == "slow":
                entered.set()
                release.wait(5)
            return prompt(messages)

        engines[0].prompt = slow_prompt  # type: ignore[method-assign]
        taken = ask(runtime, "learner-1", "slow")
        gate.set()
        assert entered.wait(5)  # learner-1 is off the queue, not yet in the batch
        queued = ask(runtime, "learner-2", "q2")  # the queue's one place
        with pytest.raises(Busy):
            ask(runtime, "learner-3", "one too many")
        release.set()
        assert all(answer_of(job)[1]["reason"] == "stop" for job in (first, taken, queued))
    finally:
        release.set()
        runtime.stop()


def test_the_first_to_ask_hears_first_when_two_lessons_must_be_read(home):
    # Lesson A, then lesson B, neither read yet, 8 tokens a step: A's question is read
    # right after A's lesson, so its first word comes before B's lesson is fully read.
    gate = threading.Event()
    runtime, engines = batched(home, gate, engine_args={"batch_tokens": 8}, parallel=2)
    try:
        first = ask(runtime, "a", "qa", lesson=LESSON_A)
        second = ask(runtime, "b", "qb", lesson=LESSON_B)
        time.sleep(0.2)
        gate.set()
        answer_of(first), answer_of(second)
        heard = engines[0].heard_after  # prompt tokens read when each got its first word
        assert heard["qa"] < len(LESSON_A) + len(LESSON_B)
        assert heard["qb"] >= len(LESSON_A) + len(LESSON_B)
    finally:
        runtime.stop()
