"""Lessons a teacher composes for a class from any pack's readings and questions, in an
order of their own, without changing the packs: for the whole class, a group or chosen
learners, with an optional due day.

A learner has done one when they have opened each reading, answered each question
right at least once (in practice; a question's answer counts wherever it was given),
and finished each resource (a video watched, a book read: store/resources.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import sqlite_utils

from appliance.messages import lazy as _l
from appliance.store import (
    audiences,
    audit,
    content,
    groups,
    inserted,
    now,
    one,
    resources,
    rows,
    the_row,
)

MAX_PARTS = 40
MAX_TITLE = 80


class ClassLessonError(ValueError):
    """A lesson that cannot be composed as asked; the message says why."""


def create(
    db: sqlite_utils.Database,
    actor: audit.Actor,
    class_id: int,
    title: str,
    parts: Sequence[tuple[str, str | None] | tuple[str, str | None, str | None]],
    *,
    due_on: date | None = None,
    groups_: Sequence[int] = (),
    learners: Sequence[int] = (),
) -> int:
    """A lesson of `parts`, in this order, each (pack lesson id, None) for its reading,
    (pack lesson id, item id) for one of its questions, or (pack lesson id, None,
    resource id) for one of its resources; its id."""
    title = " ".join((title or "").split())
    if not 1 <= len(title) <= MAX_TITLE:
        raise ClassLessonError(_l("A lesson title is 1 to %(n)d characters.", n=MAX_TITLE))
    triples = list(dict.fromkeys((*part, None)[:3] for part in parts))
    if not 1 <= len(triples) <= MAX_PARTS:
        raise ClassLessonError(_l("A lesson has 1 to %(n)d parts.", n=MAX_PARTS))
    if not all(_available(db, *part) for part in triples):
        raise ClassLessonError(_l("Some of the parts chosen are no longer available."))
    if groups.strangers(db, class_id, groups_, learners):
        raise ClassLessonError(_l("Choose groups and learners of this class."))
    made_id = inserted(
        db,
        "INSERT INTO class_lessons (class_id, title, due_on, created_by, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (class_id, title, due_on.isoformat() if due_on else None, actor.id, now()),
    )
    db.conn.executemany(
        "INSERT INTO class_lesson_parts (class_lesson_id, position, lesson_id, item_id,"
        " resource_id) VALUES (?, ?, ?, ?, ?)",
        [(made_id, n, *part) for n, part in enumerate(triples, 1)],
    )
    audiences.set_for(db, "class_lesson", made_id, groups_, learners)
    audit.record(db, actor, "class_lesson.create", "class", class_id,
                 class_lesson_id=made_id, parts=len(triples))  # fmt: skip
    return made_id


def _available(db, lesson_id: str, item_id: str | None, resource_id: str | None) -> bool:
    """A current lesson, and the current question or resource of it named (at most one)."""
    if content.lesson(db, lesson_id) is None or (item_id and resource_id):
        return False
    if item_id:
        item = content.item(db, item_id)
        return item is not None and item["lesson_id"] == lesson_id
    if resource_id:
        found = resources.get(db, resource_id)
        return found is not None and found["lesson_id"] == lesson_id
    return True


def delete(db: sqlite_utils.Database, actor: audit.Actor, lesson: dict) -> None:
    """Remove a composed lesson; the packs and every answer stay."""
    db.conn.execute("DELETE FROM class_lessons WHERE id = ?", (lesson["id"],))
    audit.record(db, actor, "class_lesson.delete", "class", lesson["class_id"],
                 class_lesson_id=lesson["id"])  # fmt: skip


def get(db: sqlite_utils.Database, lesson_id: int) -> dict | None:
    """A composed lesson with its parts in order (each with the pack lesson's title and,
    for a question, the item) and its recipients; None if there is none."""
    row = one(db, "SELECT * FROM class_lessons WHERE id = ?", (lesson_id,))
    if row is None:
        return None
    lesson = dict(row)
    lesson["parts"] = []
    for r in rows(
        db,
        "SELECT p.position, p.lesson_id, p.item_id, l.title, p.resource_id"
        " FROM class_lesson_parts p JOIN lessons l ON l.id = p.lesson_id"
        " WHERE p.class_lesson_id = ? ORDER BY p.position",
        (lesson_id,),
    ):
        part = {"position": r[0], "lesson_id": r[1], "item_id": r[2], "source_title": r[3],
                "resource_id": r[4]}  # fmt: skip
        if r[2] is not None:
            part["item"] = content.item(db, r[2])
            if part["item"] is None:  # retired by a pack upgrade: left out
                continue
        if r[4] is not None:
            part["resource"] = resources.get(db, r[4])
            if part["resource"] is None:
                continue
        lesson["parts"].append(part)
    lesson["groups"], lesson["learners"] = audiences.of(db, "class_lesson", lesson_id)
    return lesson


def of_class(db: sqlite_utils.Database, class_id: int) -> list[dict]:
    """A class's composed lessons, newest first, with their size and audience size."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT c.*, (SELECT count(*) FROM class_lesson_parts p"
            " WHERE p.class_lesson_id = c.id) AS part_count,"
            " (SELECT count(*) FROM assigned_class_lessons v WHERE v.class_lesson_id = c.id)"
            " AS learners FROM class_lessons c WHERE c.class_id = ? ORDER BY c.id DESC",
            (class_id,),
        )
    ]


def of_learner(db: sqlite_utils.Database, learner_id: int, today: date | None = None) -> list[dict]:
    """The composed lessons set for a learner, oldest first, with how far they got."""
    found = [
        dict(r)
        for r in rows(
            db,
            "SELECT c.id, c.title, c.due_on FROM assigned_class_lessons v"
            " JOIN class_lessons c ON c.id = v.class_lesson_id WHERE v.learner_id = ?"
            " ORDER BY c.id",
            (learner_id,),
        )
    ]
    for lesson in found:
        lesson.update(progress_of(db, lesson["id"], learner_id, lesson["due_on"], today))
    return found


def for_learner(db: sqlite_utils.Database, lesson_id: int, learner_id: int) -> dict | None:
    """The composed lesson if it is set for this learner; None otherwise."""
    if one(db, "SELECT 1 FROM assigned_class_lessons WHERE class_lesson_id = ?"
               " AND learner_id = ?", (lesson_id, learner_id)):  # fmt: skip
        return get(db, lesson_id)
    return None


def progress(db: sqlite_utils.Database, lesson: dict, today: date | None = None) -> list[dict]:
    """Each learner the lesson is set for, by name, with their status and late flag."""
    found = rows(
        db,
        "SELECT v.learner_id, u.display_name AS name FROM assigned_class_lessons v"
        " JOIN users u ON u.id = v.learner_id WHERE v.class_lesson_id = ?"
        " AND u.erased_at IS NULL ORDER BY u.display_name",
        (lesson["id"],),
    )
    return [
        {
            "learner_id": r[0],
            "name": r[1],
            **progress_of(db, lesson["id"], r[0], lesson["due_on"], today),
        }  # fmt: skip
        for r in found
    ]


def progress_of(
    db: sqlite_utils.Database, lesson_id: int, learner_id: int, due_on: str | None,
    today: date | None = None,
) -> dict:  # fmt: skip
    """Parts done (readings opened, questions answered right once, resources finished) of
    all, the status (not_started, in_progress, done) and whether the learner is late."""
    counts = the_row(
        db,
        "SELECT count(*),"
        " sum(CASE WHEN p.resource_id IS NOT NULL THEN EXISTS (SELECT 1 FROM"
        "  resource_progress g WHERE g.learner_id = :learner AND g.resource_id = p.resource_id"
        "  AND g.done_at IS NOT NULL)"
        "  WHEN p.item_id IS NULL THEN EXISTS (SELECT 1 FROM lesson_views w"
        "  WHERE w.learner_id = :learner AND w.lesson_id = p.lesson_id)"
        "  ELSE EXISTS (SELECT 1 FROM attempts a WHERE a.learner_id = :learner"
        "  AND a.item_id = p.item_id AND a.correct = 1) END),"
        " sum(CASE WHEN p.resource_id IS NOT NULL THEN EXISTS (SELECT 1 FROM"
        "  resource_progress g WHERE g.learner_id = :learner AND g.resource_id = p.resource_id)"
        "  WHEN p.item_id IS NULL THEN 0 ELSE EXISTS (SELECT 1 FROM attempts a"
        "  WHERE a.learner_id = :learner AND a.item_id = p.item_id) END)"
        " FROM class_lesson_parts p WHERE p.class_lesson_id = :lesson",
        {"learner": learner_id, "lesson": lesson_id},
    )
    total, done, tried = counts[0], counts[1] or 0, counts[2] or 0
    status = (
        "done" if total and done >= total else "in_progress" if done or tried else "not_started"
    )
    late = bool(due_on and due_on < (today or date.today()).isoformat() and status != "done")
    return {"parts": total, "parts_done": done, "status": status, "late": late}
