"""A pack's resources (video, audio, PDF, EPUB, HTML5 apps) as the box serves them, and
each learner's progress with them: opened, and done.

Done means: a video or a sound played to its end (or the learner says they finished),
an EPUB read to its last page, a PDF or an app opened. A lesson with resources is done
when its questions are answered right and its resources are done (assignments.py).
"""

from __future__ import annotations

import json

import sqlite_utils

from appliance.messages import lazy as _l
from appliance.packs.loader import media_url
from appliance.store import grouped, now, one, rows, soon

KIND_NAMES = {
    "video": _l("Video"), "audio": _l("Sound"), "pdf": _l("PDF document"),
    "epub": _l("Book"), "app": _l("Activity"),
}  # fmt: skip
DONE_WHEN_OPENED = ("pdf", "app")  # the browser cannot tell the box how far they got


def _shaped(row) -> dict:
    found = dict(row)
    found["captions"] = json.loads(found["captions"])
    found["url"] = f"{media_url(found['pack_id'], found['version'])}/resources/{found['file']}"
    found["folder"] = media_url(found["pack_id"], found["version"])
    return found


_SELECT = (
    "SELECT r.*, p.version, p.language, (SELECT count(*) FROM resource_pages g"
    " WHERE g.resource_id = r.id) AS page_count FROM resources r JOIN packs p ON p.id = r.pack_id"
)


def get(db: sqlite_utils.Database, resource_id: str) -> dict | None:
    """One current resource with where its files are served, or None."""
    row = one(db, _SELECT + " WHERE r.id = ? AND r.retired = 0", (resource_id,))
    return _shaped(row) if row else None


def of_lesson(db: sqlite_utils.Database, lesson_id: str) -> list[dict]:
    """A lesson's current resources, in the pack's order."""
    return [
        _shaped(r)
        for r in rows(
            db, _SELECT + " WHERE r.lesson_id = ? AND r.retired = 0 ORDER BY r.position",
            (lesson_id,),
        )
    ]  # fmt: skip


def every(db: sqlite_utils.Database) -> list[dict]:
    """Every current resource, by lesson and order (for teachers composing lessons)."""
    return [
        _shaped(r)
        for r in rows(db, _SELECT + " WHERE r.retired = 0 ORDER BY r.lesson_id, r.position")
    ]


def page(db: sqlite_utils.Database, resource_id: str, number: int) -> dict | None:
    """Page `number` (from 1) of an EPUB as the box rendered it, or None."""
    row = one(
        db,
        "SELECT page, title, html FROM resource_pages WHERE resource_id = ? AND page = ?",
        (resource_id, number),
    )
    return dict(row) if row else None


def contents(db: sqlite_utils.Database, resource_id: str) -> list[dict]:
    """An EPUB's page titles, in reading order."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT page, title FROM resource_pages WHERE resource_id = ? ORDER BY page",
            (resource_id,),
        )
    ]


def opened(db: sqlite_utils.Database, learner_id: int, resource: dict) -> None:
    """Note that a learner opened a resource (done too, for a PDF or an app). The page
    does not wait for it (store.soon): a crash within half a second may lose the note."""
    at = now()
    done = at if resource["kind"] in DONE_WHEN_OPENED else None

    soon(db, lambda writer: _note(writer, learner_id, resource["id"], at, done))


def finish(db: sqlite_utils.Database, learner_id: int, resource_id: str) -> str:
    """Mark a resource done for a learner, durably; the time it was first done."""
    at = now()

    def note(writer: sqlite_utils.Database) -> str:
        _note(writer, learner_id, resource_id, at, at)
        return writer.conn.execute(
            "SELECT done_at FROM resource_progress WHERE learner_id = ? AND resource_id = ?",
            (learner_id, resource_id),
        ).fetchone()[0]

    return grouped(db, note)


def _note(writer, learner_id: int, resource_id: str, at: str, done: str | None) -> None:
    """Opened at `at` (the first time counts), done at `done` if given (the first too)."""
    writer.conn.execute(
        "INSERT INTO resource_progress (learner_id, resource_id, opened_at, done_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (learner_id, resource_id) DO UPDATE"
        " SET done_at = coalesce(done_at, excluded.done_at)",
        (learner_id, resource_id, at, done),
    )


def progress(db: sqlite_utils.Database, learner_id: int, resource_ids: list[str]) -> dict:
    """{resource id: "done" or "opened"} for those the learner has opened."""
    if not resource_ids:
        return {}
    marks = ",".join("?" * len(resource_ids))
    found = rows(
        db,
        "SELECT resource_id, done_at FROM resource_progress"  # noqa: S608 - marks only
        f" WHERE learner_id = ? AND resource_id IN ({marks})",
        (learner_id, *resource_ids),
    )
    return {r[0]: "done" if r[1] else "opened" for r in found}
