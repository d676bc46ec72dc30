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
from typing import Any

import sqlite_utils

from appliance.config import Config
from appliance.messages import gettext as _
from appliance.richtext import text_of
from appliance.store import content, conversations, quizzes, rows
from appliance.tutor import grounding
from appliance.tutor.safety import (
    AnswerGuard,
    asks_for_help_with_item,
    looks_like_injection,
    looks_like_prying,
    mask_personal,
    neutralise,
)
from models.registry import installed as model_store
from models.tutor import client as tutor
from models.tutor.client import TutorBusy, TutorUnavailable

__all__ = ["TutorBusy", "TutorOff", "AskError", "prepare", "answer", "read_ahead", "Prepared"]


class TutorOff(Exception):
    """The tutor is switched off for this learner (by the school or the class's teacher)."""


class AskError(ValueError):
    """A question the tutor cannot take (empty, or about an item that does not exist)."""


@dataclass
class Prepared:
    learner_id: int
    lesson_id: str | None
    item: dict | None  # the practice item in view: its question goes in the prompt
    guarded: list[dict]  # every item whose key the answer must not show (keys included)
    question: str  # masked: what the model and the conversation log see
    messages: list[dict]
    passages: list[dict]
    sources: list[dict]
    refusal: str | None = None  # a reply given without the model
    refusal_outcome: str = "refused"  # how the reply is kept: "refused", or "hint"
    language: str = "en"  # the lessons' language: the tutor answers in it


def prepare(
    db: sqlite_utils.Database,
    learner_id: int,
    text: str,
    lesson_id: str | None,
    item_id: str | None,
    open_item_id: str | None = None,
) -> Prepared:
    """Check and ground one question; raise TutorOff or AskError to refuse it.

    `item_id` is the practice item the question names; without one, `open_item_id` (the
    one the session opened last) when it belongs to the lesson. The keys hidden are those
    of every item the learner was shown and has not answered correctly lately, in any
    session or tab (conversations.guarded_item_ids), and of the item in the prompt.
    """
    if not conversations.tutor_allowed(db, learner_id):
        raise TutorOff(_("The tutor is switched off for your class. Ask your teacher."))
    if quizzes.taking(db, learner_id):
        raise TutorOff(_("The tutor is off while you are taking a quiz. It is back when you "
                         "hand the quiz in."))  # fmt: skip
    lesson = content.lesson(db, lesson_id) if lesson_id else None
    item = content.item(db, item_id) if item_id else None
    if item_id and (item is None or (lesson and item["lesson_id"] != lesson["id"])):
        raise AskError(_("That practice question is no longer available."))
    if item_id and item_id in quizzes.live_item_ids(db, learner_id):
        raise AskError(_("That question is in a quiz: the tutor cannot help with it now."))
    if item is None and open_item_id:
        item = content.item(db, open_item_id)
        if item is not None and lesson and item["lesson_id"] != lesson["id"]:
            item = None  # opened in another lesson: not what this question is about
    if item and lesson is None:
        lesson = content.lesson(db, item["lesson_id"])
    question = mask_personal(neutralise(text or ""), _people(db))
    if not question:
        raise AskError(_("Type a question for the tutor first."))
    lesson_id = lesson["id"] if lesson else None
    passages = grounding.retrieve(db, question, lesson_id)
    # The whole lesson grounds the answer: the open one, or the best passage's.
    grounded_in = lesson_id or (passages[0]["lesson_id"] if passages else None)
    lesson_text = content.lesson_passages(db, grounded_in) if grounded_in else []
    language = content.language_of(db, grounded_in) if grounded_in else "en"
    prepared = Prepared(
        learner_id=learner_id,
        lesson_id=lesson_id,
        item=item,
        guarded=_guarded(db, learner_id, item),
        question=question,
        messages=grounding.messages(question, passages, item, lesson_text, language),
        passages=passages,
        sources=grounding.sources(passages),
        language=language,
    )
    _reply_without_the_model(db, prepared, lesson)
    return prepared


