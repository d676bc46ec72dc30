"""The tutor's HTTP side: a learner asks from a lesson or practice page, or through the API.

The browser streams the answer as Server-Sent Events (words appear as they are made);
without JavaScript the same form gets a whole page back; the API answers JSON, or
streams too when asked. A full queue is a 503 with Retry-After and a kind message.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app, render_template, request
from flask_babel import gettext as _

from . import tutoring
from .access import current_user, learner_required
from .db import get_db
from .errors import fail
from .logs import event
from .store import conversations, open_db, transaction

bp = Blueprint("tutor", __name__)
log = logging.getLogger("schoolbox.tutor")


@bp.post("/learn/tutor")
@learner_required
def ask_page():
    form = request.form
    events = _start(form.get("question", ""), form.get("lesson_id"), form.get("item_id"))
    if "text/event-stream" in request.headers.get("Accept", ""):
        return _sse(events)
    result = _collect(events)
    return render_template(
        "learner/tutor.html",
        question=form.get("question", "")[:500],
        lesson_id=form.get("lesson_id") or None,
        item_id=form.get("item_id") or None,
        **result,
    )


@bp.post("/api/v1/tutor/answers")
@learner_required
def ask_api():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("question"), str):
        fail(400, "Send a JSON object with a 'question' string.")
    lesson_id, item_id = data.get("lesson_id"), data.get("item_id")
    if not all(v is None or isinstance(v, str) for v in (lesson_id, item_id)):
        fail(400, "'lesson_id' and 'item_id' must be strings.")
    events = _start(data["question"], lesson_id, item_id)
    if data.get("stream") is True:
        return _sse(events)
    return _collect(events)


def _start(question: str, lesson_id: str | None, item_id: str | None) -> _Answer:
    """Prepare and start one answer, or fail with the status the learner should see."""
    config = current_app.config["SCHOOLBOX"]
    learner_id = current_user()["id"]
    try:
        prepared = tutoring.prepare(
            get_db(), learner_id, question, lesson_id or None, item_id or None
        )
    except tutoring.TutorOff as error:
        fail(403, str(error))
    except tutoring.AskError as error:
        fail(400, str(error))
    slots: tutoring.StreamSlots = current_app.extensions["tutor_slots"]
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
    return _Answer(events, prepared.sources, slots.give_back, metrics)


class _Answer:
    """The answer's events, giving the stream slot back when the response is closed,
    even if the learner left before the first word (a generator could not promise that)."""

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
            self.events.close()
            release()


def _sse(answer: _Answer) -> Response:
    def encoded():
        yield _event("sources", answer.sources)
        for item in answer:
            if "token" in item:
                yield _event("token", {"text": item["token"]})
            else:
                yield _event("done", item["done"])

    body = _Closing(encoded(), answer)
    return Response(
        body,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _Closing:
    """An iterable whose close() reaches the answer (waitress closes the response)."""

    def __init__(self, chunks, answer: _Answer):
        self._chunks, self._answer = chunks, answer

    def __iter__(self):
        return self._chunks

    def close(self) -> None:
        self._chunks.close()
        self._answer.close()


def _event(name: str, data) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _collect(answer: _Answer) -> dict:
    try:
        parts, done = [], {}
        for item in answer:
            if "token" in item:
                parts.append(item["token"])
            else:
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
        event(log, "tutor_answer", outcome=outcome, model=model, chars=len(answer))

    return record


def _busy_message(reason: str = "queue_full") -> str:
    if reason == "already_asking":
        return _("The tutor is still answering your last question. Wait for it, then ask again.")
    return _("Lots of people are asking the tutor right now. Please wait a moment and try again.")
