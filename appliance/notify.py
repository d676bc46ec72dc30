"""Telling systemd how a service is doing: ready, still alive (the watchdog), a status line.

The image's units (image/rootfs/usr/lib/systemd/system/) are `Type=notify` with a
watchdog: systemd starts the next unit only once this one says READY=1, and restarts a
service that stops saying WATCHDOG=1 in time. Each service says so only after checking
that it can really serve (the web app: its own /healthz on loopback; the tutor: its
status socket). The protocol is one datagram to $NOTIFY_SOCKET (sd_notify(3)); outside
systemd every call does nothing.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"


def listening() -> bool:
    """True when run by systemd with a notify socket: only then is a check worth making."""
    return os.environ.get(NOTIFY_SOCKET, "")[:1] in ("/", "@")


def send(*fields: str) -> bool:
    """Send `fields` ("READY=1", "STATUS=...") to systemd; False when not run by systemd."""
    if not listening():
        return False
    address = os.environ[NOTIFY_SOCKET]
    if address[0] == "@":  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(fields).encode(), address)
        except OSError:
            return False
    return True


def ready(status: str = "") -> bool:
    return send("READY=1", *([f"STATUS={status}"] if status else []))


def stopping() -> bool:
    return send("STOPPING=1")


def watchdog_interval() -> float | None:
    """Seconds between pings: half the unit's WatchdogSec, or None without a watchdog."""
    try:
        usec = int(os.environ.get(WATCHDOG_USEC, ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


def keep_alive(healthy: Callable[[], bool], stop: threading.Event) -> threading.Thread | None:
    """Ping the watchdog from a thread while `healthy()` holds; a failed check skips the
    ping, so systemd restarts a service that is up but cannot serve. None: no watchdog."""
    interval = watchdog_interval()
    if interval is None:
        return None

    def loop() -> None:
        while not stop.wait(interval):
            if healthy():
                send("WATCHDOG=1")

    thread = threading.Thread(target=loop, name="watchdog", daemon=True)
    thread.start()
    return thread
