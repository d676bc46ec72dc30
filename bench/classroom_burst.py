"""Classroom burst: a whole school signs in at once, opens a lesson and answers questions.

What it measures
    Against the real server (`schoolbox serve`: waitress processes on 127.0.0.1), N simulated
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
non-zero only when an acknowledged attempt is missing from the database (1) or the server
died during the run (2).

By default learners do not pause, so each always has one request in flight: by Little's law
a request then waits about learners / throughput (300 learners at 400 requests/s: ~750 ms)
whatever the server does. That measures capacity. `--think-ms` adds a reading pause before
each answer and `--ramp-s` spreads the arrivals, to measure latency at a classroom's pace.

Run it from the repository root (setup takes a few seconds):

    .venv/bin/python bench/classroom_burst.py
    .venv/bin/python bench/classroom_burst.py --learners 50 --threads 4 --json /tmp/b.json
    .venv/bin/python bench/classroom_burst.py --think-ms 2000 --ramp-s 10 --json /tmp/paced.json

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
import random
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

# The repository before bench/: run as a script, bench/ comes first on the path, and its
# sync.py would stand in for the sync package.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import sqlite_utils  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from appliance import config as config_module  # noqa: E402
from appliance.demo.seed import seed  # noqa: E402
from appliance.store import assignments, audit, classes, open_db, transaction, users  # noqa: E402
from appliance.store.migrations import migrate  # noqa: E402
from models.registry import default  # noqa: E402

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
DEFAULT_JSON = REPO / "bench" / "results" / "classroom_burst.json"


# --- setup (not timed) ------------------------------------------------------------------


@dataclass(frozen=True)
class Learner:
    id: int
    lesson_id: str


def build_school(home: Path, count: int, knowledge_model: bool = True) -> list[Learner]:
    """The demo school plus `count` learners in classes of 30, each class with a lesson."""
    config = config_module.load(home=home)
    home.mkdir(parents=True, exist_ok=True)
    db = open_db(config.db_path)
    try:
        migrate(db)
        config_module.ensure_secret(config)
        seed(db, config)
        if knowledge_model:  # as `schoolbox init` leaves every box
            default.install_knowledge_tracing(home)
        key = config_module.pin_key(config)
        lessons = lessons_with_items(db)
        learners: list[Learner] = []
        with transaction(db):
            for index in range(math.ceil(count / CLASS_SIZE)):
                class_id = classes.create(db, audit.SYSTEM, f"Bench {index + 1}", None)
                lesson_id = lessons[index % len(lessons)]
                assignments.set_lesson(db, audit.SYSTEM, class_id, lesson_id)
                for _ in range(min(CLASS_SIZE, count - len(learners))):
                    name = f"Bench learner {len(learners) + 1}"
                    learner_id = users.create_learner(db, audit.SYSTEM, name, PIN, key)
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


def server_command(home: Path, port: int, args: argparse.Namespace) -> list[str]:
    """`schoolbox serve` from this interpreter's environment."""
    script = Path(sys.executable).parent / "schoolbox"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "appliance.cli"]
    serve = ["serve", "--host", HOST, "--port", str(port), "--threads", str(args.threads)]
    if args.workers:
        serve += ["--workers", str(args.workers)]
    return [*command, "--home", str(home), *serve]


def start_server(home: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    """Start the real server and wait until /readyz answers 200."""
    env = {**os.environ, "SCHOOLBOX_LOG_LEVEL": args.server_log_level}
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            server_command(home, port, args), stdout=log, stderr=subprocess.STDOUT, env=env
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


def _git(*args: str) -> str:
    command = ["git", "--no-optional-locks", "-C", str(REPO), *args]  # never writes the index
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=10).stdout


