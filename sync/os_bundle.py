"""RAUC update bundles as the hub and the box read them: `rauc info` says whether a bundle
is signed by a key the reader trusts, and for which kind of box and version it is.

The hub checks a bundle before it offers it (sync/hub/os_updates.py); the box checks it
again, against the certificate its own image carries, before installing it
(sync/box/os_update.py). The bytes are RAUC's to judge: nothing here parses them.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from models.registry.formats import sha256_of

RAUC = "rauc"
# A bundle's file name as the hub offers it and a box accepts it (image/update.py's names).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.raucb")
RECORD = ".json"  # beside a bundle on the hub and in a box's downloads: what it is


class OsUpdateError(RuntimeError):
    """An OS update that was refused or failed; nothing on the box changed. Says why."""


@dataclass(frozen=True)
class Bundle:
    """A bundle RAUC accepted: signed by the district, for this kind of box."""

    path: Path
    version: str
    compatible: str
    sha256: str


def inspect(bundle: Path, keyring: Path | None = None) -> Bundle:
    """The bundle's version, if RAUC finds it signed by a key it trusts (the system's
    keyring, or `keyring`); OsUpdateError with RAUC's reason otherwise."""
    command = [RAUC, "info", "--output-format=json", str(bundle)]
    if keyring is not None:
        command.insert(2, f"--keyring={keyring}")
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError as error:
        raise OsUpdateError("RAUC is not installed, so no OS update can be checked.") from error
    if result.returncode != 0:
        reason = last_line(result.stderr) or f"rauc exited with {result.returncode}"
        raise OsUpdateError(
            f"{bundle.name} was refused: {reason}. Only updates signed by the district "
            "are installed; ask district IT for the update again."
        )
    info = json.loads(result.stdout)
    return Bundle(bundle, str(info.get("version")), str(info.get("compatible")), sha256_of(bundle))


def last_line(text: str) -> str:
    """The last line that says something (RAUC puts its reason there)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
