"""Seed the demo school: staff, 3 classes of learners and a group in each, the demo pack,
assignments (one due this week), history.

Deterministic (a fixed random seed) so screenshots and tests see the same school. The
history is simulated from a simple learning model, so dashboards look like a real term:
stronger and weaker learners, skills that improve with practice.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlite_utils

from appliance.config import Config, pin_key
from appliance.packs.importer import import_pack
from appliance.practice import grade
from appliance.store import (
    assignments,
    audit,
    class_lessons,
    classes,
    content,
    groups,
    quizzes,
    resources,
    site,
    transaction,
    users,
)
from appliance.store.ids import uuid7

PACK_DIR = Path(__file__).parent / "pack"
ADMIN = ("admin", "Ms Grace Okafor", "schoolbox-admin")
TEACHERS = [
    ("amina", "Amina Diallo", "schoolbox-teacher"),
    ("tomas", "Tomás Rivera", "schoolbox-teacher"),
]
LEARNER_PIN = "1234"
CLASSES = [("Class 4A", "amina"), ("Class 4B", "amina"), ("Class 5", "tomas")]
FIRST_NAMES = """Aisha Ali Amara Ana Arjun Ayo Bao Bilal Camila Chidi Chen Daniel Dara Diego Elif
Emeka Esi Fatima Femi Gabriel Hana Hassan Ibrahim Imani Isabel Jamal Jin Joao Kai Kamala Kofi
Lara Leila Lucas Lwazi Maya Mei Mateo Min Musa Nadia Naledi Nia Noor Omar Pablo Priya Rafael
Ravi Rosa Sami Sara Sipho Sofia Tariq Thandi Tomas Wanjiru Yara Yusuf Zain Zara Zodwa""".split()
DEMO_LOGINS = [
    f"admin:   {ADMIN[0]} / {ADMIN[2]}",
    *(f"teacher: {u} / {p}  ({n})" for u, n, p in TEACHERS),
    f"learner: pick a class and a name, PIN {LEARNER_PIN}",
]


def seed(db: sqlite_utils.Database, config: Config, learners_per_class: int = 20) -> None:
    """Create the demo school in an empty database."""
    rng = random.Random(20261125)
    key = pin_key(config)
    with transaction(db):
        site.create(db, "Riverside Primary (demo)")
        users.create_staff(db, audit.SYSTEM, "admin", ADMIN[1], ADMIN[0], ADMIN[2])
        staff_ids = {
            u: users.create_staff(db, audit.SYSTEM, "teacher", n, u, p) for u, n, p in TEACHERS
        }
        for feature in site.FEATURES:
            site.set_consent(db, audit.SYSTEM, feature, feature == "tutor")
    import_pack(db, config.media_dir, PACK_DIR, audit.SYSTEM)
    lessons = content.lessons(db)
    names = rng.sample(FIRST_NAMES, len(FIRST_NAMES))
    with transaction(db):
        for index, (class_name, teacher) in enumerate(CLASSES):
            class_id = classes.create(db, audit.SYSTEM, class_name, staff_ids[teacher])
            chosen = _assigned_lessons(lessons, index)
            for number, lesson in enumerate(chosen):
                # The newest lesson is due at the end of the week, as a teacher would set it.
                due = date.today() + timedelta(days=4) if number == len(chosen) - 1 else None
                assignments.set_lesson(db, audit.SYSTEM, class_id, lesson["id"], due_on=due)
            enrolled: list[int] = []
            abilities: dict[int, float] = {}
            for n in range(learners_per_class):
                name = f"{names[(index * learners_per_class + n) % len(names)]} {chr(65 + n % 26)}."
                learner_id = users.create_learner(db, audit.SYSTEM, name, LEARNER_PIN, key)
                classes.enrol(db, audit.SYSTEM, class_id, learner_id)
                abilities[learner_id] = _history(db, rng, learner_id, chosen)
                enrolled.append(learner_id)
            reading_group = enrolled[: len(enrolled) // 4]
            groups.create(db, audit.SYSTEM, class_id, "Reading group", reading_group)
            if index == 0:
                _closed_quiz(db, class_id, abilities, chosen[0]["id"])
                _revision_lesson(db, class_id, chosen)


def _assigned_lessons(lessons: list[dict], class_index: int) -> list[dict]:
    fractions = [lesson for lesson in lessons if lesson["subject"] == "fractions"]
    reading = [lesson for lesson in lessons if lesson["subject"] != "fractions"]
    plans = [fractions[:3], fractions[:2] + reading[:1], reading[:3] + fractions[3:4]]
    return plans[class_index % len(plans)]


def _history(
    db: sqlite_utils.Database, rng: random.Random, learner_id: int, lessons: list[dict]
) -> float:
    """Two weeks of simulated practice: ability, item difficulty and learning by doing;
    the learner's ability, returned for what they do next."""
    ability = rng.gauss(0.3, 1.0)
    now_ms = int(time.time() * 1000)
    rows = []
    for lesson in lessons:
        items = [
            found
            for row in db.conn.execute(
                "SELECT id FROM items WHERE lesson_id = ? AND retired = 0", (lesson["id"],)
            )
            if (found := content.item(db, row[0])) is not None
        ]
        if not items:
            continue
        at_ms = now_ms - rng.randint(3, 14) * 86_400_000
        for practice_count in range(rng.randint(4, 18)):
            item = rng.choice(items)
            difficulty = (zlib.crc32(item["id"].encode()) % 100) / 50 - 1
            p = 1 / (1 + math.exp(-(ability - difficulty + 0.12 * practice_count)))
            correct = rng.random() < p
            at_ms += rng.randint(20, 90) * 1000
            rows.append(_attempt(learner_id, item, correct, at_ms, rng))
        _used_resources(db, learner_id, lesson["id"], at_ms)
    db.table("attempts").insert_all(rows)
    return ability


