"""OS updates on the box: RAUC bundles signed by the district, installed from a USB stick
or from the hub (downloaded by sync/box/os_download.py), with the database kept safe when
an update has to be rolled back.

What happens, in order (docs/image.md, "Updating the box"):
1. `install` (root, schoolbox-update-install.service, once this boot's slot is marked
   good): a `*.raucb` on a stick, or downloaded, is checked by RAUC against the district's update
   certificate the image carries, and written to the other slot, which becomes the one
   to boot. The box's services stop, the database is copied (SQLite's backup API) and
   `pending.json` says from which slot to which; then the box restarts.
2. The new slot boots as a trial (image/recipe/grub.cfg). Once it serves,
   `schoolbox-mark-good` marks it good and `settle(good=True)` records the update.
3. If it cannot serve (a database migration failed, say), the box restarts, GRUB falls
   back to the old slot, and `settle()` there, before anything opens the database, puts
   the copy back: the old software finds the database as it left it.

Everything is kept under the data folder's `os-update/` (appliance/paths.py), which an
update never touches: `pending.json`, `before-update.db`, `history.json`.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import re
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

from appliance import paths
from sync.files import fsync_dir, write_durably
from sync.os_bundle import RAUC, Bundle, OsUpdateError, inspect, last_line

log = logging.getLogger("schoolbox.os_update")

KEYRING = Path("/etc/rauc/keyring.pem")  # the district's OS update certificate (image/build.py)
SYSTEM_CONF = Path("/etc/rauc/system.conf")  # names this kind of box (compatible=)
RELEASE_FILE = Path("/etc/schoolbox-release")  # the image's version (image/build.py)
BUNDLE_GLOB = "*.raucb"
HISTORY_KEPT = 20
_SLOT = re.compile(r"(?:^|\s)rauc\.slot=([A-Za-z0-9]+)(?:\s|$)")


class NotAgain(OsUpdateError):
    """A bundle this box installed already, or rolled back (a stick left in, say): skipped
    without a new note, as the earlier one says it all."""


def booted_slot(cmdline: Path = Path("/proc/cmdline")) -> str | None:
    """The slot this boot came from (GRUB passes `rauc.slot=A` or `B`), or None off the image."""
    try:
        found = _SLOT.search(cmdline.read_text())
    except OSError:
        return None
    return found.group(1) if found else None


def compatible(system_conf: Path | None = None) -> str | None:
    """The kind of box RAUC's bundles must be made for ("schoolbox-x86_64"); None off the image."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string((system_conf or SYSTEM_CONF).read_text())
    except (OSError, configparser.Error):
        return None
    return parser.get("system", "compatible", fallback=None)


def release(release_file: Path | None = None) -> str:
    """The running image's version ('' off the image)."""
    try:
        return (release_file or RELEASE_FILE).read_text().partition("VERSION=")[2].strip()
    except OSError:
        return ""


def find_bundles(places: list[Path]) -> list[Path]:
    """Bundles at the top of each place (a mounted stick), newest name last."""
    return sorted(p for place in places if place.is_dir() for p in place.glob(BUNDLE_GLOB))


def install(home: Path, bundle: Path, booted: str | None, stop_services: list[str],
            keyring: Path | None = None) -> Bundle:  # fmt: skip
    """Check `bundle` against `keyring` and install it into the slot other than `booted`,
    stop `stop_services`, copy the database and leave `pending.json`; the caller restarts
    the box. (RAUC checks the signature again as it installs.)"""
    checked = inspect(bundle, keyring or KEYRING)
    if checked.sha256 in _with_outcome(home, "installed"):
        raise NotAgain(f"Version {checked.version} ({bundle.name}) is installed already.")
    if checked.sha256 in _with_outcome(home, "rolled back"):
        raise NotAgain(
            f"Version {checked.version} ({bundle.name}) was installed before and rolled "
            "back because the box could not serve with it; it is not tried again."
        )
    if booted is None:
        raise OsUpdateError("This system was not started from an A/B slot; nothing installed.")
    to_slot = "B" if booted == "A" else "A"
    # The copy and pending.json exist before RAUC switches slots, so a power cut at any
    # moment after the switch still finds them; after the services stop, a final copy
    # replaces the first, holding every answer given while the bundle was written.
    _prepare_rollback(home, checked, booted, to_slot)
    log.info("installing OS update %s from %s", checked.version, bundle.name)
    result = subprocess.run([RAUC, "install", str(bundle)], capture_output=True, text=True)
    if result.returncode != 0:
        _forget(home)
        raise OsUpdateError(f"Installing {bundle.name} failed: {last_line(result.stderr)}.")
    if stop_services:  # nothing may write the database after the copy is taken
        subprocess.run(["systemctl", "stop", *stop_services], check=False)
    _prepare_rollback(home, checked, booted, to_slot)
    return checked


