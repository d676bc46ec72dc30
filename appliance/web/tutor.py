"""The tutor over HTTP, for the learner's pages and the API: start an answer, then send it
as Server-Sent Events (words appear as they are made), as JSON, or whole for a page.

A full queue is a 503 with Retry-After and a kind message. Each worker streams at most
`tutor_streams` answers at once (`StreamSlots`) on threads added beside the page
threads, so waiting answers never take the threads that serve pages.
"""

from __future__ import annotations

import json
import logging
import threading

from flask import Response, current_app, session
from flask_babel import gettext as _

from appliance.knowledge import recommend
from appliance.logs import event
from appliance.store import content, conversations, grouped, open_db, recommendations, transaction
from appliance.tutor import conversation as tutoring
from appliance.web.access import current_user
from appliance.web.db import get_db
from appliance.web.errors import fail

log = logging.getLogger("schoolbox.tutor")
MAX_QUESTION_BYTES = 4096  # a question is at most 500 characters; the rest is never read


class StreamSlots:
    """How many tutor answers one worker streams at once (`tutor_streams`): waitress has
    that many threads beside the page threads, so answers never take a page's thread."""

    def __init__(self, streams: int):
        self._semaphore = threading.BoundedSemaphore(max(1, streams))

    def take(self) -> bool:
        return self._semaphore.acquire(blocking=False)

    def give_back(self) -> None:
        self._semaphore.release()


def start(question: str, lesson_id: str | None, item_id: str | None) -> Answer:
    """Prepare and start one answer, or fail with the status the learner should see.

    The keys guarded are those of every item the learner was shown lately and has not
    answered correctly, whatever the request or the session names: asking from another
    tab or another sign-in does not get round the guard.
    """
    config = current_app.config["SCHOOLBOX"]
    learner_id = current_user()["id"]
    try:
        prepared = tutoring.prepare(
            get_db(), learner_id, question, lesson_id or None, item_id or None,
            open_item_id=session.get(OPEN_ITEM),
        )  # fmt: skip
    except tutoring.TutorOff as error:
        fail(403, str(error))
    except tutoring.AskError as error:
        fail(400, str(error))
    slots: StreamSlots = current_app.extensions["tutor_slots"]
    metrics = current_app.extensions["schoolbox_metrics"]
    if not slots.take():
        metrics.tutor_answers.labels("busy").inc()
        fail(503, _busy_message(), retry_after=5)
    try:
        events = tutoring.answer(prepared, config, _recorder(config, prepared))
    except tutoring.TutorBusy as busy:
        slots.give_back()
        metrics.tutor_answers.labels("busy").inc()
        event(log, "tutor_busy", logging.WARNING, reason=busy.reason)
        fail(503, _busy_message(busy.reason), retry_after=busy.retry_after)
    except BaseException:
        slots.give_back()
        raise
    return Answer(events, prepared.sources, slots.give_back, metrics)


OPEN_ITEM = "open_item"  # the session key: the practice item this learner has open


def open_item(item_id: str | None) -> None:
    """Remember which practice item the learner has open (None once it is answered).

    An item shown without being chosen by practice (a link typed or kept from earlier)
    is logged as shown, so its key is guarded in the learner's other sessions too.
    """
    if not item_id:
        session.pop(OPEN_ITEM, None)
        return
    session[OPEN_ITEM] = item_id
    db, learner = get_db(), current_user()
    if learner and learner["role"] == "learner":
        if item_id not in conversations.guarded_item_ids(db, learner["id"]):
            grouped(db, lambda writer: _log_opened(writer, learner["id"], item_id))


def _log_opened(db, learner_id: int, item_id: str) -> None:
    item = content.item(db, item_id)
    if item is not None:
        reason = "The learner opened this question from a link."
        choice = recommend.Choice(item_id, item["lesson_id"], "opened", reason)
        recommendations.record(db, learner_id, choice)


class Answer:
    """An answer's events. Closing it (waitress closes every response) stops the answer
    and gives the stream slot back, even if the learner left before the first word."""

    def __init__(self, events, sources: list[dict], release, metrics):
        self.events, self.sources, self._release = events, sources, release
        self._metrics = metrics

    def __iter__(self):
        for item in self.events:
            if "done" in item:
                done = item["done"]
                self._metrics.tutor_answers.labels(done["outcome"]).inc()
                if done.get("model") and done.get("first_token_s") is not None:
                    self._metrics.tutor_first_word.observe(done["first_token_s"])
            yield item

    def close(self) -> None:
        if self._release:
            self._release, release = None, self._release
            try:
                self.events.close()
            finally:
                release()


def sse(answer: Answer) -> Response:
    """The answer as Server-Sent Events: sources, waiting..., token..., done."""

    def encoded():
        yield _event("sources", answer.sources)
        for item in answer:
            name, data = next(iter(item.items()))
            yield _event(name, {"text": data} if name == "token" else data)

    return Response(
        _Closing(encoded(), answer),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _Closing:
    """An iterable whose close() reaches the answer (waitress closes the response)."""

    def __init__(self, chunks, answer: Answer):
        self._chunks, self._answer = chunks, answer

    def __iter__(self):
        return self._chunks

    def close(self) -> None:
        try:
            self._chunks.close()
        finally:
            self._answer.close()


def _event(name: str, data) -> bytes:
    # ASCII JSON: U+2028/U+2029 inside a model's words would break old browsers' parsing.
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def collect(answer: Answer) -> dict:
    """The whole answer at once, for the JSON API and the page without JavaScript."""
    try:
        parts, done = [], {}
        for item in answer:
            if "token" in item:
                parts.append(item["token"])
            elif "done" in item:
                done = item["done"]
    finally:
        answer.close()
    return {
        "answer": "".join(parts).strip(),
        "sources": answer.sources,
        "outcome": done.get("outcome"),
        "model": done.get("model"),
    }


def _recorder(config, prepared: tutoring.Prepared):
    """Keep the conversation for the teacher, on a connection of its own: the answer
    ends after the request that started it has been torn down."""

    def record(answer: str, outcome: str, model: str | None) -> None:
        try:
            db = open_db(config.db_path)
            try:
                with transaction(db):
                    conversations.record(
                        db, prepared.learner_id, prepared.lesson_id,
                        prepared.item["id"] if prepared.item else None,
                        prepared.question, answer, prepared.sources, outcome, model,
                    )  # fmt: skip
            finally:
                db.conn.close()
        except Exception as error:  # a full disk must not also leak the stream slot
            event(log, "tutor_record_failed", logging.ERROR, error=type(error).__name__)
            return
        event(log, "tutor_answer", outcome=outcome, model=model, chars=len(answer))

    return record


def _busy_message(reason: str = "queue_full") -> str:
    if reason == "already_asking":
        return _("The tutor is still answering your last question. Wait for it, then ask again.")
    return _("Lots of people are asking the tutor right now. Please wait a moment and try again.")
