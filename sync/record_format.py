"""The record format: what each field a box sends may hold, checked on every payload.

A stolen or broken box still signs its bundles, so the hub trusts a payload's values no
more than a stranger's: every record type, field name, type, range, length and
character is checked here before anything is applied, and a refusal (400) names the
record and the field. docs/bundle-format.md ("What each field may hold") says the same
in words; sync/policy.py says which fields each record type carries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime

from sync import policy
from sync.bundle import BundleError

INT32 = 2**31 - 1  # PostgreSQL's INTEGER, the hub's narrowest integer column
MAX_DURATION_MS = 3_600_000  # the box caps an answer's time at one hour
MAX_RESPONSE = 500  # characters: the box refuses longer answers (appliance/practice.py)
_PSEUDONYM = re.compile(r"[0-9a-f]{24}")  # sync/policy.py: 24 hex digits of an HMAC
_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_CONTENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # every id a content pack may use
_NAME = re.compile(r"[A-Za-z0-9._+-]{1,128}")  # a model's or the software's version
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_UTC_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?Z)?"
)

Check = Callable[[object], str | None]  # a value -> why it is refused, or None


def _matching(pattern: re.Pattern, says: str, parse: Callable | None = None) -> Check:
    longest = 128  # no pattern here matches more: a longer value is refused unread

    def check(value) -> str | None:
        if not isinstance(value, str):
            return f"is {_kind(value)}, not {says}"
        if len(value) > longest or not pattern.fullmatch(value):
            return f"is {_shown(value)}, not {says}"
        try:
            if parse:
                parse(value.removesuffix("Z"))
        except ValueError:
            return f"is {_shown(value)}, not a real date"
        return None

    return check


def _free_text(longest: int) -> Check:
    def check(value) -> str | None:
        if not isinstance(value, str):
            return f"is {_kind(value)}, not text"
        if len(value) > longest:
            return f"is {len(value):,} characters long, over {longest}"
        try:
            value.encode()
        except UnicodeEncodeError:
            return "is not valid UTF-8 (it holds a lone surrogate)"
        if "\x00" in value:
            return "holds a NUL character"
        return None

    return check


def _integer(low: int, high: int) -> Check:
    def check(value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"is {_kind(value)}, not a whole number"
        if not low <= value <= high:
            return f"is {_shown(value)}, outside {low}-{high:,}"
        return None

    return check


def _fraction(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"is {_kind(value)}, not a number"
    if not math.isfinite(value):
        return f"is {value}, not a finite number"
    if not 0 <= value <= 1:
        return f"is {_shown(value)}, outside 0-1"
    return None


_COUNT = _integer(0, INT32)
# field -> its check; a field in OPTIONAL_VALUES may also be null
FIELDS: dict[str, Check] = {
    "id": _matching(_UUID7, "a UUIDv7"),
    "learner": _matching(_PSEUDONYM, "a pseudonym (24 hex digits)"),
    "class": _matching(_PSEUDONYM, "a pseudonym (24 hex digits)"),
    "item": _matching(_CONTENT_ID, "a content id (1-64 letters, digits, '.', '_', '-')"),
    "lesson": _matching(_CONTENT_ID, "a content id (1-64 letters, digits, '.', '_', '-')"),
    "skill": _matching(_CONTENT_ID, "a content id (1-64 letters, digits, '.', '_', '-')"),
    "correct": _integer(0, 1),
    "hints": _COUNT,
    "duration_ms": _integer(0, MAX_DURATION_MS),
    "response": _free_text(MAX_RESPONSE),
    "p": _fraction,
    "mean_p": _fraction,
    "answers": _COUNT,
    "learners": _COUNT,
    "tutor_questions": _COUNT,
    "model": _matching(_NAME, "a model name (1-128 letters, digits, '.', '_', '+', '-')"),
    "day": _matching(_DAY, "a day (YYYY-MM-DD)", date.fromisoformat),
    "version": _matching(_NAME, "a version (1-128 letters, digits, '.', '_', '+', '-')"),
    "disk_free_mb": _COUNT,
    "database_mb": _COUNT,
    "backlog": _COUNT,
    "erased_at": _matching(_UTC_TIME, "an ISO-8601 UTC time", datetime.fromisoformat),
}
OPTIONAL_VALUES = {"lesson", "hints", "duration_ms", "response", "model", "erased_at"}


def check(records: dict[str, dict]) -> None:
    """Refuse (BundleError, 400) the first record type, field or value outside the
    documented format, naming it; return only if every record may be applied."""
    for kind, table in records.items():
        allowed = policy.FIELDS.get(kind)
        if allowed is None:
            raise BundleError(f"Record type {_shown(kind)} is not one a box may send.")
        fields = table["fields"]
        known = allowed + policy.OPTIONAL.get(kind, [])
        seen = set()
        for name in fields:
            if name not in known:
                raise BundleError(f"{kind} records have a field {_shown(name)} the policy "
                                  f"does not list (it lists {', '.join(known)}).")  # fmt: skip
            if name in seen:
                raise BundleError(f"{kind} records name the field {name!r} twice.")
            seen.add(name)
        missing = [name for name in allowed if name not in fields]
        if missing:
            raise BundleError(f"{kind} records lack the field(s) {', '.join(missing)}.")
        checks = [(name, FIELDS[name], name in OPTIONAL_VALUES) for name in fields]
        for number, row in enumerate(table["rows"], 1):
            for (name, check_value, optional), value in zip(checks, row, strict=True):
                if value is None and optional:
                    continue
                problem = check_value(value)
                if problem:
                    raise BundleError(f"{kind} record {number}, field {name}: the value {problem}.")


def _kind(value) -> str:
    """What a value is, in JSON's words; a number is shown, text is not (it may be long)."""
    names = {type(None): "null", bool: "true or false", str: "text", list: "a list",
             dict: "an object"}  # fmt: skip
    return names.get(type(value)) or _shown(value)


def _shown(value, longest: int = 40) -> str:
    """A value as a message may quote it: short, and with anything odd escaped."""
    text = ascii(value)
    return text if len(text) <= longest else f"{text[:longest]}... ({len(str(value)):,} long)"
