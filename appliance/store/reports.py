"""A teacher's reports on one class: lesson completion with time spent, and the questions
the class finds hardest with its commonest wrong answers. Only the class's own learners
and their answers are read, whatever pack the questions come from.

Time spent is estimated from what the box sees: each lesson opened and each answer
counts for the time until the learner's next one, at most IDLE_CAP (a gap longer than
that is time away), and the learner's last one counts LAST_EVENT_S.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date, datetime

import sqlite_utils

from appliance.store import assignments, classes, rows

IDLE_CAP_S = 300
LAST_EVENT_S = 60
MIN_ANSWERS = 3  # a question answered fewer times says little about its difficulty


def lesson_completion(db: sqlite_utils.Database, class_id: int, today: date | None = None) -> dict:
    """Learners x the class's lessons: status (not_started, in_progress, done), late, and
    seconds spent, with the lessons in the order they were set."""
    lessons = assignments.of_class(db, class_id, today, counts=False)
    learners = classes.roster(db, class_id)
    seconds = time_spent(db, [learner["id"] for learner in learners])
    cells: dict[tuple[int, str], dict] = {}
    for lesson in lessons:
        for row in assignments.progress(db, class_id, lesson["lesson_id"], today):
            cells[(row["learner_id"], lesson["lesson_id"])] = {
                "status": row["status"],
                "late": row["late"],
                "seconds": seconds.get((row["learner_id"], lesson["lesson_id"]), 0),
            }
    return {"lessons": lessons, "learners": learners, "cells": cells}


def time_spent(db: sqlite_utils.Database, learner_ids: list[int]) -> dict[tuple[int, str], int]:
    """(learner, lesson) -> estimated seconds, from lesson openings and answers."""
    if not learner_ids:
        return {}
    marks = ",".join("?" * len(learner_ids))  # only "?"s go into the text
    events = rows(
        db,
        f"SELECT learner_id, lesson_id, created_at AS at FROM attempts WHERE learner_id IN ({marks})"  # noqa: E501, S608
        f" UNION ALL SELECT learner_id, lesson_id, at FROM lesson_views WHERE learner_id IN ({marks})"  # noqa: E501
        " ORDER BY 1, 3",
        (*learner_ids, *learner_ids),
    )
    spent: dict[tuple[int, str], float] = defaultdict(float)
    previous = None
    for learner_id, lesson_id, at in events:
        moment = _when(at)
        if previous is not None and previous[0] == learner_id:
            gap = (moment - previous[2]).total_seconds()
            spent[(learner_id, previous[1])] += min(max(gap, 0), IDLE_CAP_S)
        elif previous is not None:
            spent[(previous[0], previous[1])] += LAST_EVENT_S
        previous = (learner_id, lesson_id, moment)
    if previous is not None:
        spent[(previous[0], previous[1])] += LAST_EVENT_S
    return {key: round(value) for key, value in spent.items()}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def difficult_questions(
    db: sqlite_utils.Database,
    class_id: int,
    show: Callable[[dict, str], str],
    limit: int = 20,
) -> list[dict]:
    """The questions the class's learners get wrong most often (share of wrong answers,
    practice and quizzes alike, at least MIN_ANSWERS answers), worst first, each with
    its commonest wrong answers as `show(item, response)` renders them."""
    found = rows(
        db,
        "SELECT a.item_id, count(*) AS answers, sum(1 - a.correct) AS wrong,"
        " i.prompt_html, i.type, i.choices, i.lesson_id, l.title AS lesson_title"
        " FROM attempts a JOIN enrolments e ON e.learner_id = a.learner_id AND e.class_id = ?"
        " JOIN items i ON i.id = a.item_id JOIN lessons l ON l.id = i.lesson_id"
        " WHERE i.retired = 0 GROUP BY a.item_id HAVING count(*) >= ? AND wrong > 0"
        " ORDER BY 1.0 * wrong / count(*) DESC, wrong DESC, a.item_id LIMIT ?",
        (class_id, MIN_ANSWERS, limit),
    )
    questions = []
    for r in found:
        item = dict(r)
        item["choices"] = json.loads(item["choices"]) if item["choices"] else None
        responses = Counter(
            show(item, w[0])
            for w in rows(
                db,
                "SELECT a.response FROM attempts a JOIN enrolments e ON e.learner_id ="
                " a.learner_id AND e.class_id = ? WHERE a.item_id = ? AND a.correct = 0",
                (class_id, item["item_id"]),
            )
        )
        item["share_wrong"] = item["wrong"] / item["answers"]
        item["common_wrong"] = responses.most_common(3)
        questions.append(item)
    return questions