def _used_resources(db: sqlite_utils.Database, learner_id: int, lesson_id: str, at_ms: int):
    """Most learners watched, read or played their lessons' resources; a few opened one
    and stopped. Drawn from a generator of their own, so the answers above stay as they were."""
    rng = random.Random(f"{learner_id}/{lesson_id}")
    at = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")
    at = at.replace("+00:00", "Z")  # as store.now() writes it
    for resource in resources.of_lesson(db, lesson_id):
        if rng.random() < 0.9:
            done = at if rng.random() < 0.85 else None
            db.conn.execute(
                "INSERT INTO resource_progress (learner_id, resource_id, opened_at, done_at)"
                " VALUES (?, ?, ?, ?)",
                (learner_id, resource["id"], at, done),
            )


def _closed_quiz(db: sqlite_utils.Database, class_id: int, abilities: dict[int, float],
                 lesson: str) -> None:  # fmt: skip
    """A quiz the class took two days ago and the teacher closed: results to look at.
    Its own random stream, so the rest of the demo is the same with or without it."""
    rng = random.Random(20261205)
    items = [
        found
        for row in db.conn.execute(
            "SELECT id FROM items WHERE lesson_id = ? AND retired = 0 ORDER BY position LIMIT 5",
            (lesson,),
        )
        if (found := content.item(db, row[0])) is not None
    ]
    quiz_id = quizzes.create(
        db, audit.SYSTEM, class_id, "Fractions check", [i["id"] for i in items]
    )
    quiz = quizzes.get(db, quiz_id)
    assert quiz is not None  # made just above, in this transaction
    quizzes.start(db, audit.SYSTEM, quiz)
    started_ms = int(time.time() * 1000) - 2 * 86_400_000
    answers = []
    for learner_id, ability in list(abilities.items())[:-2]:  # two were away that day
        # The same learner as in their practice: the quiz answers fit their history (the
        # federated tests hold out each learner's latest answers, these among them).
        at_ms = started_ms + rng.randint(0, 120) * 1000
        for item in items:
            difficulty = (zlib.crc32(item["id"].encode()) % 100) / 50 - 1
            correct = rng.random() < 1 / (1 + math.exp(-(ability - difficulty + 0.5)))
            at_ms += rng.randint(20, 90) * 1000
            answer = _attempt(learner_id, item, correct, at_ms, rng) | {"hints_used": 0}
            answers.append(answer | {"quiz_id": quiz_id})
        stamp = answers[-1]["created_at"]
        db.conn.execute(
            "INSERT INTO quiz_takers (quiz_id, learner_id, started_at, finished_at)"
            " VALUES (?, ?, ?, ?)",
            (quiz_id, learner_id, stamp, stamp),
        )
    db.table("attempts").insert_all(answers)
    quizzes.close(db, audit.SYSTEM, quiz)


def _revision_lesson(db: sqlite_utils.Database, class_id: int, lessons: list[dict]) -> None:
    """A lesson the teacher put together: the second lesson's reading, then a question
    from each of the class's lessons, last lesson first."""
    parts: list[tuple[str, str | None]] = [(lessons[1]["id"], None)]
    for lesson in reversed(lessons):
        first = db.conn.execute(
            "SELECT id FROM items WHERE lesson_id = ? AND retired = 0 ORDER BY position LIMIT 1",
            (lesson["id"],),
        ).fetchone()
        if first:
            parts.append((lesson["id"], first[0]))
    class_lessons.create(db, audit.SYSTEM, class_id, "Fractions revision", parts)


def _attempt(learner_id: int, item: dict, correct: bool, at_ms: int, rng: random.Random) -> dict:
    key = item["answer"]
    if item["type"] == "multiple_choice":
        wrong = [i for i in range(len(item["choices"])) if i != key["index"]]
        response = str(key["index"] if correct else rng.choice(wrong))
    elif item["type"] == "numeric":
        response = str(key["value"] if correct else key["value"] + rng.choice([-2, -1, 1, 2]))
    else:
        response = key["accepted"][0] if correct else "not sure"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms / 1000)) + f".{at_ms % 1000:03d}Z"
    return {
        "id": uuid7(at_ms),
        "learner_id": learner_id,
        "item_id": item["id"],
        "lesson_id": item["lesson_id"],
        "response": response,
        "correct": int(grade(item, response)),
        "hints_used": 0 if correct else rng.randint(0, 1),
        "duration_ms": rng.randint(8_000, 90_000),
        "created_at": stamp,
    }
