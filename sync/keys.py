"""Keys of a box and of the district: who signs, and to whom bundles are sealed.

Each party holds an Ed25519 signing key (bundles, acknowledgements, updates) and an
HPKE key pair made of an X25519 key and an ML-KEM-768 key, so a bundle can be sealed with
plain X25519 or with the hybrid ML-KEM-768+X25519 suite. Private keys live in one file
per party, written 0600 and never changed in place; the public half is a small JSON
document that is handed over (an enrolment request, the district's pinned keys).
All the cryptography is the `cryptography` package's; nothing here is hand-rolled.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.hpke import MLKEM768X25519PrivateKey, MLKEM768X25519PublicKey

from sync.files import canonical, create_secret

PRIVATE_FORMAT = "schoolbox-private-keys/1"
PUBLIC_FORMAT = "schoolbox-public-keys/1"


class KeyFileError(ValueError):
    """A key file that is missing, damaged or of the wrong kind; the message says which."""


@dataclass(frozen=True)
class PublicKeys:
    """What a party hands over: enough to check its signatures and seal to it."""

    owner: str  # a box id, or "district"
    signing: ed25519.Ed25519PublicKey
    x25519: x25519.X25519PublicKey
    mlkem768: mlkem.MLKEM768PublicKey

    def hybrid(self) -> MLKEM768X25519PublicKey:
        return MLKEM768X25519PublicKey(self.mlkem768, self.x25519)

    def to_json(self) -> dict:
        return {
            "format": PUBLIC_FORMAT,
            "owner": self.owner,
            "signing": _b64(self.signing.public_bytes_raw()),
            "x25519": _b64(self.x25519.public_bytes_raw()),
            "mlkem768": _b64(self.mlkem768.public_bytes_raw()),
        }

    def fingerprint(self) -> str:
        """A short code to compare by eye or over the phone (SHA-256 of the keys)."""
        digest = hashlib.sha256(canonical(self.to_json())).digest()
        code = base64.b32encode(digest[:10]).decode()
        return "-".join(code[i : i + 4] for i in range(0, 16, 4))

    @classmethod
    def from_json(cls, data: dict) -> PublicKeys:
        try:
            if data.get("format") != PUBLIC_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, not {PUBLIC_FORMAT!r}")
            return cls(
                owner=str(data["owner"]),
                signing=ed25519.Ed25519PublicKey.from_public_bytes(_unb64(data["signing"])),
                x25519=x25519.X25519PublicKey.from_public_bytes(_unb64(data["x25519"])),
                mlkem768=mlkem.MLKEM768PublicKey.from_public_bytes(_unb64(data["mlkem768"])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise KeyFileError(f"These are not usable public keys: {error}") from error


@dataclass(frozen=True)
class PrivateKeys:
    owner: str
    signing: ed25519.Ed25519PrivateKey
    x25519: x25519.X25519PrivateKey
    mlkem768: mlkem.MLKEM768PrivateKey

    def hybrid(self) -> MLKEM768X25519PrivateKey:
        return MLKEM768X25519PrivateKey(self.mlkem768, self.x25519)

    def public(self) -> PublicKeys:
        return PublicKeys(
            self.owner,
            self.signing.public_key(),
            self.x25519.public_key(),
            self.mlkem768.public_key(),
        )


def generate(owner: str) -> PrivateKeys:
    return PrivateKeys(
        owner,
        ed25519.Ed25519PrivateKey.generate(),
        x25519.X25519PrivateKey.generate(),
        mlkem.MLKEM768PrivateKey.generate(),
    )


def private_bytes(keys: PrivateKeys) -> bytes:
    """The private key file's contents (for a download; write_private for a file)."""
    document = {
        "format": PRIVATE_FORMAT,
        "owner": keys.owner,
        "signing": _b64(keys.signing.private_bytes_raw()),
        "x25519": _b64(keys.x25519.private_bytes_raw()),
        "mlkem768_seed": _b64(keys.mlkem768.private_bytes_raw()),
    }
    return json.dumps(document).encode()


def write_private(keys: PrivateKeys, path: Path) -> None:
    """Write a new private key file, readable by its owner only; never overwrite one."""
    if not create_secret(path, private_bytes(keys)):
        raise FileExistsError(f"{path} already exists; it was not replaced.")


def read_private(path: Path) -> PrivateKeys:
    try:
        data = json.loads(path.read_text())
        if data.get("format") != PRIVATE_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}")
        return PrivateKeys(
            owner=str(data["owner"]),
            signing=ed25519.Ed25519PrivateKey.from_private_bytes(_unb64(data["signing"])),
            x25519=x25519.X25519PrivateKey.from_private_bytes(_unb64(data["x25519"])),
            mlkem768=mlkem.MLKEM768PrivateKey.from_seed_bytes(_unb64(data["mlkem768_seed"])),
        )
    except FileNotFoundError as error:
        raise KeyFileError(f"There is no key file at {path}.") from error
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise KeyFileError(f"The key file {path} is damaged ({error}).") from error


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
