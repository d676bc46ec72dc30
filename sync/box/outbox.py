"""The outbox: bundles sealed on the box and waiting for the district.

    <home>/outbox/00000001.sbxb ...   one file per bundle, named by its sequence number

Sealing writes the bundle to a temporary file, fsyncs it, renames it into place, and
only then records it in SQLite and moves the marks, in one transaction. A crash before
that commit leaves the old state: the marks have not moved, so the same records are
sealed again under the same sequence number, and the file left behind is replaced or
swept. A crash after it leaves the new state. So a record is in exactly one bundle.

The outbox has a quota: when it is full, sealing stops and says so loudly (log and
admin page); records wait in the database, nothing is dropped.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from appliance import paths
from appliance.config import Config
from appliance.store import now, one, rows, site, the_row, transaction
from sync import bundle, enrolment
from sync.box import collect
from sync.files import write_durably
from sync.stick import BUNDLE_SUFFIX

log = logging.getLogger("schoolbox.sync")
SUFFIX = BUNDLE_SUFFIX


class OutboxFull(RuntimeError):
    """The outbox holds as much as its quota allows; nothing more is sealed until it drains."""


@dataclass(frozen=True)
class Settings:
    max_bundle_bytes: int = bundle.MAX_BYTES
    quota_bytes: int = 200 << 20
    suite: str = "x25519"
    answers_per_bundle: int = 20_000  # fewer when the bundle would pass max_bundle_bytes

    @classmethod
    def of(cls, config: Config) -> Settings:
        """The outbox's settings from the box's configuration."""
        return cls(
            max_bundle_bytes=config.sync_max_bundle_kb * 1024,
            quota_bytes=config.sync_outbox_quota_mb << 20,
            suite=config.sync_suite,
        )


def folder(home: Path) -> Path:
    return paths.outbox(home)


def seal_pending(
    db: sqlite_utils.Database, home: Path, settings: Settings = Settings()
) -> list[int]:
    """Seal bundles until nothing is left to send; return their sequence numbers. Nothing
    is sealed unless the school consented to sync."""
    sealed: list[int] = []
    if not site.is_consented(db, "sync"):
        return sealed
    district = enrolment.district_keys(home)
    if district is None:
        raise enrolment.EnrolmentError("No district key is pinned: `schoolbox sync trust` first.")
    box = enrolment.ensure_box_keys(home, site.required(db)["box_id"])
    with sealing_lock(home):
        _sweep(db, home)
        while (seq := _seal_one(db, home, settings, district, box)) is not None:
            sealed.append(seq)
    return sealed


def pending(db: sqlite_utils.Database) -> list[dict]:
    """Bundles not yet acknowledged by the hub, oldest first."""
    return [
        dict(r) for r in rows(db, "SELECT * FROM sync_outbox WHERE acked_at IS NULL ORDER BY seq")
    ]


def status(db: sqlite_utils.Database, home: Path, settings: Settings = Settings()) -> dict:
    """The queue for the admin page: bundles pending, sent, acknowledged, last contact."""
    found = the_row(
        db,
        "SELECT count(*) FILTER (WHERE acked_at IS NULL AND sent_at IS NULL),"
        " count(*) FILTER (WHERE acked_at IS NULL AND sent_at IS NOT NULL),"
        " count(*) FILTER (WHERE acked_at IS NOT NULL), max(acked_at) FROM sync_outbox",
    )
    used = used_bytes(home)
    return {
        "pending": found[0],
        "sent": found[1],  # sent or carried away, not yet acknowledged
        "acknowledged": found[2],
        "last_contact": found[3],
        "outbox_bytes": used,
        "quota_bytes": settings.quota_bytes,
        "nearly_full": used > 0.8 * settings.quota_bytes,
    }


def used_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in folder(home).glob(f"*{SUFFIX}"))


def _seal_one(
    db: sqlite_utils.Database, home: Path, settings: Settings, district, box
) -> int | None:
    marks: dict[str, str] = {r[0]: r[1] for r in rows(db, "SELECT kind, mark FROM sync_marks")}
    limit = settings.answers_per_bundle
    while True:
        found = collect.collect(db, home, marks, limit)
        if not found.events:
            return None
        last = one(db, "SELECT seq, digest FROM sync_outbox ORDER BY seq DESC LIMIT 1")
        header = bundle.Header(
            box.owner, (last[0] if last else 0) + 1, last[1] if last else "", now(),
            bundle.counts_of(found.records), settings.suite,
        )  # fmt: skip
        try:
            data = bundle.seal(header, found.records, district, box, settings.max_bundle_bytes)
            break
        except bundle.BundleError as error:
            if error.status != 413 or limit == 1:
                raise
            limit = max(1, limit // 2)  # a weak link moves small bundles: put fewer in
    if used_bytes(home) + len(data) > settings.quota_bytes:
        log.error("sync outbox full (%d bytes of %d); nothing more is sealed until it drains",
                  used_bytes(home), settings.quota_bytes)  # fmt: skip
        raise OutboxFull("The sync outbox is full: send or export bundles to make room.")
    name = f"{header.seq:08d}{SUFFIX}"
    write_durably(folder(home) / name, data)
    with transaction(db):
        db.conn.execute(
            "INSERT INTO sync_outbox (seq, file, digest, bytes, counts, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (header.seq, name, bundle.digest(data), len(data),
             json.dumps(header.counts, sort_keys=True), header.created_at),
        )  # fmt: skip
        db.conn.executemany(
            "INSERT INTO sync_marks (kind, mark) VALUES (?, ?)"
            " ON CONFLICT(kind) DO UPDATE SET mark = excluded.mark",
            sorted(found.marks.items()),
        )
    return header.seq


def _sweep(db: sqlite_utils.Database, home: Path) -> None:
    """Remove bundle files no row knows: left by a crash between writing and recording."""
    known = {r[0] for r in rows(db, "SELECT file FROM sync_outbox")}
    for path in folder(home).glob(f"*{SUFFIX}"):
        if path.name not in known:
            path.unlink()
    for path in folder(home).glob(".tmp-*"):
        path.unlink()


@contextmanager
def sealing_lock(home: Path) -> Iterator[None]:
    """One sealer at a time per box (the scheduled job and `schoolbox sync now`)."""
    folder(home).mkdir(parents=True, exist_ok=True)
    with (folder(home) / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
