"""Classes, who teaches them, who is enrolled, and who may see whom."""

from __future__ import annotations

import sqlite_utils

from appliance.messages import lazy as _l
from appliance.store import audit, inserted, now, one, rows

MAX_NAME = 60


class ClassError(ValueError):
    """A bad value for a class, with a message for the person who typed it."""


def create(db: sqlite_utils.Database, actor: audit.Actor, name: str, teacher_id: int | None) -> int:
    """Create a class, taught by `teacher_id` if given; return its id."""
    name = " ".join((name or "").split())
    if not 1 <= len(name) <= MAX_NAME:
        raise ClassError(_l("A class name is 1 to 60 characters."))
    class_id = inserted(db, "INSERT INTO classes (name, created_at) VALUES (?, ?)", (name, now()))
    audit.record(db, actor, "class.create", "class", class_id)
    if teacher_id is not None:
        add_teacher(db, actor, class_id, teacher_id)
    return class_id


def add_teacher(
    db: sqlite_utils.Database, actor: audit.Actor, class_id: int, teacher_id: int
) -> None:
    """Let a teacher see and manage a class."""
    db.conn.execute(
        "INSERT OR IGNORE INTO class_teachers (class_id, teacher_id) VALUES (?, ?)",
        (class_id, teacher_id),
    )
    audit.record(db, actor, "class.add_teacher", "class", class_id, teacher_id=teacher_id)


def enrol(db: sqlite_utils.Database, actor: audit.Actor, class_id: int, learner_id: int) -> None:
    """Put a learner in a class."""
    db.conn.execute(
        "INSERT OR IGNORE INTO enrolments (class_id, learner_id, enrolled_at) VALUES (?, ?, ?)",
        (class_id, learner_id, now()),
    )
    audit.record(db, actor, "class.enrol", "class", class_id, learner_id=learner_id)


def unenrol(db: sqlite_utils.Database, actor: audit.Actor, class_id: int, learner_id: int) -> None:
    """Take a learner out of a class and its groups; their attempts stay."""
    db.conn.execute(
        "DELETE FROM enrolments WHERE class_id = ? AND learner_id = ?", (class_id, learner_id)
    )
    # ... and the class's groups, so a return later does not bring old groups back.
    db.conn.execute(
        "DELETE FROM group_members WHERE learner_id = ? AND group_id IN"
        " (SELECT id FROM class_groups WHERE class_id = ?)",
        (learner_id, class_id),
    )
    audit.record(db, actor, "class.unenrol", "class", class_id, learner_id=learner_id)


def get(db: sqlite_utils.Database, class_id: int) -> dict | None:
    row = one(db, "SELECT * FROM classes WHERE id = ? AND archived = 0", (class_id,))
    return dict(row) if row else None


def all_classes(db: sqlite_utils.Database) -> list[dict]:
    """Every class with its size and teachers' names (for admins and the sign-in picker)."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT c.id, c.name, c.tutor_enabled,"
            " (SELECT count(*) FROM enrolments e WHERE e.class_id = c.id) AS learners,"
            " (SELECT group_concat(u.display_name, ', ') FROM class_teachers t"
            "  JOIN users u ON u.id = t.teacher_id WHERE t.class_id = c.id) AS teachers"
            " FROM classes c WHERE c.archived = 0 ORDER BY c.name",
        )
    ]


def for_user(db: sqlite_utils.Database, user: dict) -> list[dict]:
    """The classes a user may see: all (admin), taught ones (teacher), own (learner)."""
    if user["role"] == "admin":
        return all_classes(db)
    table = "class_teachers" if user["role"] == "teacher" else "enrolments"
    column = "teacher_id" if user["role"] == "teacher" else "learner_id"
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT c.id, c.name, c.tutor_enabled,"  # noqa: S608 - table/column from a fixed pair
            " (SELECT count(*) FROM enrolments e WHERE e.class_id = c.id) AS learners"
            f" FROM classes c JOIN {table} x ON x.class_id = c.id"
            f" WHERE x.{column} = ? AND c.archived = 0 ORDER BY c.name",
            (user["id"],),
        )
    ]


def roster(db: sqlite_utils.Database, class_id: int) -> list[dict]:
    """The learners of a class, by name."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT u.id, u.display_name, u.active, u.sign_in_with FROM enrolments e"
            " JOIN users u ON u.id = e.learner_id"
            " WHERE e.class_id = ? AND u.erased_at IS NULL ORDER BY u.display_name",
            (class_id,),
        )
    ]


def of_learner(db: sqlite_utils.Database, learner_id: int) -> list[int]:
    """The ids of the classes a learner is in."""
    return [
        r["class_id"]
        for r in rows(db, "SELECT class_id FROM enrolments WHERE learner_id = ?", (learner_id,))
    ]


def can_manage(db: sqlite_utils.Database, user: dict, class_id: int) -> bool:
    """True if the user is an admin, or teaches this class."""
    if user["role"] == "admin":
        return get(db, class_id) is not None
    if user["role"] != "teacher":
        return False
    return (
        one(
            db,
            "SELECT 1 FROM class_teachers t JOIN classes c ON c.id = t.class_id"
            " WHERE t.class_id = ? AND t.teacher_id = ? AND c.archived = 0",
            (class_id, user["id"]),
        )
        is not None
    )


def can_see_learner(db: sqlite_utils.Database, user: dict, learner_id: int) -> bool:
    """True for the learner themself, a teacher of one of their classes, or an admin."""
    if user["role"] == "learner":
        return user["id"] == learner_id
    target = one(
        db, "SELECT role, erased_at FROM users WHERE id = ? AND role = 'learner'", (learner_id,)
    )
    if not target or target["erased_at"]:
        return False
    if user["role"] == "admin":
        return True
    return (
        one(
            db,
            "SELECT 1 FROM enrolments e JOIN class_teachers t ON t.class_id = e.class_id"
            " WHERE e.learner_id = ? AND t.teacher_id = ?",
            (learner_id, user["id"]),
        )
        is not None
    )


def set_tutor_enabled(
    db: sqlite_utils.Database, actor: audit.Actor, class_id: int, enabled: bool
) -> None:
    """Switch the tutor on or off for one class."""
    db.conn.execute("UPDATE classes SET tutor_enabled = ? WHERE id = ?", (int(enabled), class_id))
    audit.record(db, actor, "class.tutor", "class", class_id, enabled=bool(enabled))
