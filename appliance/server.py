"""Serving the app with waitress: one process per worker, all sharing the listening port.

A single Python process uses one core at a time (the GIL); a Raspberry Pi 4 has four.
So `schoolbox serve` starts `workers` processes, each running waitress on its own
SO_REUSEPORT socket bound to the same port, and the kernel spreads connections over
them. Sessions live in signed cookies and all state in SQLite (WAL), so any worker can
answer any request. The parent only supervises: it restarts a worker that dies and
stops them all on SIGTERM/SIGINT.

Children never outlive the supervisor: each asks the kernel to kill it when the
supervisor dies (even by kill -9), and each leads its own process group, which the
supervisor signals as a whole when it stops. Otherwise orphaned workers would keep
serving on the port, and SO_REUSEPORT would let a new `serve` share it with them.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.request

from appliance import jobs, notify, paths
from appliance.config import Config
from appliance.logs import event
from appliance.logs import setup as setup_logs
from models.knowledge_tracing import runtime as kt_runtime
from models.tutor import service as tutor_service
from models.tutor import sizing
from models.tutor.runtime import Settings

log = logging.getLogger("schoolbox.server")
# A worker that dies this soon after starting, this many times running, will not start
# at all (a taken port, a broken install): stop and let systemd's policy take over.
QUICK_DEATH_S = 10
MAX_QUICK_DEATHS = 5
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The kinds of metric the web app keeps (appliance/web/metrics.py: counters and histograms)
# and prometheus_client's first size for a file of them, which it grows only when full.
METRIC_KINDS = ("counter", "histogram")
METRIC_FILE_BYTES = 1 << 20
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class PortInUse(OSError):
    """Something already listens on the port; `free` is a nearby port that is free, or None."""

    def __init__(self, port: int, free: int | None):
        super().__init__(errno.EADDRINUSE, f"port {port} is in use")
        self.port, self.free = port, free


def check_port(host: str, port: int) -> None:
    """Raise PortInUse if any socket listens on host:port, including an orphaned worker's.

    The probe binds without SO_REUSEPORT, so it fails where a worker's socket would join
    the listeners already there; nothing is left bound.
    """
    if not _can_bind(host, port):
        free = next((p for p in range(port + 1, min(port + 50, 65536)) if _can_bind(host, p)), None)
        raise PortInUse(port, free)


def _can_bind(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def _stop_waitress_busy_loop() -> None:
    """Keep waitress's main loop from spinning while a worker thread sends a response.

    waitress 3.0 marks a connection writable whenever its output buffer holds data, even
    while the task thread holds the buffer's lock and is sending it itself. The main loop
    then wakes at once, fails to take the lock, and scans every connection again: with a
    class of 300 tablets connected, 94% of its passes did nothing and the loop burned
    more CPU than the app (measured with py-spy; bench/classroom_burst.py went from about
    400 to about 690 answers/s with this). While the lock is held we report "not
    writable"; the task thread flushes what it can and pulls waitress's trigger for the
    rest, and the loop's 1 s timeout bounds any delay. Only for the waitress series this
    was checked against (pyproject pins it).
    """
    from importlib.metadata import version

    from waitress.channel import HTTPChannel

    if not version("waitress").startswith("3.0.") or getattr(HTTPChannel, "_schoolbox", False):
        return
    original = HTTPChannel.writable

    def writable(self):
        if self.requests and self.total_outbufs_len and not self.will_close:
            if not self.outbuf_lock.acquire(blocking=False):
                return False
            self.outbuf_lock.release()
        return original(self)

    HTTPChannel.writable = writable
    HTTPChannel._schoolbox = True


def _drop_slow_headers(timeout_s: int) -> None:
    """Close a connection whose request headers are not complete `timeout_s` after they
    began (or after it opened): a few thousand clients trickling headers a byte at a time
    would otherwise hold every connection slot, since each byte counts as activity for
    waitress's own `channel_timeout`. A slow upload is not affected once its headers are in.
    """
    from waitress.channel import HTTPChannel
    from waitress.server import BaseWSGIServer

    HTTPChannel.header_timeout_s = timeout_s
    if getattr(HTTPChannel, "_schoolbox_headers", False):
        return
    received, maintenance = HTTPChannel.received, BaseWSGIServer.maintenance

    def channel_received(self, data):
        started = getattr(self, "headers_started", self.creation_time)
        result = received(self, data)
        waiting = self.request is not None and not self.request.headers_finished
        self.headers_started = (started or time.time()) if waiting else None
        return result

    def server_maintenance(self, now):
        maintenance(self, now)
        for channel in list(self.active_channels.values()):
            started = getattr(channel, "headers_started", channel.creation_time)
            if started is not None and not channel.requests:
                if now - started > channel.header_timeout_s:
                    channel.will_close = True

    HTTPChannel.received = channel_received
    BaseWSGIServer.maintenance = server_maintenance
    HTTPChannel._schoolbox_headers = True


def _die_with_supervisor(supervisor: int) -> None:
    """Have the kernel kill this process when the supervisor dies, even by kill -9, and lead
    a process group of its own, which the supervisor signals as a whole when it stops."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setpgid(0, 0)
    if os.getppid() != supervisor:  # it died before the request above was in place
        os._exit(1)