def code_version() -> dict[str, object]:
    """The commit measured, and whether the code the run uses (the box's packages and
    the benchmarks) had uncommitted changes."""
    code = ("appliance", "sync", "models", "federated", "bench", ":!bench/results")
    try:
        commit = _git("rev-parse", "--short", "HEAD").strip()
        dirty = bool(_git("status", "--porcelain", "--", *code).strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user + system CPU seconds) for every process, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        table[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def _tree_cpu(table: dict[int, tuple[int, float]], root: int) -> float:
    """CPU seconds of `root` and its descendants (the server's worker processes)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += table.get(pid, (0, 0.0))[1]
        todo.extend(children.get(pid, []))
    return total


def cpu_snapshot(server_pid: int) -> dict[str, float | None]:
    """CPU seconds so far: the server's (all its processes), ours, the whole machine's (busy).

    Read from Linux's /proc; None where it is not there. The machine's figure shows
    whether something else (a test run, a build) competed for the cores. A worker that
    exits between two snapshots takes its CPU seconds with it.
    """
    try:
        server = _tree_cpu(_process_table(), server_pid)
        jiffies = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        machine = (sum(jiffies) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, AttributeError):  # no /proc, no sysconf
        server = machine = None
    return {"server": server, "client": time.process_time(), "machine": machine}


def cpu_used(before: dict, after: dict) -> dict[str, float | None]:
    """CPU seconds between two snapshots; 'other' is what other processes used."""
    used = {
        key: None if before[key] is None else round(after[key] - before[key], 2) for key in before
    }
    if used["machine"] is not None:
        used["other"] = round(max(0.0, used["machine"] - used["server"] - used["client"]), 2)
    return used


def server_timings(port: int) -> dict[str, tuple[float, float]]:
    """Per endpoint: (seconds, count) of time spent inside the app, from its /metrics.

    Empty if the server cannot say (it died, or /metrics refused a loopback scrape).
    """
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
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


@dataclass(frozen=True)
class Plan:
    base_url: str
    answers: int  # per learner
    think_s: float  # mean pause before each answer (reading the question); 0: none
    ramp_s: float = 0.0  # learners arrive at random over this many seconds; 0: all at once


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
    plan: Plan, learner: Learner, rec: Recorder, start: asyncio.Event | None
) -> None:
    """One learner's visit: sign in, open the lesson, answer `plan.answers` questions."""
    # One connection per learner, kept alive, like one tablet. Cookie jar "unsafe" so that
    # cookies from an IP address (127.0.0.1) are kept.
    http = aiohttp.ClientSession(
        plan.base_url,
        connector=aiohttp.TCPConnector(limit=1),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )
    async with http:
        if start is not None:
            await start.wait()
            await asyncio.sleep(random.uniform(0, plan.ramp_s))
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
        if plan.think_s:  # at classroom pace a learner looks at the home page, then taps
            await asyncio.sleep(random.uniform(0.5, 1.5) * plan.think_s)
        await call(http, rec, "lesson page", "GET", f"/learn/lessons/{learner.lesson_id}")
        item = None
        for number in range(plan.answers):
            if plan.think_s:
                await asyncio.sleep(random.uniform(0.5, 1.5) * plan.think_s)
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


async def run_burst(plan: Plan, learners: list[Learner]) -> tuple[Recorder, float]:
    """Every learner at once; the recorder and the wall time from release to the last reply."""
    rec = Recorder()
    start = asyncio.Event()
    tasks = [asyncio.create_task(learner_flow(plan, learner, rec, start)) for learner in learners]
    await asyncio.sleep(0.2)  # let every task open its session and wait at the start line
    released = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return rec, time.perf_counter() - released


async def run_baseline(plan: Plan, learners: list[Learner]) -> Recorder:
    """The same flow, unloaded: one learner at a time, without pauses."""
    rec = Recorder()
    for learner in learners:
        await learner_flow(Plan(plan.base_url, plan.answers, 0.0), learner, rec, None)
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


def targets(scenario: dict) -> list[dict]:
    rows, database = scenario["by_type"], scenario["database"]
    errors = sum(row["errors"] for row in rows.values())
    checks = [
        ("errors", "== 0", errors, errors == 0),
        ("lost attempts", "== 0", database["lost"], database["lost"] == 0),
    ]
    for kind in ("lesson page", "attempt"):
        p99 = rows[kind]["p99_ms"]
        checks.append(
            (f"p99 {kind} ms", f"< {TARGET_P99_MS:g}", p99, p99 is not None and p99 < TARGET_P99_MS)
        )
    rate = scenario["attempts_per_s"]
    checks.append(
        ("attempts/s", f">= {TARGET_ATTEMPTS_PER_S:g}", rate, rate >= TARGET_ATTEMPTS_PER_S)
    )
    return [{"name": n, "target": t, "value": v, "pass": bool(ok)} for n, t, v, ok in checks]


@dataclass
class Run:
    """What one scenario measured, before it is turned into figures."""

    think_ms: float
    ramp_s: float
    rec: Recorder
    wall_s: float
    server_time: dict[str, tuple[float, float]]
    cpu: dict
    database: dict
    trace_catch_up_s: float | None = None


def scenario_report(run: Run, unloaded: dict) -> dict:
    phase_s = attempt_phase(run.rec)
    rows = by_kind(run.rec, run.server_time)
    scenario = {
        "think_ms": run.think_ms,
        "ramp_s": run.ramp_s,
        "wall_s": round(run.wall_s, 2),
        "requests": len(run.rec.samples),
        "requests_per_s": round(len(run.rec.samples) / run.wall_s, 1),
        "attempt_phase_s": round(phase_s, 2),
        "attempts_acknowledged": len(run.rec.acknowledged),
        "attempts_per_s": round(len(run.rec.acknowledged) / phase_s, 1) if phase_s else 0.0,
        "by_type": rows,
        "p99_loaded_over_p50_unloaded": {
            kind: ratio(rows[kind]["p99_ms"], unloaded[kind]["p50_ms"]) for kind in KINDS
        },
        "failures": {f"{kind}: {what}": n for (kind, what), n in run.rec.failures.items()},
        "cpu_s": run.cpu,
        "database": run.database,
        # The knowledge-tracing follower runs beside the requests (in the supervisor):
        # how long after the last answer it had traced every one.
        "trace_catch_up_s": run.trace_catch_up_s,
    }
    scenario["targets"] = targets(scenario)
    return scenario


def build_report(args: argparse.Namespace, runs: dict[str, Run], baseline: Recorder) -> dict:
    unloaded = by_kind(baseline)
    return {
        "benchmark": "classroom_burst",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "server_workers": args.workers,
            "server_threads": args.threads,
            "server_log_level": args.server_log_level,
        },
        "parameters": {"learners": args.learners, "answers": args.answers},
        "baseline": {"learners": BASELINE_LEARNERS, "by_type": unloaded},
        "scenarios": {name: scenario_report(run, unloaded) for name, run in runs.items()},
    }


