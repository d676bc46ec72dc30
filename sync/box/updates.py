"""Applying the district's updates on the box: check, stage, apply whole, log.

The update format and its signing are sync/updates.py, shared with the hub. The box
checks the signature against the district key it pinned, then the payload's size and
SHA-256, before anything is written. A content pack is imported all-or-nothing (the
pack importer's own guarantee); a model goes into the model registry, is activated, and is
rolled back to the previous model if it cannot be loaded. An update applied once is not
applied again. Unsigned or wrongly signed updates are refused while the box requires
signatures (`sync_require_signed_updates`, the default). A refused update is written to
the update log (the admin page's "Updates from the district") and the audit log, once
per reason, and tried again at the next sync: a download cut short may yet complete.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

import sqlite_utils
from cryptography.exceptions import InvalidSignature

from appliance import paths
from appliance.packs.importer import import_pack
from appliance.packs.loader import PackError
from appliance.store import audit, now, one, training_data, transaction
from models.knowledge_tracing import gate as kt_gate
from models.knowledge_tracing.runtime import KTModelError, KTRuntime
from models.registry import installed as store
from models.registry.formats import sha256_of
from sync import enrolment
from sync.files import canonical
from sync.updates import ENVELOPE, UpdateError, read_envelope

log = logging.getLogger("schoolbox.sync")
REFUSED = "refused: "  # how a refusal's outcome starts in the update log


def apply(
    db: sqlite_utils.Database, home: Path, folder: Path, require_signature: bool = True
) -> str:
    """Check and apply the update in `folder`: "applied", "unchanged", "kept the active
    model: <why>" (a knowledge-tracing model worse on this box), or UpdateError, which is
    logged (update log and audit log) before it is raised."""
    try:
        return _apply(db, home, folder, require_signature)
    except UpdateError as error:
        _record_refusal(db, folder, error)
        raise


def _apply(db: sqlite_utils.Database, home: Path, folder: Path, require_signature: bool) -> str:
    """The payload is copied into the box first and only that copy is checked and used: a
    stick that reads differently twice cannot slip in bytes that were not checked."""
    envelope = read_envelope(folder)
    _check_signature(home, envelope, require_signature)
    if one(db, "SELECT 1 FROM sync_updates WHERE sha256 = ? AND outcome NOT LIKE ?",
           (envelope["sha256"], f"{REFUSED}%")):  # fmt: skip
        return "unchanged"
    staging = Path(tempfile.mkdtemp(prefix=".update-", dir=home))
    try:
        payload = staging / Path(envelope["file"]).name
        source = folder / Path(envelope["file"]).name
        if not source.is_file() or source.stat().st_size != envelope["size"]:
            raise UpdateError(f"The update's file {envelope['file']} is missing or cut short.")
        shutil.copyfile(source, payload)
        if payload.stat().st_size != envelope["size"] or sha256_of(payload) != envelope["sha256"]:
            raise UpdateError(f"The update's file {envelope['file']} does not match its signature.")
        if envelope.get("card"):
            _stage_card(folder, payload, envelope["card"])
        if envelope["kind"] == "content-pack":
            outcome = _apply_pack(db, home, payload)
        else:
            outcome = _apply_model(home, payload, envelope)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with transaction(db):
        _log(db, envelope["sha256"], envelope["kind"], envelope["name"], envelope["version"],
             outcome)  # fmt: skip
        audit.record(db, audit.SYSTEM, "sync.update", envelope["kind"], envelope["name"],
                     version=envelope["version"], outcome=outcome)  # fmt: skip
    return outcome if outcome.startswith("kept") else "applied"


def _log(db: sqlite_utils.Database, sha256: str, kind: str, name: str, version: str,
         outcome: str) -> None:  # fmt: skip
    """One row per update in the update log; a refusal never overwrites an outcome."""
    db.conn.execute(
        "INSERT INTO sync_updates (sha256, kind, name, version, outcome, applied_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET kind = excluded.kind,"
        " name = excluded.name, version = excluded.version, outcome = excluded.outcome,"
        " applied_at = excluded.applied_at WHERE sync_updates.outcome LIKE ?",
        (sha256, kind, name, version, outcome, now(), f"{REFUSED}%"),
    )


def _record_refusal(db: sqlite_utils.Database, folder: Path, error: UpdateError) -> None:
    """Write a refusal to the update log and the audit log, unless this update was already
    refused for the same reason (a box tries again at every sync)."""
    try:
        envelope = json.loads((folder / ENVELOPE).read_text())
        envelope = envelope if isinstance(envelope, dict) else {}
    except (OSError, ValueError):
        envelope = {}
    fields = [str(envelope.get(k) or "?")[:200] for k in ("kind", "name", "version")]
    sha256 = envelope.get("sha256")
    if not isinstance(sha256, str):  # no readable envelope: the folder stands for it
        sha256 = "folder:" + hashlib.sha256(folder.name.encode()).hexdigest()
    outcome = f"{REFUSED}{error}"
    log.warning("update %s refused: %s", folder.name, error)
    with transaction(db):
        if one(db, "SELECT 1 FROM sync_updates WHERE sha256 = ? AND outcome = ?",
               (sha256, outcome)):  # fmt: skip
            return
        _log(db, sha256, fields[0], fields[1], fields[2], outcome)
        audit.record(db, audit.SYSTEM, "sync.update_refused", fields[0], fields[1],
                     version=fields[2], reason=str(error))  # fmt: skip


def apply_all(db: sqlite_utils.Database, home: Path, root: Path,
              require_signature: bool = True) -> dict[str, str]:  # fmt: skip
    """Apply every update folder under `root` (a stick's or a download's), oldest signed
    first, so the newest of two model updates is the one left active."""
    results = {}
    for folder in sorted((p.parent for p in root.glob(f"*/{ENVELOPE}")), key=_signed_at):
        try:
            results[folder.name] = apply(db, home, folder, require_signature)
        except UpdateError as error:
            results[folder.name] = f"{REFUSED}{error}"
    return results


def _signed_at(folder: Path) -> tuple[str, str]:
    try:
        return (str(json.loads((folder / ENVELOPE).read_text()).get("signed_at", "")), folder.name)
    except (OSError, ValueError, AttributeError):
        return ("", folder.name)


def _stage_card(folder: Path, payload: Path, card: dict) -> None:
    """The model's signed card, checked, beside the staged model (the store keeps it)."""
    staged = payload.with_suffix(".card.json")
    source = folder / Path(str(card.get("file"))).name
    if not source.is_file() or source.stat().st_size != card.get("size"):
        raise UpdateError("The update's model card is missing or cut short.")
    shutil.copyfile(source, staged)
    if staged.stat().st_size != card.get("size") or sha256_of(staged) != card.get("sha256"):
        raise UpdateError("The update's model card does not match its signature.")


