"""The hub's side of a bundle: check it, apply its records exactly once, acknowledge it.

A bundle is applied only as the next link of its box's chain: sequence number one past
the last applied, and `prev` equal to that bundle's digest. The same bundle again (a
retry after a lost reply, a second copy on a USB stick) is acknowledged again and
applies nothing; another bundle under a number already used, a gap or a broken chain is
refused (409) and changes nothing. Records and the chain's new end are written in one
transaction. Acknowledgements are signed with the district key, so a box prunes only
what the district really holds.
"""

from __future__ import annotations

import json
from pathlib import Path

from sync import acknowledgement, bundle, record_format, updates
from sync.bundle import BundleError
from sync.hub import home as hub_store
from sync.hub.db import HubDB
from sync.keys import PrivateKeys
from sync.stick import BUNDLE_SUFFIX, UPDATES, USB_FOLDER


def receive(db: HubDB, hub_home: Path, data: bytes) -> dict:
    """Check and apply one bundle; its signed acknowledgement, or BundleError."""
    district_keys = hub_store.every_district_key(hub_home)
    header, records = _open(db, data, district_keys)
    record_format.check(records)  # every value, before anything is applied
    digest = bundle.digest(data)
    db.begin()
    try:
        outcome = _apply_in_order(db, header, records, digest)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return acknowledgement.sign(district_keys[0], header.box_id, header.seq, digest, outcome)


def _open(db, data: bytes, district_keys: list[PrivateKeys]):
    refused = BundleError("The district has no keys to open bundles with.", 500)
    for key in district_keys:  # the current key first, then retired ones (rotation)
        try:
            return bundle.open_bundle(data, lambda box_id: hub_store.keys_of(db, box_id), key)
        except BundleError as error:
            if "not sealed to this district" not in str(error):
                raise
            refused = error
    raise refused


def _apply_in_order(db, header: bundle.Header, records: dict, digest: str) -> str:
    box = db.execute(
        "SELECT last_seq, last_digest FROM boxes WHERE box_id = ?" + db.for_update,  # noqa: S608
        (header.box_id,),
    ).fetchone()
    seen = db.execute(
        "SELECT digest FROM received WHERE box_id = ? AND seq = ?", (header.box_id, header.seq)
    ).fetchone()
    if seen is not None:
        if seen["digest"] == digest:
            _touch(db, header.box_id)
            return "duplicate"
        raise BundleError(f"Box {header.box_id} already sent a different bundle {header.seq}.", 409)
    expected = box["last_seq"] + 1
    if header.seq != expected:
        raise BundleError(
            f"Bundle {header.seq} of box {header.box_id} is out of order: "
            f"the hub expects {expected}.",
            409,
        )
    if header.prev != box["last_digest"]:
        raise BundleError(
            f"Bundle {header.seq} does not follow the hub's bundle {box['last_seq']}.", 409
        )
    _apply(db, header.box_id, records)
    db.execute(
        "INSERT INTO received (box_id, seq, digest, counts, received_at) VALUES (?, ?, ?, ?, ?)",
        (header.box_id, header.seq, digest, json.dumps(header.counts, sort_keys=True),
         hub_store.now()),
    )  # fmt: skip
    db.execute(
        "UPDATE boxes SET last_seq = ?, last_digest = ?, last_contact = ? WHERE box_id = ?",
        (header.seq, digest, hub_store.now(), header.box_id),
    )
    return "applied"


def _touch(db, box_id: str) -> None:
    db.execute("UPDATE boxes SET last_contact = ? WHERE box_id = ?", (hub_store.now(), box_id))


def _rows(records: dict, kind: str) -> list[dict]:
    table = records.get(kind)
    return [dict(zip(table["fields"], row, strict=True)) for row in table["rows"]] if table else []


