"""Numbered schema migrations: the database's shape, created and upgraded in place.

Each migration is a function that takes the database and brings it from version N-1
to N inside one transaction. SQLite's `user_version` records the version reached.
Never edit a migration that has shipped; add the next number instead.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from appliance.store import content, transaction


class SchemaTooNew(RuntimeError):
    """The database was written by a newer Schoolbox than the one running."""


def _v1_foundation(db: sqlite_utils.Database) -> None:
    """Site, people, classes, content, assignments, attempts and the audit log."""
    db.create_table(
        "site",
        {"id": int, "name": str, "box_id": str, "created_at": str},
        pk="id",
        not_null={"name", "box_id", "created_at"},
    )
    # One row per optional feature; who consented and when is kept here and in the audit log.
    db.create_table(
        "consents",
        {"feature": str, "granted": int, "set_by": int, "set_at": str},
        pk="feature",
        not_null={"granted", "set_at"},
    )
    db.create_table(
        "users",
        {
            "id": int,
            "public_id": str,  # the id that may leave the box (pseudonymised again upstream)
            "role": str,
            "display_name": str,
            "username": str,  # staff only
            "password_hash": str,  # staff only
            "pin_hash": str,  # learners only
            "session_version": int,  # bumped to sign a user out everywhere
            "active": int,
            "created_at": str,
            "erased_at": str,
        },
        pk="id",
        not_null={"public_id", "role", "display_name", "session_version", "active", "created_at"},
        defaults={"session_version": 1, "active": 1},
    )
    db.execute("CREATE UNIQUE INDEX users_public_id ON users(public_id)")
    db.execute("CREATE UNIQUE INDEX users_username ON users(username) WHERE username IS NOT NULL")
    db.execute(
        "CREATE TRIGGER users_role_check BEFORE INSERT ON users "
        "WHEN NEW.role NOT IN ('learner', 'teacher', 'admin') "
        "BEGIN SELECT RAISE(ABORT, 'role must be learner, teacher or admin'); END"
    )
    db.create_table(
        "classes",
        {"id": int, "name": str, "tutor_enabled": int, "created_at": str, "archived": int},
        pk="id",
        not_null={"name", "created_at", "tutor_enabled", "archived"},
        defaults={"tutor_enabled": 1, "archived": 0},
    )
    db.create_table(
        "class_teachers",
        {"class_id": int, "teacher_id": int},
        pk=("class_id", "teacher_id"),
        foreign_keys=[("class_id", "classes", "id"), ("teacher_id", "users", "id")],
    )
    db.create_table(
        "enrolments",
        {"class_id": int, "learner_id": int, "enrolled_at": str},
        pk=("class_id", "learner_id"),
        foreign_keys=[("class_id", "classes", "id"), ("learner_id", "users", "id")],
        not_null={"enrolled_at"},
    )
    db.execute("CREATE INDEX enrolments_learner ON enrolments(learner_id)")
    db.execute("CREATE INDEX class_teachers_teacher ON class_teachers(teacher_id)")

    db.create_table(
        "packs",
        {
            "id": str,
            "version": str,
            "title": str,
            "language": str,
            "licence": str,
            "authors": str,  # JSON list
            "description": str,
            "subjects": str,  # JSON list of {id, title}
            "imported_at": str,
            "imported_by": int,
        },
        pk="id",
        not_null={"version", "title", "language", "licence", "authors", "imported_at"},
    )
    db.create_table(
        "skills",
        {"id": str, "pack_id": str, "name": str, "subject": str, "description": str},
        pk="id",
        foreign_keys=[("pack_id", "packs", "id")],
        not_null={"pack_id", "name"},
    )
    db.create_table(
        "lessons",
        {
            "id": str,
            "pack_id": str,
            "subject": str,
            "title": str,
            "summary": str,
            "position": int,
            "body_md": str,
            "body_html": str,
            "skills": str,  # JSON list of skill ids
            "retired": int,
            "updated_at": str,
        },
        pk="id",
        foreign_keys=[("pack_id", "packs", "id")],
        not_null={"pack_id", "subject", "title", "position", "body_md", "body_html", "retired"},
        defaults={"retired": 0},
    )
    db.create_table(
        "items",
        {
            "id": str,
            "pack_id": str,
            "lesson_id": str,
            "type": str,
            "position": int,
            "prompt_html": str,
            "choices": str,  # JSON list of rendered HTML, multiple choice only
            "answer": str,  # JSON answer key: never sent to a learner's browser
            "hints": str,  # JSON list of rendered HTML
            "explanation_html": str,
            "retired": int,
        },
        pk="id",
        foreign_keys=[("pack_id", "packs", "id"), ("lesson_id", "lessons", "id")],
        not_null={"pack_id", "lesson_id", "type", "position", "prompt_html", "answer", "retired"},
        defaults={"retired": 0},
    )
    db.execute("CREATE INDEX items_lesson ON items(lesson_id, position)")
    db.create_table(
        "item_skills",
        {"item_id": str, "skill_id": str},
        pk=("item_id", "skill_id"),
        foreign_keys=[("item_id", "items", "id"), ("skill_id", "skills", "id")],
    )
    db.execute("CREATE INDEX item_skills_skill ON item_skills(skill_id)")
    # Passages (a lesson split at its headings) for search now and the tutor later.
    db.execute(
        "CREATE VIRTUAL TABLE passages USING fts5("
        "lesson_id UNINDEXED, heading, body, tokenize='porter unicode61')"
    )

    db.create_table(
        "assignments",
        {"id": int, "class_id": int, "lesson_id": str, "assigned_by": int, "assigned_at": str},
        pk="id",
        foreign_keys=[("class_id", "classes", "id"), ("lesson_id", "lessons", "id")],
        not_null={"class_id", "lesson_id", "assigned_at"},
    )
    db.execute("CREATE UNIQUE INDEX assignments_class_lesson ON assignments(class_id, lesson_id)")

    # Append-only: a learner's answers. Rows are only ever inserted, or deleted when
    # a learner is erased; the trigger refuses any update.
    db.create_table(
        "attempts",
        {
            "id": str,  # UUIDv7: time-ordered, unique across boxes
            "learner_id": int,
            "item_id": str,
            "lesson_id": str,
            "response": str,
            "correct": int,
            "hints_used": int,
            "duration_ms": int,
            "created_at": str,
            "client_key": str,  # the browser's id for this answer: a resend is not a new attempt
        },
        pk="id",
        foreign_keys=[
            ("learner_id", "users", "id"),
            ("item_id", "items", "id"),
            ("lesson_id", "lessons", "id"),
        ],
        not_null={"learner_id", "item_id", "lesson_id", "correct", "hints_used", "created_at"},
        defaults={"hints_used": 0},
    )
    db.execute("CREATE INDEX attempts_learner ON attempts(learner_id, id)")
    db.execute("CREATE INDEX attempts_item ON attempts(item_id)")
    db.execute(
        "CREATE UNIQUE INDEX attempts_client_key ON attempts(learner_id, client_key)"
        " WHERE client_key IS NOT NULL"
    )
    db.execute(
        "CREATE TRIGGER attempts_append_only BEFORE UPDATE ON attempts "
        "BEGIN SELECT RAISE(ABORT, 'attempts are append-only'); END"
    )

    # Who did what to whose data. Never updated, never deleted.
    db.create_table(
        "audit_log",
        {
            "id": str,
            "at": str,
            "actor_id": int,
            "actor_role": str,
            "action": str,
            "target_type": str,
            "target_id": str,
            "detail": str,  # JSON, never personal data
        },
        pk="id",
        not_null={"at", "action"},
    )
    db.execute("CREATE INDEX audit_log_action ON audit_log(action, id)")
    db.execute("CREATE INDEX audit_log_actor ON audit_log(actor_id, id)")
    for event in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )
    # What an erasure leaves behind, so sync can carry it upstream (no personal data).
    db.create_table(
        "tombstones",
        {"public_id": str, "erased_at": str, "erased_by": int},
        pk="public_id",
        not_null={"erased_at"},
    )
    db.create_table(
        "login_failures",
        {"id": int, "subject": str, "at": float},
        pk="id",
        not_null={"subject", "at"},
    )
    db.execute("CREATE INDEX login_failures_subject ON login_failures(subject, at)")


def _v2_picture_codes(db: sqlite_utils.Database) -> None:
    """Young learners may sign in with a sequence of pictures instead of a number PIN."""
    db.execute("ALTER TABLE users ADD COLUMN sign_in_with TEXT NOT NULL DEFAULT 'pin'")


def _v3_tutor_conversations(db: sqlite_utils.Database) -> None:
    """What learners asked the tutor and what it said, for teachers to read (issue 4).

    The question is stored masked (no names, phone numbers or e-mail addresses), the
    rows never leave the box, and a housekeeping job deletes them after the retention
    period.
    """
    db.create_table(
        "tutor_messages",
        {
            "id": str,  # UUIDv7
            "learner_id": int,
            "lesson_id": str,
            "item_id": str,  # the practice item open when asked, if any
            "question": str,  # masked
            "answer": str,
            "sources": str,  # JSON: the lesson passages the answer was grounded in
            "outcome": str,  # answered, from_lessons, refused, busy
            "model": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("learner_id", "users", "id")],
        not_null={"learner_id", "question", "answer", "sources", "outcome", "created_at"},
    )
    db.execute("CREATE INDEX tutor_messages_learner ON tutor_messages(learner_id, created_at)")
    db.execute("CREATE INDEX tutor_messages_created ON tutor_messages(created_at)")


def _v4_knowledge_tracing(db: sqlite_utils.Database) -> None:
    """Mastery per learner x skill, the model states behind it, the model's prediction
    for each answer, and why each practice item was chosen (issue 5).

    A follower job fills these from the append-only attempts, in attempt order, so an
    answer's request never waits for the model (appliance/knowledge/tracing.py).
    """
    db.create_table(
        "mastery",
        {
            "learner_id": int,
            "skill_id": str,
            "p": float,  # chance of a right answer on an average item of the skill
            "attempts": int,  # answers on the skill traced under `model`
            "history": str,  # JSON: p after each of the last answers, oldest first
            "state": bytes,  # the model's skill state (float32 vector)
            "model": str,  # the model the state belongs to
            "updated_at": str,
            # knowledge_cursor.changes when last written: a counter that only goes up,
            # which sync follows (a clock can go back on a box without a battery clock)
            "changed": int,
        },
        pk=("learner_id", "skill_id"),
        foreign_keys=[("learner_id", "users", "id"), ("skill_id", "skills", "id")],
        not_null={"p", "attempts", "history", "state", "model", "updated_at", "changed"},
    )
    db.create_table(
        "learner_states",
        {"learner_id": int, "state": bytes, "model": str, "updated_at": str},
        pk="learner_id",
        foreign_keys=[("learner_id", "users", "id")],
        not_null={"state", "model", "updated_at"},
    )
    # What the model predicted for each answer from the history before it: the box's
    # live AUC and calibration are read from here.
    db.create_table(
        "predictions",
        {"attempt_id": str, "model": str, "p": float, "made_at": str},
        pk=("attempt_id", "model"),
        foreign_keys=[("attempt_id", "attempts", "id")],
        not_null={"p", "made_at"},
    )
    # Answers and right answers per item and per skill that the follower has traced:
    # an item's difficulty on this box is one lookup.
    db.execute(
        "CREATE TABLE answer_counts (kind TEXT NOT NULL, id TEXT NOT NULL,"
        " answers INTEGER NOT NULL, right_answers INTEGER NOT NULL,"
        " PRIMARY KEY (kind, id)) WITHOUT ROWID"
    )
    # The model's chance that a learner answers an item right now, for the items of the
    # lessons they practise: refreshed by the follower, so choosing the next item is a
    # lookup, not a model run inside the learner's request.
    db.create_table(
        "chances",
        {"learner_id": int, "item_id": str, "p": float, "model": str, "updated_at": str},
        pk=("learner_id", "item_id"),
        foreign_keys=[("learner_id", "users", "id")],
        not_null={"p", "model", "updated_at"},
    )
    # One row: how far the follower has got, and under which model. It follows the
    # attempts' rowid, not their UUIDv7 id: rowids are handed out under the write lock, so
    # they rise in commit order (an answer whose id was made earlier can commit later).
    db.execute(
        "CREATE TABLE knowledge_cursor (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " last_rowid INTEGER NOT NULL, model TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " changes INTEGER NOT NULL DEFAULT 0)"
    )
    db.create_table(
        "recommendations",
        {
            "id": str,  # UUIDv7
            "learner_id": int,
            "item_id": str,
            "lesson_id": str,
            "p": float,  # the predicted chance of success, NULL under the rule
            "rule": str,  # "model" or "rule"
            "reason": str,  # in words, for a teacher or auditor
            "model": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("learner_id", "users", "id")],
        not_null={"learner_id", "item_id", "lesson_id", "rule", "reason", "created_at"},
    )
    db.execute("CREATE INDEX recommendations_learner ON recommendations(learner_id, id)")
    db.execute("CREATE INDEX mastery_changed ON mastery(changed)")


def _v5_sync_outbox(db: sqlite_utils.Database) -> None:
    """Bundles sealed for the district and how far each record type has been sealed
    (issue 6). A bundle's file and its row appear together or not at all
    (sync/box/outbox.py)."""
    db.execute(
        "CREATE TABLE sync_outbox (seq INTEGER PRIMARY KEY, file TEXT NOT NULL,"
        " digest TEXT NOT NULL, bytes INTEGER NOT NULL, counts TEXT NOT NULL,"
        " created_at TEXT NOT NULL, sent_at TEXT, acked_at TEXT)"
    )
    # Record type -> the mark after the last record sealed (a rowid, a time or a day).
    db.execute("CREATE TABLE sync_marks (kind TEXT PRIMARY KEY, mark TEXT NOT NULL)")
    # District updates (content packs, models) this box has applied: none twice.
    db.execute(
        "CREATE TABLE sync_updates (sha256 TEXT PRIMARY KEY, kind TEXT NOT NULL,"
        " name TEXT NOT NULL, version TEXT NOT NULL, outcome TEXT NOT NULL,"
        " applied_at TEXT NOT NULL)"
    )


def _v6_sign_in_safety(db: sqlite_utils.Database) -> None:
    """The school chooses how many digits new learner PINs have (issue 13): 4 is quick
    for young learners, 6 makes guessing 100 times slower."""
    db.execute("ALTER TABLE site ADD COLUMN pin_digits INTEGER NOT NULL DEFAULT 4")


def _v7_groups_and_due_dates(db: sqlite_utils.Database) -> None:
    """Groups inside a class, lessons set for a group or chosen learners, and due dates
    (issue 17). An assignment with no recipients is for the whole class, as before."""
    db.execute(
        "CREATE TABLE class_groups (id INTEGER PRIMARY KEY,"
        " class_id INTEGER NOT NULL REFERENCES classes(id),"
        " name TEXT NOT NULL, created_at TEXT NOT NULL)"
    )
    db.execute(
        "CREATE UNIQUE INDEX class_groups_name ON class_groups(class_id, name COLLATE NOCASE)"
    )
    db.execute(
        "CREATE TABLE group_members ("
        " group_id INTEGER NOT NULL REFERENCES class_groups(id) ON DELETE CASCADE,"
        " learner_id INTEGER NOT NULL REFERENCES users(id), PRIMARY KEY (group_id, learner_id))"
    )
    db.execute("CREATE INDEX group_members_learner ON group_members(learner_id)")
    # The school's own calendar day (YYYY-MM-DD), not a UTC instant: "due Friday" means
    # by the end of Friday where the school is.
    db.execute("ALTER TABLE assignments ADD COLUMN due_on TEXT")
    db.execute(
        "CREATE TABLE assignment_recipients ("
        " assignment_id INTEGER NOT NULL REFERENCES assignments(id) ON DELETE CASCADE,"
        " group_id INTEGER REFERENCES class_groups(id),"
        " learner_id INTEGER REFERENCES users(id),"
        " CHECK ((group_id IS NULL) <> (learner_id IS NULL)))"
    )
    db.execute(
        "CREATE UNIQUE INDEX assignment_recipients_once ON assignment_recipients"
        "(assignment_id, ifnull(group_id, 0), ifnull(learner_id, 0))"
    )
    db.execute("CREATE INDEX assignment_recipients_group ON assignment_recipients(group_id)")
    # Who is set which lesson, in one place: the whole class where an assignment names
    # no recipients, else its learners and the members of its groups (enrolled ones only).
    db.execute(
        "CREATE VIEW assigned_lessons AS"
        " SELECT e.learner_id, a.id AS assignment_id, a.class_id, a.lesson_id,"
        " a.assigned_at, a.due_on FROM assignments a"
        " JOIN enrolments e ON e.class_id = a.class_id"
        " WHERE NOT EXISTS (SELECT 1 FROM assignment_recipients r WHERE r.assignment_id = a.id)"
        " OR EXISTS (SELECT 1 FROM assignment_recipients r WHERE r.assignment_id = a.id"
        "  AND (r.learner_id = e.learner_id OR r.group_id IN"
        "  (SELECT m.group_id FROM group_members m WHERE m.learner_id = e.learner_id)))"
    )


def _v8_quizzes(db: sqlite_utils.Database) -> None:
    """Quizzes a teacher sets (issue 17): fixed items, for the class, groups or chosen
    learners, opened and closed by the teacher or a time window. A quiz answer is an
    attempt like any other (append-only, traced), marked with its quiz; one per item."""
    db.execute(
        "CREATE TABLE quizzes (id INTEGER PRIMARY KEY,"
        " class_id INTEGER NOT NULL REFERENCES classes(id), title TEXT NOT NULL,"
        " state TEXT NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'open', 'closed')),"
        " opens_at TEXT, closes_at TEXT,"  # optional window, UTC like every other time
        " created_by INTEGER, created_at TEXT NOT NULL, started_at TEXT, closed_at TEXT)"
    )
    db.execute("CREATE INDEX quizzes_class ON quizzes(class_id)")
    db.execute(
        "CREATE TABLE quiz_items (quiz_id INTEGER NOT NULL REFERENCES quizzes(id)"
        " ON DELETE CASCADE, position INTEGER NOT NULL,"
        " item_id TEXT NOT NULL REFERENCES items(id), PRIMARY KEY (quiz_id, position))"
    )
    db.execute("CREATE UNIQUE INDEX quiz_items_once ON quiz_items(quiz_id, item_id)")
    db.execute(
        "CREATE TABLE quiz_recipients ("
        " quiz_id INTEGER NOT NULL REFERENCES quizzes(id) ON DELETE CASCADE,"
        " group_id INTEGER REFERENCES class_groups(id),"
        " learner_id INTEGER REFERENCES users(id),"
        " CHECK ((group_id IS NULL) <> (learner_id IS NULL)))"
    )
    db.execute(
        "CREATE UNIQUE INDEX quiz_recipients_once ON quiz_recipients"
        "(quiz_id, ifnull(group_id, 0), ifnull(learner_id, 0))"
    )
    db.execute("CREATE INDEX quiz_recipients_group ON quiz_recipients(group_id)")
    # Who started and who finished: the teacher's live view.
    db.execute(
        "CREATE TABLE quiz_takers (quiz_id INTEGER NOT NULL REFERENCES quizzes(id)"
        " ON DELETE CASCADE, learner_id INTEGER NOT NULL REFERENCES users(id),"
        " started_at TEXT NOT NULL, finished_at TEXT, PRIMARY KEY (quiz_id, learner_id))"
    )
    # Who is set which quiz: the same rule as assigned_lessons.
    db.execute(
        "CREATE VIEW assigned_quizzes AS"
        " SELECT e.learner_id, q.id AS quiz_id, q.class_id FROM quizzes q"
        " JOIN enrolments e ON e.class_id = q.class_id"
        " WHERE NOT EXISTS (SELECT 1 FROM quiz_recipients r WHERE r.quiz_id = q.id)"
        " OR EXISTS (SELECT 1 FROM quiz_recipients r WHERE r.quiz_id = q.id"
        "  AND (r.learner_id = e.learner_id OR r.group_id IN"
        "  (SELECT m.group_id FROM group_members m WHERE m.learner_id = e.learner_id)))"
    )
    db.execute("ALTER TABLE attempts ADD COLUMN quiz_id INTEGER REFERENCES quizzes(id)")
    db.execute(
        "CREATE UNIQUE INDEX attempts_quiz_item ON attempts(quiz_id, learner_id, item_id)"
        " WHERE quiz_id IS NOT NULL"
    )


def _v9_lesson_views(db: sqlite_utils.Database) -> None:
    """When a learner opened a lesson (issue 17): a lesson without practice counts as done
    once read, and the teacher's reports estimate time spent from views and answers."""
    db.execute(
        "CREATE TABLE lesson_views (learner_id INTEGER NOT NULL REFERENCES users(id),"
        " lesson_id TEXT NOT NULL REFERENCES lessons(id), at TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX lesson_views_learner ON lesson_views(learner_id, at)")


