"""People on the box: staff with passwords, learners with PINs, and erasure."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets

import sqlite_utils
from werkzeug.security import check_password_hash, generate_password_hash

from appliance.messages import LANGUAGES, LazyString
from appliance.messages import lazy as _l
from appliance.store import (
    audiences,
    audit,
    inserted,
    mastery,
    now,
    one,
    recommendations,
    rows,
    throttle,
    value,
)
from appliance.store.attempts import after_deleted as after_attempts_deleted
from appliance.store.ids import uuid7

ROLES = ("learner", "teacher", "admin")
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
PIN_RE = re.compile(r"^[0-9]{4,6}$")
# A picture code is four taps on a grid of nine pictures, stored like a PIN as the
# digits 1-9 (6,561 codes: as strong as a 4-digit PIN, behind the same throttling).
PICTURES = [
    ("1", "sun", _l("sun")),
    ("2", "fish", _l("fish")),
    ("3", "tree", _l("tree")),
    ("4", "star", _l("star")),
    ("5", "apple", _l("apple")),
    ("6", "cat", _l("cat")),
    ("7", "ball", _l("ball")),
    ("8", "house", _l("house")),
    ("9", "moon", _l("moon")),
]  # (digit, picture in templates/_pictures.html, what it is called)
PICTURE_CODE_RE = re.compile(r"^[1-9]{4}$")
SIGN_IN_KINDS = ("pin", "pictures")
MIN_PASSWORD = 10
# zxcvbn's score (0-4) estimates guesses from its lists of the most common passwords,
# words and names (the person's own among them) with small changes, dates and keyboard
# walks: below 3 means under 10^8 guesses, e.g. "password1234" or "amina2026!!".
MIN_PASSWORD_SCORE = 3
# A 4-6 digit PIN cannot resist an offline guess at any hash cost a Raspberry Pi can pay
# per sign-in (10,000 guesses x 10 ms is under two minutes), so a slow hash buys nothing
# and makes a class signing in at once queue. Instead a PIN is stored as
# HMAC-SHA256 under a key derived from the box's secret, which lives outside the
# database: a stolen database alone reveals no PIN, and checking one costs microseconds.
# Online guessing is stopped by sign-in throttling. Staff passwords use werkzeug's scrypt.
PIN_SCHEME = "hmac-sha256"


# Checked against when the account is unknown, so a miss costs the same time as a hit.
@functools.cache
def _dummy_password_hash() -> str:
    return generate_password_hash(secrets.token_hex(8))


class UserError(ValueError):
    """A bad value for a user field, with a message for the person who typed it."""


def validate_username(username: str) -> str:
    username = (username or "").strip().lower()
    if not USERNAME_RE.match(username):
        raise UserError(
            _l(
                "A username is 2-32 lowercase letters, digits, '.', '-' or '_', "
                "starting with a letter or digit."
            )
        )
    return username


def validate_password(password: str, *about: str) -> str:
    """A staff password long enough and not among the most guessed; `about` are the
    person's username and name, which a password must not simply repeat."""
    if len(password or "") < MIN_PASSWORD:
        raise UserError(_l("A password needs at least %(n)d characters.", n=MIN_PASSWORD))
    if len(password) <= 100:  # zxcvbn's time grows with length; past 100 no list helps
        # Loaded here, where a password is set: its word lists hold 13 MB in every process
        # that imports the store (each web worker, the jobs, the tutor) and is never used.
        from zxcvbn import zxcvbn

        words = [w for a in about if a for w in (a, *a.split())]  # "Amina Diallo" -> amina
        if zxcvbn(password, user_inputs=words)["score"] < MIN_PASSWORD_SCORE:
            raise UserError(
                _l(
                    "That password is too easy to guess: it is one of the most common ones "
                    "or close to one. Try a few unrelated words together."
                )
            )
    return password


def validate_pin(pin: str) -> str:
    pin = (pin or "").strip()
    if not PIN_RE.match(pin):
        raise UserError(_l("A PIN is 4 to 6 digits."))
    return pin


def validate_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not 1 <= len(name) <= 80:
        raise UserError(_l("A name is 1 to 80 characters."))
    return name


def pin_hash(pin_key: bytes, public_id: str, pin: str) -> str:
    """The stored form of a learner's PIN; the learner's id keeps equal PINs unequal."""
    digest = hmac.new(pin_key, f"{public_id}:{pin}".encode(), hashlib.sha256).hexdigest()
    return f"{PIN_SCHEME}${digest}"


