"""The district's OS updates on the hub: RAUC bundles district IT publishes for the boxes
to fetch (`schoolbox hub os-update publish`), each with a record of what it is.

    <hub home>/os-updates/<name>.raucb        the bundle, exactly as image/update.py signed it
    <hub home>/os-updates/<name>.raucb.json   {"file", "version", "compatible", "size",
                                               "sha256", "published_at"}

A bundle is published only if RAUC finds it signed with this district's OS update key, so
no box is offered a bundle it would refuse; each box checks it again with RAUC, against
the certificate its own image carries, before installing it. The record is written last:
a bundle half copied is never listed.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from sync.files import fsync_dir, write_durably
from sync.hub import os_update_signer
from sync.os_bundle import NAME, RECORD, OsUpdateError, inspect


def folder(hub_home: Path) -> Path:
    return hub_home / "os-updates"


def publish(hub_home: Path, bundle: Path) -> dict:
    """Check `bundle` against the district's OS update certificate, copy it in and list it
    for the boxes; return its record. OsUpdateError says why a bundle was refused."""
    if not NAME.fullmatch(bundle.name):
        raise OsUpdateError(
            f"{bundle.name!r} is not a name boxes accept: letters, digits and ._+- ending "
            "in .raucb (image/update.py names bundles that way)."
        )
    certificate = os_update_signer.certificate_path(hub_home)
    if not certificate.is_file():
        raise OsUpdateError(f"This hub has no OS update key ({certificate}); see docs/image.md.")
    checked = inspect(bundle, certificate)
    target = folder(hub_home) / bundle.name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with bundle.open("rb") as source, partial.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, target)
    fsync_dir(target.parent)
    record = {
        "file": bundle.name, "version": checked.version, "compatible": checked.compatible,
        "size": target.stat().st_size, "sha256": checked.sha256,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    write_durably(_record_path(target), json.dumps(record, indent=2).encode())
    return record


def withdraw(hub_home: Path, name: str) -> bool:
    """Stop offering the bundle `name` (a record first, so no box starts on it); False if
    it was not published."""
    target = folder(hub_home) / name
    if not NAME.fullmatch(name) or not _record_path(target).is_file():
        return False
    _record_path(target).unlink()
    target.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return True


def listing(hub_home: Path) -> list[dict]:
    """What boxes are offered, oldest published first."""
    records = []
    for path in folder(hub_home).glob(f"*.raucb{RECORD}"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a record being replaced this instant; listed next time
        if isinstance(record, dict) and (folder(hub_home) / str(record.get("file"))).is_file():
            records.append(record)
    return sorted(records, key=lambda r: (str(r.get("published_at")), str(r.get("file"))))


def bundle_path(hub_home: Path, name: str) -> Path | None:
    """The published bundle called `name`, or None (no name escapes the folder)."""
    target = folder(hub_home) / name
    if NAME.fullmatch(name) and _record_path(target).is_file() and target.is_file():
        return target
    return None


def _record_path(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + RECORD)
