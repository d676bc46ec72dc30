"""OS updates from the hub: the newest bundle the district offers for this kind of box,
downloaded in the background over as many syncs as it takes, and left where the install
service finds it (sync/box/os_update.py installs it at night or at the next restart).

    <data folder>/os-update/incoming/<name>.raucb.part   a download under way (resumed
                                                          with an HTTP Range request)
    <data folder>/os-update/incoming/<name>.raucb.json   the hub's record of it
    <data folder>/os-update/incoming/<name>.raucb        complete: its size and SHA-256
                                                          match the record

Nothing is trusted here: the size and SHA-256 only say the download is whole. RAUC checks
the district's signature before anything is installed. A bundle this box installed,
rolled back or refused before is not fetched again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

from appliance import paths
from models.registry.formats import sha256_of
from sync.box import os_update
from sync.box.transport import hub_url
from sync.files import fsync_dir, write_durably
from sync.os_bundle import NAME, RECORD, OsUpdateError

log = logging.getLogger("schoolbox.os_update")

PART = ".part"
CHUNK = 1 << 20
# Left free on the data partition whatever the download: the school's answers come first.
RESERVE_BYTES = 512 << 20
BUDGET_S = 600.0  # per sync; the sync service may run 15 minutes, and resumes next time


class OsDownloadError(OsUpdateError):
    """A download that cannot go on (no room, a file that does not match); says why."""


def incoming(home: Path) -> Path:
    return paths.os_update(home) / "incoming"


def offered(url: str, compatible: str, running: str, home: Path,
            timeout: float = 60.0) -> dict | None:  # fmt: skip
    """The newest bundle the hub offers for `compatible` that is not the running version
    and was never installed, rolled back or refused here; None when there is none."""
    with urllib.request.urlopen(hub_url(url, "/v1/os-updates"), timeout=timeout) as reply:  # noqa: S310 - the hub's http(s) address
        records = json.loads(reply.read(1 << 20)).get("os_updates", [])
    seen = {e.get("sha256") for e in os_update.history(home) if e.get("sha256")}
    usable = [
        r for r in records
        if isinstance(r, dict) and r.get("compatible") == compatible
        and NAME.fullmatch(str(r.get("file"))) and isinstance(r.get("size"), int)
        and isinstance(r.get("sha256"), str) and r.get("version") != running
        and r["sha256"] not in seen
    ]  # fmt: skip
    return usable[-1] if usable else None  # the hub lists the newest last


def fetch(url: str, home: Path, compatible: str | None = None, running: str | None = None,
          budget_s: float = BUDGET_S, timeout: float = 60.0) -> Path | None:  # fmt: skip
    """Download, or go on downloading, the bundle the hub offers this box; return it once
    whole (None while there is nothing, or more to come). Off the image (no RAUC system)
    there is nothing to fetch. OsDownloadError says why a download cannot go on."""
    compatible = compatible or os_update.compatible()
    if compatible is None:
        return None
    record = offered(url, compatible, running or os_update.release(), home, timeout)
    folder = incoming(home)
    _keep_only(folder, record["file"] if record else None)
    if record is None:
        return None
    target = folder / record["file"]
    if target.is_file():
        return target  # whole already, waiting for the install service
    _note(target, record)
    try:
        return _go_on(url, target, record, time.monotonic() + budget_s, timeout)
    except OsDownloadError as error:  # kept for Admin > Status, until the next try
        _note(target, record, str(error))
        raise


def _go_on(url: str, target: Path, record: dict, deadline: float, timeout: float) -> Path | None:
    part = target.with_name(target.name + PART)
    have = part.stat().st_size if part.exists() else 0
    if have > record["size"]:
        part.unlink()
        have = 0
    _check_room(target.parent, record["size"] - have, record)
    if have < record["size"]:
        _download(url, record, part, have, deadline, timeout)
    if part.stat().st_size < record["size"]:
        log.info("OS update %s: %d of %d bytes so far", record["version"], part.stat().st_size,
                 record["size"])  # fmt: skip
        return None
    return _complete(part, target, record)


def _note(target: Path, record: dict, problem: str | None = None) -> None:
    """The hub's record beside the download, with what stops it where something does."""
    noted = {**record, "problem": problem} if problem else record
    write_durably(target.with_name(target.name + RECORD), json.dumps(noted).encode())


