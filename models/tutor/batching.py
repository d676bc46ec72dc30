"""Continuous batching: many learners' answers advance together, one decode at a time.

Each step builds one batch: the next token of every answer being written (so streams
keep flowing), then prompt tokens up to the batch's size. Questions join between steps
and each answer ends on its own (its end token, its length or time cap, or its learner
leaving), so a class is served side by side instead of one after another.

A question's prompt starts with what every learner on the same lesson shares: the
rules and the lesson's passages. That prefix is read once into a sequence of its own; a
question on the same lesson shares the prefix's cells and reads only its own tokens.
When no question uses a lesson any more, its cells are saved to memory and dropped from
the cache ("parked", least recently used out first past `parked_bytes`): every token
attends to every cell in a unified cache, so lessons nobody asks about would slow every
answer; bringing a parked lesson back is a copy, not a reread. A lesson read for the first time
starts as every lesson does (the rules): those cells come from a lesson in the cache, or
from a parked copy, and only the rest is read. Cells are reserved when a
question is admitted (its own tokens plus its longest answer), so an answer is never cut
for want of memory; a question that does not fit waits in the queue.

The engine is duck-typed (models/tutor/engine.py's LlamaEngine; a unit test's fake).
"""

from __future__ import annotations

import codecs
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("schoolbox.tutor")
MIN_PREFIX_TOKENS = 32  # shorter shared parts are not worth a sequence of their own
MIN_REUSED_TOKENS = 16  # fewer tokens in common with another lesson: read them instead


@dataclass
class Feed:
    """One token for the next decode: its sequences, its position, and whether we want
    the next-token distribution after it (the last prompt token, or a generated one)."""

    token: int
    pos: int
    seqs: tuple[int, ...]
    logits: bool


@dataclass(eq=False)  # one prefix is one object: compared by identity
class Prefix:
    tokens: tuple[int, ...]
    seq: int = -1  # its sequence while its cells are in the cache
    fed: int = 0  # how many of its tokens are in the cache so far
    waiting: list[Answer] = field(default_factory=list)  # their own tokens wait for the rest
    users: int = 0  # answers whose cells include this prefix's
    state: bytes = b""  # its cells, saved, while it is parked

    @property
    def ready(self) -> bool:
        return self.fed == len(self.tokens)


@dataclass(eq=False)
class Answer:
    job: Any
    seq: int
    own: list[int]  # prompt tokens after the shared prefix, not yet read
    pos: int  # the position of the next token in this sequence
    prefix: Prefix | None
    sampler: Any
    reserved: int  # cells held for it
    started: float
    text: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    next_token: int | None = None  # sampled, to be read at the next step
    generated: int = 0
    sent: int = 0  # token events sent (a token may carry half a character: none sent)
    first: float | None = None
    writing_from: float | None = None
    index: int = -1  # its logits' place in the batch being decoded


