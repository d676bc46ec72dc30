"""The school's sealed backup: what a box keeps at the hub so a new box can take its place.

    magic "SBXR" | version (1 byte) | header length (4 bytes, big-endian) | header
    | ciphertext length (4 bytes) | ciphertext | Ed25519 signature (64 bytes)

The same framing as a sync bundle (sync/bundle.py). The header is canonical JSON (format,
box id, site name, created-at, schema version, the recovery key's fingerprint, suite). The
ciphertext is a zip of the files a restore needs (the database copy, the session and
pseudonym keys), sealed with HPKE's hybrid ML-KEM-768+X25519 suite to the school's
*recovery key*, with the header's SHA-256 in HPKE's `info`. The box signs every byte
before the signature, as it signs bundles.

The recovery key is the school's, not the district's: the box keeps only its public half
(keys/recovery.json), the private half goes on a stick or paper the school keeps, and the
hub stores backups it cannot read. Post-quantum hybrid, because a backup of children's
answers is kept for years. docs/image.md, "Replacing a broken box", is the how-to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke

from sync.files import canonical
from sync.keys import PrivateKeys, PublicKeys, generate

MAGIC = b"SBXR"
VERSION = 1
SUFFIX = ".sbxr"
SIGNATURE_BYTES = 64
MAX_BYTES = 256 << 20  # a school's database compresses well; a backup past this is refused
MAX_FILE_BYTES = 2 << 30  # one file inside, once unzipped
DATABASE = "schoolbox.db"
FILES = (DATABASE, "secret.key", "pseudonym.key")  # the pseudonym key only once sync made one
RECOVERY_OWNER = "recovery"
_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_HEAD = struct.Struct(">4sBI")
_LENGTH = struct.Struct(">I")
_INFO = b"schoolbox backup v1 "
REQUEST_FORMAT = "schoolbox-backup-request/1"
VOUCHER_FORMAT = "schoolbox-backup-voucher/1"
_BOX_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class BackupError(ValueError):
    """A backup that cannot be trusted or opened; the message says what to do."""


@dataclass(frozen=True)
class Header:
    box_id: str
    site_name: str
    created_at: str
    schema: int  # the database's schema version (appliance/store/migrations.py)
    recovery: str  # fingerprint of the recovery key it is sealed to

    def to_bytes(self) -> bytes:
        return canonical({"format": VERSION, "suite": "mlkem768-x25519", **self.__dict__})


def new_recovery_key() -> PrivateKeys:
    """A new recovery key pair (its signing half is unused)."""
    return generate(RECOVERY_OWNER)


def seal(header: Header, files: dict[str, bytes], recovery: PublicKeys, box: PrivateKeys) -> bytes:
    """The backup of `files` (name -> bytes, names from FILES), sealed to `recovery` and
    signed by the box."""
    if header.recovery != recovery.fingerprint():
        raise BackupError("The header names another recovery key than the one sealed to.")
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    head = header.to_bytes()
    ciphertext = _SUITE.encrypt(payload.getvalue(), recovery.hybrid(), info=_info(head))
    body = _HEAD.pack(MAGIC, VERSION, len(head)) + head + _LENGTH.pack(len(ciphertext)) + ciphertext
    backup = body + box.signing.sign(body)
    if len(backup) > MAX_BYTES:
        raise BackupError(f"The backup would be {len(backup) >> 20} MB, over {MAX_BYTES >> 20} MB.")
    return backup


def read_header(backup: bytes) -> Header:
    """The header, read without trusting anything else yet."""
    return _parse(backup)[0]


def check_signature(backup: bytes, box: PublicKeys) -> Header:
    """The header, once the box's signature over the whole backup checks out."""
    header, _, body, _, signature = _parse(backup)
    try:
        box.signing.verify(signature, body)
    except InvalidSignature as error:
        raise BackupError("The backup's signature does not match its box's key.") from error
    return header


def open_backup(backup: bytes, recovery: PrivateKeys) -> tuple[Header, dict[str, bytes]]:
    """The header and the files of a backup, opened with the school's recovery key."""
    header, head, _, ciphertext, _ = _parse(backup)
    if header.recovery != recovery.public().fingerprint():
        raise BackupError(
            f"This backup was sealed to recovery key {header.recovery}, and the key given is "
            f"{recovery.public().fingerprint()}: use the key the school kept for that time."
        )
    try:
        payload = _SUITE.decrypt(ciphertext, recovery.hybrid(), info=_info(head))
    except (InvalidTag, ValueError) as error:
        raise BackupError("The backup does not open with this recovery key.") from error
    return header, _files(payload)


def _files(payload: bytes) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            entries = archive.infolist()
            names = {e.filename for e in entries}
            if not names <= set(FILES) or not {DATABASE, "secret.key"} <= names:
                raise BackupError(f"The backup holds {sorted(names)}, not {FILES}.")
            if any(e.file_size > MAX_FILE_BYTES for e in entries):
                raise BackupError("A file in the backup is larger than a box's database can be.")
            return {e.filename: archive.read(e) for e in entries}
    except (zipfile.BadZipFile, OSError) as error:
        raise BackupError(f"The backup's contents are damaged ({error}).") from error


def _parse(backup: bytes):
    if len(backup) > MAX_BYTES:
        raise BackupError(f"The backup is over {MAX_BYTES >> 20} MB.")
    if len(backup) < _HEAD.size + _LENGTH.size + SIGNATURE_BYTES:
        raise BackupError("The backup is truncated.")
    magic, version, head_length = _HEAD.unpack_from(backup)
    if magic != MAGIC:
        raise BackupError("This is not a Schoolbox backup.")
    if version != VERSION:
        raise BackupError(f"Backup format {version} is not one this Schoolbox reads (1).")
    head_end = _HEAD.size + head_length
    if head_end + _LENGTH.size + SIGNATURE_BYTES > len(backup):
        raise BackupError("The backup is truncated (header).")
    (ct_length,) = _LENGTH.unpack_from(backup, head_end)
    ct_start = head_end + _LENGTH.size
    if ct_start + ct_length + SIGNATURE_BYTES != len(backup):
        raise BackupError("The backup is truncated or has bytes after its end.")
    head = backup[_HEAD.size : head_end]
    return (
        _header(head), head, backup[: ct_start + ct_length],
        backup[ct_start : ct_start + ct_length], backup[ct_start + ct_length :],
    )  # fmt: skip


def _header(head: bytes) -> Header:
    try:
        data = json.loads(head)
        if data.pop("format", None) != VERSION or data.pop("suite", None) != "mlkem768-x25519":
            raise ValueError("its format or suite is not one this Schoolbox reads")
        header = Header(**data)
        if not (isinstance(header.box_id, str) and _BOX_ID.fullmatch(header.box_id)):
            raise ValueError("box_id is not 1-64 letters, digits, '.', '_' or '-'")
        if not (isinstance(header.schema, int) and isinstance(header.recovery, str)):
            raise ValueError("schema or recovery is of the wrong type")
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as error:
        raise BackupError(f"The backup's header is malformed: {error}.") from error
    if header.to_bytes() != head:  # one canonical form: nothing else can hide in it
        raise BackupError("The backup's header is not in canonical form.")
    return header


def digest(backup: bytes) -> str:
    return hashlib.sha256(backup).hexdigest()


# --- asking the hub for a school's backup, and its answer -------------------------------


def request(box: PrivateKeys, at: str) -> tuple[bytes, str]:
    """A new box's request for its school's newest backup: the body and its signature.
    No freshness is needed: a replayed request fetches only what the recovery key opens."""
    body = canonical({"format": REQUEST_FORMAT, "box_id": box.owner, "at": at})
    return body, base64.b64encode(box.signing.sign(body)).decode()


def check_request(body: bytes, signature: str, keys_of: Callable[[str], PublicKeys | None]) -> str:
    """The box id of a request signed by an enrolled box; BackupError otherwise."""
    try:
        document = json.loads(body)
        box_id = document["box_id"]
        if document.get("format") != REQUEST_FORMAT or not isinstance(box_id, str):
            raise ValueError("not a backup request")
        keys = keys_of(box_id)
        if keys is None:
            raise BackupError(f"Box {box_id!r} is not enrolled at this hub.")
        keys.signing.verify(base64.b64decode(signature, validate=True), body)
    except (ValueError, KeyError, TypeError, InvalidSignature, binascii.Error) as error:
        if isinstance(error, BackupError):
            raise
        raise BackupError("The backup request is malformed or its signature is wrong.") from error
    return box_id


def voucher(district: PrivateKeys, backup: bytes) -> str:
    """The hub's word, signed with the district's key, that `backup` came from the box its
    header names (the hub checked that box's signature when it was sent)."""
    header = read_header(backup)
    body = canonical({"format": VOUCHER_FORMAT, "sha256": digest(backup), "box_id": header.box_id})
    return base64.b64encode(district.signing.sign(body)).decode()


def check_voucher(voucher_b64: str, district: PublicKeys, backup: bytes) -> Header:
    """The backup's header, if the pinned district key vouches for this exact backup."""
    header = read_header(backup)
    body = canonical({"format": VOUCHER_FORMAT, "sha256": digest(backup), "box_id": header.box_id})
    try:
        district.signing.verify(base64.b64decode(voucher_b64, validate=True), body)
    except (InvalidSignature, ValueError, binascii.Error) as error:
        raise BackupError(
            "The backup from the hub is not vouched for by the district's key: not used."
        ) from error
    return header


def _info(head: bytes) -> bytes:
    return _INFO + hashlib.sha256(head).digest()
