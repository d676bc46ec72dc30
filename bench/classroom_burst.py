"""Classroom burst: a whole school signs in at once, opens a lesson and answers questions.

What it measures
    Against the real server (`schoolbox serve`, waitress, on 127.0.0.1), N simulated
    learners (default 300) are released at the same instant. Each one, like a tablet in a
    classroom, on its own connection and with its own cookies:

      1. GET  /api/v1/session                  "session"      (CSRF token)
      2. POST /api/v1/session                  "sign-in"      (learner id + PIN)
      3. GET  /learn/lessons/<id>              "lesson page"  (the HTML page)
      4. GET  /api/v1/lessons/<id>/next-item   "next item"    (first question only)
      5. POST /api/v1/attempts  x answers      "attempt"      (each reply carries the next item)

    It prints requests/s, p50/p95/p99 latency and errors per request type, attempts/s
    sustained (acknowledged attempts / time from the first attempt sent to the last one
    acknowledged), and checks after the run, in the database itself, that every attempt
    acknowledged with 201 was stored (0 lost). For comparison it first runs the same flow
    unloaded, one learner at a time (the baseline), and reports p99 under load as a multiple
    of the unloaded p50. Server-side mean times come from the server's own /metrics, CPU
    seconds from /proc, so the report can say whether time went to work or to waiting.

Targets (a 2-core box, 300 learners): 0 errors, 0 lost, p99 < 250 ms for lesson pages and
attempts, >= 400 attempts/s. A missed target is reported, not fatal: the exit status is
non-zero only when an acknowledged attempt is missing from the database (or the run broke).

Run it from the repository root (setup takes a few seconds: PIN hashes are deliberately slow):

    .venv/bin/python bench/classroom_burst.py
    .venv/bin/python bench/classroom_burst.py --learners 50 --threads 4 --json /tmp/b.json

The load generator (asyncio + aiohttp, one process) shares the machine's cores with the
server; its CPU time is reported next to the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import sqlite_utils
from prometheus_client.parser import text_string_to_metric_families

from appliance import config as config_module
from appliance.demo.seed import seed
from appliance.store import audit, classes, content, open_db, transaction, users
from appliance.store.migrations import migrate

HOST = "127.0.0.1"
PIN = "2468"
CLASS_SIZE = 30
BASELINE_LEARNERS = 5  # run one after another, before the burst
TARGET_P99_MS = 250.0
TARGET_ATTEMPTS_PER_S = 400.0
REQUEST_TIMEOUT_S = 60
KINDS = ("session", "sign-in", "lesson page", "next item", "attempt")
ENDPOINTS = {  # request type -> the Flask endpoint the server's /metrics labels it with
    "session": "api.get_session",
    "sign-in": "api.create_session",
    "lesson page": "learner.lesson",
    "next item": "api.next_item",
    "attempt": "api.submit_attempt",
}
ANSWERS = {"multiple_choice": "0", "numeric": "1", "short_text": "word"}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "classroom_burst.json"


# --- setup (not timed) ------------------------------------------------------------------


@dataclass(frozen=True)
class Learner:
    id: int
    lesson_id: str


def build_school(home: Path, count: int) -> list[Learner]:
    """The demo school plus `count` learners in classes of 30, each class with a lesson."""
    config = config_module.load(home=home)
    home.mkdir(parents=True, exist_ok=True)
    db = open_db(config.db_path)
    try:
        migrate(db)
        config_module.ensure_secret(config)
        seed(db, config)
        lessons = lessons_with_items(db)
        learners: list[Learner] = []
        with transaction(db):
            for index in range(math.ceil(count / CLASS_SIZE)):
                class_id = classes.create(db, audit.SYSTEM, f"Bench {index + 1}", None)
                lesson_id = lessons[index % len(lessons)]
                content.assign(db, audit.SYSTEM, class_id, lesson_id)
                for _ in range(min(CLASS_SIZE, count - len(learners))):
                    name = f"Bench learner {len(learners) + 1}"
                    learner_id = users.create_learner(db, audit.SYSTEM, name, PIN)
                    classes.enrol(db, audit.SYSTEM, class_id, learner_id)
                    learners.append(Learner(learner_id, lesson_id))
    finally:
        db.conn.close()
    return learners


def lessons_with_items(db: sqlite_utils.Database) -> list[str]:
    """Current lessons with two or more current items (practice never repeats an item)."""
    query = (
        "SELECT l.id FROM lessons l JOIN items i ON i.lesson_id = l.id"
        " WHERE l.retired = 0 AND i.retired = 0"
        " GROUP BY l.id HAVING count(*) >= 2 ORDER BY l.subject, l.position, l.id"
    )
    return [row[0] for row in db.conn.execute(query)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def server_command(home: Path, port: int, threads: int) -> list[str]:
    """`schoolbox serve` from this interpreter's environment."""
    script = Path(sys.executable).parent / "schoolbox"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "appliance.cli"]
    serve = ["serve", "--host", HOST, "--port", str(port), "--threads", str(threads)]
    return [*command, "--home", str(home), *serve]


