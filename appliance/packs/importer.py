"""Import a validated pack into the box: media files, then one database transaction.

All or nothing: media for the new version is written to its own folder first; the
database changes commit together; if they fail, the new folder is removed and the box
is exactly as before. Only after the commit is the previous version's media removed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from appliance.packs.loader import Pack, PackError, load, version_key
from appliance.packs.resources import safe_app_name
from appliance.store import audit, content, now, one, transaction

COPY_CHUNK = 1024 * 1024
SPARE_BYTES = 200 * 1024 * 1024


@dataclass
class ImportResult:
    pack_id: str
    version: str
    status: str  # "added", "upgraded" or "unchanged"
    message: str
    lessons: int = 0
    items: int = 0
    resources: int = 0


def import_pack(
    db: sqlite_utils.Database, media_root: Path, path: str | Path, actor: audit.Actor
) -> ImportResult:
    """Validate the pack at `path` and import it; raise PackError and change nothing if invalid."""
    pack = load(path)
    existing = one(db, "SELECT version FROM packs WHERE id = ?", (pack.id,))
    if existing and version_key(existing["version"]) >= version_key(pack.version):
        return ImportResult(
            pack.id,
            pack.version,
            "unchanged",
            f"Pack {pack.id} is already at version {existing['version']}; "
            f"version {pack.version} was not imported (nothing changed).",
        )
    _check_ids_are_ours(db, pack)
    new_media = _write_media(media_root, pack)
    try:
        with transaction(db):
            _write_pack(db, pack, actor)
            audit.record(
                db,
                actor,
                "content.import",
                "pack",
                pack.id,
                version=pack.version,
                previous=existing["version"] if existing else None,
                lessons=len(pack.lessons),
                items=len(pack.items),
                resources=len(pack.resources),
            )
    except BaseException:
        shutil.rmtree(new_media, ignore_errors=True)
        raise
    _remove_other_versions(
        media_root / pack.id, keep={pack.version, existing and existing["version"]}
    )
    status = "upgraded" if existing else "added"
    return ImportResult(
        pack.id,
        pack.version,
        status,
        f"Pack {pack.id} {status} to version {pack.version}: "
        f"{len(pack.lessons)} lessons, {len(pack.items)} items, {len(pack.resources)} resources.",
        len(pack.lessons),
        len(pack.items),
        len(pack.resources),
    )


def _check_ids_are_ours(db: sqlite_utils.Database, pack: Pack) -> None:
    """Lesson and item ids are global: a pack may not take over another pack's."""
    problems = []
    for table, ids in (
        ("lessons", [x.id for x in pack.lessons]),
        ("items", [x.id for x in pack.items]),
        ("resources", [x.id for x in pack.resources]),
    ):
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in db.conn.execute(
                f"SELECT id, pack_id FROM {table} WHERE id IN ({marks}) AND pack_id != ?",  # noqa: S608
                (*chunk, pack.id),
            ):
                problems.append(
                    f"{table}: id {row['id']!r} already belongs to pack {row['pack_id']!r}"
                )
    if problems:
        raise PackError(problems)


def _write_media(media_root: Path, pack: Pack) -> Path:
    """Write the version's media and resources into a temporary folder, fsync, then
    rename into place."""
    target = media_root / pack.id / pack.version
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_space(target.parent, pack)
    staging = Path(tempfile.mkdtemp(prefix=f".{pack.version}-", dir=target.parent))
    try:
        for name, data in pack.media.items():
            _write(staging / name, data)
        _write_resources(staging, pack)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)  # left by an import that crashed before commit
    os.replace(staging, target)
    return target


def _check_space(folder: Path, pack: Pack) -> None:
    """Refuse before copying, not half way: a full disk also stops answers being saved."""
    needed = sum(len(d) for d in pack.media.values()) + sum(r.size for r in pack.resources)
    free = shutil.disk_usage(folder).free
    if needed + SPARE_BYTES > free:
        raise PackError([
            f"The box has {free // 2**20} MB free, and this pack needs {needed // 2**20} MB"
            f" plus {SPARE_BYTES // 2**20} MB kept free for learners' work: free some space"
            " (remove an old pack) and import it again."
        ])  # fmt: skip


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _write_resources(staging: Path, pack: Pack) -> None:
    """Resource files copied a megabyte at a time; a book's pictures beside them; an
    app's zip unpacked into its own folder, which the box serves sandboxed."""
    files = staging / "resources"
    for resource in pack.resources:
        for name in [resource.file, *(c["file"] for c in resource.captions)]:
            files.mkdir(exist_ok=True)
            with pack.sources[name].open() as source, open(files / name, "wb") as out:
                shutil.copyfileobj(source, out, COPY_CHUNK)
                out.flush()
                os.fsync(out.fileno())
        if resource.book:
            for name, data in resource.book.pictures.items():
                _write(staging / "epub" / resource.id / name, data)
        if resource.kind == "app":
            _unpack_app(files / resource.file, staging / "apps" / resource.id)


def _unpack_app(zip_path: Path, folder: Path) -> None:
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            if not info.is_dir() and safe_app_name(info.filename):  # checked on load too
                _write(folder / info.filename, archive.read(info))


