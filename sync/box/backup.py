"""The box's side of the school's backup: the recovery key, the nightly backup sent to the
hub, and the restore that brings a school's data onto a new box.

    <home>/keys/recovery.json     the public half of the school's recovery key
    <home>/backups/sent.json      when the last backup reached the hub, and its size

The backup (sync/recovery.py) is a consistent copy of the database (SQLite's backup API)
with the keys learners' PINs and pseudonyms are made with, sealed to the recovery key and
signed by this box. `schoolbox sync now` sends one when the last is a day old.

A restore runs on a newly set-up box: it opens the backup with the recovery key, brings
the database copy to this Schoolbox's schema, puts the school's tables in place of this
box's (appliance/store/school_data.py) and takes the old box's session and pseudonym
keys, so PINs still work and the district sees the same pseudonymous learners.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlite_utils

from appliance import paths
from appliance.store import audit, migrations, now, open_db, school_data, site
from sync import enrolment, policy, recovery
from sync.box.os_update import copy_database
from sync.box.transport import hub_message, hub_url
from sync.files import fsync_dir, write_durably, write_json
from sync.keys import KeyFileError, PrivateKeys, PublicKeys, read_private, write_private
from sync.recovery import BackupError, Header

log = logging.getLogger("schoolbox.sync")
EVERY = timedelta(hours=24)
SIGNATURE_HEADER = "X-Schoolbox-Signature"  # as sync/hub/backups.py reads them
VOUCHER_HEADER = "X-Schoolbox-Voucher"


def recovery_key_path(home: Path) -> Path:
    return home / "keys" / "recovery.json"


def sent_path(home: Path) -> Path:
    return home / "backups" / "sent.json"


def new_recovery_key(home: Path, out: Path | None = None) -> PrivateKeys:
    """Make the school's recovery key and keep its public half here; the private half is
    written to `out` first when given (a stick the school keeps; never over a file there),
    else returned for the caller to hand over (the admin page's download). Backups made
    before stay sealed to the key they were made with."""
    keys = recovery.new_recovery_key()
    if out is not None:
        write_private(keys, out)  # first: a key the school never got must not seal backups
    write_json(recovery_key_path(home), keys.public().to_json())
    log.info("a new recovery key %s seals this box's backups", keys.public().fingerprint())
    return keys


def recovery_key(home: Path) -> PublicKeys | None:
    """The recovery key backups are sealed to, or None before the school made one."""
    path = recovery_key_path(home)
    return PublicKeys.from_json(json.loads(path.read_text())) if path.is_file() else None


def make(db: sqlite_utils.Database, home: Path) -> bytes:
    """A sealed, signed backup of the school's data as it is now."""
    recovery_public = recovery_key(home)
    if recovery_public is None:
        raise BackupError(
            "The school has no recovery key yet, so nothing can be sealed: make one on "
            "Admin > Status or with `schoolbox recovery-key new`."
        )
    found = site.required(db)
    box = enrolment.ensure_box_keys(home, found["box_id"])
    policy.pseudonymiser(home)  # the pseudonym key exists from here on: it goes with the data
    with tempfile.TemporaryDirectory(dir=home, prefix=".backup-") as work:
        copy = copy_database(paths.database(home), Path(work) / recovery.DATABASE)
        if copy is None:
            raise BackupError(f"There is no database at {paths.database(home)} to back up.")
        files = {recovery.DATABASE: copy.read_bytes()}
    files["secret.key"] = paths.secret(home).read_bytes()
    files["pseudonym.key"] = paths.pseudonym_key(home).read_bytes()
    header = Header(found["box_id"], found["name"], now(), migrations.version(db),
                    recovery_public.fingerprint())  # fmt: skip
    return recovery.seal(header, files, recovery_public, box)


def due(home: Path, at: datetime | None = None) -> bool:
    """True when the last backup the hub took is a day old, or there is none."""
    path = sent_path(home)
    if not path.is_file():
        return True
    last = datetime.fromisoformat(json.loads(path.read_text())["at"])
    return (at or datetime.now(UTC)) - last >= EVERY


def send(db: sqlite_utils.Database, home: Path, url: str, timeout: float = 120.0) -> dict:
    """Make a backup and hand it to the hub; return the hub's answer. BackupError when
    the hub refuses it, OSError when it cannot be reached."""
    data = make(db, home)
    request = urllib.request.Request(  # noqa: S310 - hub_url allows http(s) only
        hub_url(url, "/v1/backups"), data=data, method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            answer = json.loads(reply.read(1 << 16))
    except urllib.error.HTTPError as error:
        refusal = f"The hub refused the backup ({error.code}): {hub_message(error)}"
        raise BackupError(refusal) from error
    write_json(sent_path(home), {"at": datetime.now(UTC).isoformat(), "bytes": len(data),
                                 "sha256": answer.get("sha256")})  # fmt: skip
    log.info("backup of %d KB kept at the hub", len(data) >> 10)
    return answer


def last_sent(home: Path) -> dict | None:
    """When the hub last took a backup of this box, for the status page."""
    path = sent_path(home)
    return json.loads(path.read_text()) if path.is_file() else None


def fetch_newest(db: sqlite_utils.Database, home: Path, url: str, timeout: float = 300.0) -> bytes:
    """The newest backup of this box's school at the hub, vouched for by the district."""
    district = enrolment.district_keys(home)
    if district is None:
        raise BackupError("No district key is pinned here, so the hub's answer cannot be checked.")
    box = enrolment.ensure_box_keys(home, site.required(db)["box_id"])
    body, signature = recovery.request(box, now())
    request = urllib.request.Request(  # noqa: S310 - hub_url allows http(s) only
        hub_url(url, "/v1/backups/newest"), data=body, method="POST",
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            data = reply.read(recovery.MAX_BYTES + 1)
            voucher = reply.headers.get(VOUCHER_HEADER, "")
    except urllib.error.HTTPError as error:
        raise BackupError(f"The hub gave no backup ({error.code}): {hub_message(error)}") from error
    recovery.check_voucher(voucher, district, data)
    return data


def restore(
    db: sqlite_utils.Database, home: Path, data: bytes, key: PrivateKeys
) -> tuple[Header, dict]:
    """Bring the school's data in `data` (a backup) onto this box; return the backup's
    header and rows restored per table. Nothing changes unless all of it can."""
    header, files = recovery.open_backup(data, key)
    if header.schema > migrations.CURRENT_VERSION:
        raise BackupError(
            f"The backup was made by a newer Schoolbox (schema {header.schema}); update this "
            "box first (its OS update from the hub, or a stick), then restore."
        )
    with tempfile.TemporaryDirectory(dir=home, prefix=".restore-") as work:
        copy = Path(work) / recovery.DATABASE
        write_durably(copy, files[recovery.DATABASE])
        restored = open_db(copy)
        problems = [r[0] for r in restored.execute("PRAGMA integrity_check").fetchall()]
        if problems != ["ok"]:
            raise BackupError(f"The database in the backup is damaged: {problems[0]}.")
        migrations.migrate(restored)  # a backup from an older Schoolbox
        restored.conn.close()
        policy.pseudonymiser(home)  # both keys exist here, so a failed restore puts both back
        previous = _swap_keys(home, files)
        try:
            copied = school_data.replace(db, copy, audit.SYSTEM)
        except BaseException:
            _swap_keys(home, previous)  # the new box's own keys back: no change at all
            raise
    log.info("school data restored from a backup of box %s made %s", header.box_id,
             header.created_at)  # fmt: skip
    return header, copied


def _swap_keys(home: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """Put the session and pseudonym keys in `files` in place, each durably and whole;
    return the ones they replaced."""
    previous = {}
    for name, path in (("secret.key", paths.secret(home)),
                       ("pseudonym.key", paths.pseudonym_key(home))):  # fmt: skip
        if path.is_file():
            previous[name] = path.read_bytes()
        if name in files:
            mode = path.stat().st_mode & 0o777 if path.is_file() else 0o600
            partial = path.with_name(f".{path.name}.restore")
            write_durably(partial, files[name])
            os.chmod(partial, mode)
            os.replace(partial, path)
            fsync_dir(path.parent)
    return previous


def read_key(path: Path) -> PrivateKeys:
    """The school's recovery key from its file; KeyFileError saying what is wrong."""
    keys = read_private(path)
    if keys.owner != recovery.RECOVERY_OWNER:
        raise KeyFileError(f"{path} holds the keys of {keys.owner!r}, not a recovery key.")
    return keys
