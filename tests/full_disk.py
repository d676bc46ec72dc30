"""Filling a filesystem to its last byte, for the full-disk tests (tests/appliance/
test_faults.py), in the test process or in a child that must not load more first."""

from __future__ import annotations

import os
from pathlib import Path


def fill(folder: Path) -> Path:
    """Write a file until the filesystem under `folder` has no byte left; the file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler
