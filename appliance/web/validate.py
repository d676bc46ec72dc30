"""Small parsers for values that arrive in forms, query strings and JSON."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from werkzeug.exceptions import BadRequest

MAX_ID = 2**63 - 1  # SQLite's integer range
_CONTROL = re.compile(r"[\x00-\x20\x7f\\\\]")


def small_int(text: str) -> int:
    """An int that fits SQLite, for `request.form.get(..., type=small_int)`; ValueError if not."""
    value = int(text)
    if not -MAX_ID <= value <= MAX_ID:
        raise ValueError("out of range")
    return value


def form_ids(values: list[str]) -> list[int]:
    """Row ids from a form's checkboxes; 400 for a value our forms never offer (someone
    edited the form)."""
    try:
        ids = [int(v) for v in values]
    except ValueError:
        raise BadRequest() from None
    if not all(0 < i <= MAX_ID for i in ids):
        raise BadRequest()
    return ids


def is_id(value: object) -> bool:
    """True for a JSON number that can be a row id."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def local_path(target: str) -> str | None:
    """`target` if it is a path on this box ('/learn/...'), else None.

    Browsers drop tabs and newlines from URLs and treat a backslash as a slash, so
    '/\\t/evil.example' would leave the box: any such character makes the target unsafe.
    """
    if not target or _CONTROL.search(target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target
