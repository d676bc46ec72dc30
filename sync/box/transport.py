"""Getting bundles to the hub and acknowledgements back: over HTTP, or on a USB stick.

HTTP: a connectivity check first (GET /healthz), then the pending bundles in order, each
POSTed until it is acknowledged; a dropped connection or a 5xx is retried with
exponential backoff and full jitter, and a bundle sent twice is harmless (the hub
applies a bundle once per box and sequence number and acknowledges it again).

USB ("sneakernet"): `export_to` copies pending bundles to <stick>/schoolbox/<box id>/;
the hub's `import_from` applies every box's bundles on the stick and writes signed
acknowledgements beside them; `import_acks` back on the box reads its own.

A bundle is pruned (its file deleted, its row kept as history) only after an
acknowledgement signed by the pinned district key names its exact digest.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from appliance.store import now, site, transaction
from sync import acknowledgement, enrolment, updates
from sync.box import outbox
from sync.files import write_durably
from sync.stick import USB_FOLDER

log = logging.getLogger("schoolbox.sync")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # no "..", no "/", no hidden file


class SendStopped(RuntimeError):
    """The hub refused a bundle for a reason retrying cannot fix; the message says which."""


def send_pending(
    db: sqlite_utils.Database,
    home: Path,
    url: str,
    tries: int = 6,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Send pending bundles to the hub at `url`; return how many were acknowledged.
    Returns 0 at once when the hub cannot be reached (the job tries again later), or when
    the school has withdrawn its consent (nothing leaves the box then)."""
    if not site.is_consented(db, "sync") or not reachable(url, timeout):
        return 0
    acknowledged = 0
    for row in outbox.pending(db):
        data = (outbox.folder(home) / row["file"]).read_bytes()
        ack = _post(hub_url(url, "/v1/bundles"), data, tries, timeout, sleep)
        _accept(db, home, row, ack)
        acknowledged += 1
    return acknowledged


def hub_url(url: str, path: str) -> str:
    """`url` + `path`, for an http(s) hub only (never file: or anything else)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"The hub's address must start with http:// or https://, not {url!r}.")
    return f"{url.rstrip('/')}{path}"


def reachable(url: str, timeout: float = 5.0) -> bool:
    try:
        target = hub_url(url, "/healthz")
        with urllib.request.urlopen(target, timeout=timeout) as reply:  # noqa: S310 - http(s) only
            return reply.status == 200
    except (OSError, ValueError):
        return False


def backoff(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds to wait before retry `attempt` (0, 1, ...): full jitter, exponential."""
    return random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311 - not for secrets


