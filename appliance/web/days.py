"""How days and times read to a person, in their language: "due today", "due Friday",
"was due Monday", "Fri 19 Mar, 09:30". Days and times are the school's own: the box's
local clock; the database keeps times in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask_babel import format_date, format_datetime
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
    # A date reads differently from a weekday in most languages ("le 19 mars").
    if ahead > 0:
        return _("due on %(date)s", date=format_date(day, "d MMMM"))
    return _("was due on %(date)s", date=format_date(day, "d MMMM"))


def parse_day(text: str) -> date | None:
    """A day from a date field (YYYY-MM-DD), or None when left empty."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(_("Give the due day as a date, for example 2027-03-19.")) from None


def utc_from_local(text: str) -> str | None:
    """A time a person typed in a datetime-local field (the box's own clock, where the
    school is) as the UTC text the database keeps; None when left empty."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        typed = datetime.fromisoformat(text)
    except ValueError:
        message = _("Give the time as a date and a time, for example 2027-03-19 09:30.")
        raise ValueError(message) from None
    stamp = typed.astimezone(UTC)  # a naive time is the box's local time
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_time(utc: str | None) -> str:
    """A stored UTC time as the school reads it, in their language: "Fri 19 Mar, 09:30"."""
    if not utc:
        return ""
    moment = datetime.fromisoformat(utc.replace("Z", "+00:00")).astimezone()
    return format_datetime(moment.replace(tzinfo=None), "EEE d MMM, HH:mm", rebase=False)


def local_input(utc: str | None) -> str:
    """A stored UTC time as a datetime-local field's value (the box's clock)."""
    if not utc:
        return ""
    moment = datetime.fromisoformat(utc.replace("Z", "+00:00")).astimezone()
    return moment.strftime("%Y-%m-%dT%H:%M")
