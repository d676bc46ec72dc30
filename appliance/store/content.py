"""Reading lessons, items, skills and packs, and the assignments that put lessons in classes."""

from __future__ import annotations

import json

import sqlite_utils

from appliance.store import audit, now, one, rows


def packs(db: sqlite_utils.Database) -> list[dict]:
    """Imported packs with their lesson and item counts."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT p.*, (SELECT count(*) FROM lessons l WHERE l.pack_id = p.id"
            " AND l.retired = 0) AS lesson_count, (SELECT count(*) FROM items i"
            " WHERE i.pack_id = p.id AND i.retired = 0) AS item_count"
            " FROM packs p ORDER BY p.title",
        )
    ]


def lessons(db: sqlite_utils.Database) -> list[dict]:
    """Every current lesson, by subject and order, without its body."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT id, pack_id, subject, title, summary, position,"
            " (SELECT count(*) FROM items i WHERE i.lesson_id = l.id AND i.retired = 0)"
            " AS item_count"
            " FROM lessons l WHERE retired = 0 ORDER BY subject, position, title",
        )
    ]


def lesson(db: sqlite_utils.Database, lesson_id: str) -> dict | None:
    """One current lesson with its rendered body, or None."""
    row = one(db, "SELECT * FROM lessons WHERE id = ? AND retired = 0", (lesson_id,))
    return dict(row) if row else None


def item(db: sqlite_utils.Database, item_id: str) -> dict | None:
    """One current item, answer key included (for grading on the server only)."""
    row = one(db, "SELECT * FROM items WHERE id = ? AND retired = 0", (item_id,))
    if not row:
        return None
    found = dict(row)
    for key in ("choices", "answer", "hints"):
        found[key] = json.loads(found[key]) if found[key] else None
    return found


def public_item(found: dict) -> dict:
    """What a learner's browser may see of an item: never the answer key."""
    return {
        "id": found["id"],
        "lesson_id": found["lesson_id"],
        "type": found["type"],
        "prompt_html": found["prompt_html"],
        "choices": found["choices"],
        "hint_count": len(found["hints"] or []),
    }


def skills(db: sqlite_utils.Database) -> list[dict]:
    """Every skill, by subject and name."""
    return [dict(r) for r in rows(db, "SELECT * FROM skills ORDER BY subject, name")]


def class_skills(db: sqlite_utils.Database, class_id: int, also: set[str]) -> list[dict]:
    """Skills of a class's assigned lessons, plus the skill ids in `also`, by subject and name."""
    assigned = {
        r[0]
        for r in rows(
            db,
            "SELECT DISTINCT x.skill_id FROM assignments a"
            " JOIN items i ON i.lesson_id = a.lesson_id"
            " JOIN item_skills x ON x.item_id = i.id WHERE a.class_id = ?",
            (class_id,),
        )
    }
    wanted = assigned | also
    return [s for s in skills(db) if s["id"] in wanted]


def search(db: sqlite_utils.Database, query: str, limit: int = 10) -> list[dict]:
    """Lesson passages matching the words of `query`, best first (FTS5 BM25)."""
    words = [w for w in "".join(c if c.isalnum() else " " for c in query).split() if w]
    if not words:
        return []
    match = " OR ".join(f'"{w}"' for w in words[:20])
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT p.lesson_id, l.title AS lesson_title, p.heading,"
            " snippet(passages, 2, '[', ']', ' … ', 16) AS snippet, bm25(passages) AS score"
            " FROM passages p JOIN lessons l ON l.id = p.lesson_id"
            " WHERE passages MATCH ? AND l.retired = 0 ORDER BY score LIMIT ?",
            (match, limit),
        )
    ]


def passages(db: sqlite_utils.Database, query: str, limit: int = 12) -> list[dict]:
    """Whole lesson passages matching `query`, best first: what the tutor is grounded in."""
    match = _match_expression(query)
    if not match:
        return []
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT p.rowid AS passage_id, p.lesson_id, l.title AS lesson_title, p.heading,"
            " p.body, bm25(passages, 0, 4.0, 1.0) AS score"
            " FROM passages p JOIN lessons l ON l.id = p.lesson_id"
            " WHERE passages MATCH ? AND l.retired = 0 ORDER BY score LIMIT ?",
            (match, limit),
        )
    ]