def start_server(
    home: Path, port: int, threads: int, log_level: str, log_path: Path
) -> subprocess.Popen:
    """Start the real server and wait until /readyz answers 200."""
    env = {**os.environ, "SCHOOLBOX_LOG_LEVEL": log_level}
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            server_command(home, port, threads), stdout=log, stderr=subprocess.STDOUT, env=env
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"the server did not become ready; its log:\n{log_path.read_text()[-3000:]}")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_timings(port: int) -> dict[str, tuple[float, float]]:
    """Per endpoint: (seconds, count) of time spent inside the app, from its /metrics."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in (
                "schoolbox_request_seconds_sum",
                "schoolbox_request_seconds_count",
            ):
                continue
            slot = totals.setdefault(sample.labels["endpoint"], [0.0, 0.0])
            slot[0 if sample.name.endswith("_sum") else 1] += sample.value
    return {endpoint: (s, c) for endpoint, (s, c) in totals.items()}


# --- the load ---------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    started: float
    ended: float
    status: int  # 0 when no response came back

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def ms(self) -> float:
        return (self.ended - self.started) * 1000


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # attempt ids answered with 201
    failures: Counter = field(default_factory=Counter)  # (kind, status or exception) -> n


async def call(
    http: aiohttp.ClientSession,
    rec: Recorder,
    kind: str,
    method: str,
    path: str,
    **kwargs: Any,
) -> tuple[int, Any]:
    """One timed request: (status, JSON body or page text); status 0 if it failed outright."""
    started = time.perf_counter()
    status, body = 0, None
    try:
        async with http.request(method, path, **kwargs) as response:
            status = response.status
            is_json = response.content_type == "application/json"
            body = await (response.json() if is_json else response.text())
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        rec.failures[(kind, type(error).__name__)] += 1
        status = 0
    sample = Sample(kind, started, time.perf_counter(), status)
    rec.samples.append(sample)
    if status and not sample.ok:
        rec.failures[(kind, str(status))] += 1
    return status, body


async def learner_flow(
    base_url: str, learner: Learner, answers: int, rec: Recorder, start: asyncio.Event | None
) -> None:
    """One learner's visit: sign in, open the lesson, answer `answers` questions."""
    # One connection per learner, kept alive, like one tablet. Cookie jar "unsafe" so that
    # cookies from an IP address (127.0.0.1) are kept.
    http = aiohttp.ClientSession(
        base_url,
        connector=aiohttp.TCPConnector(limit=1),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )
    async with http:
        if start is not None:
            await start.wait()
        status, body = await call(http, rec, "session", "GET", "/api/v1/session")
        if status != 200:
            return
        credentials = {"learner_id": learner.id, "pin": PIN}
        headers = {"X-CSRFToken": body["csrf_token"]}
        status, body = await call(
            http, rec, "sign-in", "POST", "/api/v1/session", json=credentials, headers=headers
        )
        if status != 200:
            return
        headers = {"X-CSRFToken": body["csrf_token"]}  # signing in starts a new session
        await call(http, rec, "lesson page", "GET", f"/learn/lessons/{learner.lesson_id}")
        item = None
        for number in range(answers):
            if item is None:
                path = f"/api/v1/lessons/{learner.lesson_id}/next-item"
                status, body = await call(http, rec, "next item", "GET", path)
                item = body["item"] if status == 200 else None
                if item is None:
                    continue
            answer = {
                "item_id": item["id"],
                "response": ANSWERS.get(item["type"], "word"),
                "hints_used": 0,
                "client_key": f"bench-{learner.id}-{number:03d}",
            }
            status, body = await call(
                http, rec, "attempt", "POST", "/api/v1/attempts", json=answer, headers=headers
            )
            if status == 201 and body.get("recorded"):
                rec.acknowledged.append(body["attempt_id"])
            item = body.get("next_item") if status in (200, 201) else None


async def run_burst(base_url: str, learners: list[Learner], answers: int) -> tuple[Recorder, float]:
    """Every learner at once; the recorder and the wall time from release to the last reply."""
    rec = Recorder()
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(learner_flow(base_url, learner, answers, rec, start))
        for learner in learners
    ]
    await asyncio.sleep(0.2)  # let every task open its session and wait at the start line
    released = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return rec, time.perf_counter() - released