def _download(url: str, record: dict, part: Path, have: int, deadline: float,
              timeout: float) -> None:  # fmt: skip
    """Append to `part` from byte `have` (a Range request) until the file ends, the
    record's size is reached (a hub is never let fill the disk) or the deadline passes; a
    hub that ignores the Range sends it all again, from the start."""
    request = urllib.request.Request(  # noqa: S310 - the hub's http(s) address
        hub_url(url, "/v1/os-updates/" + urllib.parse.quote(record["file"])),
        headers={"Range": f"bytes={have}-"} if have else {},
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - the hub's http(s) address
        resumed = have and reply.status == 206
        written = have if resumed else 0
        with part.open("ab" if resumed else "wb") as out:
            while written < record["size"] and (
                chunk := reply.read(min(CHUNK, record["size"] - written))
            ):
                out.write(chunk)
                written += len(chunk)
                if time.monotonic() > deadline:
                    break
            out.flush()
            os.fsync(out.fileno())


def _complete(part: Path, target: Path, record: dict) -> Path:
    """`part` becomes `target` if its size and SHA-256 are the record's; otherwise it is
    deleted (fetched again next time) and OsDownloadError says so."""
    if part.stat().st_size != record["size"] or sha256_of(part) != record["sha256"]:
        part.unlink()
        raise OsDownloadError(
            f"The OS update {record['version']} from the hub did not match its record "
            "(damaged on the way); it is downloaded again at the next sync."
        )
    os.replace(part, target)
    fsync_dir(target.parent)
    log.info("OS update %s downloaded; it is installed tonight or at the next restart",
             record["version"])  # fmt: skip
    return target


def _check_room(folder: Path, needed: int, record: dict) -> None:
    free = shutil.disk_usage(folder).free
    if free - needed < RESERVE_BYTES:
        raise OsDownloadError(
            f"The OS update {record['version']} needs {needed >> 20} MB more on the data "
            f"partition, which has {free >> 20} MB free and keeps {RESERVE_BYTES >> 20} MB "
            "for the school's data; it waits until there is room (a larger card, or fewer "
            "media)."
        )


def _keep_only(folder: Path, name: str | None) -> None:
    """Delete every download but `name`'s: an older bundle the hub no longer offers, or
    one this box has since installed, must not fill the data partition."""
    folder.mkdir(parents=True, exist_ok=True)
    kept = {name, name + PART, name + RECORD} if name else set()
    for path in folder.iterdir():
        if path.name not in kept:
            path.unlink(missing_ok=True)


def ready(home: Path) -> list[Path]:
    """Whole bundles waiting to be installed (the install service's `--downloaded`)."""
    folder = incoming(home)
    return sorted(folder.glob("*.raucb")) if folder.is_dir() else []


def discard(bundle: Path) -> None:
    """Forget a downloaded bundle once it was installed, skipped or refused."""
    for suffix in ("", RECORD, PART):
        bundle.with_name(bundle.name + suffix).unlink(missing_ok=True)
    fsync_dir(bundle.parent)


def state(home: Path) -> dict | None:
    """For Admin > Status: the OS update being fetched or waiting, and how far along;
    None when there is none."""
    for record_path in sorted(incoming(home).glob(f"*.raucb{RECORD}")):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        bundle = record_path.with_name(record_path.name.removesuffix(RECORD))
        part = bundle.with_name(bundle.name + PART)
        found = bundle if bundle.exists() else part
        have = found.stat().st_size if found.exists() else 0
        return {"version": record.get("version"), "size": record.get("size"), "have": have,
                "complete": bundle.is_file(), "problem": record.get("problem")}  # fmt: skip
    return None
