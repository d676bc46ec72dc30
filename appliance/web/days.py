"""How a due day reads to a person, in their language: "due today", "due Friday",
"was due Monday", "due 19 March". Days are the school's own calendar days."""

from __future__ import annotations

from datetime import date

from flask_babel import format_date
from flask_babel import gettext as _

WEEK = 7


def due_text(due_on: str | None, today: date | None = None) -> str:
    """The due day of `due_on` (YYYY-MM-DD) said from `today`; "" when there is none."""
    if not due_on:
        return ""
    day = date.fromisoformat(due_on)
    ahead = (day - (today or date.today())).days
    if ahead == 0:
        return _("due today")
    if ahead == 1:
        return _("due tomorrow")
    if ahead == -1:
        return _("was due yesterday")
    if 1 < ahead < WEEK:
        return _("due %(day)s", day=format_date(day, "EEEE"))
    if -WEEK < ahead < -1:
        return _("was due %(day)s", day=format_date(day, "EEEE"))
    if ahead > 0:
        return _("due %(day)s", day=format_date(day, "d MMMM"))
    return _("was due %(day)s", day=format_date(day, "d MMMM"))
