"""Sign-in throttling: wrong tries counted per account, device, address, class and box.

The rules (docs in README "Privacy and safety"):
- A device that guesses is slowed down for that account (`pair:`), whoever it is.
- Tries from devices an account has never signed in on are also bounded per account, per
  address, per class and per box, so guessing does not get faster with more addresses.
- A device the account signed in on before is exempt from those shared bounds: a stranger
  guessing on the Wi-Fi can slow new devices down, but cannot lock a learner or a teacher
  out of the device they use. Only `pair:` failures count against a known device.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import sqlite_utils

from appliance.store import inserted, one, rows, the_row, value


@dataclass(frozen=True)
class Limits:
    """Wrong tries allowed within `window_s`, per scope (from the box's configuration)."""

    window_s: int = 900
    per_source: int = 5  # one device (or address) on one account
    per_account: int = 10  # all unknown devices on one account
    per_address: int = 30  # one address on any accounts
    per_class: int = 60  # all unknown devices on one class's learners
    per_box: int = 200  # all unknown devices on the whole box
    alarm_at: int = 50  # the admin is alerted when the box sees this many

    @classmethod
    def of(cls, config) -> Limits:
        """The limits a box's Config sets (its login_* settings)."""
        return cls(
            window_s=config.login_window_s,
            per_source=config.login_max_per_source,
            per_account=config.login_max_per_account,
            per_address=config.login_max_per_address,
            per_class=config.login_max_per_class,
            per_box=config.login_max_per_box,
            alarm_at=config.login_alarm_at,
        )


def learner_account(learner_id: int) -> str:
    return f"learner:{learner_id}"


def staff_account(pin_key: bytes, username: str) -> str:
    """A throttling key for a typed username, never the text itself (it may be a password
    typed into the wrong box)."""
    username = (username or "").strip().lower()[:64]
    return "user:" + hmac.new(pin_key, username.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Try:
    """One sign-in try: which account, from where, and whether this device is known to it."""

    account: str  # "learner:<id>" or "user:<digest of the typed username>"
    source: str  # "device:<id>" (a device cookie) or "addr:<address>"
    address: str
    known_device: bool = False
    class_ids: tuple[int, ...] = ()


def subjects(attempt: Try, limits: Limits) -> list[tuple[str, int | None, str]]:
    """(subject, limit, scope) for every counter this try is counted against (and checked
    against, unless the limit is None)."""
    found: list[tuple[str, int | None, str]] = [
        (f"pair:{attempt.account}|{attempt.source}", limits.per_source, "source")
    ]
    if attempt.known_device:
        return found
    # Staff tries count towards the box's alarm but are not held back by learners' storm:
    # an attacker guessing PINs must not keep the admin from signing in to see it.
    learner = attempt.account.startswith("learner:")
    found += [
        (attempt.account, limits.per_account, "account"),
        (f"addr:{attempt.address}", limits.per_address, "source"),
        *((f"class:{c}", limits.per_class, "box") for c in attempt.class_ids),
        ("box", limits.per_box if learner else None, "box"),
    ]
    return found


def blocked(db: sqlite_utils.Database, attempt: Try, limits: Limits) -> tuple[int, str]:
    """(seconds to wait, scope that blocks) for the strictest counter; (0, "") if free."""
    waits = [
        (wait_seconds(db, subject, limit, limits.window_s), scope)
        for subject, limit, scope in subjects(attempt, limits)
        if limit is not None
    ]
    return max(waits)


def wait_seconds(db: sqlite_utils.Database, subject: str, limit: int, window_s: int) -> int:
    """Seconds until `subject` may try again; 0 if it may try now."""
    cutoff = time.time() - window_s
    row = the_row(
        db,
        "SELECT count(*) AS n, min(at) AS first FROM ("
        " SELECT at FROM login_failures WHERE subject = ? AND at > ? ORDER BY at DESC LIMIT ?)",
        (subject, cutoff, limit),
    )
    if row["n"] < limit:
        return 0
    # The oldest of the last `limit` failures must leave the window before the next try.
    return max(1, int(row["first"] + window_s - time.time()) + 1)


def count(db: sqlite_utils.Database, subject: str, window_s: int) -> int:
    """Failures against `subject` within the window."""
    cutoff = time.time() - window_s
    sql = "SELECT count(*) AS n FROM login_failures WHERE subject = ? AND at > ?"
    return value(db, sql, (subject, cutoff))


def fail(db: sqlite_utils.Database, attempt: Try, limits: Limits) -> list[int]:
    """Count one wrong try against every subject of `attempt`; the rows' ids."""
    at = time.time()
    return [
        inserted(db, "INSERT INTO login_failures (subject, at) VALUES (?, ?)", (subject, at))
        for subject, _limit, _scope in subjects(attempt, limits)
    ]


def forget(db: sqlite_utils.Database, ids: list[int]) -> None:
    """Take back failures counted in advance for a try that succeeded."""
    db.conn.executemany("DELETE FROM login_failures WHERE id = ?", [(i,) for i in ids])


def clear_source(db: sqlite_utils.Database, attempt: Try) -> None:
    """Forget this device's wrong tries on this account after it signs in.

    The account's count from other devices stays: a stranger's guesses are not wiped
    by the learner signing in, or each sign-in would hand the stranger fresh tries."""
    subject = f"pair:{attempt.account}|{attempt.source}"
    # Check first: nearly every sign-in has no failures, and a read takes no write lock.
    if one(db, "SELECT 1 FROM login_failures WHERE subject = ? LIMIT 1", (subject,)):
        db.conn.execute("DELETE FROM login_failures WHERE subject = ?", (subject,))


def unlock(db: sqlite_utils.Database, account: str) -> int:
    """Forget every wrong try on `account`, from any device (a teacher or admin unlocks it)."""
    return db.conn.execute(
        "DELETE FROM login_failures WHERE subject = ? OR subject LIKE ? ESCAPE '\\'",
        (account, _pairs_of(account)),
    ).rowcount


def _pairs_of(account: str) -> str:
    """A LIKE pattern for every device's counter on `account` (pair:<account>|<source>)."""
    return "pair:" + account.replace("_", "\\_").replace("%", "\\%") + "|%"


def lock_state(db: sqlite_utils.Database, account: str, limits: Limits) -> dict | None:
    """How locked `account` is now, for the teacher's and admin's pages; None if not at all.

    `devices`: devices slowed down on it; `others`: whether new devices are held back."""
    cutoff = time.time() - limits.window_s
    found = rows(
        db,
        "SELECT subject, count(*) AS n, min(at) AS first FROM login_failures"
        " WHERE (subject = ? OR subject LIKE ? ESCAPE '\\') AND at > ? GROUP BY subject",
        (account, _pairs_of(account), cutoff),
    )
    devices = sum(1 for r in found if r["subject"] != account and r["n"] >= limits.per_source)
    others = any(r["subject"] == account and r["n"] >= limits.per_account for r in found)
    if not devices and not others:
        return None
    tries = sum(r["n"] for r in found if r["subject"] == account) or max(r["n"] for r in found)
    return {"devices": devices, "new_devices": others, "tries": tries}


def prune(db: sqlite_utils.Database, older_than_s: int) -> int:
    """Drop failures older than the window; return how many."""
    cutoff = time.time() - older_than_s
    return db.conn.execute("DELETE FROM login_failures WHERE at < ?", (cutoff,)).rowcount
