"""Updates from the district: content packs and model files, signed, checked, applied whole.

An update is a folder holding the payload file and `update.json`, an envelope the
district signs with its Ed25519 key (`schoolbox hub sign`):

    {"format": "schoolbox-update/1", "kind": "content-pack" | "model", "name", "version",
     "model_kind" (models only), "file", "sha256", "size", "signed_at", "signature"}

Signing (the hub, `sign`) and reading an envelope are here, shared by the hub and the box;
checking and applying an update on the box is sync/box/updates.py.
"""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.registry.formats import sha256_of
from sync.files import canonical
from sync.keys import PrivateKeys

FORMAT = "schoolbox-update/1"
ENVELOPE = "update.json"
KINDS = ("content-pack", "model")


class UpdateError(ValueError):
    """An update that is refused; nothing was changed. The message says why."""


def sign(district: PrivateKeys, payload: Path, kind: str, name: str, version: str,
         into: Path, model_kind: str | None = None) -> Path:  # fmt: skip
    """Put a signed update for `payload` in the folder `into`; return the folder. A
    model's card (`X.card.json` beside it) is signed and travels with it."""
    if kind not in KINDS:
        raise UpdateError(f"Unknown update kind {kind!r}; use one of {', '.join(KINDS)}.")
    into.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(payload, into / payload.name)
    body: dict[str, Any] = {
        "format": FORMAT, "kind": kind, "name": name, "version": version,
        "model_kind": model_kind, "file": payload.name, "sha256": sha256_of(into / payload.name),
        "size": payload.stat().st_size,
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    card = payload.with_suffix(".card.json")
    if kind == "model" and card.is_file():
        shutil.copyfile(card, into / card.name)
        body["card"] = {"file": card.name, "sha256": sha256_of(card), "size": card.stat().st_size}
    signature = base64.b64encode(district.signing.sign(canonical(body))).decode()
    (into / ENVELOPE).write_text(json.dumps({**body, "signature": signature}, indent=2))
    return into


def files_of(envelope: dict) -> list[str]:
    """The files an update's envelope names: the payload, and a model's signed card."""
    card = envelope.get("card")
    card_file = [str(card.get("file", "")) if isinstance(card, dict) else ""] if card else []
    return [str(envelope.get("file", "")), *card_file]


def copy_to(source: Path, target: Path) -> int:
    """Copy every update folder under `source` into `target` (a USB stick); return how many."""
    copied = 0
    for folder in sorted(p.parent for p in source.glob(f"*/{ENVELOPE}")):
        shutil.copytree(folder, target / folder.name, dirs_exist_ok=True)
        copied += 1
    return copied


def read_envelope(folder: Path) -> dict:
    try:
        envelope = json.loads((folder / ENVELOPE).read_text())
        if envelope.get("format") != FORMAT or envelope.get("kind") not in KINDS:
            raise ValueError("not a Schoolbox update")
        for key in ("name", "version", "file", "sha256"):
            if not isinstance(envelope.get(key), str):
                raise ValueError(f"no {key}")
        if not isinstance(envelope.get("size"), int):
            raise ValueError("no size")
        if not isinstance(envelope.get("card", {}), dict):
            raise ValueError("a card entry that is not an object")
    except (OSError, ValueError, AttributeError) as error:
        raise UpdateError(f"{folder.name} is not a readable update ({error}).") from error
    return envelope
