"""Schools' sealed backups at the hub: kept blind, handed only to a box of the same school.

    <hub home>/backups/<box id>/<created-at>-<sha256 prefix>.sbxr   the newest KEEP per box

The hub stores a backup only from an enrolled box whose signature it checks, and cannot
read one: each is sealed to its school's recovery key (sync/recovery.py). A new box asks
for its school's newest backup with a request signed by its own enrolled key; "its
school" is every box district IT enrolled under the same site name. The answer carries a
voucher signed with the district's key, so the new box knows the hub checked the old box's
signature, though the link between them is plain HTTP.
"""

from __future__ import annotations

from pathlib import Path

from sync import recovery
from sync.files import write_durably
from sync.hub import home as hub_store
from sync.hub.db import HubDB
from sync.recovery import BackupError

KEEP = 7  # a week of nightly backups per box
SIGNATURE_HEADER = "X-Schoolbox-Signature"


class NoBackup(BackupError):
    """The school has no backup at this hub (the hub answers 404)."""


VOUCHER_HEADER = "X-Schoolbox-Voucher"


def folder(hub_home: Path) -> Path:
    return hub_home / "backups"


def store(db: HubDB, hub_home: Path, backup: bytes) -> dict:
    """Keep a backup its enrolled box signed; return what the hub answers."""
    header = recovery.read_header(backup)
    keys = hub_store.keys_of(db, header.box_id)
    if keys is None:
        raise BackupError(f"Box {header.box_id!r} is not enrolled at this hub.")
    recovery.check_signature(backup, keys)
    sha256 = recovery.digest(backup)
    stamp = "".join(c for c in header.created_at if c.isalnum())
    target = folder(hub_home) / header.box_id / f"{stamp}-{sha256[:12]}{recovery.SUFFIX}"
    write_durably(target, backup)
    for old in sorted(target.parent.glob(f"*{recovery.SUFFIX}"))[:-KEEP]:
        old.unlink()
    hub_store.audit(db, "backup.stored", header.box_id, bytes=len(backup))
    return {"stored": target.name, "sha256": sha256, "bytes": len(backup)}


def newest_for(db: HubDB, hub_home: Path, body: bytes, signature: str) -> tuple[Path, str]:
    """The newest backup of the requesting box's school, and the district's voucher for it.
    BackupError (the hub answers 403 or 404) when the request or the school has none."""
    box_id = recovery.check_request(body, signature, lambda b: hub_store.keys_of(db, b))
    site = db.execute("SELECT site_name FROM boxes WHERE box_id = ?", (box_id,)).fetchone()
    same_school = [
        r["box_id"]
        for r in db.execute("SELECT box_id FROM boxes WHERE site_name = ?", (site["site_name"],))
    ]
    found = [p for b in same_school for p in (folder(hub_home) / b).glob(f"*{recovery.SUFFIX}")]
    if not found:
        raise NoBackup(f"The hub holds no backup of {site['site_name']!r}.")
    newest = max(found, key=lambda p: p.name)  # names start with the time it was made
    hub_store.audit(db, "backup.fetched", box_id, file=newest.name, of=newest.parent.name)
    return newest, recovery.voucher(hub_store.district_keys(hub_home), newest.read_bytes())
