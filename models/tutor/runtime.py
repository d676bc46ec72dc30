"""The tutor runtime: one loaded GGUF model, a bounded fair queue, answers side by side.

Questions wait in a bounded queue served round-robin by learner, so one learner with two
tabs cannot starve a class; past the bound a question is refused at once with a retry
time, rather than left to hang. One thread owns the model. When the model and the box
allow (`parallel` > 1), it writes many answers in one llama.cpp batch, taking new
questions between steps (models/tutor/batching.py); otherwise, or for a model that cannot
batch, one answer after another with every core. Between batches the thread checks the
model store and swaps in a newly activated model, so an answer in flight always finishes
on the model it began on (while a swap waits, new questions wait too).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.registry import installed as store
from models.tutor.batching import Batcher

log = logging.getLogger("schoolbox.tutor")
HEARTBEAT_S = 3.0  # how often a waiting question hears its place in the queue
IDLE_CHECK_S = 2.0  # how often an idle runtime looks for a newly activated model
WARM_REQUESTS = 4  # lessons waiting to be read ahead; more requests are dropped
SENTENCE_STOP = 0.6  # past this share of its length cap, an answer ends at a sentence's end


class Busy(Exception):
    """The queue is full (or this learner already has a question waiting)."""

    def __init__(self, retry_after: int, reason: str = "queue_full"):
        super().__init__(reason)
        self.retry_after = retry_after
        self.reason = reason


@dataclass(frozen=True)
class Settings:
    queue_size: int = 16  # questions waiting, not counting the one being answered
    per_learner: int = 1  # questions one learner may have waiting or running
    max_tokens: int = 200  # cap on an answer's length
    max_seconds: float = 45.0  # cap on one answer's writing, counted from its first word
    max_prompt_seconds: float = 60.0  # cap on reading the prompt (rules, passages, question)
    max_wait_seconds: float = 180.0  # a question waiting longer is answered from the lessons
    n_ctx: int = 2048
    n_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    temperature: float = 0.3
    parallel: int = 1  # answers written side by side in one batch (1: one at a time)
    cache_mb: int = 256  # the shared KV cache's memory when answers are batched (MB)
    batch_tokens: int = 256  # tokens per decode: bounds a step's time, so streams flow
    prefix_slots: int = 8  # lessons being asked about at once that share their prefix
    parked_mb: float = 64  # memory for the read prefixes of lessons nobody is asking about


@dataclass
class Job:
    messages: list[dict]
    learner: str
    max_tokens: int
    max_seconds: float
    events: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.monotonic)
    prompt: tuple[list[int], int] | None = None  # tokens and shared part, once batched

    def stream(self, timeout: float, heartbeat: Callable[[], dict] | None = None):
        """Events until the answer ends: start, token..., end (or no_model / error).

        While nothing else comes (the question waits, or its prompt is being read),
        `heartbeat()` is yielded every few seconds, so a learner who left is noticed by
        the first write that fails; a heartbeat may itself end the answer.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=HEARTBEAT_S if heartbeat else timeout)
            except queue.Empty:
                if heartbeat is None or time.monotonic() > deadline:
                    raise
                event = heartbeat()
            yield event
            if event["event"] in ("end", "no_model", "error"):
                return


def ends_a_sentence_late(text: str, tokens: int, max_tokens: int) -> bool:
    """Whether an answer should stop here: it is past SENTENCE_STOP of its length cap and
    `text` (its latest piece) ends a sentence, so a long answer ends whole, not cut."""
    return tokens >= SENTENCE_STOP * max_tokens and text.rstrip().endswith((".", "!", "?"))


def load_llama(path: Path, settings: Settings):
    """A llama.cpp model, memory-mapped so its pages are shared and load is quick."""
    from llama_cpp import Llama

    return Llama(
        model_path=str(path),
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_batch=256,
        use_mmap=True,
        verbose=False,
    )


