"""Lessons set for a class, a group or chosen learners, with an optional due date, and how
far each learner has got with them (not started, in progress, done; late after the due
day). Who is set what is the `assigned_lessons` view (migrations.py), used everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import sqlite_utils

from appliance.messages import lazy as _l
from appliance.store import audiences, audit, days_ago, grouped, inserted, now, one, rows, soon
from appliance.store import groups as groups_module

# What a learner has done with a lesson: every current item of it right at least once, and
# every current resource of it done, is done (a lesson with neither: opened); opened, any
# answer or any resource opened is in progress.
STATUSES = ("not_started", "in_progress", "done")
_ITEM_COUNTS = (
    "(SELECT count(*) FROM items i WHERE i.lesson_id = v.lesson_id AND i.retired = 0)"
    " AS item_count,"
    # Against the lesson's current items: a pack upgrade may move or retire items.
    " (SELECT count(DISTINCT t.item_id) FROM attempts t JOIN items i ON i.id = t.item_id"
    "  WHERE t.learner_id = v.learner_id AND i.lesson_id = v.lesson_id AND i.retired = 0)"
    " AS answered,"
    " (SELECT count(DISTINCT t.item_id) FROM attempts t JOIN items i ON i.id = t.item_id"
    "  WHERE t.learner_id = v.learner_id AND i.lesson_id = v.lesson_id AND i.retired = 0"
    "  AND t.correct = 1) AS mastered,"
    " (SELECT count(*) FROM resources r WHERE r.lesson_id = v.lesson_id AND r.retired = 0)"
    " AS resource_count,"
    " (SELECT count(p.done_at) FROM resource_progress p JOIN resources r"
    "  ON r.id = p.resource_id WHERE p.learner_id = v.learner_id"
    "  AND r.lesson_id = v.lesson_id AND r.retired = 0) AS resources_done,"
    " EXISTS (SELECT 1 FROM lesson_views w WHERE w.learner_id = v.learner_id"
    "  AND w.lesson_id = v.lesson_id) OR EXISTS (SELECT 1 FROM resource_progress p"
    "  JOIN resources r ON r.id = p.resource_id WHERE p.learner_id = v.learner_id"
    "  AND r.lesson_id = v.lesson_id) AS opened"
)
SAME_VIEW_S = 60  # a reload within a minute is the same reading


class AssignmentError(ValueError):
    """A lesson that cannot be set as asked, with a message for the teacher."""


def set_lesson(
    db: sqlite_utils.Database,
    actor: audit.Actor,
    class_id: int,
    lesson_id: str,
    *,
    due_on: date | None = None,
    groups: Sequence[int] = (),
    learners: Sequence[int] = (),
) -> bool:
    """Set a lesson for a class, or change who has it and by when: for the whole class
    when no groups or learners are named. True if the lesson was not set before."""
    if groups_module.strangers(db, class_id, groups, learners):
        raise AssignmentError(_l("Choose groups and learners of this class."))
    due = due_on.isoformat() if due_on else None
    existing = one(
        db,
        "SELECT id FROM assignments WHERE class_id = ? AND lesson_id = ?",
        (class_id, lesson_id),
    )
    if existing is None:
        assignment_id = inserted(
            db,
            "INSERT INTO assignments (class_id, lesson_id, assigned_by, assigned_at, due_on)"
            " VALUES (?, ?, ?, ?, ?)",
            (class_id, lesson_id, actor.id, now(), due),
        )
    else:
        assignment_id = existing[0]
        db.conn.execute("UPDATE assignments SET due_on = ? WHERE id = ?", (due, assignment_id))
    audiences.set_for(db, "assignment", assignment_id, groups, learners)
    audit.record(
        db,
        actor,
        "assignment.create" if existing is None else "assignment.update",
        "class",
        class_id,
        lesson_id=lesson_id,
        due_on=due,
        groups=len(set(groups)),
        learners=len(set(learners)),
    )
    return existing is None


def unassign(db: sqlite_utils.Database, actor: audit.Actor, class_id: int, lesson_id: str) -> None:
    """Take a lesson off a class's list; answers to it stay."""
    db.conn.execute(
        "DELETE FROM assignments WHERE class_id = ? AND lesson_id = ?", (class_id, lesson_id)
    )
    audit.record(db, actor, "assignment.delete", "class", class_id, lesson_id=lesson_id)