def _post(url: str, data: bytes, tries: int, timeout: float, sleep) -> dict:
    for attempt in range(tries):
        request = urllib.request.Request(  # noqa: S310 - hub_url allows http(s) only
            url, data=data, method="POST", headers={"Content-Type": "application/octet-stream"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
                return json.loads(reply.read())
        except urllib.error.HTTPError as error:
            body = hub_message(error)
            if error.code < 500:  # the hub looked at it and said no: retrying will not help
                raise SendStopped(f"The hub refused the bundle ({error.code}): {body}") from error
            log.warning("hub answered %d; retrying", error.code)
        except (OSError, ValueError) as error:  # dropped link, timeout, garbled reply
            log.warning("sending a bundle failed (%s); retrying", type(error).__name__)
        if attempt + 1 < tries:
            sleep(backoff(attempt))
    raise ConnectionError(f"The hub did not acknowledge the bundle after {tries} tries.")


def hub_message(error: urllib.error.HTTPError) -> str:
    """The hub's own words in a refusal ({"error": ...}), or "" when it sent none."""
    try:
        return json.loads(error.read()).get("error", "")
    except (OSError, ValueError, AttributeError):
        return ""


def _accept(db: sqlite_utils.Database, home: Path, row: dict, ack: dict) -> None:
    """Mark a bundle acknowledged and prune its file, once the ack checks out."""
    district = enrolment.district_keys(home)
    if district is None:
        raise ValueError("No district key is pinned, so the acknowledgement cannot be checked.")
    acknowledgement.check(ack, district, lambda seq: row["digest"] if seq == row["seq"] else None)
    at = now()
    with transaction(db):
        db.conn.execute(
            "UPDATE sync_outbox SET sent_at = coalesce(sent_at, ?), acked_at = ? WHERE seq = ?",
            (at, at, row["seq"]),
        )
    (outbox.folder(home) / row["file"]).unlink(missing_ok=True)


def fetch_updates(url: str, into: Path, timeout: float = 60.0, max_bytes: int = 1 << 30) -> int:
    """Download the hub's signed updates not yet here, each with every file its envelope
    names (a model's card too), into `into`; return how many. Nothing is trusted yet:
    sync/updates.py checks each before applying it. Names from the hub are checked before
    they become paths (nothing lands outside `into`). The envelope is written last, so a
    download cut short is fetched again next time."""
    with urllib.request.urlopen(hub_url(url, "/v1/updates"), timeout=timeout) as reply:  # noqa: S310
        listed = json.loads(reply.read(1 << 20)).get("updates", {})
    fetched = 0
    for folder, envelope in listed.items():
        names = updates.files_of(envelope) if isinstance(envelope, dict) else [""]
        if not all(_SAFE_NAME.fullmatch(n) for n in [str(folder), *names]):
            log.warning("the hub listed an update with an unusable name; skipped")
            continue
        target = into / folder
        if (target / updates.ENVELOPE).exists() and all((target / n).is_file() for n in names):
            continue
        files = {n: _download(url, f"{folder}/{n}", timeout, max_bytes) for n in names}
        downloaded = {n: data for n, data in files.items() if data is not None}
        if len(downloaded) < len(files):
            continue
        for name, data in downloaded.items():
            write_durably(target / name, data)
        write_durably(target / updates.ENVELOPE, json.dumps(envelope).encode())
        fetched += 1
    return fetched


def _download(url: str, path: str, timeout: float, max_bytes: int) -> bytes | None:
    """One update file from the hub, or None (logged) when it is larger than `max_bytes`."""
    quoted = "/".join(urllib.parse.quote(part) for part in path.split("/"))
    with urllib.request.urlopen(hub_url(url, f"/v1/updates/{quoted}"), timeout=timeout) as reply:  # noqa: S310
        data = reply.read(max_bytes + 1)
    if len(data) > max_bytes:
        log.warning("an update from the hub is larger than %d bytes; skipped", max_bytes)
        return None
    return data


# --- USB -------------------------------------------------------------------------------


def export_to(db: sqlite_utils.Database, home: Path, stick: Path, box_id: str) -> int:
    """Copy pending bundles onto a stick; return how many (none without consent)."""
    if not site.is_consented(db, "sync"):
        return 0
    target = stick / USB_FOLDER / box_id
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    for row in outbox.pending(db):
        write_durably(target / row["file"], (outbox.folder(home) / row["file"]).read_bytes())
        copied += 1
    if copied:
        at = now()
        with transaction(db):
            db.conn.execute(
                "UPDATE sync_outbox SET sent_at = coalesce(sent_at, ?) WHERE acked_at IS NULL",
                (at,),
            )
    return copied


def import_acks(db: sqlite_utils.Database, home: Path, stick: Path, box_id: str) -> int:
    """Read this box's acknowledgements from a stick; return how many bundles they prune."""
    folder = stick / USB_FOLDER / box_id / "acks"
    pending = {row["seq"]: row for row in outbox.pending(db)}
    pruned = 0
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        ack = json.loads(path.read_text())
        row = pending.get(ack.get("seq"))
        if row is not None:
            _accept(db, home, row, ack)
            pruned += 1
    return pruned
