"""The school's own data in the database, as a restore brings it onto a new box.

A backup (sync/recovery.py) carries the whole database file. A restore takes from it only
the tables that hold what the school made: accounts, classes, lessons set, answers,
mastery, the tutor's conversations, its consent choices and how far sync had sealed. It
keeps what is the new box's own: its site row (box id), the content packs (they come back
from the district; answers point at their items), what it sealed for the hub and the
updates it applied. The audit log is append-only, so the old box's entries are added
beside the new box's, never in their place.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from appliance.store import audit, rows, the_row, transaction

# Parents before children; deleted in the reverse order.
SCHOOL_TABLES = (
    "users", "classes", "class_teachers", "enrolments", "class_groups", "group_members",
    "assignments", "assignment_recipients", "quizzes", "quiz_items", "quiz_recipients",
    "quiz_takers", "class_lessons", "class_lesson_parts", "class_lesson_recipients",
    "attempts", "lesson_views", "resource_progress",
    "tombstones", "tutor_messages", "mastery", "learner_states", "predictions",
    "answer_counts", "chances", "knowledge_cursor", "recommendations", "consents",
    "sync_marks",
)  # fmt: skip
APPENDED = "audit_log"
# The new box's own, kept as they are by a restore (a test checks every table is in one list).
BOX_TABLES = (
    "site", "packs", "skills", "lessons", "items", "item_skills", "passages", "item_search",
    "resources", "resource_pages", "resource_search",
    "login_failures", "sync_outbox", "sync_updates",
)  # fmt: skip
# What the school's data points at in the content packs: (table, column, content table).
CONTENT_LINKS = (
    ("assignments", "lesson_id", "lessons"),
    ("attempts", "lesson_id", "lessons"),
    ("attempts", "item_id", "items"),
    ("quiz_items", "item_id", "items"),
    ("lesson_views", "lesson_id", "lessons"),
    ("class_lesson_parts", "lesson_id", "lessons"),
    ("class_lesson_parts", "item_id", "items"),
    ("class_lesson_parts", "resource_id", "resources"),
    ("resource_progress", "resource_id", "resources"),
    ("mastery", "skill_id", "skills"),
)


class RestoreError(ValueError):
    """A restore that cannot be done here; nothing was changed. The message says why."""


def holds_school_data(db: sqlite_utils.Database) -> bool:
    """True once the box has learners, classes or answers of its own."""
    found = the_row(
        db,
        "SELECT (SELECT count(*) FROM users WHERE role = 'learner')"
        " + (SELECT count(*) FROM classes) + (SELECT count(*) FROM attempts)",
    )
    return bool(found[0])


def replace(db: sqlite_utils.Database, restored: Path, actor: audit.Actor) -> dict[str, int]:
    """Put the school's data from the database file `restored` (same schema version) in
    place of this box's, in one transaction; return rows per table. RestoreError, and no
    change, when the box has school data of its own or lacks a pack the data points at."""
    if holds_school_data(db):
        raise RestoreError(
            "This box already has learners, classes or answers of its own; a restore would "
            "replace them. Restore onto a newly set-up box."
        )
    db.conn.execute("ATTACH DATABASE ? AS restored", (f"file:{restored}?mode=ro",))
    try:
        missing = _missing_packs(db)
        if missing:
            raise RestoreError(
                "The backup's answers and lessons belong to content packs this box does not "
                f"have yet: {', '.join(missing)}. Import them (or let the first sync fetch "
                "the district's packs), then restore again."
            )
        with transaction(db):
            db.conn.execute("PRAGMA defer_foreign_keys=ON")  # checked at COMMIT, as a whole
            copied = _copy_tables(db)
            audit.record(db, actor, "school_data.restore", rows=sum(copied.values()))
    finally:
        db.conn.execute("DETACH DATABASE restored")
    return copied


def _copy_tables(db: sqlite_utils.Database) -> dict[str, int]:
    for table in reversed(SCHOOL_TABLES):
        db.conn.execute(f"DELETE FROM main.{table}")  # noqa: S608 - names from the list above
    copied = {}
    for table in SCHOOL_TABLES:
        columns = _columns(db, table)
        if _has_hidden_rowid(db, table):
            columns = ["rowid", *columns]  # sync's marks count answers by rowid
        names = ", ".join(columns)
        db.conn.execute(f"INSERT INTO main.{table} ({names}) SELECT {names} FROM restored.{table}")  # noqa: S608
        copied[table] = the_row(db, f"SELECT count(*) FROM main.{table}")[0]  # noqa: S608
    every = ", ".join(_columns(db, APPENDED))  # ids are UUIDs: the two logs never clash
    cursor = db.conn.execute(
        f"INSERT INTO main.{APPENDED} ({every}) SELECT {every} FROM restored.{APPENDED}"  # noqa: S608
        " WHERE id NOT IN (SELECT id FROM main.audit_log) ORDER BY at"
    )
    copied[APPENDED] = cursor.rowcount
    return copied


def _missing_packs(db: sqlite_utils.Database) -> list[str]:
    """Names (and versions) of the backup's packs that hold something its data points at
    and that this box lacks."""
    missing: set[str] = set()
    for table, column, content in CONTENT_LINKS:
        found = rows(
            db,
            f"SELECT DISTINCT p.title, p.version FROM restored.{table} t"  # noqa: S608
            f" JOIN restored.{content} c ON c.id = t.{column}"
            " JOIN restored.packs p ON p.id = c.pack_id"
            f" WHERE t.{column} IS NOT NULL"
            f" AND t.{column} NOT IN (SELECT id FROM main.{content})",
        )
        missing.update(f"{r[0]} {r[1]}" for r in found)
        orphans = the_row(
            db,
            f"SELECT count(*) FROM restored.{table} WHERE {column} IS NOT NULL"  # noqa: S608
            f" AND {column} NOT IN (SELECT id FROM restored.{content})"
            f" AND {column} NOT IN (SELECT id FROM main.{content})",
        )[0]
        if orphans:
            missing.add(f"{orphans} {content} no pack of the backup names")
    return sorted(missing)


def _columns(db: sqlite_utils.Database, table: str) -> list[str]:
    return [r[1] for r in db.conn.execute(f"PRAGMA main.table_info({table})")]


def _has_hidden_rowid(db: sqlite_utils.Database, table: str) -> bool:
    """True when the table has a rowid that no column names (an INTEGER PRIMARY KEY is
    the rowid, copied by its name; a WITHOUT ROWID table has none)."""
    sql = the_row(db, "SELECT sql FROM main.sqlite_master WHERE name = ?", (table,))[0]
    keys = [r for r in db.conn.execute(f"PRAGMA main.table_info({table})") if r[5]]
    alias = len(keys) == 1 and keys[0][2].upper() == "INTEGER"
    return not alias and "WITHOUT ROWID" not in sql.upper()


def schema_version(path: Path) -> int:
    """The schema version of a database file, read without changing it."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]
