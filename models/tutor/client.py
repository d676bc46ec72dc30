"""The tutor as the web app sees it: ask the tutor service, get events back.

This is the models package's small API for the tutor; the app never loads a model
itself. `ask()` yields the service's events ("start", "token", "end"); it raises
`TutorBusy` when the queue is full and `TutorUnavailable` when no model can answer,
so the caller can tell the learner to retry, or answer from the lessons instead.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

CONNECT_TIMEOUT_S = 2.0
WARM_TIMEOUT_S = 0.2  # a page view never waits on the tutor


class TutorUnavailable(Exception):
    """No tutor model can answer now (service down, no model active, or it failed)."""


class TutorBusy(Exception):
    """The tutor's queue is full; ask again after `retry_after` seconds."""

    def __init__(self, retry_after: int, reason: str):
        super().__init__(reason)
        self.retry_after = retry_after
        self.reason = reason


def ask(
    socket_path: Path,
    messages: list[dict],
    learner: str,
    max_tokens: int | None = None,
    max_seconds: float | None = None,
    wait_s: float = 600.0,
) -> Iterator[dict]:
    """Stream one answer's events. Closing the iterator early cancels the answer."""
    request = {
        "messages": messages,
        "learner": learner,
        "max_tokens": max_tokens,
        "max_seconds": max_seconds,
    }
    connection = _connect(socket_path)
    try:
        connection.settimeout(wait_s)
        connection.sendall(json.dumps(request).encode() + b"\n")
        lines = connection.makefile("rb")
        first = True
        for line in lines:
            event = json.loads(line)
            if first and event["event"] == "busy":
                raise TutorBusy(int(event["retry_after"]), event.get("reason", "queue_full"))
            if event["event"] in ("no_model", "error"):
                raise TutorUnavailable(event.get("reason") or event.get("error"))
            first = False
            yield event
            if event["event"] == "end":
                return
        raise TutorUnavailable("the tutor service stopped mid-answer")
    except (OSError, ValueError) as error:
        raise TutorUnavailable(type(error).__name__) from error
    finally:
        connection.close()


def warm(socket_path: Path, messages: list[dict]) -> None:
    """Ask the service to read a lesson's shared part ahead of its questions (`messages`:
    all but the learner's turn). Best effort: a busy or absent service is not an error."""
    try:
        connection = _connect(socket_path, timeout=WARM_TIMEOUT_S)
    except TutorUnavailable:
        return
    try:
        connection.sendall(json.dumps({"op": "warm", "messages": messages}).encode() + b"\n")
    except OSError:
        pass
    finally:
        connection.close()


def status(socket_path: Path) -> dict | None:
    """The service's model and queue, or None when it is not running."""
    try:
        connection = _connect(socket_path)
    except TutorUnavailable:
        return None
    try:
        connection.settimeout(CONNECT_TIMEOUT_S)
        connection.sendall(b'{"op": "status"}\n')
        return json.loads(connection.makefile("rb").readline())
    except (OSError, ValueError):
        return None
    finally:
        connection.close()


def _connect(socket_path: Path, timeout: float = CONNECT_TIMEOUT_S) -> socket.socket:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    try:
        connection.connect(str(socket_path))
    except OSError as error:
        connection.close()
        raise TutorUnavailable("the tutor service is not running") from error
    return connection