def _reply_without_the_model(db: sqlite_utils.Database, prepared: Prepared, lesson) -> None:
    """Questions a reply written in advance answers better than a small model: rule
    overrides, prying, a request the open item's own hints answer, and a question about
    nothing in the lessons."""
    question, item = prepared.question, prepared.item
    if looks_like_injection(question):
        prepared.refusal = _refusal(item)
    elif looks_like_prying(question):
        prepared.refusal = _(
            "I can't help with anyone's private details or accounts. "
            "Ask me about your lessons instead."
        )
    elif item is not None and item.get("hints") and asks_for_help_with_item(question):
        given = conversations.hints_given(db, prepared.learner_id, item["id"])
        prepared.refusal, prepared.refusal_outcome = _next_hint(item, given), "hint"
    elif item is None and not grounding.about_the_lessons(db, question):
        prepared.refusal = _steer_back(lesson)


def read_ahead(db: sqlite_utils.Database, config: Config, lesson_id: str) -> None:
    """A learner opened a lesson: let the tutor read its shared part (rules and lesson)
    now, so the class's questions about it cost only their own words. Best effort."""
    lesson_text = content.lesson_passages(db, lesson_id)
    if lesson_text:
        language = content.language_of(db, lesson_id)
        shared = grounding.messages("", [], None, lesson_text, language)[:1]
        tutor.warm(config.tutor_socket_path, shared)


def answer(
    prepared: Prepared, config: Config, record: Callable[[str, str, str | None], None]
) -> Iterator[dict]:
    """Start answering; the returned iterator yields {"token": text} then {"done": ...}
    ({"waiting": ...} and {"reading": {}} may come first, while the learner waits).

    Raises TutorBusy at once (before the iterator) when the queue is full. `record`
    is called once at the end with (answer, outcome, model) to keep the conversation.
    The learner always gets words: an answer that produced none is replaced by the best
    lesson passages, and one cut by a cap ends with "…" and a note saying so.
    """
    if prepared.refusal is not None:
        return _canned(prepared.refusal, prepared.refusal_outcome, record)
    model = model_store.active(config.home, "tutor-llm")
    if model is not None and not model_store.speaks(model, prepared.language):
        # A small model asked for Kiswahili answers in broken English: the learner gets
        # their lessons' own words instead, and the teacher's transcript says why.
        return _canned(_from_lessons(prepared, "language"), "from_lessons", record)
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
        return _canned(_from_lessons(prepared, "from_lessons"), "from_lessons", record)
    guard = AnswerGuard(prepared.guarded)
    # Written now, in the request (the stream outlives it): what ends an answer.
    endings = {why: _from_lessons(prepared, why) for why in ("from_lessons", "waited", "empty")}
    endings["cut"] = "… " + _("(The answer was cut short here. Ask about a smaller part.)")
    return _streamed(stream, guard, record, endings, asked_at)


def _streamed(stream, guard: AnswerGuard, record, endings: dict, asked_at: float):
    state: dict[str, Any] = {
        "model": None,
        "outcome": "left",
        "parts": [],
    }  # "left" until it ends well
    try:
        done = yield from _relay(stream, guard, endings, asked_at, state)
        yield {"done": done}
    finally:
        stream.close()  # stops generation if the learner went away
        # Kept whatever happened: a learner who left mid-answer saw part of it.
        record("".join(state["parts"]).strip(), state["outcome"], state["model"])


