"""The site (the school this box serves) and the optional features it consented to."""

from __future__ import annotations

import sqlite_utils

from appliance.messages import LANGUAGES
from appliance.store import audit, now, one, rows, the_row
from appliance.store.ids import uuid7

# Optional features a school must switch on itself; each stays off until it does.
FEATURES = {
    "tutor": "AI tutor for learners, running on this box",
    "sync": "Sending pseudonymous progress data to the district",
    "federated": "Taking part in federated training of the shared model",
}


def pin_digits(db: sqlite_utils.Database) -> int:
    """How many digits the school's new learner PINs have (4 until an admin chooses)."""
    return (get(db) or {}).get("pin_digits", 4)


def get(db: sqlite_utils.Database) -> dict | None:
    """The site row, or None before `schoolbox init`."""
    row = one(db, "SELECT * FROM site WHERE id = 1")
    return dict(row) if row else None


def required(db: sqlite_utils.Database) -> dict:
    """The site of a box that is set up; LookupError saying what to do on one that is not."""
    found = get(db)
    if found is None:
        raise LookupError("This box is not set up yet: run `schoolbox init` first.")
    return found


def create(db: sqlite_utils.Database, name: str) -> dict:
    """Create the site with a new box id (once)."""
    db.conn.execute(
        "INSERT INTO site (id, name, box_id, created_at) VALUES (1, ?, ?, ?)",
        (name, uuid7(), now()),
    )
    return dict(the_row(db, "SELECT * FROM site WHERE id = 1"))


def consents(db: sqlite_utils.Database) -> dict[str, dict]:
    """Every feature with whether it is granted, by whom and when."""
    found = {r["feature"]: dict(r) for r in rows(db, "SELECT * FROM consents")}
    return {
        feature: found.get(
            feature, {"feature": feature, "granted": 0, "set_by": None, "set_at": None}
        )
        for feature in FEATURES
    }


def is_consented(db: sqlite_utils.Database, feature: str) -> bool:
    """True only if the school switched the feature on."""
    row = one(db, "SELECT granted FROM consents WHERE feature = ?", (feature,))
    return bool(row and row["granted"])


def set_consent(db: sqlite_utils.Database, actor: audit.Actor, feature: str, granted: bool) -> None:
    """Record the school's choice for one feature, and who made it."""
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}")
    db.conn.execute(
        "INSERT INTO consents (feature, granted, set_by, set_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(feature) DO UPDATE SET granted = excluded.granted, "
        "set_by = excluded.set_by, set_at = excluded.set_at",
        (feature, int(granted), actor.id, now()),
    )
    audit.record(db, actor, "consent.set", "feature", feature, granted=bool(granted))


def set_pin_digits(db: sqlite_utils.Database, actor: audit.Actor, digits: int) -> None:
    """How many digits new learner PINs have: 4 (quick for the young) or 6 (100x harder
    to guess). PINs already given keep working until they are reset."""
    if digits not in (4, 6):
        raise ValueError("PINs have 4 or 6 digits")
    db.conn.execute("UPDATE site SET pin_digits = ? WHERE id = 1", (digits,))
    audit.record(db, actor, "site.pin_digits", "site", 1, digits=digits)


def set_language(db: sqlite_utils.Database, actor: audit.Actor, language: str) -> None:
    """The box's interface language: what every page is in until a user picks their own."""
    if language not in LANGUAGES:
        raise ValueError(f"not a language of the interface: {language!r}")
    db.conn.execute("UPDATE site SET language = ? WHERE id = 1", (language,))
    audit.record(db, actor, "site.language", "site", 1, language=language)
