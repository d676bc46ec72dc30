"""An OS image release's signature: the district signs the sha256 of every file it
publishes (the image, its package list), and district IT checks them before flashing.

`image/build.py` writes `schoolbox-<arch>.img.sig.json` beside the image:

    {"format": "schoolbox-image-signature/1", "files": {name: sha256},
     "signed_by": district key fingerprint, "signature": base64 Ed25519 over format+files}

`schoolbox image verify` reads it back: the signature against the district's public
keys, then each named file in the same folder against its sha256. A file that is missing,
changed or truncated, or a signature by another key, is reported, never flashed quietly.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from models.registry.formats import sha256_of
from sync.files import canonical, write_durably
from sync.keys import PrivateKeys, PublicKeys

FORMAT = "schoolbox-image-signature/1"
SUFFIX = ".sig.json"
MAX_BYTES = 64 * 1024  # a signature lists a handful of files


class ReleaseError(ValueError):
    """A release that must not be flashed; the message says why and what to do."""


def sign(district: PrivateKeys, files: list[Path], out: Path) -> dict[str, str]:
    """Write the district's signature over the sha256 of each of `files` to `out`."""
    sums = {path.name: sha256_of(path) for path in files}
    body = {"format": FORMAT, "files": sums}
    signature = base64.b64encode(district.signing.sign(canonical(body))).decode()
    signed = {**body, "signed_by": district.public().fingerprint(), "signature": signature}
    write_durably(out, json.dumps(signed, indent=2).encode() + b"\n")
    return sums


def verify(signature_file: Path, trusted: PublicKeys) -> dict[str, str]:
    """The files the signature names, each checked against its sha256 in the same folder;
    raises ReleaseError on the first thing wrong."""
    body = _signed_body(signature_file, trusted)
    for name, digest in body["files"].items():
        path = signature_file.parent / name
        if not path.is_file():
            raise ReleaseError(
                f"{name} is named by the signature but is not beside it in "
                f"{signature_file.parent}; download it again."
            )
        if sha256_of(path) != digest:
            raise ReleaseError(
                f"{name} is not the file the district signed (its sha256 differs): the "
                "download is damaged or the file was changed. Do not flash it; download it again."
            )
    return dict(body["files"])


def _signed_body(signature_file: Path, trusted: PublicKeys) -> dict[str, Any]:
    try:
        if signature_file.stat().st_size > MAX_BYTES:
            raise ReleaseError(f"{signature_file.name} is too large to be an image signature.")
        document = json.loads(signature_file.read_bytes())
    except OSError as error:
        raise ReleaseError(f"{signature_file} could not be read: {error.strerror}.") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        message = f"{signature_file.name} is not an image signature (not JSON)."
        raise ReleaseError(message) from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ReleaseError(f"{signature_file.name} is not a Schoolbox image signature.")
    files = document.get("files")
    if not isinstance(files, dict) or not files:
        raise ReleaseError(f"{signature_file.name} names no files.")
    # Plain names only: a signature can never point outside its own folder.
    if not all(isinstance(k, str) and isinstance(v, str) and k == Path(k).name
               and k not in ("", ".", "..") for k, v in files.items()):  # fmt: skip
        raise ReleaseError(f"{signature_file.name} names its files in a way that is not allowed.")
    body = {"format": FORMAT, "files": files}
    try:
        raw = base64.b64decode(document.get("signature") or "", validate=True)
        trusted.signing.verify(raw, canonical(body))
    except (InvalidSignature, ValueError, TypeError) as error:
        raise ReleaseError(
            f"The image's signature does not match the district key {trusted.fingerprint()}: "
            "it was signed by another key, or the list of files was changed. Do not flash it."
        ) from error
    return body
