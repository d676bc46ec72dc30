"""The first admin's one-time setup code: how a provisioned box with no keyboard is claimed.

First boot (appliance/provisioning.py) issues a code and shows it on the admin's screen
and on the stick the site file came from; only its hash is kept, in the data folder.
Whoever types it at /setup creates the first admin, and the code is gone. A box set up
with `schoolbox init` has an admin from the start and never has a code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

import sqlite_utils

from appliance import paths
from appliance.store import one
from sync.files import write_durably

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread
LENGTH = 12  # 60 bits: typed by one person, once, on a page throttled like a sign-in


def issue(home: Path, db: sqlite_utils.Database) -> str | None:
    """A new code ("ABCD-EFGH-JKLM"); one issued before is void. None once the box has
    an admin: it is claimed, and a code would be a second way in."""
    path = paths.setup_code(home)
    if has_admin(db):
        path.unlink(missing_ok=True)
        return None
    code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    write_durably(path, _digest(code).encode())  # replaces the earlier one, owner-only
    return "-".join(code[i : i + 4] for i in range(0, LENGTH, 4))


def waiting(home: Path, db: sqlite_utils.Database) -> bool:
    """True while the box can be claimed: a code was issued and no admin exists yet."""
    return paths.setup_code(home).exists() and not has_admin(db)


def matches(home: Path, typed: str) -> bool:
    """True if `typed` (dashes, spaces and case ignored) is the box's unused code."""
    path = paths.setup_code(home)
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        return False
    cleaned = "".join(typed.split()).replace("-", "").upper()[: LENGTH * 2]
    return hmac.compare_digest(kept, _digest(cleaned))


def use(home: Path) -> None:
    """The first admin exists: the code can never be used again."""
    paths.setup_code(home).unlink(missing_ok=True)


def has_admin(db: sqlite_utils.Database) -> bool:
    return one(db, "SELECT 1 FROM users WHERE role = 'admin' LIMIT 1") is not None


def _digest(code: str) -> str:
    # A random 60-bit code needs no slow hash: it cannot be found from a word list.
    return hashlib.sha256(b"schoolbox-setup-code:" + code.encode()).hexdigest()