def lesson_passages(db: sqlite_utils.Database, lesson_id: str) -> list[dict]:
    """One lesson's passages in order."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT p.rowid AS passage_id, p.lesson_id, l.title AS lesson_title, p.heading,"
            " p.body FROM passages p JOIN lessons l ON l.id = p.lesson_id"
            " WHERE p.lesson_id = ? ORDER BY p.rowid",
            (lesson_id,),
        )
    ]


# Words that say nothing about which lesson a question is about.
_STOP_WORDS = frozenset(
    "a an and are as at be but by can could do does did for from how i if in into is it"
    " its me my of on or so that the their them then there these this to was we what when"
    " where which who why will with would you your dont get got help understand know"
    " mean means tell explain please just about make thing things"
    # Apostrophes are dropped first: "what's" is read as "whats".
    " whats hows whos wheres whys im ive isnt doesnt cant didnt wont thats theres"
    # Asking words: "write me a poem" is not about writing in a lesson.
    " write give show say want need".split()
)


def has_content_words(query: str) -> bool:
    """Whether `query` has a word that could say what it is about (not only "what is it")."""
    return bool(_content_words(query))


def _match_expression(query: str) -> str:
    """An FTS5 OR-query of the question's content words (porter-stemmed by the index)."""
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(_content_words(query)[:20]))


def _content_words(query: str) -> list[str]:
    # "what's" and "whats" alike: learners type both, and FTS would split "what's" into
    # "what" and "s", which match everything.
    words = "".join(c if c.isalnum() else " " for c in query.lower().replace("'", "")).split()
    return [w for w in words if w not in _STOP_WORDS]


# --- assignments ----------------------------------------------------------------------


def assign(db: sqlite_utils.Database, actor: audit.Actor, class_id: int, lesson_id: str) -> bool:
    """Assign a lesson to a class; False if it was already assigned."""
    cursor = db.conn.execute(
        "INSERT OR IGNORE INTO assignments (class_id, lesson_id, assigned_by, assigned_at)"
        " VALUES (?, ?, ?, ?)",
        (class_id, lesson_id, actor.id, now()),
    )
    if cursor.rowcount:
        audit.record(db, actor, "assignment.create", "class", class_id, lesson_id=lesson_id)
    return bool(cursor.rowcount)


def unassign(db: sqlite_utils.Database, actor: audit.Actor, class_id: int, lesson_id: str) -> None:
    """Take a lesson off a class's list; attempts on it stay."""
    db.conn.execute(
        "DELETE FROM assignments WHERE class_id = ? AND lesson_id = ?", (class_id, lesson_id)
    )
    audit.record(db, actor, "assignment.delete", "class", class_id, lesson_id=lesson_id)


def class_assignments(db: sqlite_utils.Database, class_id: int) -> list[dict]:
    """A class's assigned lessons, oldest first."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT a.lesson_id, a.assigned_at, l.title, l.subject FROM assignments a"
            " JOIN lessons l ON l.id = a.lesson_id WHERE a.class_id = ? AND l.retired = 0"
            " ORDER BY a.assigned_at",
            (class_id,),
        )
    ]


def learner_assignments(db: sqlite_utils.Database, learner_id: int) -> list[dict]:
    """The lessons assigned to any of a learner's classes, with how far they have got."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT l.id, l.title, l.subject, l.summary, min(a.assigned_at) AS assigned_at,"
            " (SELECT count(*) FROM items i WHERE i.lesson_id = l.id AND i.retired = 0)"
            " AS item_count,"
            # Against the lesson's current items: a pack upgrade may move or retire items.
            " (SELECT count(DISTINCT t.item_id) FROM attempts t JOIN items i ON i.id = t.item_id"
            "  WHERE t.learner_id = ? AND i.lesson_id = l.id AND i.retired = 0"
            "  AND t.correct = 1) AS mastered"
            " FROM assignments a JOIN enrolments e ON e.class_id = a.class_id"
            " JOIN lessons l ON l.id = a.lesson_id"
            " WHERE e.learner_id = ? AND l.retired = 0 GROUP BY l.id ORDER BY assigned_at",
            (learner_id, learner_id),
        )
    ]