SCENARIO_TITLES = {
    "burst": "Burst (the spec's): every learner at once, answering without a pause",
    "paced": "Classroom pace: every learner signs in at once, then pauses before each click",
}


def print_report(report: dict) -> None:
    machine, params, code = report["machine"], report["parameters"], report["code"]
    dirty = " + uncommitted changes" if code["dirty"] else ""
    print(
        f"\nClassroom burst: {params['learners']} learners x {params['answers']} answers;"
        f" {machine['cpu_count']} CPUs, Python {machine['python']};"
        f" server: {machine['server_workers']} worker(s) x {machine['server_threads']} threads"
    )
    print(f"{machine['platform']}; code {code['commit']}{dirty}")
    for name, scenario in report["scenarios"].items():
        print(
            f"\n== {SCENARIO_TITLES.get(name, name)}"
            f" (think {scenario['think_ms']:g} ms, ramp {scenario['ramp_s']:g} s)\n"
        )
        print_scenario(report, scenario)


def print_scenario(report: dict, scenario: dict) -> None:
    machine = report["machine"]
    print(
        f"{'request':<12} {'count':>6} {'errors':>6} {'p50':>8} {'p95':>8} {'p99':>8} "
        f"{'max':>8} {'server':>8} {'unloaded p50':>13} {'p99/p50u':>9}"
    )
    for kind, row in scenario["by_type"].items():
        base = report["baseline"]["by_type"][kind]["p50_ms"]
        cells = (row["p50_ms"], row["p95_ms"], row["p99_ms"], row["max_ms"], row["server_mean_ms"])
        print(
            f"{kind:<12} {row['count']:>6} {row['errors']:>6} "
            + " ".join(f"{_ms(v):>8}" for v in cells)
            + f" {_ms(base):>13} {_x(scenario['p99_loaded_over_p50_unloaded'][kind]):>9}"
        )
    print("(ms; 'server' = mean time inside the app from its /metrics, the rest is queueing)\n")
    cpu, database = scenario["cpu_s"], scenario["database"]
    available = scenario["wall_s"] * (machine["cpu_count"] or 1)
    print(f"wall time          {scenario['wall_s']:.2f} s for {scenario['requests']} requests")
    print(f"requests/s         {scenario['requests_per_s']:.1f}")
    print(
        f"attempts/s         {scenario['attempts_per_s']:.1f} "
        f"({scenario['attempts_acknowledged']} acknowledged in {scenario['attempt_phase_s']:.2f}"
        " s, first sent to last acknowledged)"
    )
    print(
        f"CPU seconds        server {_s(cpu['server'])}, load generator {_s(cpu['client'])},"
        f" other processes {_s(cpu.get('other'))} (of {available:.1f} s on all cores)"
    )
    if cpu.get("other") and cpu["other"] > 0.1 * available:
        print(
            f"WARNING            other processes used {100 * cpu['other'] / available:.0f}% of"
            " the cores during the run: these figures understate the server"
        )
    print(
        f"database           {database['stored']} stored / {database['acknowledged']} "
        f"acknowledged: lost {database['lost']}, extra {database['extra']}"
    )
    catch_up = scenario.get("trace_catch_up_s")
    traced = "no model, or NOT caught up within 120 s of the last answer"
    if catch_up is not None:
        traced = f"every answer traced {catch_up:.2f} s after the last one"
    print(f"knowledge tracing  {traced}")
    for what, count in sorted(scenario["failures"].items()):
        print(f"failure            {what} x{count}")
    if report.get("worker_restarts"):
        print(f"worker restarts    {report['worker_restarts']} (a server process died)")
    if "server_died" in report:
        died = report["server_died"]
        print(
            f"SERVER DIED        exit code {died['exit_code']}; its log ends:\n{died['log_tail']}"
        )
    print()
    for target in scenario["targets"]:
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
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause before each answer, +-50%% (0: answer at once, the spec's burst)",
    )
    parser.add_argument(
        "--ramp-s",
        type=float,
        default=0.0,
        help="learners arrive at random over this many seconds (0: all at once, the spec's)",
    )
    parser.add_argument(
        "--paced-think-ms",
        type=float,
        default=450.0,
        help="second scenario, at classroom pace: mean pause before each answer, chosen so"
        " 300 learners offer about 400 answers/s (0: skip it)",
    )
    parser.add_argument(
        "--no-knowledge-model",
        action="store_true",
        help="no knowledge-tracing model (practice by the rule): its cost, by difference",
    )
    parser.add_argument("--threads", type=int, default=8, help="waitress threads per worker")
    parser.add_argument(
        "--workers", type=int, help="server worker processes (default: the server's own)"
    )
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and log")
    parser.add_argument(
        "--server-log-level", default="WARNING", help="server log level (INFO logs every request)"
    )
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, home: Path) -> dict:
    scenarios = {"burst": (args.think_ms, args.ramp_s)}
    if args.paced_think_ms > 0:
        scenarios["paced"] = (args.paced_think_ms, 0.0)
    print(f"Setting up {len(scenarios)} x {args.learners} learners in {home} ...", flush=True)
    everyone = build_school(
        home, BASELINE_LEARNERS + len(scenarios) * args.learners, not args.no_knowledge_model
    )
    unloaded = everyone[:BASELINE_LEARNERS]
    if not args.workers:  # report what the server will choose (SCHOOLBOX_WORKERS or per core)
        args.workers = getattr(config_module.load(home=home), "workers", 1)
    port = args.port or free_port()
    base_url = f"http://{HOST}:{port}"
    server = start_server(home, port, args)
    runs: dict[str, Run] = {}
    try:
        print("Baseline: the same flow, one learner at a time ...", flush=True)
        baseline = asyncio.run(run_baseline(Plan(base_url, args.answers, 0.0), unloaded))
        for index, (name, (think_ms, ramp_s)) in enumerate(scenarios.items()):
            first = BASELINE_LEARNERS + index * args.learners
            learners = everyone[first : first + args.learners]
            print(f"{name}: {len(learners)} learners at once ...", flush=True)
            runs[name] = run_scenario(
                Plan(base_url, args.answers, think_ms / 1000, ramp_s), learners, server, port, home
            )
        died = server.poll()  # an exit code if the server died under the load
    finally:
        stop_server(server)
    for name, run in runs.items():
        first = BASELINE_LEARNERS + list(scenarios).index(name) * args.learners
        run.database = check_database(
            home, everyone[first : first + args.learners], run.rec.acknowledged
        )
    report = build_report(args, runs, baseline)
    log = (home / "server.log").read_text(errors="replace")
    report["worker_restarts"] = log.count('"worker_restart"')
    if died is not None:
        report["server_died"] = {"exit_code": died, "log_tail": log[-3000:]}
    return report


