"""Practice: grading an answer against an item's key, and choosing the next item."""

from __future__ import annotations

import re
from fractions import Fraction

import sqlite_utils

from .store import one

MAX_RESPONSE = 500
_NUMBER_RE = re.compile(r"^([+-]?)(?:(\d+)\s+)?(\d+(?:[.,]\d+)?)(?:\s*/\s*(\d+(?:[.,]\d+)?))?$")


def parse_number(text: str) -> Fraction | None:
    """A typed number: '0.5', '0,5', '1/2', '-3' or a mixed number '1 1/2'; None if not one."""
    match = _NUMBER_RE.match((text or "").strip())
    if not match:
        return None
    sign, whole, top, bottom = match.groups()
    value = Fraction(top.replace(",", "."))
    if bottom is not None:
        bottom_value = Fraction(bottom.replace(",", "."))
        if bottom_value == 0:
            return None
        value /= bottom_value
    elif whole is not None:
        return None  # "1 5" is not a number
    if whole is not None:
        value += int(whole)
    return -value if sign == "-" else value


def _normalise(text: str, case_sensitive: bool) -> str:
    text = " ".join((text or "").split())
    return text if case_sensitive else text.casefold()


def grade(item: dict, response: str) -> bool:
    """True if `response` answers the item correctly."""
    key = item["answer"]
    if item["type"] == "multiple_choice":
        return response.strip() == str(key["index"])
    if item["type"] == "numeric":
        given = parse_number(response)
        if given is None:
            return False
        expected = Fraction(str(key["value"]))
        return abs(given - expected) <= Fraction(str(key["tolerance"]))
    wanted = {_normalise(a, key["case_sensitive"]) for a in key["accepted"]}
    return _normalise(response, key["case_sensitive"]) in wanted


def is_well_formed(item: dict, response: str) -> str | None:
    """A message for the learner if the response cannot be an answer at all, else None."""
    if not response.strip():
        return "Please give an answer first."
    if len(response) > MAX_RESPONSE:
        return "That answer is too long."
    if item["type"] == "multiple_choice":
        if not response.strip().isdigit() or int(response) >= len(item["choices"] or []):
            return "Please choose one of the answers."
    if item["type"] == "numeric" and parse_number(response) is None:
        return "Please type a number, like 3, 0.5 or 1/2."
    return None


def next_item_id(
    db: sqlite_utils.Database, learner_id: int, lesson_id: str, avoid: str | None = None
) -> str | None:
    """The item to practise next in a lesson: unseen first, then last answered wrong, then oldest.

    Never the item just answered (`avoid`) while another is left. The rule the box
    uses until a knowledge-tracing model is active.
    """
    row = one(
        db,
        "SELECT i.id FROM items i LEFT JOIN ("
        "  SELECT item_id, max(id) AS last_id, count(*) AS tries FROM attempts"
        "  WHERE learner_id = ? AND lesson_id = ? GROUP BY item_id"
        ") seen ON seen.item_id = i.id"
        " LEFT JOIN attempts last ON last.id = seen.last_id"
        " WHERE i.lesson_id = ? AND i.retired = 0"
        " ORDER BY i.id = ?, seen.last_id IS NOT NULL, coalesce(last.correct, 0), seen.last_id, i.position"
        " LIMIT 1",
        (learner_id, lesson_id, lesson_id, avoid or ""),
    )
    return row["id"] if row else None