def new_pin(digits: int = 4) -> str:
    """A random PIN of `digits` (4 or 6, the school's choice) for a new learner."""
    return f"{secrets.randbelow(10**digits):0{digits}d}"


def new_secret(kind: str, digits: int = 4) -> str:
    """A random PIN, or picture code (four digits 1-9), for a learner."""
    if kind == "pictures":
        return "".join(str(1 + secrets.randbelow(9)) for _ in range(4))
    return new_pin(digits)


def validate_secret(kind: str, secret: str) -> str:
    """A learner's PIN or picture code, checked for its kind."""
    if kind not in SIGN_IN_KINDS:
        raise UserError(_l("A learner signs in with a PIN or with pictures."))
    if kind == "pictures":
        secret = (secret or "").strip()
        if not PICTURE_CODE_RE.match(secret):
            raise UserError(_l("A picture code is four pictures."))
        return secret
    return validate_pin(secret)


def picture_names(code: str) -> list[tuple[str, LazyString]]:
    """The (picture, name) sequence a picture code stands for, for the teacher's sheet."""
    by_digit = {digit: (key, name) for digit, key, name in PICTURES}
    return [by_digit[d] for d in code if d in by_digit]


def create_staff(
    db: sqlite_utils.Database,
    actor: audit.Actor,
    role: str,
    display_name: str,
    username: str,
    password: str,
) -> int:
    """Create a teacher or admin; return the new id."""
    if role not in ("teacher", "admin"):
        raise UserError(_l("Staff are teachers or admins."))
    username = validate_username(username)
    if one(db, "SELECT 1 FROM users WHERE username = ?", (username,)):
        raise UserError(_l("The username %(name)s is taken.", name=username))
    user_id = inserted(
        db,
        "INSERT INTO users (public_id, role, display_name, username, password_hash, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            uuid7(),
            role,
            validate_name(display_name),
            username,
            generate_password_hash(validate_password(password, username, display_name)),
            now(),
        ),
    )
    audit.record(db, actor, "user.create", "user", user_id, role=role)
    return user_id


def create_learner(
    db: sqlite_utils.Database,
    actor: audit.Actor,
    display_name: str,
    pin: str,
    pin_key: bytes,
    sign_in_with: str = "pin",
) -> int:
    """Create a learner with a PIN (or picture code); return the new id."""
    public_id = uuid7()
    learner_id = inserted(
        db,
        "INSERT INTO users (public_id, role, display_name, pin_hash, sign_in_with, created_at)"
        " VALUES (?, 'learner', ?, ?, ?, ?)",
        (
            public_id,
            validate_name(display_name),
            pin_hash(pin_key, public_id, validate_secret(sign_in_with, pin)),
            sign_in_with,
            now(),
        ),
    )
    audit.record(db, actor, "user.create", "user", learner_id, role="learner")
    return learner_id


def get(db: sqlite_utils.Database, user_id: int) -> dict | None:
    """A user who has not been erased, or None."""
    row = one(db, "SELECT * FROM users WHERE id = ? AND erased_at IS NULL", (user_id,))
    return dict(row) if row else None


def check_password(db: sqlite_utils.Database, username: str, password: str) -> dict | None:
    """The active staff member with this username and password, or None."""
    row = one(
        db,
        "SELECT * FROM users WHERE username = ? AND active = 1 AND erased_at IS NULL",
        ((username or "").strip().lower(),),
    )
    stored = row["password_hash"] if row else _dummy_password_hash()
    ok = check_password_hash(stored, password or "")
    return dict(row) if row and ok else None


def check_pin(db: sqlite_utils.Database, learner_id: int, pin: str, pin_key: bytes) -> dict | None:
    """The active learner if the PIN matches, or None."""
    row = one(
        db,
        "SELECT * FROM users WHERE id = ? AND role = 'learner' AND active = 1"
        " AND erased_at IS NULL",
        (learner_id,),
    )
    if row and row["pin_hash"]:
        expected = pin_hash(pin_key, row["public_id"], (pin or "").strip())
        if hmac.compare_digest(row["pin_hash"], expected):
            return dict(row)
    return None


