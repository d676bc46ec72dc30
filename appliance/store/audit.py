"""The append-only audit log: who did what to whose data, never personal data itself."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlite_utils

from appliance.store import now, rows
from appliance.store.ids import uuid7


@dataclass(frozen=True)
class Actor:
    """Who acted: a signed-in user, or the box itself (id None) from the CLI or a job."""

    id: int | None
    role: str


SYSTEM = Actor(None, "system")


def record(
    db: sqlite_utils.Database,
    actor: Actor,
    action: str,
    target_type: str | None = None,
    target_id: object = None,
    **detail: object,
) -> None:
    """Append one entry. Callers pass ids and counts in `detail`, never names or answers."""
    db.conn.execute(
        "INSERT INTO audit_log (id, at, actor_id, actor_role, action, target_type, target_id,"
        " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            uuid7(),
            now(),
            actor.id,
            actor.role,
            action,
            target_type,
            None if target_id is None else str(target_id),
            json.dumps(detail, sort_keys=True) if detail else None,
        ),
    )


def search(
    db: sqlite_utils.Database,
    action: str | None = None,
    actor_id: int | None = None,
    target_id: str | None = None,
    limit: int = 200,
) -> list[dict]:
    """Newest entries first, filtered by any of action, actor and target."""
    where, params = [], []
    for column, value in (("action", action), ("actor_id", actor_id), ("target_id", target_id)):
        if value not in (None, ""):
            where.append(f"{column} = ?")
            params.append(value)
    sql = "SELECT * FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [dict(r) for r in rows(db, sql, tuple(params))]


def actions(db: sqlite_utils.Database) -> list[str]:
    """Every action name the log holds, for the filter menu."""
    return [r[0] for r in rows(db, "SELECT DISTINCT action FROM audit_log ORDER BY action")]


PERSON_KEYS = ("learner_id", "teacher_id", "user_id")  # detail fields that name a person


def readable(db: sqlite_utils.Database, entries: list[dict]) -> list[dict]:
    """Entries for the admin's page: who and whom by name (as the admin sees them
    elsewhere), details as (field, value) pairs. The log itself keeps only ids."""
    user_ids = {e["actor_id"] for e in entries if e["actor_id"] is not None}
    user_ids |= {int(e["target_id"]) for e in entries
                 if e["target_type"] == "user" and (e["target_id"] or "").isdigit()}  # fmt: skip
    class_ids = {int(e["target_id"]) for e in entries
                 if e["target_type"] == "class" and (e["target_id"] or "").isdigit()}  # fmt: skip
    details = [json.loads(e["detail"]) if e["detail"] else {} for e in entries]
    user_ids |= {
        v for d in details for k, v in d.items() if k in PERSON_KEYS and isinstance(v, int)
    }
    people = _names(db, "SELECT id, display_name, erased_at FROM users", user_ids)
    classes = _names(
        db, "SELECT id, name AS display_name, NULL AS erased_at FROM classes", class_ids
    )
    shown = []
    for entry, detail in zip(entries, details, strict=True):
        target = entry["target_id"]
        if entry["target_type"] == "user" and (target or "").isdigit():
            about = people.get(int(target), f"#{target}")
        elif entry["target_type"] == "class" and (target or "").isdigit():
            about = classes.get(int(target), f"#{target}")
        else:
            about = target or ""
        shown.append({
            **entry,
            "actor_name": people.get(entry["actor_id"], "") if entry["actor_id"] else "",
            "about": about,
            "details": [_detail(key, value, people) for key, value in sorted(detail.items())],
        })  # fmt: skip
    return shown


def _names(db: sqlite_utils.Database, sql: str, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))  # only "?"s go into the text
    found = rows(db, f"{sql} WHERE id IN ({marks})", tuple(ids))  # noqa: S608
    return {r["id"]: "(erased)" if r["erased_at"] else r["display_name"] for r in found}


def _detail(key: str, value: object, people: dict[int, str]) -> tuple[str, str]:
    """One detail as (what, value) in words: a person's id becomes their name."""
    if key in PERSON_KEYS and isinstance(value, int):
        return key.removesuffix("_id"), people.get(value, f"#{value}")
    if isinstance(value, bool):
        return key.replace("_", " "), "yes" if value else "no"
    return key.replace("_", " "), "" if value is None else str(value)