def _prepare_rollback(home: Path, checked: Bundle, from_slot: str, to_slot: str) -> None:
    snapshot = copy_database(paths.database(home), paths.os_update(home) / "before-update.db")
    pending = {
        "bundle": checked.path.name,
        "version": checked.version,
        "sha256": checked.sha256,
        "from_slot": from_slot,
        "to_slot": to_slot,
        "snapshot": snapshot.name if snapshot else None,
        "installed_at": _now(),
    }
    write_durably(_pending_path(home), json.dumps(pending, indent=2).encode())


def copy_database(database: Path, into: Path) -> Path | None:
    """A consistent copy of the database (SQLite's backup API), synced to disk."""
    if not database.exists():
        return None
    into.parent.mkdir(parents=True, exist_ok=True)
    partial = into.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as source:
        with closing(sqlite3.connect(partial)) as target:
            source.backup(target)
    with partial.open("rb") as written:
        os.fsync(written.fileno())
    os.chmod(partial, database.stat().st_mode & 0o777)  # as private as the database
    os.replace(partial, into)
    fsync_dir(into.parent)
    return into


def settle(home: Path, booted: str | None, good: bool = False) -> str | None:
    """At boot, before the database is opened (`good=False`), and again once this slot
    is marked good (`good=True`): finish or roll back a pending update. Returns what
    happened, for the log: None when nothing was pending."""
    pending = _read_json(_pending_path(home))
    if not pending or booted is None:
        return None
    if booted == pending.get("to_slot"):
        if not good:
            return None  # on trial: mark-good decides
        _record(home, pending, "installed")
        _forget(home)
        return f"updated to {pending['version']}"
    if booted == pending.get("from_slot"):
        snapshot = paths.os_update(home) / str(pending.get("snapshot") or "")
        if pending.get("snapshot") and snapshot.is_file():
            os.replace(snapshot, paths.database(home))
            for stale in ("-wal", "-shm"):  # the failed update's journal, not ours
                Path(f"{paths.database(home)}{stale}").unlink(missing_ok=True)
            fsync_dir(home)
        _record(home, pending, "rolled back")
        _forget(home)
        return f"rolled back from {pending['version']}"
    return None


def history(home: Path) -> list[dict]:
    """Past updates, newest first: version, outcome, when (for Admin > Status)."""
    found = _read_json(paths.os_update(home) / "history.json")
    return list(found.get("updates", [])) if found else []


def note_refused(home: Path, name: str, reason: str, sha256: str | None = None) -> None:
    """Remember a bundle that was refused, with the reason, for Admin > Status (and, with
    its `sha256`, so that the hub's copy is not downloaded again)."""
    _record(home, {"version": None, "sha256": sha256, "bundle": name}, "refused", reason)


def _with_outcome(home: Path, outcome: str) -> set[str]:
    return {e["sha256"] for e in history(home) if e.get("outcome") == outcome and e.get("sha256")}


def _record(home: Path, pending: dict, outcome: str, reason: str | None = None) -> None:
    entry = {"version": pending.get("version"), "sha256": pending.get("sha256"),
             "bundle": pending.get("bundle"), "outcome": outcome, "reason": reason,
             "at": _now()}  # fmt: skip
    level = logging.INFO if outcome == "installed" else logging.WARNING
    log.log(level, "OS update %s: %s", pending.get("version") or pending.get("bundle"), outcome)
    earlier = history(home)
    if earlier and {**earlier[0], "at": None} == {**entry, "at": None}:
        earlier = earlier[1:]  # the same refusal again (a stick left in): once is enough
    updates = [entry, *earlier][:HISTORY_KEPT]
    write_durably(paths.os_update(home) / "history.json", json.dumps({"updates": updates}).encode())


def _forget(home: Path) -> None:
    _pending_path(home).unlink(missing_ok=True)
    (paths.os_update(home) / "before-update.db").unlink(missing_ok=True)
    fsync_dir(paths.os_update(home))


def _pending_path(home: Path) -> Path:
    return paths.os_update(home) / "pending.json"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise OsUpdateError(f"{path} is damaged ({error}); see docs/image.md.") from error


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