def run_scenario(
    plan: Plan, learners: list[Learner], server: subprocess.Popen, port: int, home: Path
) -> Run:
    """One scenario against the running server, with its server time and CPU."""
    before = server_timings(port)
    cpu_before = cpu_snapshot(server.pid)
    rec, wall_s = asyncio.run(run_burst(plan, learners))
    cpu = cpu_used(cpu_before, cpu_snapshot(server.pid))
    server_time = diff_timings(before, server_timings(port))
    catch_up = wait_traced(home)
    return Run(plan.think_s * 1000, plan.ramp_s, rec, wall_s, server_time, cpu, {}, catch_up)


def wait_traced(home: Path, limit_s: float = 120.0) -> float | None:
    """Seconds until the knowledge-tracing follower has traced every stored answer
    (None with no active model, or when it has not caught up within `limit_s`)."""
    from appliance.store import mastery
    from models.registry import installed as store

    if store.active(home, "knowledge-tracing") is None:
        return None
    db = open_db(config_module.load(home=home).db_path)
    started = time.monotonic()
    try:
        while time.monotonic() - started < limit_s:
            if mastery.backlog(db) == 0:
                return round(time.monotonic() - started, 2)
            time.sleep(0.1)
    finally:
        db.conn.close()
    return None


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
    if "server_died" in report:
        return 2
    return 1 if any(s["database"]["lost"] for s in report["scenarios"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
