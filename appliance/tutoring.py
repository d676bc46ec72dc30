"""Answering a learner's question: check, mask, ground, ask the model, guard, record.

The pages and the API both come here. `prepare()` does everything that needs the
database and may refuse (tutor switched off, a bad item); `answer()` asks the tutor
service and yields the answer as it is generated. When the service has no model or
is down, the answer is the best matching lesson passages instead of an error; when
its queue is full, `TutorBusy` is raised before anything is sent, so the caller can
answer 503 with Retry-After.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sqlite_utils
from flask_babel import gettext as _

from models import tutor
from models.tutor import TutorBusy, TutorUnavailable

from . import tutor_grounding as grounding
from .config import Config
from .richtext import text_of
from .store import content, conversations, rows
from .tutor_safety import AnswerGuard, looks_like_injection, mask_personal, neutralise

__all__ = ["TutorBusy", "TutorOff", "AskError", "prepare", "answer", "Prepared"]


class TutorOff(Exception):
    """The tutor is switched off for this learner (by the school or the class's teacher)."""


class AskError(ValueError):
    """A question the tutor cannot take (empty, or about an item that does not exist)."""


@dataclass
class Prepared:
    learner_id: int
    lesson_id: str | None
    item: dict | None  # the open practice item, answer key included (for the guard only)
    question: str  # masked: what the model and the conversation log see
    messages: list[dict]
    passages: list[dict]
    sources: list[dict]
    refusal: str | None = None  # a reply given without the model


def prepare(
    db: sqlite_utils.Database,
    learner_id: int,
    text: str,
    lesson_id: str | None,
    item_id: str | None,
) -> Prepared:
    """Check and ground one question; raise TutorOff or AskError to refuse it."""
    if not conversations.tutor_allowed(db, learner_id):
        raise TutorOff(_("The tutor is switched off for your class. Ask your teacher."))
    lesson = content.lesson(db, lesson_id) if lesson_id else None
    item = content.item(db, item_id) if item_id else None
    if item_id and (item is None or (lesson and item["lesson_id"] != lesson["id"])):
        raise AskError(_("That practice question is no longer available."))
    if item and lesson is None:
        lesson = content.lesson(db, item["lesson_id"])
    question = mask_personal(neutralise(text or ""), _people(db))
    if not question:
        raise AskError(_("Type a question for the tutor first."))
    lesson_id = lesson["id"] if lesson else None
    passages = grounding.retrieve(db, question, lesson_id)
    prepared = Prepared(
        learner_id=learner_id,
        lesson_id=lesson_id,
        item=item,
        question=question,
        messages=grounding.messages(question, passages, item),
        passages=passages,
        sources=grounding.sources(passages),
    )
    if looks_like_injection(question):
        prepared.refusal = _refusal(item)
    return prepared


def answer(
    prepared: Prepared, config: Config, record: Callable[[str, str, str | None], None]
) -> Iterator[dict]:
    """Start answering; the returned iterator yields {"token": text} then {"done": ...}.

    Raises TutorBusy at once (before the iterator) when the queue is full. `record`
    is called once at the end with (answer, outcome, model) to keep the conversation.
    """
    if prepared.refusal is not None:
        return _canned(prepared.refusal, "refused", record)
    asked_at = time.monotonic()
    try:
        stream = tutor.ask(
            config.tutor_socket_path,
            prepared.messages,
            learner=str(prepared.learner_id),
            max_tokens=config.tutor_max_tokens,
            max_seconds=config.tutor_max_seconds,
        )
        next(stream)  # "queued": the service took the question (or raised TutorBusy)
    except TutorUnavailable:
        return _canned(_from_lessons(prepared), "from_lessons", record)
    guard = AnswerGuard(prepared.item)
    return _streamed(stream, guard, record, _from_lessons(prepared), asked_at)


def _streamed(stream, guard: AnswerGuard, record, fallback: str, asked_at: float):
    state = {"model": None, "outcome": "left", "parts": []}  # "left" until it ends well
    try:
        done = yield from _relay(stream, guard, fallback, asked_at, state)
        yield {"done": done}
    finally:
        stream.close()  # stops generation if the learner went away
        # Kept whatever happened: a learner who left mid-answer saw part of it.
        record("".join(state["parts"]).strip(), state["outcome"], state["model"])


def _relay(stream, guard: AnswerGuard, fallback: str, asked_at: float, state: dict):
    """Pass the service's events on as the learner should see them; return the summary."""
    outcome, parts = "answered", state["parts"]
    first_token_s = tokens = service_s = None
    waited_s = 0.0
    try:
        for event in stream:
            kind = event["event"]
            if kind == "waiting":  # still queued: tell the learner their place in line
                yield {"waiting": {"position": event.get("position")}}
            elif kind == "start":
                state["model"], waited_s = event.get("model"), event.get("waited_s", 0.0)
            elif kind == "end":
                tokens = event.get("tokens")
                # Inside the service: queue wait plus the model's own time to a first token.
                service_s = waited_s + event.get("ttft_s", 0.0)
            elif kind == "token":
                first_token_s = first_token_s or time.monotonic() - asked_at
                shown = guard.feed(event["text"])
                if shown:
                    parts.append(shown)
                    yield {"token": shown}
                if guard.full:
                    break
    except TutorUnavailable:  # no model after all, or the service stopped
        outcome = "interrupted" if parts else "from_lessons"
    rest = guard.finish() if outcome != "from_lessons" else fallback
    if rest:
        parts.append(rest)
        yield {"token": rest}
    state["outcome"] = "answered_key_hidden" if guard.hidden else outcome
    return {
        "outcome": state["outcome"],
        "model": state["model"],
        "tokens": tokens,
        "first_token_s": first_token_s,  # in the web worker, from the question
        "service_first_token_s": service_s,
    }


def _canned(text: str, outcome: str, record) -> Iterator[dict]:
    def events():
        try:
            yield {"token": text}
            yield {"done": {"outcome": outcome, "model": None, "first_token_s": 0.0}}
        finally:
            record(text, outcome, None)

    return events()


def _from_lessons(prepared: Prepared) -> str:
    if not prepared.passages:
        return _(
            "The tutor is resting right now, and I found nothing in the lessons about that. "
            "Try other words, or ask your teacher."
        )
    lines = [_("The tutor is resting right now. These parts of your lessons may help:")]
    for passage in prepared.passages:
        title = passage["heading"] or passage["lesson_title"]
        lines.append(f"- {title}: {grounding.plain(passage['body'])[:240]}")
    return "\n".join(lines)


def _refusal(item: dict | None) -> str:
    if item is not None:
        hint = (item.get("hints") or [None])[0]
        text = _("I can't give you the answer, but I can help you find it.")
        if hint:
            text += " " + _("Here is a hint: %(hint)s", hint=text_of(hint))
        return text
    return _(
        "I'm your lesson tutor, and my rules stay the same. "
        "Ask me about the lesson and I'll help you understand it."
    )


def _people(db: sqlite_utils.Database) -> list[str]:
    """Everyone's name on this box: masked wherever a question mentions them."""
    found = rows(db, "SELECT display_name FROM users WHERE erased_at IS NULL")
    return [r["display_name"] for r in found]
