"""The district hub's home: its keys, the boxes enrolled, its audit log, and every path
under the hub's data folder (SCHOOLBOX_HUB_HOME):

<hub home>/district.key   the district's private keys (0600, `schoolbox hub init`)
<hub home>/district.json  its public keys, to pin on every box
<hub home>/hub.db         boxes, audit log, the records bundles bring (or PostgreSQL)
<hub home>/updates/       the updates it signed, one folder each (`schoolbox hub sign`)
<hub home>/federation/    the SuperLink's state, node keys, the Flower app, trained models
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from sync import enrolment
from sync.enrolment import EnrolmentError
from sync.files import write_json
from sync.hub.db import HubDatabaseError, HubDB
from sync.keys import PrivateKeys, PublicKeys, generate, read_private, write_private

SETTINGS = "hub.json"
SCHEMA = """
CREATE TABLE IF NOT EXISTS boxes (
    box_id TEXT PRIMARY KEY,
    site_name TEXT NOT NULL,
    keys TEXT NOT NULL,            -- the box's public keys (JSON)
    enrolled_at TEXT NOT NULL,
    keys_changed_at TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_digest TEXT NOT NULL DEFAULT '',
    last_contact TEXT
);
CREATE TABLE IF NOT EXISTS received (
    box_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL,
    counts TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (box_id, seq)
);
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT NOT NULL, box_id TEXT NOT NULL, learner TEXT NOT NULL, item TEXT NOT NULL,
    lesson TEXT, correct INTEGER NOT NULL, hints INTEGER, duration_ms INTEGER, response TEXT,
    PRIMARY KEY (box_id, id)
);
CREATE INDEX IF NOT EXISTS attempts_learner ON attempts(box_id, learner);
CREATE TABLE IF NOT EXISTS mastery (
    box_id TEXT NOT NULL, learner TEXT NOT NULL, skill TEXT NOT NULL, p DOUBLE PRECISION NOT NULL,
    answers INTEGER NOT NULL, model TEXT, PRIMARY KEY (box_id, learner, skill)
);
CREATE TABLE IF NOT EXISTS class_skills (
    box_id TEXT NOT NULL, class TEXT NOT NULL, skill TEXT NOT NULL, learners INTEGER NOT NULL,
    mean_p DOUBLE PRECISION NOT NULL, answers INTEGER NOT NULL, PRIMARY KEY (box_id, class, skill)
);
CREATE TABLE IF NOT EXISTS usage (
    box_id TEXT NOT NULL, day TEXT NOT NULL, answers INTEGER NOT NULL,
    learners INTEGER NOT NULL, tutor_questions INTEGER NOT NULL, PRIMARY KEY (box_id, day)
);
CREATE TABLE IF NOT EXISTS health (
    box_id TEXT PRIMARY KEY, version TEXT, disk_free_mb INTEGER, database_mb INTEGER,
    backlog INTEGER, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS erasures (
    box_id TEXT NOT NULL, learner TEXT NOT NULL, erased_at TEXT, applied_at TEXT NOT NULL,
    PRIMARY KEY (box_id, learner)
);
CREATE TABLE IF NOT EXISTS hub_audit (
    id {serial},
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    box_id TEXT,
    detail TEXT NOT NULL
);
"""


def key_path(hub_home: Path) -> Path:
    return hub_home / "district.key"


def public_keys_path(hub_home: Path) -> Path:
    return hub_home / "district.json"


def database_path(hub_home: Path) -> Path:
    return hub_home / "hub.db"


def updates_folder(hub_home: Path) -> Path:
    """Where the hub keeps the updates it signed, one folder each."""
    return hub_home / "updates"


def federation_folder(hub_home: Path) -> Path:
    return hub_home / "federation"


def init(hub_home: Path, database: str = "") -> PrivateKeys:
    """Make the district's keys and the hub's database (SQLite in the hub home, or the
    PostgreSQL server at `database`, a postgresql:// URL); refuse if the keys exist."""
    path = key_path(hub_home)
    if path.exists():
        raise EnrolmentError(f"The district already has keys at {path}.")
    if database:
        write_json(hub_home / SETTINGS, {"database": database})
    try:
        open_hub(hub_home).close()  # the database first: no keys for a hub that cannot run
    except HubDatabaseError:
        (hub_home / SETTINGS).unlink(missing_ok=True)
        raise
    write_private(generate("district"), path)
    keys = read_private(path)
    write_json(public_keys_path(hub_home), keys.public().to_json())
    return keys


def district_keys(hub_home: Path) -> PrivateKeys:
    return read_private(key_path(hub_home))


def rotate(hub_home: Path) -> PrivateKeys:
    """New district keys. The old ones are kept (district.key.retired-<time>): bundles
    sealed before a box received the rotation still open with `every_district_key`."""
    path = key_path(hub_home)
    read_private(path)  # refuse to retire a damaged or missing key
    os.rename(path, path.with_name(f"district.key.retired-{time.time_ns()}"))
    write_private(generate("district"), path)
    keys = read_private(path)
    write_json(public_keys_path(hub_home), keys.public().to_json())
    return keys


def every_district_key(hub_home: Path) -> list[PrivateKeys]:
    """The current district keys first, then the retired ones, newest first."""
    retired = sorted(hub_home.glob("district.key.retired-*"), reverse=True)
    return [district_keys(hub_home)] + [read_private(path) for path in retired]


def open_hub(hub_home: Path) -> HubDB:
    """The hub's database: <hub home>/hub.db, or the PostgreSQL URL `hub init` recorded."""
    hub_home.mkdir(parents=True, exist_ok=True)
    settings = hub_home / SETTINGS
    url = json.loads(settings.read_text()).get("database", "") if settings.exists() else ""
    db = HubDB(url, database_path(hub_home))
    db.create(SCHEMA)
    return db


def enrol(db: HubDB, document: dict, replace: bool = False) -> str:
    """Register a box from its enrolment request: "enrolled", "unchanged" or "rotated".

    A box already enrolled with other keys moves to the new ones only if the request is
    endorsed by its enrolled key, or with `replace` (an operator who checked the new
    fingerprint with the school)."""
    keys, _ = enrolment.check_request(document)
    at = now()
    found = db.execute("SELECT keys FROM boxes WHERE box_id = ?", (keys.owner,)).fetchone()
    new_keys = json.dumps(keys.to_json(), sort_keys=True)
    db.begin()
    try:
        if found is None:
            db.execute(
                "INSERT INTO boxes (box_id, site_name, keys, enrolled_at, keys_changed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (keys.owner, document["site_name"].strip(), new_keys, at, at),
            )
            outcome = "enrolled"
        elif found["keys"] == new_keys:
            outcome = "unchanged"
        else:
            previous = PublicKeys.from_json(json.loads(found["keys"]))
            if not (replace or enrolment.endorsement_is_valid(previous, document)):
                raise EnrolmentError(
                    f"Box {keys.owner} is enrolled with other keys ({previous.fingerprint()}). "
                    "A rotated box's request must be signed by its old key; otherwise check "
                    f"the new fingerprint {keys.fingerprint()} with the school and use --replace."
                )
            db.execute(
                "UPDATE boxes SET keys = ?, keys_changed_at = ?, site_name = ? WHERE box_id = ?",
                (new_keys, at, document["site_name"].strip(), keys.owner),
            )
            outcome = "rotated"
        audit(db, f"box.{outcome}", keys.owner, fingerprint=keys.fingerprint(), replace=replace)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return outcome


def keys_of(db: HubDB, box_id: str) -> PublicKeys | None:
    found = db.execute("SELECT keys FROM boxes WHERE box_id = ?", (box_id,)).fetchone()
    return PublicKeys.from_json(json.loads(found["keys"])) if found else None


def boxes(db: HubDB) -> list[dict]:
    return [dict(r) for r in db.execute("SELECT * FROM boxes ORDER BY site_name, box_id")]


def audit(db: HubDB, action: str, box_id: str | None, **detail) -> None:
    """One line in the hub's audit log (inside the caller's transaction)."""
    db.execute(
        "INSERT INTO hub_audit (at, action, box_id, detail) VALUES (?, ?, ?, ?)",
        (now(), action, box_id, json.dumps(detail, sort_keys=True)),
    )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