def _remove_other_versions(pack_dir: Path, keep: set) -> None:
    """Keep this version's media and the one before (pages open during an upgrade, and
    retired items in teachers' history, still show their pictures)."""
    for child in pack_dir.iterdir():
        if child.name not in keep:
            shutil.rmtree(child, ignore_errors=True)


def _write_pack(db: sqlite_utils.Database, pack: Pack, actor: audit.Actor) -> None:
    at = now()
    db.table("packs").upsert(
        {
            "id": pack.id,
            "version": pack.version,
            "title": pack.title,
            "language": pack.language,
            "licence": pack.licence,
            "authors": json.dumps(pack.authors),
            "description": pack.description,
            "subjects": json.dumps(pack.subjects),
            "imported_at": at,
            "imported_by": actor.id,
        },
        pk="id",
    )
    db.table("skills").upsert_all([{**s, "pack_id": pack.id} for s in pack.skills], pk="id")
    _write_lessons(db, pack, at)
    _write_items(db, pack)
    _write_resources_rows(db, pack)
    content.index_items(db, pack.id)
    content.index_resources(db, pack.id)


def _write_lessons(db: sqlite_utils.Database, pack: Pack, at: str) -> None:
    db.conn.execute("UPDATE lessons SET retired = 1 WHERE pack_id = ?", (pack.id,))
    db.table("lessons").upsert_all(
        [
            {
                "id": lesson.id,
                "pack_id": pack.id,
                "subject": lesson.subject,
                "title": lesson.title,
                "summary": lesson.summary,
                "position": lesson.position,
                "body_md": lesson.body_md,
                "body_html": lesson.body_html,
                "skills": json.dumps(lesson.skills),
                "retired": 0,
                "updated_at": at,
            }
            for lesson in pack.lessons
        ],
        pk="id",
    )
    ids = [lesson.id for lesson in pack.lessons]
    marks = ",".join("?" * len(ids))
    db.conn.execute(f"DELETE FROM passages WHERE lesson_id IN ({marks})", ids)  # noqa: S608
    db.conn.executemany(
        "INSERT INTO passages (lesson_id, heading, body) VALUES (?, ?, ?)",
        [
            (lesson.id, heading or lesson.title, body)
            for lesson in pack.lessons
            for heading, body in lesson.passages
        ],
    )
    # Retired lessons leave search, but keep their rows for learners' history.
    db.conn.execute(
        "DELETE FROM passages WHERE lesson_id IN"
        " (SELECT id FROM lessons WHERE pack_id = ? AND retired = 1)",
        (pack.id,),
    )


def _write_items(db: sqlite_utils.Database, pack: Pack) -> None:
    db.conn.execute("UPDATE items SET retired = 1 WHERE pack_id = ?", (pack.id,))
    db.table("items").upsert_all(
        [
            {
                "id": item.id,
                "pack_id": pack.id,
                "lesson_id": item.lesson_id,
                "type": item.type,
                "position": item.position,
                "prompt_html": item.prompt_html,
                "choices": json.dumps(item.choices) if item.choices is not None else None,
                "answer": json.dumps(item.answer),
                "hints": json.dumps(item.hints),
                "explanation_html": item.explanation_html,
                "retired": 0,
            }
            for item in pack.items
        ],
        pk="id",
    )
    ids = [item.id for item in pack.items]
    if ids:
        marks = ",".join("?" * len(ids))
        db.conn.execute(f"DELETE FROM item_skills WHERE item_id IN ({marks})", ids)  # noqa: S608
    db.table("item_skills").insert_all(
        [{"item_id": item.id, "skill_id": skill} for item in pack.items for skill in item.skills],
        pk=("item_id", "skill_id"),
        ignore=True,
    )


def _write_resources_rows(db: sqlite_utils.Database, pack: Pack) -> None:
    db.conn.execute("UPDATE resources SET retired = 1 WHERE pack_id = ?", (pack.id,))
    db.table("resources").upsert_all(
        [
            {
                "id": r.id,
                "pack_id": pack.id,
                "lesson_id": r.lesson_id,
                "kind": r.kind,
                "title": r.title,
                "description": r.description,
                "file": r.file,
                "mime": r.mime,
                "bytes": r.size,
                "duration_s": r.duration_s,
                "captions": json.dumps(r.captions),
                "licence": r.licence,
                "attribution": r.attribution,
                "position": r.position,
                "retired": 0,
            }  # fmt: skip
            for r in pack.resources
        ],
        pk="id",
    )
    db.conn.execute(
        "DELETE FROM resource_pages WHERE resource_id IN"
        " (SELECT id FROM resources WHERE pack_id = ?)",
        (pack.id,),
    )
    db.conn.executemany(
        "INSERT INTO resource_pages (resource_id, page, title, html) VALUES (?, ?, ?, ?)",
        [
            (r.id, number, title, html)
            for r in pack.resources
            if r.book
            for number, (title, html) in enumerate(r.book.pages, 1)
        ],
    )


__all__ = ["ImportResult", "import_pack", "load"]