def _worker(config: Config, supervisor: int) -> None:
    """One worker process: the app and waitress on its own socket."""
    _die_with_supervisor(supervisor)
    setup_logs(config.log_level)
    _reserve_metric_files()  # before prometheus_client is imported, which reads the folder
    # Only workers load the web app: the supervisor, the follower and the tutor service
    # (spawned, so each imports this module afresh) stay without Flask on a 2 GB box.
    import waitress

    from appliance.web.app import create_app

    _stop_waitress_busy_loop()
    _drop_slow_headers(config.http_header_timeout_s)
    app = create_app(config)
    _warm_up(config)
    # What was loaded so far (Flask, the app, onnxruntime, the model) lives as long as the
    # worker: keep it out of the collector's full passes, which walked it all and paused
    # every thread of the worker for 45-60 ms, now and then in the middle of a class's burst.
    gc.freeze()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    # A whole school may connect at once: raise waitress's default of 100 connections.
    waitress.serve(
        app,
        sockets=[_listening_socket(config.host, config.port)],
        threads=config.threads + config.tutor_streams_per_worker,  # pages keep theirs
        connection_limit=_connections_that_fit(config.http_connection_limit),
        # poll(), not select(): select cannot watch a file number above 1023, and a
        # worker with a school's connections and its own files passes that; the worker
        # died with "filedescriptor out of range in select()" and dropped every class.
        asyncore_use_poll=True,
        channel_timeout=60,
        # How often idle and slow connections are looked for (and closed).
        cleanup_interval=max(1, min(10, config.http_header_timeout_s // 2)),
        ident="schoolbox",
    )


FILES_BESIDE_CONNECTIONS = 256  # the database per thread, logs, metrics, models, pipes


def _connections_that_fit(wanted: int) -> int:
    """The connection limit this worker can keep: its open-file limit is raised to fit
    `wanted` connections and its own files (systemd's default soft limit is 1024), or, where
    the hard limit is lower, the connection limit is lowered to fit, with a log line. Past
    the limit waitress leaves new connections waiting; out of files, accept() would fail
    on every pass of its loop."""
    needed = wanted + FILES_BESIDE_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target >= needed:
        return wanted
    fits = max(1, target - FILES_BESIDE_CONNECTIONS)
    event(log, "connection_limit_lowered", logging.WARNING, configured=wanted, kept=fits,
          open_file_limit=target)  # fmt: skip
    return fits


def _warm_up(config: Config) -> None:
    """Load the knowledge-tracing model before the first request: loading it (onnxruntime,
    the onnx checker) costs over a second of CPU, which the first class of the day would
    otherwise wait on (seen in a profile of the classroom burst: 5% of the server's time)."""

    kt_runtime.active(config.home)


def tutor_settings(config: Config):
    """The tutor runtime's settings from the box's configuration."""

    return Settings(
        queue_size=config.tutor_queue_size,
        max_tokens=config.tutor_max_tokens,
        max_seconds=float(config.tutor_max_seconds),
        max_prompt_seconds=float(config.tutor_max_prompt_seconds),
        max_wait_seconds=float(config.tutor_max_wait_seconds),
        parallel=config.tutor_answers_at_once,
        cache_mb=config.tutor_cache_mb or sizing.cache_mb(),
        temperature=config.tutor_temperature,
        **({"n_threads": config.tutor_threads} if config.tutor_threads else {}),
    )


def _tutor(config: Config, supervisor: int) -> None:
    """The tutor service process: the one place the language model is loaded."""

    _die_with_supervisor(supervisor)
    setup_logs(config.log_level)
    tutor_service.serve(config.home, config.tutor_socket_path, tutor_settings(config))


def run(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, with `config.workers` worker processes."""

    _prepare_metrics_dir(config)
    context = multiprocessing.get_context("spawn")  # no state shared by accident
    workers = [_start(context, config) for _ in range(max(1, config.workers))]
    tutor = _start(context, config, _tutor) if config.tutor_service else None
    tutor_deaths = 0
    scheduler = jobs.start(config) if config.jobs else None
    stopping = False
    tell_systemd = threading.Event()  # set: stop telling systemd anything
    if notify.listening():  # outside systemd its probes would only add to /metrics' counts
        probe = threading.Thread(target=_ready_when_healthy, args=(config, tell_systemd))
        probe.daemon = True
        probe.start()

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    quick_deaths = 0
    try:
        while not stopping:
            for index, process in enumerate(workers):
                if not process.is_alive() and not stopping:
                    event(log, "worker_restart", logging.WARNING, exit_code=process.exitcode)
                    lived = time.monotonic() - process.started_at
                    quick_deaths = quick_deaths + 1 if lived < QUICK_DEATH_S else 0
                    if quick_deaths >= MAX_QUICK_DEATHS:  # cannot start at all
                        stopping = True
                        break
                    workers[index] = _start(context, config)
            if tutor is not None and not tutor.is_alive() and not stopping:
                # Pages never depend on the tutor: if it keeps dying at start (a model too
                # big for memory, say), stop restarting it and let the lessons answer instead.
                lived = time.monotonic() - tutor.started_at
                tutor_deaths = tutor_deaths + 1 if lived < QUICK_DEATH_S * 6 else 1
                event(log, "tutor_restart", logging.WARNING, exit_code=tutor.exitcode)
                if tutor_deaths >= MAX_QUICK_DEATHS:
                    event(log, "tutor_gave_up", logging.ERROR, deaths=tutor_deaths)
                    tutor = None
                else:
                    tutor = _start(context, config, _tutor)
            time.sleep(0.5)
    finally:  # whatever ends the loop, no child is left serving
        tell_systemd.set()
        notify.stopping()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        _stop_children(workers + ([tutor] if tutor is not None else []))
    if quick_deaths >= MAX_QUICK_DEATHS:
        event(log, "workers_keep_dying", logging.ERROR, deaths=quick_deaths)
        raise SystemExit("Schoolbox workers keep dying at start; see the log above.")


def healthz_url(config: Config) -> str:
    """This server's /healthz on loopback, whatever address it listens on."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(config.host, config.host)  # noqa: S104
    return f"http://{f'[{host}]' if ':' in host else host}:{config.port}/healthz"


def answers_healthz(config: Config, timeout_s: float = 5) -> bool:
    """True when a worker answers /healthz: the box really serves, not just runs."""
    try:
        with urllib.request.urlopen(healthz_url(config), timeout=timeout_s) as response:  # noqa: S310 - loopback
            return response.status == 200
    except (OSError, ValueError):
        return False


def _ready_when_healthy(config: Config, stop: threading.Event) -> None:
    """Tell systemd READY=1 once a worker answers /healthz, then keep its watchdog fed
    while they do (the image's schoolbox-web.service)."""
    while not stop.is_set() and not answers_healthz(config):
        stop.wait(0.5)
    if stop.is_set():
        return
    notify.ready(f"serving on port {config.port}")
    notify.keep_alive(lambda: answers_healthz(config), stop)


def _stop_children(children: list) -> None:
    """SIGTERM each child's process group, then SIGKILL what is left after 10 s."""
    for process in children:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in children:
        process.join(timeout=max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            _signal_group(process, signal.SIGKILL)
            process.join(timeout=5)


def _signal_group(process, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the child and anything it started
    except (ProcessLookupError, PermissionError):  # not (yet) leading its own group
        try:
            os.kill(process.pid, signum)
        except ProcessLookupError:
            pass


def _start(context, config: Config, target=_worker):
    process = context.Process(target=target, args=(config, os.getpid()), daemon=True)
    process.start()
    process.started_at = time.monotonic()
    return process


def _prepare_metrics_dir(config: Config) -> None:
    """Workers count requests into shared files here, so /metrics sums every worker."""
    folder = paths.metrics(config.home)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[METRICS_ENV] = str(folder)


def _reserve_metric_files() -> bool:
    """Give this worker's metric files their disk blocks now, or count in memory.

    prometheus_client keeps each process's counts in a file it memory-maps after making
    it 1 MiB long but sparse. When the disk is full, the first write to a page with no
    block behind it is a SIGBUS: the worker dies mid-request (seen in CI's full-disk test).
    So the files it will open (`<kind>_<pid>.db`, prometheus_client.values) are made here
    with every block allocated; it reuses a file that exists. Without the space, this
    worker counts in its own memory (its counts leave /metrics' sum) and says so.
    """
    folder = os.environ.get(METRICS_ENV)
    if not folder:
        return False
    try:
        for kind in METRIC_KINDS:
            path = os.path.join(folder, f"{kind}_{os.getpid()}.db")
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, METRIC_FILE_BYTES)
            finally:
                os.close(fd)
    except OSError as error:
        del os.environ[METRICS_ENV]
        event(log, "metrics_in_memory", logging.WARNING, reason=error.strerror)
        return False
    return True