def load_model(path: Path, settings: Settings):
    """A batching engine when the settings ask for one and the model can batch; else a
    llama_cpp.Llama that answers one at a time."""
    if settings.parallel > 1:
        from models.tutor.engine import CannotBatch, LlamaEngine, Sampling  # loads llama.cpp

        try:
            return LlamaEngine(
                path,
                cache_bytes=settings.cache_mb << 20,
                sequences=settings.parallel + settings.prefix_slots,
                batch_tokens=settings.batch_tokens,
                threads=settings.n_threads,
                sampling=Sampling(temperature=settings.temperature),
            )
        except CannotBatch as why:
            log.warning("tutor model %s cannot batch (%s): one answer at a time", path.name, why)
    return load_llama(path, settings)


def _interrupt_when(model, check: Callable[[], bool] | None) -> None:
    """Let llama.cpp stop midway through a step once `check()` is true (None: never).

    llama.cpp asks between its compute steps (hundreds a token). A per-token check alone
    cannot cut a long prompt read, nor one token that a saturated processor stretches to
    seconds (seen in CI: the 1 s cap overran by 2.6 s). The Python call costs about 3%
    of decode speed on 2 cores (measured with SmolLM2-135M, 8 runs each way).
    A model without a llama.cpp context (a test's stand-in) is left alone.
    """
    context = getattr(model, "ctx", None)
    if context is None:
        return
    import llama_cpp

    callback = llama_cpp.ggml_abort_callback((lambda _data: check()) if check else 0)
    llama_cpp.llama_set_abort_callback(context, callback, None)
    model.schoolbox_interrupt = callback  # llama.cpp keeps only a pointer: keep it alive


