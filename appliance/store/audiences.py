"""Who a piece of a class's work is for: a lesson set, a quiz or a composed lesson goes
to the whole class when it names nobody, else to its chosen groups and learners.

The three kinds keep their recipients in tables of one shape (work id, group or
learner); the SQL views that resolve them to learners are migrations._audience_view.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlite_utils

from appliance.store import rows

# kind -> (the work's table, its recipients table, the recipients' key column)
KINDS = {
    "assignment": ("assignments", "assignment_recipients", "assignment_id"),
    "quiz": ("quizzes", "quiz_recipients", "quiz_id"),
    "class_lesson": ("class_lessons", "class_lesson_recipients", "class_lesson_id"),
}


def set_for(
    db: sqlite_utils.Database,
    kind: str,
    work_id: int,
    groups: Sequence[int] = (),
    learners: Sequence[int] = (),
) -> None:
    """Make `groups` and `learners` the work's recipients (none named: the whole class)."""
    _work, table, key = KINDS[kind]
    db.conn.execute(f"DELETE FROM {table} WHERE {key} = ?", (work_id,))  # noqa: S608 - from KINDS
    db.conn.executemany(
        f"INSERT INTO {table} ({key}, group_id, learner_id) VALUES (?, ?, ?)",  # noqa: S608
        [(work_id, g, None) for g in sorted(set(groups))]
        + [(work_id, None, learner) for learner in sorted(set(learners))],
    )


def of(db: sqlite_utils.Database, kind: str, work_id: int) -> tuple[list[dict], list[dict]]:
    """The work's named groups and learners, each {id, name}, by name; both empty: the
    whole class."""
    _work, table, key = KINDS[kind]
    named_groups, named_learners = [], []
    for r in rows(
        db,
        f"SELECT g.id, g.name, u.id, u.display_name FROM {table} r"  # noqa: S608 - from KINDS
        " LEFT JOIN class_groups g ON g.id = r.group_id LEFT JOIN users u ON u.id = r.learner_id"
        f" WHERE r.{key} = ? ORDER BY g.name, u.display_name",
        (work_id,),
    ):
        if r[0] is not None:
            named_groups.append({"id": r[0], "name": r[1]})
        elif r[2] is not None:
            named_learners.append({"id": r[2], "name": r[3]})
    return named_groups, named_learners


def forget_learner(db: sqlite_utils.Database, learner_id: int) -> None:
    """Take an erased learner off every work. Work set for them alone goes with them: with
    no recipient left it would otherwise become the whole class's. (A quiz they alone
    answered goes too, since its answers were theirs and are erased.)"""
    for work, table, key in KINDS.values():
        db.conn.execute(
            f"DELETE FROM {work} WHERE id IN (SELECT {key} FROM {table}"  # noqa: S608
            f" WHERE learner_id = ?) AND NOT EXISTS (SELECT 1 FROM {table} r"
            f" WHERE r.{key} = {work}.id AND r.learner_id IS NOT ?)"
            + (
                " AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.quiz_id = quizzes.id)"
                if work == "quizzes"
                else ""
            ),  # fmt: skip
            (learner_id, learner_id),
        )
        db.conn.execute(f"DELETE FROM {table} WHERE learner_id = ?", (learner_id,))  # noqa: S608
