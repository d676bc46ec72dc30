"""Quizzes a teacher sets a class, a group or chosen learners: fixed items from any pack,
taken without hints or feedback while open, results shown once closed.

A quiz is a draft until the teacher starts it, open until the teacher closes it or its
window ends, then closed. While a quiz is live (started and not closed) for a learner,
its items are theirs to answer in the quiz only: practice never offers them and refuses
an answer to them, and the tutor will not discuss them. Each answer is an attempt like a
practice answer (append-only, idempotent by client key, traced by knowledge tracing),
marked with the quiz; one answer per item, and an answered item is final.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence

import sqlite_utils

from appliance.messages import lazy as _l
from appliance.store import (
    attempts,
    audiences,
    audit,
    content,
    grouped,
    groups,
    inserted,
    now,
    one,
    rows,
    the_row,
    value,
)

MAX_ITEMS = 50
MAX_TITLE = 80
COMMON_WRONG = 3  # wrong answers shown per item in the teacher's results

# Items of the quizzes that are live for a learner (parameters: learner id, now).
LIVE_ITEMS_SQL = (
    "SELECT qi.item_id FROM quiz_items qi JOIN quizzes q ON q.id = qi.quiz_id"
    " JOIN assigned_quizzes v ON v.quiz_id = q.id AND v.learner_id = ?"
    " WHERE q.state = 'open' AND (q.closes_at IS NULL OR q.closes_at > ?)"
)


class QuizError(ValueError):
    """A quiz that cannot be made or changed as asked; the message says why."""


class QuizAnswerError(ValueError):
    """An answer the quiz cannot take, with a message for the learner and an HTTP status."""

    def __init__(self, message: object, status: int = 400):
        super().__init__(message)
        self.status = status


# --- the teacher's side -----------------------------------------------------------------


def create(
    db: sqlite_utils.Database,
    actor: audit.Actor,
    class_id: int,
    title: str,
    item_ids: Sequence[str],
    *,
    groups_: Sequence[int] = (),
    learners: Sequence[int] = (),
    opens_at: str | None = None,
    closes_at: str | None = None,
) -> int:
    """A draft quiz of these items (in this order), for the whole class unless groups or
    learners are named, with an optional window (UTC times); its id."""
    title = " ".join((title or "").split())
    if not 1 <= len(title) <= MAX_TITLE:
        raise QuizError(_l("A quiz title is 1 to %(n)d characters.", n=MAX_TITLE))
    item_ids = list(dict.fromkeys(item_ids))  # the same question twice is asked once
    if not 1 <= len(item_ids) <= MAX_ITEMS:
        raise QuizError(_l("A quiz has 1 to %(n)d questions.", n=MAX_ITEMS))
    marks = ",".join("?" * len(item_ids))  # only "?"s go into the text
    query = f"SELECT id FROM items WHERE retired = 0 AND id IN ({marks})"  # noqa: S608
    found = {r[0] for r in rows(db, query, tuple(item_ids))}
    if found != set(item_ids):
        raise QuizError(_l("Some of the questions chosen are no longer available."))
    if groups.strangers(db, class_id, groups_, learners):
        raise QuizError(_l("Choose groups and learners of this class."))
    if opens_at and closes_at and closes_at <= opens_at:
        raise QuizError(_l("The quiz must close after it opens."))
    quiz_id = inserted(
        db,
        "INSERT INTO quizzes (class_id, title, opens_at, closes_at, created_by, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (class_id, title, opens_at, closes_at, actor.id, now()),
    )
    db.conn.executemany(
        "INSERT INTO quiz_items (quiz_id, position, item_id) VALUES (?, ?, ?)",
        [(quiz_id, n, item) for n, item in enumerate(item_ids, 1)],
    )
    audiences.set_for(db, "quiz", quiz_id, groups_, learners)
    audit.record(db, actor, "quiz.create", "class", class_id, quiz_id=quiz_id,
                 items=len(item_ids))  # fmt: skip
    return quiz_id


def random_items(
    db: sqlite_utils.Database, skill_ids: Sequence[str], count: int, rng: random.Random
) -> list[str]:
    """`count` items drawn at random from those practising any of `skill_ids` (fewer
    when the skills have fewer), in the order they were drawn."""
    if not skill_ids or count < 1:
        return []
    marks = ",".join("?" * len(skill_ids))
    pool = [
        r[0]
        for r in rows(
            db,
            "SELECT DISTINCT i.id FROM items i JOIN item_skills x ON x.item_id = i.id"  # noqa: S608
            f" WHERE i.retired = 0 AND x.skill_id IN ({marks}) ORDER BY i.id",
            tuple(skill_ids),
        )
    ]
    return rng.sample(pool, min(count, len(pool)))


def start(db: sqlite_utils.Database, actor: audit.Actor, quiz: dict) -> None:
    """Open a draft quiz to its learners (from its window's start, if it has one)."""
    if quiz["state"] != "draft":
        raise QuizError(_l("This quiz has already been started."))
    db.conn.execute(
        "UPDATE quizzes SET state = 'open', started_at = ? WHERE id = ?", (now(), quiz["id"])
    )
    audit.record(db, actor, "quiz.start", "class", quiz["class_id"], quiz_id=quiz["id"])


def close(db: sqlite_utils.Database, actor: audit.Actor, quiz: dict) -> None:
    """Close a quiz: no more answers; learners see their results."""
    if quiz["state"] == "closed":
        return
    db.conn.execute(
        "UPDATE quizzes SET state = 'closed', closed_at = ? WHERE id = ?", (now(), quiz["id"])
    )
    audit.record(db, actor, "quiz.close", "class", quiz["class_id"], quiz_id=quiz["id"])


def delete(db: sqlite_utils.Database, actor: audit.Actor, quiz: dict) -> None:
    """Remove a quiz nobody has answered yet (answers are never deleted)."""
    answered = the_row(db, "SELECT count(*) FROM attempts WHERE quiz_id = ?", (quiz["id"],))[0]
    if answered:
        raise QuizError(_l("Learners have answered this quiz, so it stays; you can close it."))
    db.conn.execute("DELETE FROM quizzes WHERE id = ?", (quiz["id"],))
    audit.record(db, actor, "quiz.delete", "class", quiz["class_id"], quiz_id=quiz["id"])


def get(db: sqlite_utils.Database, quiz_id: int) -> dict | None:
    """A quiz with its phase, items (in order) and recipients; None if there is none."""
    quiz = _without_recipients(db, quiz_id)
    if quiz is not None:
        quiz["groups"], quiz["learners"] = audiences.of(db, "quiz", quiz_id)
    return quiz


def _without_recipients(db: sqlite_utils.Database, quiz_id: int) -> dict | None:
    """A quiz with its phase and items: what a learner taking it may know of it."""
    row = one(db, "SELECT * FROM quizzes WHERE id = ?", (quiz_id,))
    if row is None:
        return None
    quiz = dict(row)
    quiz["phase"] = phase(quiz)
    quiz["items"] = [dict(item) for item in _items(db, quiz_id, quiz["created_at"])]
    return quiz


# A quiz's questions never change once it is made, but a pack import may retire or
# reword them: they are kept per process, keyed by the database, the quiz (its id and
# when it was made: a restore may bring another quiz of the same id) and the last
# import. A class opening a quiz at once then reads one row, not ten items, per learner.
_ITEMS_KEPT: dict[tuple[str, int, str], tuple[str | None, list[dict]]] = {}
_ITEMS_MAX = 256


def _items(db: sqlite_utils.Database, quiz_id: int, created_at: str) -> list[dict]:
    """The quiz's current items in order, each with its position and lesson title."""
    database = db.conn.execute("PRAGMA database_list").fetchone()[2]
    imported = value(db, "SELECT max(imported_at) FROM packs")
    kept = _ITEMS_KEPT.get((database, quiz_id, created_at))
    if kept is not None and kept[0] == imported:
        return kept[1]
    found = []
    for r in rows(
        db,
        "SELECT qi.position, qi.item_id, l.title FROM quiz_items qi"
        " JOIN items i ON i.id = qi.item_id JOIN lessons l ON l.id = i.lesson_id"
        " WHERE qi.quiz_id = ? ORDER BY qi.position",
        (quiz_id,),
    ):
        item = content.item(db, r[1])
        if item is not None:  # a pack upgrade may retire one: it is left out
            found.append({**item, "position": r[0], "lesson_title": r[2]})
    if len(_ITEMS_KEPT) >= _ITEMS_MAX:
        _ITEMS_KEPT.clear()
    _ITEMS_KEPT[(database, quiz_id, created_at)] = (imported, found)
    return found


def phase(quiz: dict, at: str | None = None) -> str:
    """draft, scheduled (started, its window not yet open), open, or closed (by the
    teacher or the end of its window)."""
    at = at or now()
    if quiz["state"] == "draft":
        return "draft"
    if quiz["state"] == "closed" or (quiz["closes_at"] and at >= quiz["closes_at"]):
        return "closed"
    if quiz["opens_at"] and at < quiz["opens_at"]:
        return "scheduled"
    return "open"


def of_class(db: sqlite_utils.Database, class_id: int) -> list[dict]:
    """A class's quizzes, newest first, each with its phase, size, and how many of its
    learners have started and finished."""
    found = [
        dict(r)
        for r in rows(
            db,
            "SELECT q.*, (SELECT count(*) FROM quiz_items qi WHERE qi.quiz_id = q.id)"
            " AS item_count,"
            " (SELECT count(*) FROM assigned_quizzes v WHERE v.quiz_id = q.id) AS learners,"
            " (SELECT count(*) FROM quiz_takers t JOIN assigned_quizzes v"
            "  ON v.quiz_id = t.quiz_id AND v.learner_id = t.learner_id"
            "  WHERE t.quiz_id = q.id) AS started,"
            " (SELECT count(*) FROM quiz_takers t JOIN assigned_quizzes v"
            "  ON v.quiz_id = t.quiz_id AND v.learner_id = t.learner_id"
            "  WHERE t.quiz_id = q.id AND t.finished_at IS NOT NULL) AS finished"
            " FROM quizzes q WHERE q.class_id = ? ORDER BY q.id DESC",
            (class_id,),
        )
    ]
    for quiz in found:
        quiz["phase"] = phase(quiz)
    return found


def progress(db: sqlite_utils.Database, quiz: dict) -> list[dict]:
    """Each learner the quiz is set for, by name: not started, started or finished, how
    many questions answered and how many right."""
    found = rows(
        db,
        "SELECT v.learner_id, u.display_name AS name, t.started_at, t.finished_at,"
        " (SELECT count(*) FROM attempts a WHERE a.quiz_id = v.quiz_id"
        "  AND a.learner_id = v.learner_id) AS answered,"
        " (SELECT count(*) FROM attempts a WHERE a.quiz_id = v.quiz_id"
        "  AND a.learner_id = v.learner_id AND a.correct = 1) AS score"
        " FROM assigned_quizzes v JOIN users u ON u.id = v.learner_id"
        " LEFT JOIN quiz_takers t ON t.quiz_id = v.quiz_id AND t.learner_id = v.learner_id"
        " WHERE v.quiz_id = ? AND u.erased_at IS NULL ORDER BY u.display_name",
        (quiz["id"],),
    )
    result = []
    for r in found:
        learner = dict(r)
        learner["status"] = (
            "finished" if learner["finished_at"] else "started" if learner["started_at"]
            else "not_started"
        )  # fmt: skip
        result.append(learner)
    return result


def item_results(
    db: sqlite_utils.Database, quiz: dict, show: Callable[[dict, str], str]
) -> list[dict]:
    """Per question: how many answered and how many right, and the commonest wrong
    answers as `show(item, response)` renders them, with their counts."""
    answers: dict[str, list[tuple[str, int]]] = {}
    for r in rows(
        db, "SELECT item_id, response, correct FROM attempts WHERE quiz_id = ?", (quiz["id"],)
    ):
        answers.setdefault(r[0], []).append((r[1], r[2]))
    results = []
    for item in quiz["items"]:
        given = answers.get(item["id"], [])
        wrong = Counter(show(item, response) for response, correct in given if not correct)
        results.append(
            {
                "position": item["position"],
                "item_id": item["id"],
                "prompt_html": item["prompt_html"],
                "answered": len(given),
                "right": sum(correct for _, correct in given),
                "common_wrong": wrong.most_common(COMMON_WRONG),
            }
        )
    return results


# --- the learner's side -----------------------------------------------------------------


def of_learner(db: sqlite_utils.Database, learner_id: int) -> list[dict]:
    """The started quizzes set for a learner, newest first: phase, size, how many they
    answered, whether they finished, and their score once the quiz is closed."""
    found = [
        dict(r)
        for r in rows(
            db,
            "SELECT q.id, q.title, q.state, q.opens_at, q.closes_at, c.name AS class_name,"
            " (SELECT count(*) FROM quiz_items qi WHERE qi.quiz_id = q.id) AS item_count,"
            " (SELECT count(*) FROM attempts a WHERE a.quiz_id = q.id"
            "  AND a.learner_id = v.learner_id) AS answered,"
            " (SELECT count(*) FROM attempts a WHERE a.quiz_id = q.id"
            "  AND a.learner_id = v.learner_id AND a.correct = 1) AS score,"
            " t.finished_at FROM assigned_quizzes v JOIN quizzes q ON q.id = v.quiz_id"
            " JOIN classes c ON c.id = q.class_id"
            " LEFT JOIN quiz_takers t ON t.quiz_id = q.id AND t.learner_id = v.learner_id"
            " WHERE v.learner_id = ? AND q.state != 'draft' ORDER BY q.id DESC",
            (learner_id,),
        )
    ]
    for quiz in found:
        quiz["phase"] = phase(quiz)
        if quiz["phase"] != "closed":
            quiz["score"] = None  # no feedback until the quiz closes
    return found


def for_learner(db: sqlite_utils.Database, quiz_id: int, learner_id: int) -> dict | None:
    """The quiz if it is started and set for this learner; None otherwise. Without its
    recipients: who else it was set for (a catch-up group, single learners) is the
    teacher's to know, not a classmate's."""
    if one(
        db,
        "SELECT 1 FROM assigned_quizzes v JOIN quizzes q ON q.id = v.quiz_id"
        " WHERE v.quiz_id = ? AND v.learner_id = ? AND q.state != 'draft'",
        (quiz_id, learner_id),
    ):
        return _without_recipients(db, quiz_id)
    return None


def begin(db: sqlite_utils.Database, quiz: dict, learner_id: int) -> None:
    """Note that the learner opened the live quiz (the teacher's "started")."""
    db.conn.execute(
        "INSERT OR IGNORE INTO quiz_takers (quiz_id, learner_id, started_at) VALUES (?, ?, ?)",
        (quiz["id"], learner_id, now()),
    )


def note_begun(db: sqlite_utils.Database, quiz: dict, learner_id: int) -> None:
    """begin(), written only the first time, and committed with other threads' writes of
    the moment (store.grouped): a class opening a quiz at once shares its fsyncs."""
    if one(db, "SELECT 1 FROM quiz_takers WHERE quiz_id = ? AND learner_id = ?",
           (quiz["id"], learner_id)) is None:  # fmt: skip
        grouped(db, lambda writer: begin(writer, quiz, learner_id))


def finish(db: sqlite_utils.Database, quiz: dict, learner_id: int) -> None:
    """The learner hands the quiz in (answers still open stay unanswered)."""
    begin(db, quiz, learner_id)
    db.conn.execute(
        "UPDATE quiz_takers SET finished_at = ? WHERE quiz_id = ? AND learner_id = ?"
        " AND finished_at IS NULL",
        (now(), quiz["id"], learner_id),
    )


def hand_in(db: sqlite_utils.Database, quiz: dict, learner_id: int) -> None:
    """finish(), committed with other threads' writes of the moment (store.grouped): a
    class handing in at the bell shares its fsyncs instead of queueing one by one."""
    grouped(db, lambda writer: finish(writer, quiz, learner_id))


def answers(db: sqlite_utils.Database, quiz_id: int, learner_id: int) -> dict[str, dict]:
    """The learner's answers in a quiz, by item id."""
    return {
        r["item_id"]: dict(r)
        for r in rows(
            db,
            "SELECT * FROM attempts WHERE quiz_id = ? AND learner_id = ?",
            (quiz_id, learner_id),
        )
    }


def finished(db: sqlite_utils.Database, quiz_id: int, learner_id: int) -> bool:
    found = one(
        db,
        "SELECT finished_at FROM quiz_takers WHERE quiz_id = ? AND learner_id = ?",
        (quiz_id, learner_id),
    )
    return bool(found and found[0])


def record_answer(
    db: sqlite_utils.Database,
    quiz: dict,
    learner_id: int,
    item: dict,
    response: str,
    correct: bool,
    duration_ms: int | None,
    client_key: str | None,
) -> tuple[dict, bool]:
    """Store a quiz answer durably; (attempt, created). A second answer to the same item
    is refused (409) unless it is a resend of the first (same client key)."""
    if phase(quiz) != "open":
        raise QuizAnswerError(_l("This quiz is closed; your answers were kept."), 409)
    if finished(db, quiz["id"], learner_id):
        raise QuizAnswerError(_l("You have handed this quiz in."), 409)
    earlier = one(
        db,
        "SELECT * FROM attempts WHERE quiz_id = ? AND learner_id = ? AND item_id = ?",
        (quiz["id"], learner_id, item["id"]),
    )
    if earlier is not None:
        if client_key and earlier["client_key"] == client_key:
            return dict(earlier), False
        raise QuizAnswerError(_l("You have already answered this question."), 409)

    def started(writer: sqlite_utils.Database) -> None:
        begin(writer, quiz, learner_id)

    attempt, created = attempts.record(
        db, learner_id, item, response, correct, 0, duration_ms, client_key,
        also=started, quiz_id=quiz["id"],
    )  # fmt: skip
    if not created and (not client_key or attempt["client_key"] != client_key
                        or attempt["quiz_id"] != quiz["id"]):  # fmt: skip
        raise QuizAnswerError(_l("You have already answered this question."), 409)
    return attempt, created


def taking(db: sqlite_utils.Database, learner_id: int) -> bool:
    """True while the learner has begun a live quiz and not handed it in."""
    return (
        one(
            db,
            "SELECT 1 FROM quiz_takers t JOIN quizzes q ON q.id = t.quiz_id"
            " WHERE t.learner_id = ? AND t.finished_at IS NULL AND q.state = 'open'"
            " AND (q.closes_at IS NULL OR q.closes_at > ?)",
            (learner_id, now()),
        )
        is not None
    )


def live_item_ids(db: sqlite_utils.Database, learner_id: int) -> set[str]:
    """Items of the quizzes live for a learner: not for practice, hints or the tutor."""
    return {r[0] for r in rows(db, LIVE_ITEMS_SQL, (learner_id, now()))}
