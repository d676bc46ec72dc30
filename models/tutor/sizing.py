"""How many tutor answers a box writes at once, and the memory they get.

The defaults of `tutor_parallel`, `tutor_cache_mb` and `tutor_streams`, chosen from the
box's cores and memory; the service, the server and the web workers all read them here
so they agree. docs/tutor.md explains the figures.
"""

from __future__ import annotations

import os


def parallel(cores: int | None = None, memory_mb: int | None = None) -> int:
    """How many answers to write side by side on this box (the `tutor_parallel` default).

    Batching costs memory, not speed: a decode step for many answers reads the weights
    once. A board under 1.5 GB answers one at a time; otherwise 16 per core, at most 32
    (a class asks at once), and at most 16 under 3 GB.
    """
    cores = cores or os.cpu_count() or 1
    memory_mb = memory_mb if memory_mb is not None else memory_total_mb()
    if memory_mb < 1536:
        return 1
    return min(16 * cores, 32 if memory_mb >= 3072 else 16)


def cache_mb(memory_mb: int | None = None) -> int:
    """The batched KV cache's budget (the `tutor_cache_mb` default): a sixteenth of the
    box's memory, between 64 and 256 MB (256 MB hold 30 answers of 200 tokens on one
    lesson with SmolLM2-135M: 23 KB a token)."""
    memory_mb = memory_mb if memory_mb is not None else memory_total_mb()
    return max(64, min(256, memory_mb // 16))


def streams(answers: int, workers: int, threads: int) -> int:
    """Tutor answers one web worker streams at once (the `tutor_streams` default): all
    the answers written at once, plus two to hear their place in line, and never fewer
    than half the page threads (as before batching). Not a share per worker: the kernel
    spreads a class's connections unevenly over the workers (the bench saw 4 of 30
    learners refused with 20 a worker and 2 workers)."""
    return max(threads // 2, answers + 2)


def memory_total_mb() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 1024  # unknown: assume a small board