async def run_baseline(base_url: str, learners: list[Learner], answers: int) -> Recorder:
    """The same flow, unloaded: one learner at a time."""
    rec = Recorder()
    for learner in learners:
        await learner_flow(base_url, learner, answers, rec, None)
    return rec


# --- figures ----------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    if len(values) == 1:
        cuts = values * 99
    else:
        cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49], 1),
        "p95_ms": round(cuts[94], 1),
        "p99_ms": round(cuts[98], 1),
        "max_ms": round(max(values), 1),
    }


def by_kind(rec: Recorder, server: dict[str, tuple[float, float]] | None = None) -> dict:
    """Count, errors and latency percentiles per request type (successful requests only)."""
    figures = {}
    for kind in KINDS:
        samples = [s for s in rec.samples if s.kind == kind]
        ok = [s.ms for s in samples if s.ok]
        row = {"count": len(samples), "errors": len(samples) - len(ok), **percentiles(ok)}
        if server is not None:
            seconds, count = server.get(ENDPOINTS[kind], (0.0, 0.0))
            row["server_mean_ms"] = round(1000 * seconds / count, 1) if count else None
            row["client_mean_ms"] = round(statistics.fmean(ok), 1) if ok else None
        figures[kind] = row
    return figures


def attempt_phase(rec: Recorder) -> float:
    """Seconds from the first attempt sent to the last attempt acknowledged."""
    attempts = [s for s in rec.samples if s.kind == "attempt"]
    acked = [s.ended for s in attempts if s.status == 201]
    if not acked:
        return 0.0
    return max(acked) - min(s.started for s in attempts)


def diff_timings(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    return {
        endpoint: (s - before.get(endpoint, (0, 0))[0], c - before.get(endpoint, (0, 0))[1])
        for endpoint, (s, c) in after.items()
    }


def check_database(home: Path, learners: list[Learner], acknowledged: list[str]) -> dict:
    """Attempts stored for the burst's learners against those acknowledged with 201."""
    db = open_db(config_module.load(home=home).db_path)
    try:
        ids = [learner.id for learner in learners]
        marks = ",".join("?" * len(ids))
        query = f"SELECT id FROM attempts WHERE learner_id IN ({marks})"  # noqa: S608
        stored = {row[0] for row in db.conn.execute(query, ids)}
    finally:
        db.conn.close()
    acked = set(acknowledged)
    return {
        "acknowledged": len(acknowledged),
        "stored": len(stored),
        "lost": len(acked - stored),  # acknowledged, yet not in the database
        "extra": len(stored - acked),  # stored, yet never acknowledged (e.g. a client timeout)
        "acknowledged_twice": len(acknowledged) - len(acked),
    }


def ratio(loaded: float | None, unloaded: float | None) -> float | None:
    return round(loaded / unloaded, 1) if loaded and unloaded else None


def targets(report: dict) -> list[dict]:
    burst, rows = report["burst"], report["burst"]["by_type"]
    errors = sum(row["errors"] for row in rows.values())
    checks = [
        ("errors", "== 0", errors, errors == 0),
        ("lost attempts", "== 0", report["database"]["lost"], report["database"]["lost"] == 0),
    ]
    for kind in ("lesson page", "attempt"):
        p99 = rows[kind]["p99_ms"]
        checks.append(
            (f"p99 {kind} ms", f"< {TARGET_P99_MS:g}", p99, p99 is not None and p99 < TARGET_P99_MS)
        )
    rate = burst["attempts_per_s"]
    checks.append(
        ("attempts/s", f">= {TARGET_ATTEMPTS_PER_S:g}", rate, rate >= TARGET_ATTEMPTS_PER_S)
    )
    return [{"name": n, "target": t, "value": v, "pass": bool(ok)} for n, t, v, ok in checks]


def build_report(
    args: argparse.Namespace,
    burst: Recorder,
    wall_s: float,
    baseline: Recorder,
    server_time: dict[str, tuple[float, float]],
    cpu: dict,
    database: dict,
) -> dict:
    phase_s = attempt_phase(burst)
    rows = by_kind(burst, server_time)
    unloaded = by_kind(baseline)
    report = {
        "benchmark": "classroom_burst",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "server_threads": args.threads,
            "server_log_level": args.server_log_level,
        },
        "parameters": {"learners": args.learners, "answers": args.answers},
        "burst": {
            "wall_s": round(wall_s, 2),
            "requests": len(burst.samples),
            "requests_per_s": round(len(burst.samples) / wall_s, 1),
            "attempt_phase_s": round(phase_s, 2),
            "attempts_acknowledged": len(burst.acknowledged),
            "attempts_per_s": round(len(burst.acknowledged) / phase_s, 1) if phase_s else 0.0,
            "by_type": rows,
            "failures": {f"{kind}: {what}": n for (kind, what), n in burst.failures.items()},
            "cpu_s": cpu,
        },
        "baseline": {"learners": BASELINE_LEARNERS, "by_type": unloaded},
        "p99_loaded_over_p50_unloaded": {
            kind: ratio(rows[kind]["p99_ms"], unloaded[kind]["p50_ms"]) for kind in KINDS
        },
        "database": database,
    }
    report["targets"] = targets(report)
    return report