def _audience_view(view: str, table: str, key: str, recipients: str, columns: str) -> str:
    """A view of who is set a piece of work: the whole class where the work names no
    recipients, else its chosen learners and its groups' members (enrolled ones only)."""
    return (
        f"CREATE VIEW {view} AS SELECT e.learner_id, {columns} FROM {table} w"  # noqa: S608
        " JOIN enrolments e ON e.class_id = w.class_id"
        f" WHERE NOT EXISTS (SELECT 1 FROM {recipients} r WHERE r.{key} = w.id)"
        f" OR EXISTS (SELECT 1 FROM {recipients} r WHERE r.{key} = w.id"
        "  AND (r.learner_id = e.learner_id OR r.group_id IN"
        "  (SELECT m.group_id FROM group_members m WHERE m.learner_id = e.learner_id)))"
    )


def _v10_class_lessons(db: sqlite_utils.Database) -> None:
    """Lessons a teacher composes for a class from any pack's readings and questions, in
    their own order, without changing the packs (issue 17)."""
    db.execute(
        "CREATE TABLE class_lessons (id INTEGER PRIMARY KEY,"
        " class_id INTEGER NOT NULL REFERENCES classes(id), title TEXT NOT NULL,"
        " due_on TEXT, created_by INTEGER, created_at TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX class_lessons_class ON class_lessons(class_id)")
    # A part is a pack lesson's reading (item_id NULL) or one of its questions.
    db.execute(
        "CREATE TABLE class_lesson_parts (class_lesson_id INTEGER NOT NULL"
        " REFERENCES class_lessons(id) ON DELETE CASCADE, position INTEGER NOT NULL,"
        " lesson_id TEXT NOT NULL REFERENCES lessons(id), item_id TEXT REFERENCES items(id),"
        " PRIMARY KEY (class_lesson_id, position))"
    )
    db.execute(
        "CREATE TABLE class_lesson_recipients ("
        " class_lesson_id INTEGER NOT NULL REFERENCES class_lessons(id) ON DELETE CASCADE,"
        " group_id INTEGER REFERENCES class_groups(id),"
        " learner_id INTEGER REFERENCES users(id),"
        " CHECK ((group_id IS NULL) <> (learner_id IS NULL)))"
    )
    db.execute("CREATE INDEX class_lesson_recipients_group ON class_lesson_recipients(group_id)")
    db.execute(
        _audience_view(
            "assigned_class_lessons", "class_lessons", "class_lesson_id",
            "class_lesson_recipients", "w.id AS class_lesson_id, w.class_id, w.due_on",
        )
    )  # fmt: skip