class TutorRuntime:
    """Owns the model and the queue. `submit()` from any thread; one thread generates."""

    def __init__(
        self,
        home: Path,
        settings: Settings | None = None,
        loader: Callable[[Path, Settings], object] = load_model,
    ):
        self.home = Path(home)
        self.settings = settings or Settings()
        self._loader = loader
        self._lock = threading.Condition()
        self._waiting: OrderedDict[str, deque[Job]] = OrderedDict()
        self._active_count: dict[str, int] = {}
        self._queued = 0
        self._taking = 0  # taken off the queue, not yet in the batch (or answered alone)
        self._stopping = False
        self._model: Any = None  # a llama_cpp.Llama once loaded
        self._model_name: str | None = None
        self._model_stamp: int | None = None
        self._load_error: str | None = None
        self._batcher: Batcher | None = None  # when the model writes answers side by side
        self._stamp_checked = 0.0
        self._stamp_seen: int | None = None
        self._warm: deque[list[dict]] = deque()  # lessons to read ahead, newest last
        self._recent_seconds: deque[float] = deque([5.0], maxlen=20)
        self._thread = threading.Thread(target=self._run, name="tutor-generate", daemon=True)

    # --- the public side ---------------------------------------------------------------

    def start(self) -> TutorRuntime:
        self._refresh_model()
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._thread.join(timeout=self.settings.max_prompt_seconds + self.settings.max_seconds + 5)

    def submit(
        self,
        messages: list[dict],
        learner: str,
        max_tokens: int | None = None,
        max_seconds: float | None = None,
    ) -> Job:
        """Queue a question, or raise Busy with how long to wait before asking again."""
        job = Job(
            messages=messages,
            learner=learner,
            max_tokens=min(max_tokens or self.settings.max_tokens, self.settings.max_tokens),
            max_seconds=min(max_seconds or self.settings.max_seconds, self.settings.max_seconds),
        )
        with self._lock:
            if self._active_count.get(learner, 0) >= self.settings.per_learner:
                raise Busy(self._retry_after_locked(), "already_asking")
            if self._queued >= self.settings.queue_size + self._free_places():
                raise Busy(self._retry_after_locked())
            self._waiting.setdefault(learner, deque()).append(job)
            self._active_count[learner] = self._active_count.get(learner, 0) + 1
            self._queued += 1
            position = self._queued
            self._lock.notify()
        job.events.put({"event": "queued", "position": position})
        return job

    def warm(self, messages: list[dict]) -> None:
        """Read a lesson's shared part ahead of its questions, when the tutor has time
        (nothing waits): a learner opened the lesson, and the class will ask about it."""
        with self._lock:
            if len(self._warm) < WARM_REQUESTS:
                self._warm.append(messages)
                self._lock.notify()

    def _free_places(self) -> int:
        """Questions the batch will take at its next step: they wait a moment, not in
        line, so a class asking at once is not told to retry (read from other threads:
        two numbers)."""
        batcher = self._batcher
        if batcher is None:
            return 0
        return max(0, batcher.capacity - len(batcher.answers) - self._taking)

    def cancel(self, job: Job) -> None:
        """The asker went away: drop the question if it is still waiting, else stop it."""
        job.cancelled.set()
        with self._lock:
            self._withdraw_locked(job)

    def position(self, job: Job) -> int:
        """1 for the next question to be answered; 0 once it is being answered."""
        with self._lock:
            order = self._round_robin_order_locked()
            return order.index(job) + 1 if job in order else 0

    def heartbeat(self, job: Job) -> dict:
        """What a question hears while nothing else comes: its place in line; that its
        prompt is being read; or, once it has waited `max_wait_seconds`, that it was
        given up (reason "wait": the asker answers from the lessons instead)."""
        with self._lock:
            order = self._round_robin_order_locked()
            if job not in order:
                return {"event": "reading"}
            if time.monotonic() - job.queued_at <= self.settings.max_wait_seconds:
                return {"event": "waiting", "position": order.index(job) + 1}
            job.cancelled.set()
            self._withdraw_locked(job)
        return {"event": "end", "reason": "wait", "tokens": 0, "model": None}

    def status(self) -> dict:
        with self._lock:
            return {
                "model": self._model_name,
                "load_error": self._load_error,
                "queued": self._queued,
                "queue_size": self.settings.queue_size,
                "retry_after": self._retry_after_locked(),
                **(self._batcher.status() if self._batcher else {"parallel": 1}),
            }

    # --- the generation thread ----------------------------------------------------------

    def _retry_after_locked(self) -> int:
        per_answer = sorted(self._recent_seconds)[len(self._recent_seconds) // 2]
        side_by_side = self._batcher.capacity if self._batcher else 1
        rounds = math.ceil((self._queued + 1) / side_by_side)
        return max(2, min(120, math.ceil(per_answer * rounds)))

    def _round_robin_order_locked(self) -> list[Job]:
        """Waiting questions in the order they will be answered."""
        queues = [list(jobs) for jobs in self._waiting.values()]
        order: list[Job] = []
        depth = max((len(q) for q in queues), default=0)
        for level in range(depth):
            order.extend(q[level] for q in queues if level < len(q))
        return order

    def _next_job(self) -> Job | None:
        with self._lock:
            while not (self._waiting or self._stopping or self._warm_ready_locked()):
                if not self._lock.wait(timeout=IDLE_CHECK_S):
                    self._lock.release()  # load outside the lock: submit() stays quick
                    try:
                        self._refresh_model()
                    finally:
                        self._lock.acquire()
            if self._stopping or not self._waiting:
                return None
            return self._pop_next_locked()

    def _warm_ready_locked(self) -> bool:
        if self._batcher is None:  # one at a time: nothing is read ahead
            self._warm.clear()
        return bool(self._warm)

    def _pop_next_locked(self) -> Job:
        learner, jobs = next(iter(self._waiting.items()))
        job = jobs.popleft()
        del self._waiting[learner]
        if jobs:  # round-robin: this learner's next question goes to the back
            self._waiting[learner] = jobs
        self._queued -= 1
        self._taking += 1  # still holds its place until it is in the batch
        return job

    def _taken(self) -> None:
        with self._lock:
            self._taking -= 1

    def _withdraw_locked(self, job: Job) -> None:
        """Take a question off the queue if it is still waiting there."""
        waiting = self._waiting.get(job.learner)
        if waiting and job in waiting:
            waiting.remove(job)
            if not waiting:
                del self._waiting[job.learner]
            self._queued -= 1
            self._release_learner_locked(job.learner)

    def _finished(self, job: Job) -> None:
        with self._lock:
            self._release_learner_locked(job.learner)

    def _release_learner_locked(self, learner: str) -> None:
        left = self._active_count.get(learner, 1) - 1
        if left:
            self._active_count[learner] = left
        else:
            self._active_count.pop(learner, None)

    def _run(self) -> None:
        while not self._stopping:
            self._read_ahead()
            if self._batcher is not None and self._batcher.active:
                self._admit_waiting(self._batcher)
                self._batcher.step()
                continue
            job = self._next_job()  # None: stopping, or woken to read a lesson ahead
            if job is not None:
                try:
                    self._serve(job)
                finally:
                    self._taken()
        if self._batcher is not None:
            self._batcher.close()

    def _read_ahead(self) -> None:
        """Start reading the lessons learners opened, while no question waits."""
        with self._lock:
            if self._waiting or not self._warm:
                return
            asked, self._warm = list(self._warm), deque()
        if self._batcher is None or self._swap_pending():
            return
        for messages in asked:
            try:
                self._batcher.warm(messages)
            except Exception as error:  # a bad request must not stop the tutor
                log.error("tutor read-ahead failed: %s", type(error).__name__)

    def _serve(self, job: Job) -> None:
        """Take one question while nothing is being written: swap models first if one
        was activated, then start the batch with it, or answer it alone."""
        try:
            self._refresh_model()
            if job.cancelled.is_set():  # left after it was taken off the queue
                self._finished(job)
                return
            if self._model is None:
                job.events.put({"event": "no_model", "reason": self._load_error or "none"})
                self._finished(job)
                return
            if self._batcher is not None:
                # An empty batch takes any question that can ever fit (or refuses it).
                if not self._batcher.admit(job):
                    raise MemoryError("no room in an empty batch")
                return
            started = time.monotonic()
            self._generate(job)
            self._recent_seconds.append(time.monotonic() - started)
            self._finished(job)
        except Exception as error:  # one bad answer must not stop the tutor
            # The type only: a traceback's messages could quote the learner's question.
            log.error("tutor generation failed: %s", type(error).__name__)
            job.events.put({"event": "error", "error": type(error).__name__})
            self._finished(job)

    def _admit_waiting(self, batcher: Batcher) -> None:
        """Between steps: move waiting questions into the batch while it has room, unless
        a newly activated model waits for this batch to end."""
        if self._swap_pending():
            return
        while batcher.has_room():
            with self._lock:
                job = self._pop_next_locked() if self._waiting else None
            if job is None:
                return
            try:
                if job.cancelled.is_set():
                    self._finished(job)
                elif not batcher.admit(job):
                    with self._lock:  # no cells for it yet: first in line again
                        self._waiting.setdefault(job.learner, deque()).appendleft(job)
                        self._waiting.move_to_end(job.learner, last=False)
                        self._queued += 1
                    return
            finally:
                self._taken()

    def _swap_pending(self) -> bool:
        """Whether a newly activated model waits (the store is looked at every few seconds)."""
        now = time.monotonic()
        if now - self._stamp_checked >= IDLE_CHECK_S:
            self._stamp_checked = now
            self._stamp_seen = store.active_stamp(self.home)
        return self._stamp_seen != self._model_stamp

    def _answer_ended(self, job: Job, seconds: float) -> None:
        if seconds > 0:
            self._recent_seconds.append(seconds)
        self._finished(job)

    def _generate(self, job: Job) -> None:
        """Read the prompt (at most max_prompt_seconds), then write (at most max_seconds).

        The writing cap starts when the prompt has been read, so a busy processor that
        slows the reading cannot use up the answer's time before its first word.
        """
        started = time.monotonic()
        job.events.put(
            {"event": "start", "model": self._model_name, "waited_s": started - job.queued_at}
        )
        # One deadline, moved once the first word comes: llama.cpp checks it mid-step.
        deadline = {"until": started + self.settings.max_prompt_seconds}
        _interrupt_when(
            self._model,
            lambda: job.cancelled.is_set() or time.monotonic() > deadline["until"],
        )
        tokens, reason, first, writing_from = 0, "stop", None, None
        chunks = self._model.create_chat_completion(
            messages=job.messages,
            max_tokens=job.max_tokens,
            temperature=self.settings.temperature,
            repeat_penalty=1.1,
            stream=True,
        )
        try:
            for chunk in chunks:  # the first chunk comes once the prompt has been read
                if writing_from is None:
                    writing_from = time.monotonic()
                    deadline["until"] = writing_from + job.max_seconds
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    tokens += 1
                    first = first or time.monotonic()
                    job.events.put({"event": "token", "text": text})
                if choice.get("finish_reason"):
                    reason = choice["finish_reason"]
                elif text and ends_a_sentence_late(text, tokens, job.max_tokens):
                    break  # reason stays "stop": the answer ended at a sentence
                if job.cancelled.is_set():
                    reason = "cancelled"
                    break
                if time.monotonic() > deadline["until"]:
                    reason = "time"
                    break
        except RuntimeError:  # llama.cpp stopped midway through a step when told to
            if not (job.cancelled.is_set() or time.monotonic() > deadline["until"]):
                raise
            if job.cancelled.is_set():
                reason = "cancelled"
            else:
                reason = "prompt_time" if writing_from is None else "time"
        finally:
            _interrupt_when(self._model, None)
            chunks.close()
        ended = time.monotonic()
        job.events.put({
            "event": "end",
            "reason": reason,  # stop, length (max_tokens), time, prompt_time or cancelled
            "tokens": tokens,
            "ttft_s": (first or ended) - started,
            "prompt_s": (writing_from or ended) - started,
            "seconds": ended - started,
            "model": self._model_name,
        })  # fmt: skip

    def _refresh_model(self) -> None:
        """Load the store's active tutor model if it changed; keep the old one if it fails."""
        stamp = store.active_stamp(self.home)
        if stamp == self._model_stamp:
            return
        self._model_stamp = stamp
        try:
            manifest = store.active(self.home, "tutor-llm")
        except (ValueError, TypeError, OSError) as error:  # an unreadable store: keep going
            self._load_error = f"the model store could not be read ({type(error).__name__})"
            log.error("tutor model store unreadable; keeping %s", self._model_name)
            return
        if manifest is None:
            self._replace_model(None, None)
            self._load_error = "no tutor model is active"
            return
        if manifest.name == self._model_name:
            self._load_error = None  # e.g. rolled back to the model that kept serving
            return
        try:
            model = self._loader(store.file_path(self.home, manifest), self.settings)
        except Exception as error:  # a file llama.cpp cannot load: keep serving the old one
            self._load_error = f"{manifest.name} failed to load ({type(error).__name__})"
            log.error("tutor model %s failed to load; keeping %s", manifest.name, self._model_name)
            return
        self._replace_model(model, manifest.name)
        log.info("tutor model %s loaded", manifest.name)

    def _replace_model(self, model: Any, name: str | None) -> None:
        """Put `model` in service; an engine's memory is given back at once, not at GC."""
        old = self._model
        self._model, self._model_name, self._load_error = model, name, None
        self._batcher = None
        if hasattr(model, "decode"):  # a batching engine
            self._batcher = Batcher(
                model,
                parallel=self.settings.parallel,
                prefix_slots=self.settings.prefix_slots,
                parked_bytes=int(self.settings.parked_mb * 2**20),
                max_prompt_seconds=self.settings.max_prompt_seconds,
                model_name=name,
                finished=self._answer_ended,
                ends_sentence=ends_a_sentence_late,
            )
        if old is not None and old is not model and hasattr(old, "close"):
            old.close()