def print_report(report: dict) -> None:
    machine, burst = report["machine"], report["burst"]
    print(
        f"\nClassroom burst: {report['parameters']['learners']} learners x "
        f"{report['parameters']['answers']} answers; {machine['cpu_count']} CPUs, "
        f"Python {machine['python']}, {machine['server_threads']} server threads"
    )
    print(f"{machine['platform']}\n")
    print(
        f"{'request':<12} {'count':>6} {'errors':>6} {'p50':>8} {'p95':>8} {'p99':>8} "
        f"{'max':>8} {'server':>8} {'unloaded p50':>13} {'p99/p50u':>9}"
    )
    for kind, row in burst["by_type"].items():
        base = report["baseline"]["by_type"][kind]["p50_ms"]
        cells = (row["p50_ms"], row["p95_ms"], row["p99_ms"], row["max_ms"], row["server_mean_ms"])
        print(
            f"{kind:<12} {row['count']:>6} {row['errors']:>6} "
            + " ".join(f"{_ms(v):>8}" for v in cells)
            + f" {_ms(base):>13} {_x(report['p99_loaded_over_p50_unloaded'][kind]):>9}"
        )
    print("(ms; 'server' = mean time inside the app from its /metrics, the rest is queueing)\n")
    cpu = burst["cpu_s"]
    database = report["database"]
    print(f"wall time          {burst['wall_s']:.2f} s for {burst['requests']} requests")
    print(f"requests/s         {burst['requests_per_s']:.1f}")
    print(
        f"attempts/s         {burst['attempts_per_s']:.1f} "
        f"({burst['attempts_acknowledged']} acknowledged in {burst['attempt_phase_s']:.2f} s, "
        "first sent to last acknowledged)"
    )
    print(f"CPU seconds        server {_s(cpu['server'])}, load generator {_s(cpu['client'])}")
    print(
        f"database           {database['stored']} stored / {database['acknowledged']} "
        f"acknowledged: lost {database['lost']}, extra {database['extra']}"
    )
    for what, count in sorted(burst["failures"].items()):
        print(f"failure            {what} x{count}")
    print()
    for target in report["targets"]:
        verdict = "PASS" if target["pass"] else "FAIL"
        print(f"{verdict}  {target['name']:<18} {target['target']:<8} got {target['value']}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


# --- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=300, help="learners released at once")
    parser.add_argument("--answers", type=int, default=10, help="answers per learner")
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and log")
    parser.add_argument(
        "--server-log-level", default="WARNING", help="server log level (INFO logs every request)"
    )
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, home: Path) -> dict:
    print(f"Setting up {args.learners} learners in {home} ...", flush=True)
    everyone = build_school(home, BASELINE_LEARNERS + args.learners)
    unloaded, learners = everyone[:BASELINE_LEARNERS], everyone[BASELINE_LEARNERS:]
    port = args.port or free_port()
    base_url = f"http://{HOST}:{port}"
    server = start_server(home, port, args.threads, args.server_log_level, home / "server.log")
    try:
        print("Baseline: the same flow, one learner at a time ...", flush=True)
        baseline = asyncio.run(run_baseline(base_url, unloaded, args.answers))
        print(f"Burst: {len(learners)} learners at once ...", flush=True)
        before = server_timings(port)
        server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
        burst, wall_s = asyncio.run(run_burst(base_url, learners, args.answers))
        after_cpu = cpu_seconds(server.pid)
        cpu = {
            "server": None if server_cpu is None else round(after_cpu - server_cpu, 2),
            "client": round(time.process_time() - client_cpu, 2),
        }
        server_time = diff_timings(before, server_timings(port))
    finally:
        stop_server(server)
    database = check_database(home, learners, burst.acknowledged)
    return build_report(args, burst, wall_s, baseline, server_time, cpu, database)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="schoolbox-bench-"))
    try:
        report = measure(args, home)
    finally:
        if args.keep:
            print(f"Kept {home} (server log: {home / 'server.log'})")
        else:
            shutil.rmtree(home, ignore_errors=True)
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWrote {args.json}")
    return 1 if report["database"]["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
