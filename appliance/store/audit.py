"""The append-only audit log: who did what to whose data, never personal data itself."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlite_utils

from . import now, rows
from .ids import uuid7


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
