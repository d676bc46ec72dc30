"""The bundle: what a box sends the district, sealed, signed and chained.

    magic "SBXB" | version (1 byte) | header length (4 bytes, big-endian) | header
    | ciphertext length (4 bytes) | ciphertext | Ed25519 signature (64 bytes)

The header is canonical JSON (format, box id, sequence number, SHA-256 of the box's
previous bundle, created-at, record counts, suite). The ciphertext is the compressed
payload sealed with HPKE (RFC 9180, `cryptography`'s single-shot API) to the district's
key, with the header's SHA-256 in HPKE's `info`, so a ciphertext cannot be moved under
another header. The signature covers every byte before it. docs/bundle-format.md is
the specification; this module is its only reader and writer.

`open_bundle` raises BundleError, with a status and a message, for anything it cannot
trust, and only after every check has passed returns the records.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke

from .files import canonical
from .keys import PrivateKeys, PublicKeys

MAGIC = b"SBXB"
VERSION = 1
SIGNATURE_BYTES = 64
MAX_BYTES = 1 << 20  # default cap: a weak link moves one bundle at a time
MAX_PAYLOAD_BYTES = 64 << 20  # decompressed: a bundle that expands past this is refused
SUITES = {
    "x25519": hpke.KEM.X25519,
    "mlkem768-x25519": hpke.KEM.MLKEM768_X25519,
}
_KDF, _AEAD = hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305  # ChaCha: fast without AES-NI
_HEAD = struct.Struct(">4sBI")
_LENGTH = struct.Struct(">I")
_INFO = b"schoolbox bundle v1 "


class BundleError(ValueError):
    """A bundle that is refused; `status` is what the hub answers (400, 403, 409, 413)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Header:
    box_id: str
    seq: int
    prev: str  # hex SHA-256 of the box's previous bundle; "" before the first
    created_at: str
    counts: dict[str, int]
    suite: str = "x25519"

    def to_bytes(self) -> bytes:
        document = {"format": VERSION, **self.__dict__}
        return canonical(document)


def counts_of(records: dict[str, dict]) -> dict[str, int]:
    """Record type -> number of rows, as the header states them."""
    return {kind: len(table["rows"]) for kind, table in records.items()}


def seal(
    header: Header,
    records: dict[str, dict],
    district: PublicKeys,
    box: PrivateKeys,
    max_bytes: int = MAX_BYTES,
) -> bytes:
    """The bundle for `records` (record type -> {"fields": [names], "rows": [[values]]}),
    or BundleError (413) if it would be larger than `max_bytes` (the caller then puts fewer
    records in)."""
    if header.suite not in SUITES:
        raise BundleError(f"Unknown suite {header.suite!r}; use one of {', '.join(SUITES)}.")
    if header.counts != counts_of(records):
        raise BundleError("The header's record counts do not match the records.")
    head = header.to_bytes()
    payload = zlib.compress(json.dumps(records, separators=(",", ":")).encode(), 9)
    recipient = district.hybrid() if header.suite == "mlkem768-x25519" else district.x25519
    ciphertext = _suite(header.suite).encrypt(payload, recipient, info=_info(head))
    body = _HEAD.pack(MAGIC, VERSION, len(head)) + head + _LENGTH.pack(len(ciphertext)) + ciphertext
    bundle = body + box.signing.sign(body)
    if len(bundle) > max_bytes:
        raise BundleError(f"The bundle would be {len(bundle)} bytes, over {max_bytes}.", 413)
    return bundle


def read_header(bundle: bytes, max_bytes: int = MAX_BYTES) -> Header:
    """The header, read without trusting anything else (no signature checked yet)."""
    return _parse(bundle, max_bytes)[0]


def open_bundle(
    bundle: bytes,
    keys_of: Callable[[str], PublicKeys | None],
    district: PrivateKeys,
    max_bytes: int = MAX_BYTES,
    suites: tuple[str, ...] = tuple(SUITES),
) -> tuple[Header, dict[str, dict]]:
    """Check and open a bundle: its shape, its box (`keys_of(box_id)`: the enrolled keys,
    or None), its signature, its suite, its ciphertext and its payload."""
    header, head, body, ciphertext, signature = _parse(bundle, max_bytes)
    sender = keys_of(header.box_id)
    if sender is None:
        raise BundleError(f"Box {header.box_id!r} is not enrolled at this hub.", 403)
    try:
        sender.signing.verify(signature, body)
    except InvalidSignature as error:
        raise BundleError("The bundle's signature does not match its box's key.", 403) from error
    if header.suite not in suites:
        raise BundleError(f"Suite {header.suite!r} is not accepted here.", 400)
    own = district.hybrid() if header.suite == "mlkem768-x25519" else district.x25519
    try:
        payload = _suite(header.suite).decrypt(ciphertext, own, info=_info(head))
    except (InvalidTag, ValueError) as error:
        raise BundleError("The bundle was not sealed to this district's key.", 403) from error
    records = _payload(payload)
    if header.counts != counts_of(records):
        raise BundleError("The bundle's records do not match its header's counts.")
    return header, records


