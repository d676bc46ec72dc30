"""When a box may train: the school consented, the hour is in its training window, and
no class is using the box. The classroom always comes first.

The window is local hours `start-end` (wrapping past midnight: "18-6" is 18:00 to
06:00), plus all day at weekends if the school allows it. A box whose learners answered
within the last `idle_minutes` waits, checking again, for up to `wait_seconds`; a class
that is still on by then makes the box sit this round out (the run goes on without it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.store import training_data


class NotNow(RuntimeError):
    """This box sits out this round; the message says why (it reaches the district's log)."""


@dataclass(frozen=True)
class Window:
    hours: str = "18-6"  # local time; "0-24" is any hour
    weekends: bool = True
    idle_minutes: int = 10
    wait_seconds: int = 600

    def __post_init__(self) -> None:
        start, end = _hours(self.hours)
        if not (0 <= start <= 24 and 0 <= end <= 24):
            raise ValueError(f"Training hours must be like 18-6, not {self.hours!r}.")

    def allows(self, moment: datetime) -> bool:
        """Whether local time `moment` lies in the window."""
        if self.weekends and moment.weekday() >= 5:
            return True
        start, end = _hours(self.hours)  # "0-24": any hour; "0-0": weekends only
        hour = moment.hour
        if start == end:
            return False
        return start <= hour < end if start < end else hour >= start or hour < end


def _hours(text: str) -> tuple[int, int]:
    try:
        start, end = (int(part) for part in text.split("-"))
    except ValueError as error:
        raise ValueError(f"Training hours must be like 18-6, not {text!r}.") from error
    return start, end


def check(
    db_path: Path,
    window: Window,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return when this box may train now; raise NotNow when it should sit this round out."""
    if not training_data.consented(db_path):
        raise NotNow("This school has not consented to federated training.")
    if not window.allows(clock()):
        raise NotNow(f"Outside this school's training window ({window.hours}).")
    deadline = clock() + timedelta(seconds=window.wait_seconds)
    while _class_is_on(db_path, window, clock()):
        if clock() >= deadline:
            raise NotNow("Learners are using the box; it sits this round out.")
        sleep(min(30.0, window.wait_seconds / 10 or 1))


def watch(db_path: Path, every_s: float = 10.0) -> Callable[[], None]:
    """A check to call while training: it raises NotNow as soon as a learner answers on
    the box (looked at most every `every_s` seconds), so a class that starts mid-round
    gets the box back within seconds."""
    started = training_data.last_answer_at(db_path)
    looked = time.monotonic()

    def keep_going() -> None:
        nonlocal looked
        if time.monotonic() - looked < every_s:
            return
        looked = time.monotonic()
        latest = training_data.last_answer_at(db_path)
        if latest is not None and (started is None or latest > started):
            raise NotNow("A class started on the box; it stopped training for this round.")

    return keep_going


def _class_is_on(db_path: Path, window: Window, moment: datetime) -> bool:
    latest = training_data.last_answer_at(db_path)
    if latest is None:
        return False
    return moment.astimezone(UTC) - latest < timedelta(minutes=window.idle_minutes)
