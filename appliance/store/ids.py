"""Time-ordered unique ids (UUIDv7, RFC 9562) for append-only logs and public ids."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7(at_ms: int | None = None) -> str:
    """A UUIDv7 as text: sorts by creation time, monotonic within this process.

    `at_ms` backdates the id (milliseconds since the epoch) for records loaded with
    their original time, such as the demo school's history.
    """
    global _last_ms, _counter
    if at_ms is not None:
        return _compose(at_ms, secrets_counter(), int.from_bytes(os.urandom(8), "big"))
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same (or an earlier, after a clock step) millisecond: keep order with a
            # 12-bit counter in rand_a, borrowing the next millisecond if it overflows.
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
    return _compose(ms, counter, int.from_bytes(os.urandom(8), "big"))


def secrets_counter() -> int:
    return int.from_bytes(os.urandom(2), "big") & 0xFFF


def _compose(ms: int, counter: int, random_bits: int) -> str:
    rand_b = random_bits & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))