def _relay(stream, guard: AnswerGuard, endings: dict, asked_at: float, state: dict):
    """Pass the service's events on as the learner should see them; return the summary."""
    parts = state["parts"]
    outcome, reason = "answered", None
    first_token_s = tokens = service_s = None
    waited_s = 0.0
    try:
        for event in stream:
            kind = event["event"]
            if kind == "waiting" and event.get("position"):  # still queued: place in line
                yield {"waiting": {"position": event["position"]}}
            elif kind == "reading":  # taken off the queue: the model reads the prompt
                yield {"reading": {}}
            elif kind == "start":
                state["model"], waited_s = event.get("model"), event.get("waited_s", 0.0)
            elif kind == "end":
                tokens, reason = event.get("tokens"), event.get("reason")
                # Inside the service: queue wait plus the model's own time to a first token.
                service_s = waited_s + event.get("ttft_s", 0.0)
            elif kind == "token":
                first_token_s = first_token_s or time.monotonic() - asked_at
                shown = guard.feed(event["text"])
                if shown:
                    parts.append(shown)
                    yield {"token": shown}
                if guard.full:
                    reason = "length"
                    break
    except TutorUnavailable:  # no model after all, or the service stopped
        outcome = "interrupted" if parts else "from_lessons"
    ending = guard.finish()
    if not ("".join(parts) + ending).strip():  # no words: never silence, the lessons instead
        if outcome != "from_lessons":
            outcome = "waited" if reason == "wait" else "empty"
        ending = endings[outcome]
    else:
        if reason in ("time", "length") or outcome == "interrupted":
            ending += endings["cut"]  # a cut answer ends visibly
            outcome = "cut" if outcome == "answered" else outcome
        if guard.hidden:
            outcome += "_key_hidden"
    if ending:
        parts.append(ending)
        yield {"token": ending}
    state["outcome"] = outcome
    return {
        "outcome": outcome,
        "model": state["model"],
        "tokens": tokens,
        "reason": reason,  # why the model stopped: stop, length, time, prompt_time, wait...
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


def _from_lessons(prepared: Prepared, why: str) -> str:
    """The best lesson passages as an answer, for when the model gives no words: it is
    not there (from_lessons), the line was too long (waited), or it said nothing (empty)."""
    intro = {
        "language": _("The tutor cannot answer in the language of this lesson yet."),
        "from_lessons": _("The tutor is resting right now."),
        "waited": _("Lots of people are asking the tutor right now."),
        "empty": _("The tutor could not find the words just now."),
    }[why]
    if not prepared.passages:
        return (
            intro
            + " "
            + _("I found nothing in the lessons about that. Try other words, or ask your teacher.")
        )
    lines = [intro + " " + _("These parts of your lessons may help:")]
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


def _next_hint(item: dict, given: int) -> str:
    """The item's hints one at a time, as a practice page gives them; the last one again
    once all are given."""
    hints = item["hints"]
    hint = text_of(hints[min(given, len(hints) - 1)])
    text = _("Here is a hint: %(hint)s", hint=hint)
    if given >= len(hints) - 1:
        text += " " + _("That is the last hint for this one.")
    return text + " " + _("Try it, then check your answer in the practice box.")


def _steer_back(lesson: dict | None) -> str:
    if lesson is not None:
        return _(
            "That is not in your lessons, so I can't help with it. "
            'Ask me something about "%(title)s".',
            title=lesson["title"],
        )
    return _("That is not in your lessons, so I can't help with it. Ask me about a lesson.")


def _guarded(db: sqlite_utils.Database, learner_id: int, item: dict | None) -> list[dict]:
    """The items whose keys the answer must hide, answer keys included."""
    # Lately shown and not yet right, and every question of a quiz live for the learner.
    ids = conversations.guarded_item_ids(db, learner_id) | quizzes.live_item_ids(db, learner_id)
    ids -= {item["id"] if item else None}
    found = [content.item(db, item_id) for item_id in sorted(ids)]
    return [i for i in [item, *found] if i is not None]


def _people(db: sqlite_utils.Database) -> list[str]:
    """Everyone's name on this box: masked wherever a question mentions them."""
    found = rows(db, "SELECT display_name FROM users WHERE erased_at IS NULL")
    return [r["display_name"] for r in found]
