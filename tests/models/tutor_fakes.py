"""Stand-ins for the tutor's tests: the batching engine (models/tutor/engine.py).

Every character is a token. Its KV cache remembers each sequence's tokens by position and
fails a test when a batch puts a token anywhere but the next position of each sequence it
belongs to, or reads a sequence whose shared prefix was not copied in: the scheduler's
bookkeeping is checked on every decode. Each question is answered with WORDS, then an end
token. The real engine runs the same scheduler in test_tutor_batching.py.
"""

from __future__ import annotations

import json
import threading
import time

WORDS = ["one ", "two ", "three "]
QUESTION, ASKED, END = 1, 0, -1  # markers: the question starts; it ends; the answer ends
FIRST_WORD = 1000  # WORDS[i] is token FIRST_WORD + i


class FakeEngine:
    def __init__(
        self,
        name: str,
        delay: float = 0.02,
        gate: threading.Event | None = None,
        reading: float = 0.0,
        cells: int = 4096,
        batch_tokens: int = 64,
    ):
        self.name, self.delay, self.gate, self.reading = name, delay, gate, reading
        self.cells, self.batch_tokens = cells, batch_tokens
        self.kv: dict[int, list[int]] = {}
        self.asked: list[str] = []  # questions in the order their first word was written
        self.batches: list[list] = []  # every decode's feeds
        self.closed = False
        self.restored = 0  # parked prefixes brought back
        self.prompt_read = 0  # prompt tokens decoded so far (once however many share each)
        self.heard_after: dict[str, int] = {}  # question -> prompt_read at its first word
        self._outputs: dict[int, int] = {}

    def prompt(self, messages: list[dict]) -> tuple[list[int], int]:
        shared = [ord(c) for c in "".join(m["content"] for m in messages[:-1])]
        own = [QUESTION, *(ord(c) for c in messages[-1]["content"]), ASKED]
        return shared + own, len(shared)

    def sampler(self, seed: int) -> dict:
        return {"said": 0}

    def free_sampler(self, sampler: dict) -> None:
        sampler["freed"] = True

    def share(self, source: int, target: int, length: int) -> None:
        assert len(self.kv.get(source, [])) >= length, "shared cells that were never read"
        self.kv[target] = list(self.kv[source][:length])

    def forget(self, seq: int) -> None:
        self.kv.pop(seq, None)

    def keep(self, seq: int, length: int) -> None:
        self.kv[seq] = self.kv[seq][:length]

    def save(self, seq: int) -> bytes:
        return json.dumps(self.kv[seq]).encode()

    def restore(self, seq: int, state: bytes) -> bool:
        self.kv[seq] = json.loads(state)
        self.restored += 1
        return True

    def decode(self, feeds: list) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        if any(f.token == ASKED for f in feeds):
            time.sleep(self.reading)
        time.sleep(self.delay)
        self._outputs = {}
        self.prompt_read += sum(1 for feed in feeds if feed.token < FIRST_WORD)
        for index, feed in enumerate(feeds):
            for seq in feed.seqs:
                seen = self.kv.setdefault(seq, [])
                assert feed.pos == len(seen), f"token at {feed.pos}, sequence {seq} has {len(seen)}"
                seen.append(feed.token)
            if feed.logits:
                self._outputs[index] = feed.seqs[0]
        self.batches.append(list(feeds))

    def sample(self, sampler: dict, index: int) -> int:
        history = self.kv[self._outputs[index]]
        if sampler["said"] == 0:
            start, end = history.index(QUESTION), history.index(ASKED)
            question = "".join(chr(t) for t in history[start + 1 : end])
            self.asked.append(question)
            self.heard_after[question] = self.prompt_read
        said = sampler["said"]
        sampler["said"] += 1
        return FIRST_WORD + said if said < len(WORDS) else END

    def piece(self, token: int) -> bytes:
        return WORDS[token - FIRST_WORD].encode()

    def is_end(self, token: int) -> bool:
        return token == END

    def close(self) -> None:
        self.closed = True


def answer_of(job) -> tuple[str, dict]:
    """A job's whole answer text and its last event."""
    events = list(job.stream(timeout=10))
    return "".join(e["text"] for e in events if e["event"] == "token"), events[-1]
