"""Groups inside a class (reading groups, a table, those who need more help): who is in
which, so that a lesson or a quiz can be set for some learners rather than all."""

from __future__ import annotations

from collections.abc import Sequence

import sqlite_utils

from appliance.messages import lazy as _l
from appliance.store import audit, classes, inserted, now, one, rows, the_row

MAX_GROUPS = 30  # per class: more than a teacher can tell apart on one page


class GroupError(ValueError):
    """A bad group name or member list, with a message for the teacher who typed it."""


def create(
    db: sqlite_utils.Database, actor: audit.Actor, class_id: int, name: str, members: list[int]
) -> int:
    """A new group in `class_id` with these learners of the class; its id."""
    name = _valid_name(db, class_id, name)
    count = the_row(db, "SELECT count(*) FROM class_groups WHERE class_id = ?", (class_id,))[0]
    if count >= MAX_GROUPS:
        raise GroupError(_l("A class has at most %(n)d groups.", n=MAX_GROUPS))
    group_id = inserted(
        db,
        "INSERT INTO class_groups (class_id, name, created_at) VALUES (?, ?, ?)",
        (class_id, name, now()),
    )
    _set_members(db, class_id, group_id, members)
    audit.record(db, actor, "group.create", "class", class_id, group_id=group_id)
    return group_id


def update(
    db: sqlite_utils.Database,
    actor: audit.Actor,
    group: dict,
    name: str,
    members: list[int],
) -> None:
    """Rename a group and set who is in it."""
    name = _valid_name(db, group["class_id"], name, keep=group["id"])
    db.conn.execute("UPDATE class_groups SET name = ? WHERE id = ?", (name, group["id"]))
    db.conn.execute("DELETE FROM group_members WHERE group_id = ?", (group["id"],))
    _set_members(db, group["class_id"], group["id"], members)
    audit.record(db, actor, "group.update", "class", group["class_id"], group_id=group["id"])


def delete(db: sqlite_utils.Database, actor: audit.Actor, group: dict) -> None:
    """Remove a group (its learners stay in the class). Refused while a lesson or quiz is
    set for it: removing the group would quietly set that work for someone else."""
    used = [
        r[0]
        for r in rows(
            db,
            "SELECT l.title FROM assignment_recipients r JOIN assignments a"
            " ON a.id = r.assignment_id JOIN lessons l ON l.id = a.lesson_id"
            " WHERE r.group_id = ?"
            " UNION SELECT q.title FROM quiz_recipients r JOIN quizzes q ON q.id = r.quiz_id"
            " WHERE r.group_id = ?"
            " UNION SELECT c.title FROM class_lesson_recipients r JOIN class_lessons c"
            " ON c.id = r.class_lesson_id WHERE r.group_id = ? ORDER BY 1",
            (group["id"], group["id"], group["id"]),
        )
    ]
    if used:
        raise GroupError(
            _l(
                "Lessons or quizzes are set for this group: %(work)s. Set them for the whole "
                "class or other learners first, then remove the group.",
                work=", ".join(used),
            )
        )
    db.conn.execute("DELETE FROM class_groups WHERE id = ?", (group["id"],))
    audit.record(db, actor, "group.delete", "class", group["class_id"], group_id=group["id"])


def get(db: sqlite_utils.Database, class_id: int, group_id: int) -> dict | None:
    """One group of a class, with its members' ids; None if the class has no such group."""
    row = one(db, "SELECT * FROM class_groups WHERE id = ? AND class_id = ?", (group_id, class_id))
    if row is None:
        return None
    members = rows(db, "SELECT learner_id FROM group_members WHERE group_id = ?", (group_id,))
    return {**dict(row), "members": sorted(r[0] for r in members)}


def of_class(db: sqlite_utils.Database, class_id: int) -> list[dict]:
    """A class's groups by name, each with its members' ids and names."""
    found = [
        {**dict(r), "members": [], "names": []}
        for r in rows(
            db,
            "SELECT id, class_id, name, created_at FROM class_groups WHERE class_id = ?"
            " ORDER BY name COLLATE NOCASE",
            (class_id,),
        )
    ]
    by_id = {g["id"]: g for g in found}
    for r in rows(
        db,
        "SELECT m.group_id, u.id, u.display_name FROM group_members m"
        " JOIN class_groups g ON g.id = m.group_id JOIN users u ON u.id = m.learner_id"
        " WHERE g.class_id = ? AND u.erased_at IS NULL ORDER BY u.display_name",
        (class_id,),
    ):
        by_id[r[0]]["members"].append(r[1])
        by_id[r[0]]["names"].append(r[2])
    return found


def strangers(
    db: sqlite_utils.Database, class_id: int, group_ids: Sequence[int], learner_ids: Sequence[int]
) -> bool:
    """True if any group or learner named is not the class's own (work set for them would
    reach no one the teacher meant)."""
    own = {r[0] for r in rows(db, "SELECT id FROM class_groups WHERE class_id = ?", (class_id,))}
    enrolled = {r["id"] for r in classes.roster(db, class_id)}
    return bool(set(group_ids) - own or set(learner_ids) - enrolled)


def _valid_name(db: sqlite_utils.Database, class_id: int, name: str, keep: int = 0) -> str:
    name = " ".join((name or "").split())
    if not 1 <= len(name) <= 40:
        raise GroupError(_l("A group name is 1 to 40 characters."))
    clash = one(
        db,
        "SELECT 1 FROM class_groups WHERE class_id = ? AND name = ? COLLATE NOCASE AND id != ?",
        (class_id, name, keep),
    )
    if clash:
        raise GroupError(_l("This class already has a group called %(name)s.", name=name))
    return name


def _set_members(db: sqlite_utils.Database, class_id: int, group_id: int, members: list[int]):
    enrolled = {r["id"] for r in classes.roster(db, class_id)}
    strangers = set(members) - enrolled
    if strangers:  # a form can only offer the class's own learners: someone edited it
        raise GroupError(_l("Only learners of this class can be in its groups."))
    db.conn.executemany(
        "INSERT OR IGNORE INTO group_members (group_id, learner_id) VALUES (?, ?)",
        [(group_id, learner_id) for learner_id in sorted(set(members))],
    )
