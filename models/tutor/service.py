"""The tutor service: the runtime behind a Unix socket, shared by every web worker.

`schoolbox serve` runs several web worker processes; loading the model in each would
multiply its memory and fight over the same cores. So one service process holds the
model, and workers talk to it over a Unix socket in the box's run directory (only
the service user can open it). The protocol is one JSON request line, then JSON
event lines, one per token, until the answer ends; closing the socket cancels.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socketserver
import threading
from pathlib import Path
from typing import cast

from appliance import notify
from appliance.paths import shared_with_group
from models.tutor.client import status
from models.tutor.runtime import Busy, Settings, TutorRuntime

log = logging.getLogger("schoolbox.tutor")
MAX_REQUEST_BYTES = 64 * 1024


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        runtime = cast(_Server, self.server).runtime
        line = self.rfile.readline(MAX_REQUEST_BYTES)
        try:
            request = json.loads(line)
        except ValueError:
            self._send({"event": "error", "error": "bad_request"})
            return
        if request.get("op") == "status":
            self._send({"event": "status", **runtime.status()})
            return
        if request.get("op") == "warm" and isinstance(request.get("messages"), list):
            runtime.warm(request["messages"])  # read ahead; nothing to answer
            return
        try:
            job = runtime.submit(
                request["messages"],
                str(request.get("learner", "")),
                request.get("max_tokens"),
                request.get("max_seconds"),
            )
        except Busy as busy:
            self._send({"event": "busy", "retry_after": busy.retry_after, "reason": busy.reason})
            return
        except (KeyError, TypeError):
            self._send({"event": "error", "error": "bad_request"})
            return
        limits = runtime.settings
        # A safety net only: the wait, the reading and the writing each have their own cap.
        longest = limits.max_wait_seconds + limits.max_prompt_seconds + limits.max_seconds + 30
        try:
            for event in job.stream(timeout=longest, heartbeat=lambda: runtime.heartbeat(job)):
                self._send(event)
        except (OSError, queue.Empty):
            runtime.cancel(job)  # the web worker (and so the learner) went away

    def _send(self, event: dict) -> None:
        self.wfile.write(json.dumps(event).encode() + b"\n")
        self.wfile.flush()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # A class asks at once: socketserver's backlog of 5 made the 6th learner's connect
    # wait past the client's timeout, and that learner got the lessons instead.
    request_queue_size = 128
    runtime: TutorRuntime


def serve(home: Path, socket_path: Path, settings: Settings | None = None) -> None:
    """Load the active tutor model and answer on `socket_path` until SIGTERM."""

    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if status(socket_path) is not None:
        raise SystemExit(f"A tutor service already answers on {socket_path}; not starting another.")
    socket_path.unlink(missing_ok=True)  # left by a service that died
    _yield_to_pages()
    runtime = TutorRuntime(home, settings).start()
    # The socket is for the service's user alone, or for the services' group where the
    # data folder is shared with one (the image: the web app runs as another user).
    old_umask = os.umask(0o007 if shared_with_group(socket_path.parent) else 0o077)
    try:
        server = _Server(str(socket_path), _Handler)
    finally:
        os.umask(old_umask)
    server.runtime = runtime
    ours = socket_path.stat().st_ino
    signal.signal(signal.SIGTERM, lambda *_: _stop(server))
    log.info("tutor service ready (model: %s)", runtime.status()["model"])
    watchdog = threading.Event()
    notify.ready(f"tutor ready (model: {runtime.status()['model']})")
    notify.keep_alive(lambda: status(socket_path) is not None, watchdog)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        watchdog.set()
        runtime.stop()
        if socket_path.exists() and socket_path.stat().st_ino == ours:  # not a successor's
            socket_path.unlink()


def _stop(server: socketserver.BaseServer) -> None:
    import threading

    threading.Thread(target=server.shutdown, daemon=True).start()


def _yield_to_pages() -> None:
    """A page load for a learner matters more than the speed of one answer."""
    try:
        os.nice(5)
    except OSError:
        pass
