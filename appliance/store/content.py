"""Reading lessons, items, skills and packs (assignments.py sets them for learners)."""

from __future__ import annotations

import json

import sqlite_utils

from appliance.richtext import text_of
from appliance.store import one, rows


def packs(db: sqlite_utils.Database) -> list[dict]:
    """Imported packs with their lesson, item and resource counts."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT p.*, (SELECT count(*) FROM lessons l WHERE l.pack_id = p.id"
            " AND l.retired = 0) AS lesson_count, (SELECT count(*) FROM items i"
            " WHERE i.pack_id = p.id AND i.retired = 0) AS item_count,"
            " (SELECT count(*) FROM resources r WHERE r.pack_id = p.id AND r.retired = 0)"
            " AS resource_count"
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
    row = one(
        db,
        "SELECT l.*, p.language FROM lessons l JOIN packs p ON p.id = l.pack_id"
        " WHERE l.id = ? AND l.retired = 0",
        (lesson_id,),
    )
    return dict(row) if row else None


def language_of(db: sqlite_utils.Database, lesson_id: str) -> str:
    """The language a lesson is written in: its pack's (a BCP 47 tag); "en" if unknown."""
    row = one(
        db,
        "SELECT p.language FROM lessons l JOIN packs p ON p.id = l.pack_id WHERE l.id = ?",
        (lesson_id,),
    )
    return row[0] if row and row[0] else "en"


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


def item_text(prompt_html: str, choices_json: str | None) -> str:
    """What a search reads of a question: its prompt and choices as plain text."""
    choices = json.loads(choices_json) if choices_json else []
    return " ".join(text_of(html) for html in [prompt_html, *choices])


def index_items(db: sqlite_utils.Database, pack_id: str) -> None:
    """Bring the question search up to date with a pack's current items (on import)."""
    db.conn.execute(
        "DELETE FROM item_search WHERE item_id IN (SELECT id FROM items WHERE pack_id = ?)",
        (pack_id,),
    )
    found = rows(
        db,
        "SELECT id, lesson_id, prompt_html, choices FROM items WHERE pack_id = ? AND retired = 0",
        (pack_id,),
    )
    db.conn.executemany(
        "INSERT INTO item_search (item_id, lesson_id, body) VALUES (?, ?, ?)",
        [(r[0], r[1], item_text(r[2], r[3])) for r in found],
    )


def index_resources(db: sqlite_utils.Database, pack_id: str) -> None:
    """Bring the resource search (titles and descriptions) up to date with a pack (on import)."""
    db.conn.execute(
        "DELETE FROM resource_search WHERE resource_id IN"
        " (SELECT id FROM resources WHERE pack_id = ?)",
        (pack_id,),
    )
    db.conn.execute(
        "INSERT INTO resource_search (resource_id, lesson_id, body) SELECT id, lesson_id,"
        " title || ' ' || description FROM resources WHERE pack_id = ? AND retired = 0",
        (pack_id,),
    )


def search_resources(db: sqlite_utils.Database, query: str, limit: int = 10) -> list[dict]:
    """Current resources whose title or description matches the words of `query`, best first."""
    match = _any_word(query)
    if not match:
        return []
    found = rows(
        db,
        "SELECT r.id AS resource_id, r.kind, r.title, r.lesson_id, l.title AS lesson_title,"
        " bm25(resource_search) AS score FROM resource_search s"
        " JOIN resources r ON r.id = s.resource_id JOIN lessons l ON l.id = r.lesson_id"
        " WHERE resource_search MATCH ? AND r.retired = 0 AND l.retired = 0"
        " ORDER BY score LIMIT ?",
        (match, limit),
    )
    return [dict(r) for r in found]


def search_items(
    db: sqlite_utils.Database, query: str, hidden: set[str], limit: int = 10
) -> list[dict]:
    """Current questions matching the words of `query`, best first, leaving out `hidden`
    (a live quiz's, for a learner taking it)."""
    match = _any_word(query)
    if not match:
        return []
    found = rows(
        db,
        "SELECT s.item_id, s.lesson_id, l.title AS lesson_title,"
        " snippet(item_search, 2, '[', ']', ' … ', 16) AS snippet, bm25(item_search) AS score"
        " FROM item_search s JOIN items i ON i.id = s.item_id JOIN lessons l ON l.id = s.lesson_id"
        " WHERE item_search MATCH ? AND i.retired = 0 AND l.retired = 0 ORDER BY score LIMIT ?",
        (match, limit + len(hidden)),
    )
    return [dict(r) for r in found if r["item_id"] not in hidden][:limit]


def _any_word(query: str) -> str:
    words = [w for w in "".join(c if c.isalnum() else " " for c in query).split() if w]
    return " OR ".join(f'"{w}"' for w in words[:20])


def search(db: sqlite_utils.Database, query: str, limit: int = 10) -> list[dict]:
    """Lesson passages matching the words of `query`, best first (FTS5 BM25)."""
    match = _any_word(query)
    if not match:
        return []
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