def _apply(db, box_id: str, records: dict) -> None:
    for r in _rows(records, "attempts"):
        db.execute(
            "INSERT INTO attempts (id, box_id, learner, item, lesson, correct, hints,"
            " duration_ms, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (r["id"], box_id, r["learner"], r["item"], r.get("lesson"), r["correct"],
             r.get("hints"), r.get("duration_ms"), r.get("response")),
        )  # fmt: skip
    for r in _rows(records, "mastery"):
        db.execute(
            "INSERT INTO mastery (box_id, learner, skill, p, answers, model)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (box_id, learner, skill) DO UPDATE SET"
            " p = excluded.p, answers = excluded.answers, model = excluded.model",
            (box_id, r["learner"], r["skill"], r["p"], r["answers"], r.get("model")),
        )
    for r in _rows(records, "class_skills"):
        db.execute(
            "INSERT INTO class_skills (box_id, class, skill, learners, mean_p, answers)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (box_id, class, skill) DO UPDATE SET"
            " learners = excluded.learners, mean_p = excluded.mean_p,"
            " answers = excluded.answers",
            (box_id, r["class"], r["skill"], r["learners"], r["mean_p"], r["answers"]),
        )
    for r in _rows(records, "usage"):
        db.execute(
            "INSERT INTO usage (box_id, day, answers, learners, tutor_questions)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (box_id, day) DO UPDATE SET"
            " answers = excluded.answers, learners = excluded.learners,"
            " tutor_questions = excluded.tutor_questions",
            (box_id, r["day"], r["answers"], r["learners"], r["tutor_questions"]),
        )
    for r in _rows(records, "health"):
        db.execute(
            "INSERT INTO health (box_id, version, disk_free_mb, database_mb, backlog, at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (box_id) DO UPDATE SET"
            " version = excluded.version, disk_free_mb = excluded.disk_free_mb,"
            " database_mb = excluded.database_mb, backlog = excluded.backlog, at = excluded.at",
            (box_id, r["version"], r["disk_free_mb"], r["database_mb"], r["backlog"],
             hub_store.now()),
        )  # fmt: skip
    for r in _rows(records, "erasures"):  # last: an erasure wins over its own bundle's rows
        erase(db, box_id, r["learner"], r.get("erased_at"))


def erase(db, box_id: str, learner: str, erased_at: str | None) -> None:
    """Delete everything the hub holds under a learner's pseudonym, and record that."""
    deleted = 0
    for table in ("attempts", "mastery"):
        deleted += db.execute(
            f"DELETE FROM {table} WHERE box_id = ? AND learner = ?",  # noqa: S608
            (box_id, learner),
        ).rowcount
    db.execute(
        "INSERT INTO erasures (box_id, learner, erased_at, applied_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (box_id, learner) DO UPDATE SET erased_at = excluded.erased_at,"
        " applied_at = excluded.applied_at",
        (box_id, learner, erased_at, hub_store.now()),
    )
    hub_store.audit(db, "learner.erase", box_id, learner=learner, records=deleted)


def import_from_stick(hub_home: Path, stick: Path) -> dict[str, str]:
    """Apply every box's bundles on a stick, in order, and write signed
    acknowledgements beside them; put the district's signed updates on the stick too.
    Returns "<box>/<file>" -> outcome or refusal."""
    updates.copy_to(hub_store.updates_folder(hub_home), stick / USB_FOLDER / UPDATES)
    results = {}
    db = hub_store.open_hub(hub_home)
    try:
        for box_folder in sorted((stick / USB_FOLDER).glob("*")):
            if box_folder.name == UPDATES:
                continue
            for path in sorted(box_folder.glob(f"*{BUNDLE_SUFFIX}")):
                key = f"{box_folder.name}/{path.name}"
                try:
                    ack = receive(db, hub_home, path.read_bytes())
                except BundleError as error:
                    results[key] = f"refused ({error.status}): {error}"
                    continue
                acks = box_folder / "acks"
                acks.mkdir(exist_ok=True)
                (acks / f"{path.stem}.json").write_text(json.dumps(ack))
                results[key] = ack["outcome"]
    finally:
        db.close()
    return results