def set_pin(
    db: sqlite_utils.Database,
    actor: audit.Actor,
    learner_id: int,
    pin: str,
    pin_key: bytes,
    sign_in_with: str = "pin",
) -> None:
    """Give a learner a new PIN (or picture code) and sign them out everywhere."""
    row = one(db, "SELECT public_id FROM users WHERE id = ? AND role = 'learner'", (learner_id,))
    if row is None:
        raise UserError(_l("There is no such learner."))
    db.conn.execute(
        "UPDATE users SET pin_hash = ?, sign_in_with = ?, session_version = session_version + 1"
        " WHERE id = ?",
        (pin_hash(pin_key, row["public_id"], validate_secret(sign_in_with, pin)), sign_in_with,
         learner_id),
    )  # fmt: skip
    throttle.unlock(db, throttle.learner_account(learner_id))  # a new PIN from the teacher unlocks
    audit.record(db, actor, "learner.pin_reset", "user", learner_id)


def set_password(
    db: sqlite_utils.Database, actor: audit.Actor, user_id: int, password: str
) -> None:
    """Give a staff member a new password and sign them out everywhere."""
    row = one(db, "SELECT username, display_name FROM users WHERE id = ?", (user_id,))
    about = (row["username"], row["display_name"]) if row else ()
    db.conn.execute(
        "UPDATE users SET password_hash = ?, session_version = session_version + 1"
        " WHERE id = ? AND role != 'learner'",
        (generate_password_hash(validate_password(password, *about)), user_id),
    )
    audit.record(db, actor, "user.password_reset", "user", user_id)


def end_sessions(db: sqlite_utils.Database, user_id: int) -> None:
    """Sign a user out on every device (their session cookies name the old version)."""
    db.conn.execute(
        "UPDATE users SET session_version = session_version + 1 WHERE id = ?", (user_id,)
    )


def _is_last_admin(db: sqlite_utils.Database, user_id: int) -> bool:
    others = value(
        db,
        "SELECT count(*) FROM users WHERE role = 'admin' AND active = 1 AND erased_at IS NULL"
        " AND id != ?",
        (user_id,),
    )
    target = one(db, "SELECT role, active FROM users WHERE id = ?", (user_id,))
    return bool(target and target["role"] == "admin" and target["active"] and others == 0)


def set_role(db: sqlite_utils.Database, actor: audit.Actor, user_id: int, role: str) -> None:
    """Move a staff member between teacher and admin (never the last active admin away)."""
    if role not in ("teacher", "admin"):
        raise UserError(_l("Staff are teachers or admins."))
    if role != "admin" and _is_last_admin(db, user_id):
        raise UserError(_l("This is the box's only admin: make someone else admin first."))
    db.conn.execute(
        "UPDATE users SET role = ?, session_version = session_version + 1"
        " WHERE id = ? AND role != 'learner'",
        (role, user_id),
    )
    audit.record(db, actor, "user.role_change", "user", user_id, role=role)


def set_active(db: sqlite_utils.Database, actor: audit.Actor, user_id: int, active: bool) -> None:
    """Switch an account on or off; switching off signs it out everywhere."""
    if not active and _is_last_admin(db, user_id):
        raise UserError(_l("This is the box's only admin: make someone else admin first."))
    db.conn.execute(
        "UPDATE users SET active = ?, session_version = session_version + 1 WHERE id = ?",
        (int(active), user_id),
    )
    audit.record(db, actor, "user.activate" if active else "user.deactivate", "user", user_id)


def set_language(db: sqlite_utils.Database, user_id: int, language: str | None) -> None:
    """A user's own interface language; None follows the box's."""
    if language is not None and language not in LANGUAGES:
        raise UserError(_l("That language is not one this box speaks."))
    db.conn.execute("UPDATE users SET language = ? WHERE id = ?", (language, user_id))


