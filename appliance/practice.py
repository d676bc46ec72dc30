"""Practice: grading an answer against an item's key and recording it, and session progress."""

from __future__ import annotations

import html
import re
from collections.abc import MutableMapping
from fractions import Fraction
from pathlib import Path

import sqlite_utils

from appliance.knowledge import recommend
from appliance.messages import LazyString
from appliance.messages import lazy as _l
from appliance.store import attempts, content, quizzes, recommendations
from appliance.store.ids import uuid7

MAX_RESPONSE = 500
SESSION_LENGTH = 10  # questions in one practice session
_CLIENT_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_NUMBER_RE = re.compile(r"^([+-]?)(?:(\d+)\s+)?(\d+(?:[.,]\d+)?)(?:\s*/\s*(\d+(?:[.,]\d+)?))?$")


def session_progress(
    db: sqlite_utils.Database,
    state: MutableMapping,
    learner_id: int,
    lesson_id: str,
    restart: bool = False,
) -> dict:
    """Answers and right answers in the learner's current practice session of a lesson.

    `state` is the learner's (cookie) session: it remembers the attempt id before the
    session's first answer, so every later attempt in the lesson belongs to the session.
    """
    marker = state.get("practice") or {}
    if marker.get("lesson") != lesson_id or restart:
        marker = {"lesson": lesson_id, "since": uuid7()}
        state["practice"] = marker
    done = attempts.since(db, learner_id, lesson_id, marker["since"])
    return {**done, "total": SESSION_LENGTH}


def parse_number(text: str) -> Fraction | None:
    """A typed number: '0.5', '0,5', '1/2', '-3' or a mixed number '1 1/2'; None if not one."""
    match = _NUMBER_RE.match((text or "").strip())
    if not match:
        return None
    sign, whole, top, bottom = match.groups()
    value = Fraction(top.replace(",", "."))
    if bottom is not None:
        bottom_value = Fraction(bottom.replace(",", "."))
        if bottom_value == 0:
            return None
        value /= bottom_value
    elif whole is not None:
        return None  # "1 5" is not a number
    if whole is not None:
        value += int(whole)
    return -value if sign == "-" else value


def _normalise(text: str, case_sensitive: bool) -> str:
    text = " ".join((text or "").split())
    return text if case_sensitive else text.casefold()


def grade(item: dict, response: str) -> bool:
    """True if `response` answers the item correctly."""
    key = item["answer"]
    if item["type"] == "multiple_choice":
        return response.strip() == str(key["index"])
    if item["type"] == "numeric":
        given = parse_number(response)
        if given is None:
            return False
        expected = Fraction(str(key["value"]))
        return abs(given - expected) <= Fraction(str(key["tolerance"]))
    wanted = {_normalise(a, key["case_sensitive"]) for a in key["accepted"]}
    return _normalise(response, key["case_sensitive"]) in wanted


def is_well_formed(item: dict, response: str) -> str | LazyString | None:
    """A message for the learner if the response cannot be an answer at all, else None."""
    if not response.strip():
        return _l("Please give an answer first.")
    if len(response) > MAX_RESPONSE:
        return _l("That answer is too long.")
    if item["type"] == "multiple_choice":
        if not re.fullmatch(r"[0-9]{1,3}", response.strip()) or int(response) >= len(
            item["choices"] or []
        ):
            return _l("Please choose one of the answers.")
    if item["type"] == "numeric" and parse_number(response) is None:
        return _l("Please type a number, like 3, 0.5 or 1/2.")
    return None


def response_html(item: dict, response: str) -> str:
    """An answer as HTML to show: the choice picked (as the pack wrote it, sanitised on
    import) or what was typed, escaped."""
    if item["type"] == "multiple_choice" and response.isdigit():
        index = int(response)
        return item["choices"][index] if index < len(item["choices"]) else ""
    return html.escape(response)


def right_answer_html(item: dict) -> str:
    """The item's right answer as HTML to show once answers may be seen (a closed quiz)."""
    key = item["answer"]
    if item["type"] == "multiple_choice":
        return item["choices"][key["index"]]
    if item["type"] == "numeric":
        return html.escape(str(key["value"]))
    return html.escape(key["accepted"][0])