def _v11_item_search(db: sqlite_utils.Database) -> None:
    """Questions in the search (issue 17): each current item's text and choices, indexed
    as lessons' passages are; kept by the pack importer."""
    db.execute(
        "CREATE VIRTUAL TABLE item_search USING fts5("
        "item_id UNINDEXED, lesson_id UNINDEXED, body, tokenize='porter unicode61')"
    )
    found = db.conn.execute(
        "SELECT id, lesson_id, prompt_html, choices FROM items WHERE retired = 0"
    ).fetchall()
    db.conn.executemany(
        "INSERT INTO item_search (item_id, lesson_id, body) VALUES (?, ?, ?)",
        [(r[0], r[1], content.item_text(r[2], r[3])) for r in found],
    )


def _v12_resources(db: sqlite_utils.Database) -> None:
    """Pack resources (issue 17): video, audio, PDF, EPUB and HTML5 apps tied to lessons;
    an EPUB's pages as the box renders them; each learner's progress with each (opened,
    done); their titles in the search; and resources as parts of composed lessons."""
    db.execute(
        "CREATE TABLE resources (id TEXT PRIMARY KEY, pack_id TEXT NOT NULL REFERENCES packs(id),"
        " lesson_id TEXT NOT NULL REFERENCES lessons(id), kind TEXT NOT NULL,"
        " title TEXT NOT NULL, description TEXT NOT NULL DEFAULT '', file TEXT NOT NULL,"
        " mime TEXT NOT NULL, bytes INTEGER NOT NULL, duration_s REAL,"
        " captions TEXT NOT NULL DEFAULT '[]', licence TEXT NOT NULL,"
        " attribution TEXT NOT NULL DEFAULT '', position INTEGER NOT NULL,"
        " retired INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute("CREATE INDEX resources_lesson ON resources(lesson_id)")
    db.execute(
        "CREATE TABLE resource_pages (resource_id TEXT NOT NULL REFERENCES resources(id),"
        " page INTEGER NOT NULL, title TEXT NOT NULL, html TEXT NOT NULL,"
        " PRIMARY KEY (resource_id, page))"
    )
    db.execute(
        "CREATE TABLE resource_progress (learner_id INTEGER NOT NULL REFERENCES users(id),"
        " resource_id TEXT NOT NULL REFERENCES resources(id), opened_at TEXT NOT NULL,"
        " done_at TEXT, PRIMARY KEY (learner_id, resource_id))"
    )
    db.execute(
        "CREATE VIRTUAL TABLE resource_search USING fts5("
        "resource_id UNINDEXED, lesson_id UNINDEXED, body, tokenize='porter unicode61')"
    )
    db.execute(
        "ALTER TABLE class_lesson_parts ADD COLUMN resource_id TEXT REFERENCES resources(id)"
    )


def _v13_languages(db: sqlite_utils.Database) -> None:
    """The interface's language (issue 17): the box's, chosen by the admin, and each
    user's own choice (NULL: the box's)."""
    db.execute("ALTER TABLE site ADD COLUMN language TEXT NOT NULL DEFAULT 'en'")
    db.execute("ALTER TABLE users ADD COLUMN language TEXT")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1_foundation,
    _v2_picture_codes,
    _v3_tutor_conversations,
    _v4_knowledge_tracing,
    _v5_sync_outbox,
    _v6_sign_in_safety,
    _v7_groups_and_due_dates,
    _v8_quizzes,
    _v9_lesson_views,
    _v10_class_lessons,
    _v11_item_search,
    _v12_resources,
    _v13_languages,
]
CURRENT_VERSION = len(MIGRATIONS)


def version(db: sqlite_utils.Database) -> int:
    """The schema version the database file is at."""
    return db.conn.execute("PRAGMA user_version").fetchone()[0]


def check_not_newer(db: sqlite_utils.Database) -> None:
    """Refuse a database a newer Schoolbox wrote: we cannot know its shape."""
    found = version(db)
    if found > CURRENT_VERSION:
        raise SchemaTooNew(
            f"The database is at schema version {found}, but this Schoolbox only knows "
            f"versions up to {CURRENT_VERSION}. It was written by a newer Schoolbox: "
            "install that version again (or restore a backup made with this one)."
        )


def migrate(db: sqlite_utils.Database) -> int:
    """Bring the schema to the current version; return the number of migrations applied."""
    check_not_newer(db)
    applied = 0
    while True:
        with transaction(db):
            # Read the version inside the write lock: another process may have just migrated.
            number = version(db) + 1
            if number > CURRENT_VERSION:
                return applied
            MIGRATIONS[number - 1](db)
            db.execute(f"PRAGMA user_version={number}")
        applied += 1
