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
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke

from sync.files import canonical
from sync.keys import PrivateKeys, PublicKeys

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
        data = json.loads(head, object_pairs_hook=_unique_keys)
        if not isinstance(data, dict) or data.pop("format", None) != VERSION:
            raise ValueError("its format is not 1")
        header = Header(**data)
        _check_header(header)
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as error:
        raise BundleError(f"The bundle's header is malformed: {error}.") from error
    if header.to_bytes() != head:  # one canonical form: nothing else can hide in it
        raise BundleError("The bundle's header is not in canonical form.")
    return header


_BOX_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_DIGEST = re.compile(r"([0-9a-f]{64})?")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?Z")
_KIND = re.compile(r"[a-z_]{1,32}")
MAX_SEQ = 2**31 - 1  # the hub's sequence column is a PostgreSQL INTEGER


def _check_header(header: Header) -> None:
    """ValueError naming the first field outside docs/bundle-format.md's header table.
    Read before the signature is checked, so nothing here may trust its input."""
    if not (isinstance(header.box_id, str) and _BOX_ID.fullmatch(header.box_id)):
        raise ValueError("box_id is not 1-64 letters, digits, '.', '_' or '-'")
    if not (_is_int(header.seq) and 1 <= header.seq <= MAX_SEQ):
        raise ValueError(f"seq is not a whole number from 1 to {MAX_SEQ}")
    if not (isinstance(header.prev, str) and _DIGEST.fullmatch(header.prev)):
        raise ValueError("prev is not a SHA-256 in hex, nor empty")
    if not (isinstance(header.created_at, str) and _TIME.fullmatch(header.created_at)):
        raise ValueError("created_at is not an ISO-8601 UTC time")
    if not isinstance(header.counts, dict) or not all(
        isinstance(k, str) and _KIND.fullmatch(k) and _is_int(v) and 0 <= v <= MAX_PAYLOAD_BYTES
        for k, v in header.counts.items()
    ):
        raise ValueError("counts is not record types with their numbers of records")
    if header.suite not in SUITES:
        raise ValueError(f"suite is not one of {', '.join(SUITES)}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unique_keys(pairs: list[tuple]) -> dict:
    """A JSON object, refused (ValueError) if it names a key twice: the last one would win
    silently, so a reader and a checker could see different values."""
    found = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {ascii(key)[:40]} appears twice in one object")
        found[key] = value
    return found


def _payload(payload: bytes) -> dict[str, dict]:
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(payload, MAX_PAYLOAD_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("too large or cut off")
        records = json.loads(text, object_pairs_hook=_unique_keys)
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