class AnswerError(ValueError):
    """An answer that cannot be recorded, with a message for the learner."""

    def __init__(self, message: str | LazyString, status: int = 400):
        super().__init__(message)
        self.status = status


def _check_ids(client_key: object, item_id: object) -> None:
    """What every answer must name well: its client key (if any) and its question."""
    if client_key is not None and not (
        isinstance(client_key, str) and _CLIENT_KEY_RE.match(client_key)
    ):
        raise AnswerError(_l("The answer's key is not valid; please reload the page."))
    if not item_id:
        raise AnswerError(_l("The answer did not say which question it was for; please reload."))


def _checked_answer(item: dict, response: str, duration_ms: int | None) -> int | None:
    """Refuse a malformed answer; the time it took, within 0 to an hour."""
    problem = is_well_formed(item, response)
    if problem:
        raise AnswerError(problem)
    return None if duration_ms is None else max(0, min(int(duration_ms), 3_600_000))


def submit(
    db: sqlite_utils.Database,
    learner_id: int,
    item_id: str,
    response: str,
    hints_used: int = 0,
    duration_ms: int | None = None,
    client_key: str | None = None,
    lesson_id: str | None = None,
    home: Path | None = None,
) -> dict:
    """Grade and durably record one answer; the feedback and the next item to show.

    With `lesson_id`, an item from another lesson is refused (404) before anything is
    written. The next item is chosen by appliance/recommend (with the model in `home`'s
    store, if any) and its reason is logged in the answer's transaction.
    """
    _check_ids(client_key, item_id)
    item = content.item(db, str(item_id))
    if item is None or (lesson_id is not None and item["lesson_id"] != lesson_id):
        raise AnswerError(_l("That question is no longer available."), 404)
    if item["id"] in quizzes.live_item_ids(db, learner_id):
        raise AnswerError(_l("This question is in a quiz you are taking: answer it there."), 409)
    duration_ms = _checked_answer(item, response, duration_ms)
    hints_used = max(0, min(int(hints_used or 0), len(item["hints"] or [])))
    correct = grade(item, response)
    # Chosen before the answer is stored, outside the write lock; the answered item is
    # the one avoided, so the answer itself could not change the choice.
    choice = recommend.choose(db, home, learner_id, [item["lesson_id"]], avoid=item["id"])

    def log_choice(writer: sqlite_utils.Database) -> None:
        if choice:
            recommendations.record(writer, learner_id, choice)

    attempt, created = attempts.record(
        db, learner_id, item, response.strip(), correct, hints_used, duration_ms, client_key,
        also=log_choice,
    )  # fmt: skip
    return {
        "attempt_id": attempt["id"],
        "recorded": created,
        "correct": bool(attempt["correct"]),
        "explanation_html": item["explanation_html"] or "",
        "item": item,
        "next_item_id": choice.item_id if choice else None,
        "next_reason": choice.reason if choice else None,
    }


def submit_quiz_answer(
    db: sqlite_utils.Database,
    quiz: dict,
    learner_id: int,
    item_id: str,
    response: str,
    duration_ms: int | None = None,
    client_key: str | None = None,
) -> dict:
    """Grade and durably record one quiz answer; whether it was new. The learner is told
    nothing of its grade until the quiz closes (quizzes.record_answer refuses a second
    answer to the same question, a closed quiz, or one handed in)."""
    _check_ids(client_key, item_id)
    item = next((i for i in quiz["items"] if i["id"] == item_id), None)
    if item is None:
        raise AnswerError(_l("That question is not in this quiz."), 404)
    duration_ms = _checked_answer(item, response, duration_ms)
    try:
        attempt, created = quizzes.record_answer(
            db, quiz, learner_id, item, response.strip(), grade(item, response), duration_ms,
            client_key,
        )  # fmt: skip
    except quizzes.QuizAnswerError as error:
        raise AnswerError(str(error), error.status) from error
    return {"attempt_id": attempt["id"], "recorded": created}
