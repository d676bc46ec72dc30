"""The model store: verified model files with a manifest each, and which one is active.

On disk, under the box's data directory:

    models/<name>/<file>           the model, exactly as verified
    models/<name>/manifest.json    what it is (kind, format, sha256, licence, source, ...)
    models/<name>/card.json        its model card, when one came beside the file
    models/.active.json            the active model per kind, and the ones before it

A file is checked (header, size, sha256) before it is copied in, and the copy is hashed
again before it is registered. .active.json is replaced atomically (write, fsync,
rename), so a reader such as the tutor service sees the old choice or the new, never
half of one; it notices the change and swaps models between requests.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from appliance import paths
from appliance.paths import private_mode, shared_with_group
from models.registry.formats import ModelFileError, inspect, sha256_of

KINDS = ("tutor-llm", "knowledge-tracing")
DEFAULT_KIND = {"gguf": "tutor-llm", "onnx": "knowledge-tracing"}
HISTORY = 5  # how many earlier choices `rollback` can go back through
ACTIVE_FILE = ".active.json"  # a dot name: no model can be called that
CARD_FILE = "card.json"
MAX_CARD_BYTES = 256 * 1024
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


class ModelStoreError(ValueError):
    """A store operation the box refuses; the message says why and what to do."""


@dataclass(frozen=True)
class Manifest:
    name: str
    kind: str
    format: str
    file: str
    quantisation: str
    sha256: str
    size: int
    licence: str
    source: str
    context_length: int | None
    architecture: str
    parameters: str
    title: str
    added_at: str
    # Primary language tags the model answers in; empty: not declared (then English only).
    languages: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def root(home: Path) -> Path:
    return paths.models(home)


def models(home: Path) -> list[Manifest]:
    """Every model in the store, newest first."""
    found = []
    for manifest_path in sorted(root(home).glob("*/manifest.json")):
        if _NAME.fullmatch(manifest_path.parent.name):  # not a half-finished .importing-*
            found.append(Manifest(**json.loads(manifest_path.read_text())))
    return sorted(found, key=lambda m: m.added_at, reverse=True)


def get(home: Path, name: str) -> Manifest | None:
    path = root(home) / name / "manifest.json"
    if not _NAME.fullmatch(name) or not path.is_file():
        return None
    return Manifest(**json.loads(path.read_text()))


def file_path(home: Path, manifest: Manifest) -> Path:
    return root(home) / manifest.name / manifest.file


def card(home: Path, manifest: Manifest) -> dict | None:
    """The model card imported with the model (data, split, metrics), or None."""
    path = root(home) / manifest.name / CARD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def speaks(manifest: Manifest, language: str) -> bool:
    """Whether the model answers in `language` (a BCP 47 tag): as its file or its importer
    declared; a model that declares nothing is taken to speak English only."""
    return language.split("-")[0].lower() in (manifest.languages or ["en"])


def active(home: Path, kind: str) -> Manifest | None:
    """The model of `kind` the box uses now, or None."""
    name = _read_active(home).get(kind, {}).get("name")
    return get(home, name) if name else None


def import_file(
    home: Path,
    source_file: Path,
    *,
    kind: str | None = None,
    name: str | None = None,
    sha256: str | None = None,
    licence: str | None = None,
    source: str | None = None,
    languages: list[str] | None = None,
) -> Manifest:
    """Verify a model file and copy it into the store. It is not activated.

    `sha256` is what the file must hash to; without it, a `FILE.sha256` beside the file
    is used when present. A model card `FILE-STEM.card.json` beside it is kept with it.
    A file that fails any check changes nothing.
    """
    source_file = Path(source_file)
    facts = _inspect(source_file)
    model_card = _sidecar_card(source_file)
    kind = kind or DEFAULT_KIND[facts.format]
    if kind not in KINDS:
        raise ModelStoreError(f"Unknown model kind {kind!r}; use one of {', '.join(KINDS)}.")
    if DEFAULT_KIND[facts.format] != kind:
        raise ModelStoreError(f"A {facts.format.upper()} file cannot be a {kind} model.")
    expected = (sha256 or _sidecar_sha256(source_file) or "").lower() or None
    digest = sha256_of(source_file)
    if expected and digest != expected:
        raise ModelStoreError(
            f"{source_file.name} does not match its expected sha256 (expected {expected}, "
            f"got {digest}): it was damaged or changed. It was not imported."
        )
    name = name or _default_name(facts.title, source_file, digest)
    if not _NAME.fullmatch(name):
        raise ModelStoreError(
            f"{name!r} is not a usable model name: lower-case letters, digits, '.', '-', '_'."
        )
    with _locked(home):
        for leftover in root(home).glob(".importing-*"):  # an import cut off by power loss
            shutil.rmtree(leftover, ignore_errors=True)
        existing = get(home, name)
        if existing and existing.sha256 != digest:
            raise ModelStoreError(
                f"A different model is already called {name!r}; choose another --name."
            )
        if existing and _is_intact(home, existing):
            return existing  # the same file again: nothing to do
        # A damaged copy of this very file, or a folder an interrupted import left behind:
        # replace it with the verified file.
        shutil.rmtree(root(home) / name, ignore_errors=True)
        spoken = (
            [t.split("-")[0].lower() for t in languages] if languages else list(facts.languages)
        )
        return _copy_in(
            home, source_file, facts, kind, name, digest, licence, source, model_card, spoken
        )


def activate(home: Path, name: str) -> Manifest:
    """Make `name` the active model of its kind, after checking its file is intact."""
    with _locked(home):
        manifest = get(home, name)
        if manifest is None:
            raise ModelStoreError(
                f"There is no model called {name!r} (see `schoolbox models list`)."
            )
        _verify_intact(home, manifest)
        state = _read_active(home)
        current = state.get(manifest.kind, {})
        if current.get("name") == name:
            return manifest
        history = ([current["name"]] if current.get("name") else []) + current.get("history", [])
        state[manifest.kind] = {"name": name, "history": history[:HISTORY]}
        _write_active(home, state)
        return manifest


def rollback(home: Path, kind: str) -> Manifest:
    """Go back to the model of `kind` that was active before the current one."""
    with _locked(home):
        state = _read_active(home)
        history = list(state.get(kind, {}).get("history", []))
        while history:
            previous = get(home, history.pop(0))
            if previous is not None:
                _verify_intact(home, previous)
                state[kind] = {"name": previous.name, "history": history}
                _write_active(home, state)
                return previous
        raise ModelStoreError(f"There is no earlier {kind} model to go back to.")


def active_stamp(home: Path) -> int:
    """Changes whenever the active choice changes: cheap enough to check per request."""
    try:
        found = (root(home) / ACTIVE_FILE).stat()
    except FileNotFoundError:
        return 0
    # Every replacement is a new file (rename), so a new inode even within one clock tick.
    return hash((found.st_ino, found.st_mtime_ns, found.st_size))


# --- inside the store ------------------------------------------------------------------


def _inspect(path: Path):
    try:
        return inspect(path)
    except ModelFileError as error:
        raise ModelStoreError(f"{error} It was not imported.") from error


def _sidecar_sha256(path: Path) -> str | None:
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        return None
    words = sidecar.read_text().split()
    if not words:
        raise ModelStoreError(f"{sidecar.name} is empty, so the model cannot be checked.")
    return words[0]


def _sidecar_card(path: Path) -> dict | None:
    sidecar = path.with_suffix(".card.json")
    if not sidecar.is_file():
        return None
    try:
        if sidecar.stat().st_size > MAX_CARD_BYTES:
            raise ValueError(f"larger than {MAX_CARD_BYTES // 1024} KiB")
        found = json.loads(sidecar.read_text())
        if not isinstance(found, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelStoreError(
            f"The model card {sidecar.name} cannot be read ({error}); fix or remove it. "
            "The model was not imported."
        ) from error
    return found


def _default_name(title: str, path: Path, digest: str) -> str:
    stem = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._") or "model"
    return f"{stem[:60]}-{digest[:8]}"


def _copy_in(home, source_file, facts, kind, name, digest, licence, source, model_card, spoken):
    store = root(home)
    store.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".importing-", dir=store))
    if shared_with_group(store):  # mkdtemp's 0700 would hide the model from the other services
        # Without the set-group-ID bit: the units forbid setting it (RestrictSUIDSGID), and
        # every service's own group is the shared one anyway.
        staging.chmod(0o750)
    try:
        target = staging / source_file.name
        with source_file.open("rb") as src, target.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        if sha256_of(target) != digest:  # a flaky USB stick reads differently twice
            raise ModelStoreError(f"{source_file.name} read differently twice; copy it again.")
        manifest = Manifest(
            name=name,
            kind=kind,
            format=facts.format,
            file=source_file.name,
            quantisation=facts.quantisation,
            sha256=digest,
            size=target.stat().st_size,
            licence=licence or facts.licence or "unknown",
            source=source or f"imported from {source_file.name}",
            context_length=facts.context_length,
            architecture=facts.architecture,
            parameters=facts.parameters,
            title=facts.title,
            added_at=datetime.now(UTC).isoformat(timespec="seconds"),
            languages=spoken,
        )
        _write_json(staging / "manifest.json", manifest.to_json())
        if model_card is not None:
            _write_json(staging / CARD_FILE, model_card)
        for written in staging.iterdir():  # the staging folder is not shared: share by hand
            written.chmod(private_mode(store) | (written.stat().st_mode & 0o060))
        os.rename(staging, store / name)
        _fsync_dir(store)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_intact(home: Path, manifest: Manifest) -> bool:
    path = file_path(home, manifest)
    return (
        path.is_file()
        and path.stat().st_size == manifest.size
        and sha256_of(path) == manifest.sha256
    )


def _verify_intact(home: Path, manifest: Manifest) -> None:
    if not _is_intact(home, manifest):
        raise ModelStoreError(
            f"The stored file of {manifest.name!r} is damaged or missing; the active model "
            "was not changed. Import the model again."
        )


def _read_active(home: Path) -> dict:
    path = root(home) / ACTIVE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_active(home: Path, state: dict) -> None:
    _write_json(root(home) / ACTIVE_FILE, state)


def _write_json(path: Path, value: dict) -> None:
    """Replace `path` atomically and durably: temporary file, fsync, rename, fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        # Readable by the box's other services where the data folder is shared (the image).
        os.fchmod(fd, private_mode(path.parent))
        with os.fdopen(fd, "w") as out:
            json.dump(value, out, indent=2, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One writer at a time across processes (the CLI and the admin page)."""
    root(home).mkdir(parents=True, exist_ok=True)
    with (root(home) / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
