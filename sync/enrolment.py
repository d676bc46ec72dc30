"""A box's keys on disk, its enrolment request to the district, and the district keys it pins.

    <home>/keys/box.key         the box's private keys (0600, made by `schoolbox init`)
    <home>/keys/district.json   the district's public keys, pinned (first-boot config or
                                `schoolbox sync trust FILE`)

Rotation: `rotate_box_keys` makes new keys and a request *endorsed* by the old signing
key, so the hub can move the box to its new keys without anyone re-checking a
fingerprint; the old key file is kept beside, renamed, until the operator removes it.
A pinned district key is replaced only on purpose (`replace=True`), or by a new key
document signed with the pinned key (`district_rotation`).
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from appliance import paths
from sync.files import canonical, write_json
from sync.keys import KeyFileError, PrivateKeys, PublicKeys, generate, read_private, write_private

REQUEST_FORMAT = "schoolbox-enrolment/1"
ROTATION_FORMAT = "schoolbox-district-rotation/1"


class EnrolmentError(ValueError):
    """An enrolment, pin or rotation that is refused; the message says why."""


def box_key_path(home: Path) -> Path:
    return paths.box_key(home)


def district_path(home: Path) -> Path:
    return paths.district_keys(home)


def ensure_box_keys(home: Path, box_id: str) -> PrivateKeys:
    """The box's keys, made on first use."""
    path = box_key_path(home)
    if not path.exists():
        write_private(generate(box_id), path)
    keys = read_private(path)
    if keys.owner != box_id:
        raise KeyFileError(f"{path} belongs to box {keys.owner}, not {box_id}.")
    return keys


def request(keys: PrivateKeys, site_name: str, endorsed_by: PrivateKeys | None = None) -> dict:
    """The enrolment request the district registers: box id, site name, public keys; with
    `endorsed_by`, signed by the box's previous key (rotation)."""
    document: dict[str, Any] = {
        "format": REQUEST_FORMAT,
        "box_id": keys.owner,
        "site_name": site_name,
        "keys": keys.public().to_json(),
    }
    if endorsed_by is not None:
        document["endorsement"] = _sign(endorsed_by, document["keys"])
    return document


def rotate_box_keys(home: Path, site_name: str) -> dict:
    """New box keys; the old file is kept as box.key.retired-<time>. Returns the endorsed
    request to take to the hub."""
    path = box_key_path(home)
    old = read_private(path)
    retired = path.with_name(f"box.key.retired-{int(time.time())}")
    os.rename(path, retired)
    try:
        write_private(generate(old.owner), path)
    except BaseException:
        os.rename(retired, path)
        raise
    return request(read_private(path), site_name, endorsed_by=old)


def check_request(document: dict) -> tuple[PublicKeys, str | None]:
    """The keys in a request and its endorsement, once the request's shape is checked."""
    if not isinstance(document, dict) or document.get("format") != REQUEST_FORMAT:
        raise EnrolmentError("This is not a Schoolbox enrolment request.")
    keys = PublicKeys.from_json(document.get("keys") or {})
    if keys.owner != document.get("box_id"):
        raise EnrolmentError("The request's keys belong to another box.")
    if not isinstance(document.get("site_name"), str) or not document["site_name"].strip():
        raise EnrolmentError("The request has no site name.")
    return keys, document.get("endorsement")


def endorsement_is_valid(previous: PublicKeys, document: dict) -> bool:
    """True if the request's new keys were signed by the box's previous signing key."""
    try:
        signature = base64.b64decode(document.get("endorsement") or "", validate=True)
        previous.signing.verify(signature, canonical(document["keys"]))
        return True
    except (InvalidSignature, ValueError, KeyError):
        return False


def pin_district(home: Path, document: dict, replace: bool = False) -> PublicKeys:
    """Pin the district's public keys; an already pinned, different key is replaced only
    with `replace` (an operator's deliberate choice)."""
    keys = PublicKeys.from_json(document)
    current = district_keys(home)
    if current is not None and current.to_json() != keys.to_json() and not replace:
        raise EnrolmentError(
            f"This box already trusts district keys {current.fingerprint()}; these are "
            f"{keys.fingerprint()}. Use --replace only if the district told you its keys changed."
        )
    write_json(district_path(home), keys.to_json())
    return keys


def district_keys(home: Path) -> PublicKeys | None:
    path = district_path(home)
    return PublicKeys.from_json(json.loads(path.read_text())) if path.exists() else None


def district_rotation(old: PrivateKeys, new: PrivateKeys) -> dict:
    """The district's new public keys, signed with its old key: boxes that pinned the old
    key accept the new one from this document alone."""
    keys = new.public().to_json()
    return {"format": ROTATION_FORMAT, "keys": keys, "signature": _sign(old, keys)}


def accept_district_rotation(home: Path, document: dict) -> PublicKeys:
    """Move the pinned district key to the one in a rotation document signed by it."""
    current = district_keys(home)
    if current is None:
        raise EnrolmentError("No district key is pinned yet: pin one first.")
    try:
        if document.get("format") != ROTATION_FORMAT:
            raise ValueError("format")
        signature = base64.b64decode(document["signature"], validate=True)
        current.signing.verify(signature, canonical(document["keys"]))
    except (InvalidSignature, ValueError, KeyError, TypeError, AttributeError) as error:
        raise EnrolmentError(
            "The new district keys are not signed by the district key this box trusts."
        ) from error
    return pin_district(home, document["keys"], replace=True)


def _sign(keys: PrivateKeys, document: dict) -> str:
    return base64.b64encode(keys.signing.sign(canonical(document))).decode()