class Batcher:
    """Owns the engine's sequences. `admit()` and `step()` from the generation thread."""

    def __init__(
        self,
        engine: Any,
        *,
        parallel: int,
        prefix_slots: int,
        parked_bytes: int,
        max_prompt_seconds: float,
        model_name: str | None,
        finished: Callable[[Any, float], None],
        ends_sentence: Callable[[str, int, int], bool] = lambda text, tokens, cap: False,
    ):
        self.engine = engine
        self.model_name = model_name
        self.max_prompt_seconds = max_prompt_seconds
        self._finished = finished
        self.ends_sentence = ends_sentence  # (text, tokens, max_tokens): stop here?
        self.capacity = parallel
        self._free = list(range(parallel))  # answers' sequence ids
        self._prefix_free = list(range(parallel, parallel + prefix_slots))
        self._live: dict[tuple[int, ...], Prefix] = {}  # in the cache, used by answers
        self._parked: OrderedDict[tuple[int, ...], Prefix] = OrderedDict()  # LRU first
        self._parked_budget = parked_bytes
        self.parked_bytes = 0
        self.answers: list[Answer] = []
        self.used_cells = 0
        self.tokens_not_reread = 0  # taken from another lesson's prefix instead of read

    @property
    def active(self) -> bool:
        """Answers are being written, or a lesson is being read ahead of its questions."""
        return bool(self.answers) or any(not p.ready for p in self._live.values())

    def has_room(self) -> bool:
        return bool(self._free)

    def status(self) -> dict:
        # Read from other threads: plain numbers only, nothing iterated.
        return {
            "answering": len(self.answers),
            "parallel": self.capacity,
            "lessons_kept": len(self._live) + len(self._parked),
            "lessons_parked_mb": round(self.parked_bytes / 2**20, 1),
            "cells_used": self.used_cells,
            "cells": self.engine.cells,
            "tokens_not_reread": self.tokens_not_reread,
        }

    # --- admitting a question ----------------------------------------------------------

    def admit(self, job: Any) -> bool:
        """Start answering `job`; False when the cache has no room for it yet (it waits).

        A prompt that could never fit ends at once with an error event (True)."""
        tokens, shared = self._prompt(job)
        if len(tokens) + job.max_tokens > self.engine.cells:
            self._refuse(job, "prompt_too_long")
            return True
        key = tuple(tokens[:shared]) if shared >= MIN_PREFIX_TOKENS else ()
        prefix = self._live.get(key) if key else None
        own = tokens[len(key) :]
        need = len(own) + job.max_tokens + (0 if prefix else len(key))
        if self.used_cells + need > self.engine.cells:
            return False  # it waits until answers end and give their cells back
        if prefix is None and key:
            prefix = self._bring_in(key)
            if prefix is None:  # every prefix sequence is in use: read it all as its own
                own, key = tokens, ()
        seq = self._free.pop()
        now = time.monotonic()
        answer = Answer(
            job=job,
            seq=seq,
            own=own,
            pos=len(key),
            prefix=prefix,
            sampler=self.engine.sampler(random.getrandbits(31)),
            reserved=len(own) + job.max_tokens,
            started=now,
        )
        self.used_cells += answer.reserved
        if prefix is not None:
            prefix.users += 1
            if prefix.fed:
                self.engine.share(prefix.seq, seq, prefix.fed)
            if not prefix.ready:
                prefix.waiting.append(answer)
        self.answers.append(answer)
        waited = now - job.queued_at
        job.events.put({"event": "start", "model": self.model_name, "waited_s": waited})
        return True

    def warm(self, messages: list[dict]) -> bool:
        """Read a lesson's prefix before anyone asks (a learner opened the lesson), when
        it is neither kept nor being read and there is room; True if reading began."""
        tokens, shared = self.engine.prompt([*messages, {"role": "user", "content": "?"}])
        key = tuple(tokens[:shared])
        if shared < MIN_PREFIX_TOKENS or key in self._live or key in self._parked:
            return False
        if self.used_cells + len(key) > self.engine.cells:
            return False
        return self._bring_in(key) is not None

    def _prompt(self, job: Any) -> tuple[list[int], int]:
        prompt = getattr(job, "prompt", None)
        if prompt is None:  # tokenized once, even if the question has to wait for room
            prompt = job.prompt = self.engine.prompt(job.messages)
        return prompt

    def _refuse(self, job: Any, error: str) -> None:
        job.events.put({"event": "error", "error": error})
        self._finished(job, 0.0)

    def _bring_in(self, key: tuple[int, ...]) -> Prefix | None:
        """A lesson's prefix into the cache: its parked cells copied back, or, if it was
        never read (or was dropped), a new sequence to read it into. None: no sequence."""
        if not self._prefix_free:
            return None
        seq = self._prefix_free.pop()
        prefix = self._parked.pop(key, None)
        if prefix is not None:
            self.parked_bytes -= len(prefix.state)
            state, prefix.state = prefix.state, b""
            if self.engine.restore(seq, state):
                prefix.seq, prefix.fed = seq, len(key)
            else:  # the cache had no room in one piece for it: read it again
                log.warning("a kept lesson could not be brought back; reading it again")
                prefix = None
        if prefix is None:
            prefix = Prefix(tokens=key, seq=seq)
            prefix.fed = self._start_like_another(key, seq)
            self.tokens_not_reread += prefix.fed
        self._live[key] = prefix
        self.used_cells += len(key)
        return prefix

    def _start_like_another(self, key: tuple[int, ...], seq: int) -> int:
        """Put into `seq` the tokens a new lesson's prefix has in common with a lesson
        already read (the rules), shared from the cache or copied back from a parked
        copy and cut to length; how many. Reading them again (88 tokens of rules) cost
        a single learner about 0.2 s to the first word on a 2-core box."""
        live = [(p.tokens[: p.fed], p) for p in self._live.values()]
        parked = [(p.tokens, p) for p in self._parked.values()]
        common, source = 0, None
        for tokens, other in live + parked:
            length = _common_length(tokens, key)
            if length > common:
                common, source = length, other
        common = min(common, len(key) - 1)
        if source is None or common < MIN_REUSED_TOKENS:
            return 0
        if source.tokens in self._live:
            self.engine.share(source.seq, seq, common)
            return common
        # The whole parked copy is in the cache until it is cut: it needs room for that.
        if self.used_cells + len(key) + len(source.tokens) > self.engine.cells:
            return 0
        if not self.engine.restore(seq, source.state):
            return 0
        self.engine.keep(seq, common)
        return common

    def _park(self, prefix: Prefix) -> None:
        """No question uses this lesson now: save its cells, free them, keep the copy."""
        prefix.state = self.engine.save(prefix.seq)
        self._drop(prefix)
        if not prefix.state:
            return
        self._parked[prefix.tokens] = prefix
        self.parked_bytes += len(prefix.state)
        while self.parked_bytes > self._parked_budget and self._parked:
            _, oldest = self._parked.popitem(last=False)
            self.parked_bytes -= len(oldest.state)

    def _drop(self, prefix: Prefix) -> None:
        """Take a prefix out of the cache (a copy it was parked to stays)."""
        self.engine.forget(prefix.seq)
        del self._live[prefix.tokens]
        self._prefix_free.append(prefix.seq)
        self.used_cells -= len(prefix.tokens)

    # --- one step ----------------------------------------------------------------------

    def step(self) -> None:
        """End what must end, decode one batch, and hand out the tokens it gave."""
        now = time.monotonic()
        for answer in list(self.answers):
            reason = self._must_end(answer, now)
            if reason:
                self._end(answer, reason)
        feeds = self._feeds()
        if not feeds:
            return
        try:
            self.engine.decode(feeds)
        except (MemoryError, RuntimeError) as error:
            log.error("tutor batch failed (%s); ending %d answers", error, len(self.answers))
            for answer in list(self.answers):
                self._end(answer, "error")
            self._drop_unready_prefixes()
            return
        for answer in [a for a in self.answers if a.index >= 0]:
            self._took(answer, self.engine.sample(answer.sampler, answer.index))
        for prefix in [p for p in self._live.values() if p.ready and not p.users]:
            self._park(prefix)  # read ahead of its questions: kept for them

    def _must_end(self, answer: Answer, now: float) -> str | None:
        if answer.job.cancelled.is_set():
            return "cancelled"
        if answer.writing_from is None:
            return "prompt_time" if now - answer.started > self.max_prompt_seconds else None
        return "time" if now - answer.writing_from > answer.job.max_seconds else None

    def _feeds(self) -> list[Feed]:
        """This step's tokens: the next token of every answer being written, then prompts
        in the order their questions came, each question's lesson before its own words,
        so the first to ask hear first; then lessons read ahead of any question."""
        feeds: list[Feed] = []
        budget = self.engine.batch_tokens
        for answer in self.answers:
            answer.index = -1
            if answer.next_token is not None and len(feeds) < budget:
                answer.index = len(feeds)
                feeds.append(Feed(answer.next_token, answer.pos, (answer.seq,), True))
                answer.pos += 1
                answer.next_token = None
        read: list[Prefix] = []  # a lesson shared by several questions is read once a step
        for answer in self.answers:
            prefix = answer.prefix
            if len(feeds) >= budget:
                break
            if prefix is not None and not prefix.ready:
                if prefix not in read:
                    read.append(prefix)
                    feeds += self._prefix_feeds(prefix, budget - len(feeds))
                continue  # its own words wait for the rest of the lesson
            if answer.own:
                feeds += self._own_feeds(answer, budget - len(feeds), len(feeds))
        for prefix in self._live.values():
            if not prefix.ready and prefix not in read and len(feeds) < budget:
                feeds += self._prefix_feeds(prefix, budget - len(feeds))
        return feeds

    def _prefix_feeds(self, prefix: Prefix, room: int) -> list[Feed]:
        seqs = (prefix.seq, *(a.seq for a in prefix.waiting))
        shared = prefix.tokens[prefix.fed : prefix.fed + room]
        feeds = [Feed(t, prefix.fed + i, seqs, False) for i, t in enumerate(shared)]
        prefix.fed += len(shared)
        if prefix.ready:
            prefix.waiting.clear()
        return feeds

    def _own_feeds(self, answer: Answer, room: int, at: int) -> list[Feed]:
        own, answer.own = answer.own[:room], answer.own[room:]
        feeds = [Feed(t, answer.pos + i, (answer.seq,), False) for i, t in enumerate(own)]
        answer.pos += len(own)
        if not answer.own:  # its prompt is read: the next token is the answer's first
            feeds[-1].logits = True
            answer.index = at + len(feeds) - 1
        return feeds

    def _took(self, answer: Answer, token: int) -> None:
        now = time.monotonic()
        answer.writing_from = answer.writing_from or now
        if self.engine.is_end(token):
            self._end(answer, "stop")
            return
        answer.generated += 1
        text = answer.text.decode(self.engine.piece(token))
        if text:
            answer.sent += 1
            answer.first = answer.first or now
            answer.job.events.put({"event": "token", "text": text})
            if self.ends_sentence(text, answer.generated, answer.job.max_tokens):
                self._end(answer, "stop")
                return
        if now - answer.writing_from > answer.job.max_seconds:
            self._end(answer, "time")
        elif answer.generated >= answer.job.max_tokens:
            self._end(answer, "length")
        else:
            answer.next_token = token

    def _end(self, answer: Answer, reason: str) -> None:
        """Give the answer's sequence and cells back, then tell its asker it ended (in
        that order: whoever hears the end may at once ask again, or read the status)."""
        ended = time.monotonic()
        tail = answer.text.decode(b"", final=True)
        self.engine.forget(answer.seq)
        self.engine.free_sampler(answer.sampler)
        self.answers.remove(answer)
        self._free.append(answer.seq)
        self.used_cells -= answer.reserved
        prefix = answer.prefix
        if prefix is not None:
            prefix.users -= 1
            if answer in prefix.waiting:
                prefix.waiting.remove(answer)
            if not prefix.users and prefix.ready:  # no question uses it: keep a copy
                self._park(prefix)
            elif not prefix.users:  # half read, and nobody waits for the rest
                self._drop(prefix)
        self._finished(answer.job, ended - answer.started)
        events = answer.job.events
        if reason == "error":
            events.put({"event": "error", "error": "batch_failed"})
            return
        if tail:
            answer.sent += 1
            events.put({"event": "token", "text": tail})
        events.put({
            "event": "end",
            "reason": reason,  # stop, length, time, prompt_time or cancelled
            "tokens": answer.sent,
            "ttft_s": (answer.first or ended) - answer.started,
            "prompt_s": (answer.writing_from or ended) - answer.started,
            "seconds": ended - answer.started,
            "model": self.model_name,
        })  # fmt: skip

    def _drop_unready_prefixes(self) -> None:
        """After a failed batch, a half-read prefix cannot be trusted: forget it."""
        for prefix in list(self._live.values()):
            if not prefix.ready:
                self._drop(prefix)

    def close(self) -> None:
        for answer in list(self.answers):
            self._end(answer, "cancelled")


def _common_length(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """How many tokens `a` and `b` start with in common."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))