def recent(db: sqlite_utils.Database, limit: int = 5) -> list[dict]:
    """The latest updates the box took in, and what became of each, for the admin page."""
    rows = db.conn.execute(
        "SELECT kind, name, version, outcome, applied_at FROM sync_updates"
        " ORDER BY applied_at DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [dict(zip(("kind", "name", "version", "outcome", "applied_at"), r, strict=True))
            for r in rows]  # fmt: skip


def _check_signature(home: Path, envelope: dict, required: bool) -> None:
    if "signature" not in envelope:
        if required:
            raise UpdateError("The update is not signed, and this box requires signed updates.")
        return
    district = enrolment.district_keys(home)
    if district is None:
        raise UpdateError("No district key is pinned, so the update's signature cannot be checked.")
    body = {k: v for k, v in envelope.items() if k != "signature"}
    try:
        signature = base64.b64decode(envelope["signature"], validate=True)
        district.signing.verify(signature, canonical(body))
    except (InvalidSignature, ValueError, TypeError) as error:
        raise UpdateError("The update's signature is not the district's.") from error


def _apply_pack(db: sqlite_utils.Database, home: Path, payload: Path) -> str:

    try:
        return import_pack(db, paths.media(home), payload, audit.SYSTEM).status
    except PackError as error:  # the importer changed nothing
        raise UpdateError(f"The content pack was refused: {error}") from error


def _apply_model(home: Path, payload: Path, envelope: dict) -> str:
    """Into the store (hash checked again there), tried, and only then activated."""

    try:
        manifest = store.import_file(
            home, payload, name=envelope["name"], kind=envelope.get("model_kind"),
            sha256=envelope["sha256"],
            source=f"district update {envelope['version']} signed {envelope['signed_at']}",
        )  # fmt: skip
    except store.ModelStoreError as error:
        raise UpdateError(f"The model was refused: {error}") from error
    if not _loads(store.file_path(home, manifest), manifest.kind):
        raise UpdateError(
            f"The model {manifest.name} could not be run, so it was not activated; "
            "the model in use stays."
        )
    if manifest.kind == "knowledge-tracing":
        verdict = _judge(home, store.file_path(home, manifest))
        if not verdict.accept:
            return f"kept the active model: {verdict.reason}"
    try:
        store.activate(home, manifest.name)
    except store.ModelStoreError as error:
        raise UpdateError(f"The model could not be activated: {error}") from error
    return "activated" if manifest.kind != "knowledge-tracing" else f"activated: {verdict.reason}"


def _judge(home: Path, new: Path):
    """Is the new knowledge-tracing model at least as good on this box's recent answers?"""

    active = store.active(home, "knowledge-tracing")
    data = training_data.read(paths.database(home), for_training=False)
    learners, recent_from = (data.learners, data.recent_from) if data else ([], [])
    return kt_gate.judge(new, store.file_path(home, active) if active else None, learners,
                         recent_from)  # fmt: skip


def _loads(path: Path, kind: str) -> bool:
    """Can the box use the model? (A knowledge-tracing model is run once.)"""
    if kind != "knowledge-tracing":
        return True  # a GGUF's header and tensor table were checked on import
    import numpy as np

    try:
        runtime = KTRuntime(path)
        runtime.update(np.zeros((1, runtime.skill_hidden)), runtime.new_learner_state(), 0.0,
                       [0.0], 1)  # fmt: skip
        return True
    except (KTModelError, ValueError, OSError):
        return False