def of_class(
    db: sqlite_utils.Database, class_id: int, today: date | None = None, counts: bool = True
) -> list[dict]:
    """A class's lessons, oldest first: who has each (groups, learners; none named is the
    whole class), the due day, and how many learners have not started, are in progress,
    are done, and are late."""
    found = [
        {**dict(r), "groups": [], "learners": []}
        for r in rows(
            db,
            "SELECT a.id, a.lesson_id, a.assigned_at, a.due_on, l.title, l.subject"
            " FROM assignments a JOIN lessons l ON l.id = a.lesson_id"
            " WHERE a.class_id = ? AND l.retired = 0 ORDER BY a.assigned_at, a.id",
            (class_id,),
        )
    ]
    by_id = {a["id"]: a for a in found}
    for r in rows(
        db,
        "SELECT r.assignment_id, g.id, g.name, u.id, u.display_name"
        " FROM assignment_recipients r JOIN assignments a ON a.id = r.assignment_id"
        " LEFT JOIN class_groups g ON g.id = r.group_id LEFT JOIN users u ON u.id = r.learner_id"
        " WHERE a.class_id = ? ORDER BY g.name, u.display_name",
        (class_id,),
    ):
        if r[0] in by_id and r[1] is not None:
            by_id[r[0]]["groups"].append({"id": r[1], "name": r[2]})
        elif r[0] in by_id and r[3] is not None:
            by_id[r[0]]["learners"].append({"id": r[3], "name": r[4]})
    for assignment in found if counts else []:  # a report reads each learner's itself
        assignment["counts"] = _counts(progress(db, class_id, assignment["lesson_id"], today))
    return found


def progress(
    db: sqlite_utils.Database, class_id: int, lesson_id: str, today: date | None = None
) -> list[dict]:
    """Each learner set this lesson in this class, by name: items answered and right,
    their status and whether they are late (past the due day and not done)."""
    day = (today or date.today()).isoformat()
    found = rows(
        db,
        "SELECT v.learner_id, u.display_name AS name, v.due_on, "  # noqa: S608 - constant text
        + _ITEM_COUNTS
        + " FROM assigned_lessons v JOIN users u ON u.id = v.learner_id"
        " WHERE v.class_id = ? AND v.lesson_id = ? AND u.erased_at IS NULL"
        " ORDER BY u.display_name",
        (class_id, lesson_id),
    )
    return [_with_status(dict(r), day) for r in found]


def of_learner(db: sqlite_utils.Database, learner_id: int, today: date | None = None) -> list[dict]:
    """The lessons set for a learner in any of their classes, oldest first, with the
    earliest due day, how far they have got, and whether they are late."""
    day = (today or date.today()).isoformat()
    found = rows(
        db,
        "SELECT v.lesson_id AS id, l.title, l.subject, l.summary,"  # noqa: S608 - constant text
        " min(v.assigned_at) AS assigned_at, min(v.due_on) AS due_on, "
        + _ITEM_COUNTS
        + " FROM assigned_lessons v JOIN lessons l ON l.id = v.lesson_id"
        " WHERE v.learner_id = ? AND l.retired = 0 GROUP BY v.lesson_id"
        " ORDER BY min(v.assigned_at)",
        (learner_id,),
    )
    return [_with_status(dict(r), day) for r in found]


def lesson_ids_of_learner(db: sqlite_utils.Database, learner_id: int) -> list[str]:
    """The ids of the lessons set for a learner, oldest first (what to practise next)."""
    found = rows(
        db,
        "SELECT v.lesson_id FROM assigned_lessons v JOIN lessons l ON l.id = v.lesson_id"
        " WHERE v.learner_id = ? AND l.retired = 0 GROUP BY v.lesson_id"
        " ORDER BY min(v.assigned_at)",
        (learner_id,),
    )
    return [r[0] for r in found]


def viewed(db: sqlite_utils.Database, learner_id: int, lesson_id: str, wait: bool = False):
    """Note that a learner opened a lesson (a reload within a minute is not noted again).
    Without `wait`, the page does not wait for it: it is committed with the next write
    of the moment, or within half a second (store.soon); a crash then may lose it."""
    recent = one(
        db,
        "SELECT 1 FROM lesson_views WHERE learner_id = ? AND lesson_id = ? AND at > ?",
        (learner_id, lesson_id, days_ago(SAME_VIEW_S / 86_400)),
    )
    if recent is None:
        at = now()

        def note(writer: sqlite_utils.Database) -> None:
            writer.conn.execute(
                "INSERT INTO lesson_views (learner_id, lesson_id, at) VALUES (?, ?, ?)",
                (learner_id, lesson_id, at),
            )

        (grouped if wait else soon)(db, note)


def _with_status(row: dict, today: str) -> dict:
    # A lesson with questions or resources is done when each question is answered right
    # once and each resource is done; one with neither (a reading) when it was opened.
    has_work = row["item_count"] or row["resource_count"]
    if (
        has_work
        and row["mastered"] >= row["item_count"]
        and (row["resources_done"] >= row["resource_count"])
    ):
        row["status"] = "done"
    elif not has_work and row["opened"]:
        row["status"] = "done"
    elif row["answered"] or row["opened"]:
        row["status"] = "in_progress"
    else:
        row["status"] = "not_started"
    row["late"] = bool(row["due_on"] and row["due_on"] < today and row["status"] != "done")
    return row


def _counts(learners: list[dict]) -> dict[str, int]:
    counts = {status: 0 for status in STATUSES}
    for learner in learners:
        counts[learner["status"]] += 1
    return {**counts, "late": sum(1 for learner in learners if learner["late"]),
            "learners": len(learners)}  # fmt: skip