def digest(bundle: bytes) -> str:
    """What the next bundle's `prev` must be."""
    return hashlib.sha256(bundle).hexdigest()


def _parse(bundle: bytes, max_bytes: int):
    if len(bundle) > max_bytes:
        raise BundleError(f"The bundle is {len(bundle)} bytes, over {max_bytes}.", 413)
    if len(bundle) < _HEAD.size + _LENGTH.size + SIGNATURE_BYTES:
        raise BundleError("The bundle is truncated.")
    magic, version, head_length = _HEAD.unpack_from(bundle)
    if magic != MAGIC:
        raise BundleError("This is not a Schoolbox bundle.")
    if version != VERSION:
        raise BundleError(f"Bundle format {version} is not one this hub reads (it reads 1).")
    head_end = _HEAD.size + head_length
    if head_end + _LENGTH.size + SIGNATURE_BYTES > len(bundle):
        raise BundleError("The bundle is truncated (header).")
    (ct_length,) = _LENGTH.unpack_from(bundle, head_end)
    ct_start = head_end + _LENGTH.size
    if ct_start + ct_length + SIGNATURE_BYTES != len(bundle):
        raise BundleError("The bundle is truncated or has bytes after its end.")
    head = bundle[_HEAD.size : head_end]
    body = bundle[: ct_start + ct_length]
    return (
        _header(head), head, body, bundle[ct_start : ct_start + ct_length],
        bundle[ct_start + ct_length :],
    )  # fmt: skip


def _header(head: bytes) -> Header:
    try:
        data = json.loads(head)
        if not isinstance(data, dict) or data.pop("format", None) != VERSION:
            raise ValueError("wrong format")
        header = Header(**data)
        _check_header(header)
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as error:
        raise BundleError(f"The bundle's header is malformed ({error}).") from error
    if header.to_bytes() != head:  # one canonical form: nothing else can hide in it
        raise BundleError("The bundle's header is not in canonical form.")
    return header


def _check_header(header: Header) -> None:
    if not (isinstance(header.box_id, str) and 0 < len(header.box_id) <= 64):
        raise ValueError("box_id")
    if not (isinstance(header.seq, int) and not isinstance(header.seq, bool) and header.seq >= 1):
        raise ValueError("seq")
    if not (isinstance(header.prev, str) and len(header.prev) in (0, 64)):
        raise ValueError("prev")
    if not (isinstance(header.created_at, str) and len(header.created_at) <= 40):
        raise ValueError("created_at")
    if not isinstance(header.counts, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in header.counts.items()
    ):
        raise ValueError("counts")
    if header.suite not in SUITES:
        raise ValueError("suite")


def _payload(payload: bytes) -> dict[str, dict]:
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(payload, MAX_PAYLOAD_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("too large or cut off")
        records = json.loads(text)
        if not isinstance(records, dict) or not all(
            isinstance(kind, str) and _is_table(table) for kind, table in records.items()
        ):
            raise ValueError("not tables of records")
    except (zlib.error, ValueError, UnicodeDecodeError, RecursionError) as error:
        raise BundleError(f"The bundle's payload is malformed ({error}).") from error
    return records


def _is_table(table) -> bool:
    if not isinstance(table, dict) or set(table) != {"fields", "rows"}:
        return False
    fields, rows = table["fields"], table["rows"]
    return (
        isinstance(fields, list) and all(isinstance(f, str) for f in fields)
        and isinstance(rows, list)
        and all(isinstance(r, list) and len(r) == len(fields) for r in rows)
    )  # fmt: skip


def _suite(name: str) -> hpke.Suite:
    return hpke.Suite(SUITES[name], _KDF, _AEAD)


def _info(head: bytes) -> bytes:
    return _INFO + hashlib.sha256(head).digest()