def staff(db: sqlite_utils.Database) -> list[dict]:
    """Every teacher and admin, by name."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT id, role, display_name, username, active, created_at FROM users"
            " WHERE role != 'learner' AND erased_at IS NULL ORDER BY display_name",
        )
    ]


def learners(db: sqlite_utils.Database) -> list[dict]:
    """Every learner not erased, by name, with their classes."""
    return [
        dict(r)
        for r in rows(
            db,
            "SELECT u.id, u.display_name, u.active, u.created_at,"
            " group_concat(c.name, ', ') AS classes FROM users u"
            " LEFT JOIN enrolments e ON e.learner_id = u.id"
            " LEFT JOIN classes c ON c.id = e.class_id"
            " WHERE u.role = 'learner' AND u.erased_at IS NULL"
            " GROUP BY u.id ORDER BY u.display_name",
        )
    ]


def export_learner(db: sqlite_utils.Database, actor: audit.Actor, learner_id: int) -> dict | None:
    """Everything the box holds about one learner, as one JSON-ready dict."""
    learner = get(db, learner_id)
    if not learner or learner["role"] != "learner":
        return None
    classes = rows(
        db,
        "SELECT c.name, e.enrolled_at FROM enrolments e JOIN classes c ON c.id = e.class_id"
        " WHERE e.learner_id = ?",
        (learner_id,),
    )
    attempts = rows(
        db,
        "SELECT id, item_id, lesson_id, response, correct, hints_used, duration_ms, created_at,"
        " quiz_id FROM attempts WHERE learner_id = ? ORDER BY id",
        (learner_id,),
    )
    views = rows(
        db, "SELECT lesson_id, at FROM lesson_views WHERE learner_id = ? ORDER BY at", (learner_id,)
    )
    resources_used = rows(
        db,
        "SELECT resource_id, opened_at, done_at FROM resource_progress WHERE learner_id = ?"
        " ORDER BY opened_at",
        (learner_id,),
    )
    quizzes_taken = rows(
        db,
        "SELECT t.quiz_id, q.title, t.started_at, t.finished_at FROM quiz_takers t"
        " JOIN quizzes q ON q.id = t.quiz_id WHERE t.learner_id = ? ORDER BY t.started_at",
        (learner_id,),
    )
    tutor = rows(
        db,
        "SELECT lesson_id, item_id, question, answer, outcome, created_at FROM tutor_messages"
        " WHERE learner_id = ? ORDER BY id",
        (learner_id,),
    )
    history = rows(
        db,
        "SELECT at, actor_role, action, detail FROM audit_log WHERE (target_type = 'user'"
        " AND target_id = ?) OR actor_id = ? OR json_extract(detail, '$.learner_id') = ?"
        " ORDER BY id",
        (str(learner_id), learner_id, learner_id),
    )
    audit.record(db, actor, "learner.export", "user", learner_id, attempts=len(attempts))
    return {
        "format": "schoolbox-learner-export/1",
        "exported_at": now(),
        "learner": {
            "id": learner["public_id"],
            "name": learner["display_name"],
            "created_at": learner["created_at"],
            "active": bool(learner["active"]),
        },
        "classes": [dict(r) for r in classes],
        "attempts": [dict(r) for r in attempts],
        "lessons_opened": [dict(r) for r in views],
        "resources": [dict(r) for r in resources_used],
        "quizzes": [dict(r) for r in quizzes_taken],
        "tutor_conversations": [dict(r) for r in tutor],
        # What the box estimates about the learner, and why it chose what it offered.
        "mastery": {
            skill: {"p": level["p"], "answers": level["attempts"]}
            for skill, level in mastery.of_learner(db, learner_id).items()
        },
        "recommendations": recommendations.of_learner(db, learner_id, limit=1000),
        "audit_log": [dict(r) for r in history],  # sign-ins, PIN resets, enrolments...
    }


def erase_learner(db: sqlite_utils.Database, actor: audit.Actor, learner_id: int) -> bool:
    """Remove a learner's personal data and attempts; keep a tombstone for sync."""
    learner = get(db, learner_id)
    if not learner or learner["role"] != "learner":
        return False
    at = now()
    mastery.forget_learner(db, learner_id)  # before the attempts its predictions point at
    deleted = db.conn.execute("DELETE FROM attempts WHERE learner_id = ?", (learner_id,)).rowcount
    after_attempts_deleted(db)  # the tracing follower and sync read the log by rowid
    db.conn.execute("DELETE FROM enrolments WHERE learner_id = ?", (learner_id,))
    db.conn.execute("DELETE FROM group_members WHERE learner_id = ?", (learner_id,))
    audiences.forget_learner(db, learner_id)
    db.conn.execute("DELETE FROM quiz_takers WHERE learner_id = ?", (learner_id,))
    db.conn.execute("DELETE FROM lesson_views WHERE learner_id = ?", (learner_id,))
    db.conn.execute("DELETE FROM resource_progress WHERE learner_id = ?", (learner_id,))
    db.conn.execute("DELETE FROM tutor_messages WHERE learner_id = ?", (learner_id,))
    db.conn.execute("DELETE FROM login_failures WHERE subject = ?", (f"learner:{learner_id}",))
    db.conn.execute(
        "UPDATE users SET display_name = 'erased', pin_hash = NULL, active = 0, erased_at = ?,"
        " session_version = session_version + 1 WHERE id = ?",
        (at, learner_id),
    )
    db.conn.execute(
        "INSERT INTO tombstones (public_id, erased_at, erased_by) VALUES (?, ?, ?)",
        (learner["public_id"], at, actor.id),
    )
    audit.record(db, actor, "learner.erase", "user", learner_id, attempts=deleted)
    return True
