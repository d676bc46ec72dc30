"""A bundle's acknowledgement: the hub signs one for every bundle it applied (or had
applied before), and the box checks it before it prunes the bundle."""

from __future__ import annotations

import base64
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature

from sync.files import canonical
from sync.keys import PrivateKeys, PublicKeys

ACK_FORMAT = "schoolbox-ack/1"


def sign(district: PrivateKeys, box_id: str, seq: int, digest: str, outcome: str) -> dict:
    """The hub's signed acknowledgement of one bundle, with what became of it."""
    body = {"format": ACK_FORMAT, "box_id": box_id, "seq": seq, "digest": digest,
            "outcome": outcome}  # fmt: skip
    signature = district.signing.sign(canonical(body))
    return {**body, "signature": base64.b64encode(signature).decode()}


def check(ack: dict, district: PublicKeys, expected: Callable[[int], str | None]) -> int:
    """The sequence number an acknowledgement covers, if the district signed it and it
    names a bundle this box sent (`expected(seq)`: that bundle's digest); else ValueError."""
    try:
        body = {k: ack[k] for k in ("format", "box_id", "seq", "digest", "outcome")}
        district.signing.verify(base64.b64decode(ack["signature"], validate=True), canonical(body))
    except (KeyError, TypeError, ValueError, InvalidSignature) as error:
        raise ValueError("The acknowledgement is not signed by the district.") from error
    if body["format"] != ACK_FORMAT or expected(body["seq"]) != body["digest"]:
        raise ValueError("The acknowledgement is for a bundle this box did not send.")
    return body["seq"]
