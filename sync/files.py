"""Writing sync's files so that a crash leaves the old file or the new one, never half."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from appliance.paths import private_mode


def write_durably(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temporary file, fsync, rename, fsync of the folder.
    The file is private (`private_mode`), so it may hold a secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        os.fchmod(fd, private_mode(path.parent))
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def create_secret(path: Path, data: bytes) -> bool:
    """Create `path` holding `data`, private (`private_mode`), whole or not at all, and
    never over an existing file (False then). Written to a temporary file, fsynced, then
    linked into place, so a power cut cannot leave an empty or half-written key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        os.fchmod(fd, private_mode(path.parent))
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
    finally:
        Path(temporary).unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def fsync_dir(folder: Path) -> None:
    """Make a rename or link in `folder` survive a power cut."""
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_json(path: Path, document: dict) -> None:
    write_durably(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def canonical(document: dict) -> bytes:
    """The one byte form of a JSON document that signatures cover: sorted, no spaces."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
