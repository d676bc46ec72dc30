"""Quiz burst: a teacher starts a quiz for a class of 300 and every learner opens it at once.

What it measures
    Against the real server (`schoolbox serve` on 127.0.0.1, as bench/classroom_burst.py
    starts it), one class of N learners (default 300), each on its own connection:

      1. GET  /api/v1/session, POST /api/v1/session         (sign in, not counted below)
      2. GET  /api/v1/quizzes/<id>               "open quiz"   (questions, begins the quiz)
      3. POST /api/v1/quizzes/<id>/answers x Q   "quiz answer" (one per question)
      4. POST /api/v1/quizzes/<id>/finish        "hand in"

    All learners open the quiz at the same instant (the teacher pressed Start), then
    answer at classroom pace (a mean pause of --think-ms before each answer, as the
    classroom bench's paced scenario). After each run the database is checked: every
    answer acknowledged with 201 is stored with its quiz (0 lost). Each run is a new
    quiz for the same class; the figures are the median and range over --runs runs, and
    the p99 under load as a multiple of the unloaded p50 (a few learners of another class,
    one at a time, in the same process first).

    Then the teacher's CSV reports of that class (lessons with time spent, difficult
    questions, the last quiz's results) are each downloaded --runs times; the class has a
    term's simulated history (--history answers per learner) so the report has work to do.

Targets (issue 17, a 2-core box): p99 of opening the quiz and of each answer < 250 ms at
classroom pace, 0 errors, 0 lost; a CSV report of a 300-learner class in < 1 s.

    .venv/bin/python bench/quiz_burst.py
    .venv/bin/python bench/quiz_burst.py --learners 50 --runs 1 --json /tmp/q.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from classroom_burst import (  # noqa: E402
    ANSWERS,
    HOST,
    PIN,
    REQUEST_TIMEOUT_S,
    Recorder,
    call,
    code_version,
    cpu_snapshot,
    cpu_used,
    free_port,
    percentiles,
    start_server,
    stop_server,
)

from appliance import config as config_module  # noqa: E402
from appliance.demo.seed import seed  # noqa: E402
from appliance.store import (  # noqa: E402
    assignments,
    audit,
    classes,
    mastery,
    open_db,
    quizzes,
    transaction,
    users,
)
from appliance.store.ids import uuid7  # noqa: E402
from appliance.store.migrations import migrate  # noqa: E402
from models.registry import default  # noqa: E402

TARGET_P99_MS = 250.0
TARGET_CSV_S = 1.0
BASELINE_LEARNERS = 5
TEACHER = ("bench-teacher", "Bench Teacher", "bench teacher password 2027")
KINDS = ("open quiz", "quiz answer", "hand in")
DEFAULT_JSON = REPO / "bench" / "results" / "quiz_burst.json"


# --- setup (not timed) ------------------------------------------------------------------


def build_school(home: Path, count: int, history: int) -> dict:
    """The demo school, one class of `count` learners with three lessons set and a term's
    simulated answers, and a small class for the unloaded baseline."""
    config = config_module.load(home=home)
    home.mkdir(parents=True, exist_ok=True)
    db = open_db(config.db_path)
    try:
        migrate(db)
        config_module.ensure_secret(config)
        seed(db, config)
        default.install_knowledge_tracing(home)
        key = config_module.pin_key(config)
        lessons = [r[0] for r in db.conn.execute(
            "SELECT id FROM lessons WHERE subject = 'fractions' ORDER BY position")]  # fmt: skip
        with transaction(db):
            teacher = users.create_staff(db, audit.SYSTEM, "teacher", TEACHER[1], TEACHER[0],
                                         TEACHER[2])  # fmt: skip
            big = classes.create(db, audit.SYSTEM, "Bench class", teacher)
            small = classes.create(db, audit.SYSTEM, "Baseline class", teacher)
            for lesson in lessons[:3]:
                assignments.set_lesson(db, audit.SYSTEM, big, lesson)
            learners = _learners(db, big, count, key, "Bench learner")
            baseline = _learners(db, small, BASELINE_LEARNERS, key, "Baseline learner")
        _simulate_history(db, learners, lessons[:3], history)
        items = [r[0] for r in db.conn.execute(
            "SELECT i.id FROM items i JOIN lessons l ON l.id = i.lesson_id"
            " WHERE l.subject = 'fractions' AND i.retired = 0 ORDER BY l.position, i.position"
        )]  # fmt: skip
    finally:
        db.conn.close()
    return {"class": big, "small": small, "learners": learners, "baseline": baseline,
            "items": items}  # fmt: skip


def _learners(db, class_id: int, count: int, key: bytes, prefix: str) -> list[int]:
    found = []
    for n in range(count):
        learner = users.create_learner(db, audit.SYSTEM, f"{prefix} {n + 1}", PIN, key)
        classes.enrol(db, audit.SYSTEM, class_id, learner)
        found.append(learner)
    return found


def _simulate_history(db, learners: list[int], lessons: list[str], per_learner: int) -> None:
    """Answers and lesson openings over the past weeks, so reports read a real term."""
    rng = random.Random(20261205)
    items = {
        lesson: [
            r[0]
            for r in db.conn.execute(
                "SELECT id FROM items WHERE lesson_id = ? AND retired = 0", (lesson,)
            )
        ]  # fmt: skip
        for lesson in lessons
    }
    now_ms = int(time.time() * 1000)
    answers, views = [], []
    for learner in learners:
        at_ms = now_ms - 20 * 86_400_000
        for _ in range(per_learner):
            lesson = rng.choice(lessons)
            at_ms += rng.randint(20, 400) * 1000
            if rng.random() < 0.1:
                views.append((learner, lesson, _stamp(at_ms)))
            answers.append((uuid7(at_ms), learner, rng.choice(items[lesson]), lesson,
                            rng.choice(["0", "1", "2", "word"]), int(rng.random() < 0.6),
                            _stamp(at_ms)))  # fmt: skip
    with transaction(db):
        db.conn.executemany(
            "INSERT INTO attempts (id, learner_id, item_id, lesson_id, response, correct,"
            " hints_used, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            answers,
        )
        db.conn.executemany(
            "INSERT INTO lesson_views (learner_id, lesson_id, at) VALUES (?, ?, ?)", views
        )


def _stamp(at_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms / 1000)) + f".{at_ms % 1000:03d}Z"


def new_quiz(home: Path, class_id: int, items: list[str], questions: int, title: str) -> int:
    """A started quiz of `questions` items for the whole class, written as the teacher's
    Start button writes it (the server is running: SQLite takes the write between)."""
    db = open_db(config_module.load(home=home).db_path)
    try:
        chosen = random.Random(title).sample(items, questions)
        with transaction(db):
            quiz_id = quizzes.create(db, audit.SYSTEM, class_id, title, chosen)
            quizzes.start(db, audit.SYSTEM, quizzes.get(db, quiz_id))
    finally:
        db.conn.close()
    return quiz_id


def wait_for_tracing(home: Path, timeout_s: float = 300.0) -> None:
    """Wait until the server's knowledge-tracing follower has traced the simulated term.

    The history was written straight into the database, so the follower meets it all at
    once when the server starts; a real box traced it answer by answer during the term.
    Measuring before it catches up would time a one-off backlog, not a class's quiz.
    """
    db = open_db(config_module.load(home=home).db_path)
    started = time.monotonic()
    try:
        while (left := mastery.backlog(db)) > 0:
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"knowledge tracing still has {left} answers to trace")
            time.sleep(0.5)
    finally:
        db.conn.close()
    print(f"knowledge tracing caught up in {time.monotonic() - started:.1f} s", flush=True)


# --- the load ---------------------------------------------------------------------------


async def learner_flow(base_url: str, learner: int, quiz_id: int, think_s: float,
                       rec: Recorder, start: asyncio.Event | None) -> None:  # fmt: skip
    http = aiohttp.ClientSession(
        base_url,
        connector=aiohttp.TCPConnector(limit=1),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )
    async with http:
        headers = await _sign_in(http, rec, learner)
        if headers is None:
            return
        if start is not None:
            await start.wait()  # signed in, waiting for the teacher to press Start
        status, body = await call(http, rec, "open quiz", "GET", f"/api/v1/quizzes/{quiz_id}")
        if status != 200:
            return
        for question in body["questions"]:
            if think_s:
                await asyncio.sleep(random.uniform(0.5, 1.5) * think_s)
            key = f"quiz-{quiz_id}-{learner}-{question['position']:03d}"
            response = ANSWERS.get(question["type"], "word")
            answer = {"item_id": question["id"], "response": response, "client_key": key}
            status, reply = await call(http, rec, "quiz answer", "POST",
                                       f"/api/v1/quizzes/{quiz_id}/answers", json=answer,
                                       headers=headers)  # fmt: skip
            if status == 201 and reply.get("recorded"):
                rec.acknowledged.append(reply["attempt_id"])
        await call(http, rec, "hand in", "POST", f"/api/v1/quizzes/{quiz_id}/finish",
                   headers=headers)  # fmt: skip


async def _sign_in(http, rec: Recorder, learner: int) -> dict | None:
    status, body = await call(http, rec, "session", "GET", "/api/v1/session")
    if status != 200:
        return None
    status, body = await call(http, rec, "sign-in", "POST", "/api/v1/session",
                              json={"learner_id": learner, "pin": PIN},
                              headers={"X-CSRFToken": body["csrf_token"]})  # fmt: skip
    return {"X-CSRFToken": body["csrf_token"]} if status == 200 else None


async def run_burst(base_url: str, learners: list[int], quiz_id: int, think_s: float):
    rec = Recorder()
    start = asyncio.Event()
    tasks = [asyncio.create_task(learner_flow(base_url, learner, quiz_id, think_s, rec, start))
             for learner in learners]  # fmt: skip
    while sum(1 for s in rec.samples if s.kind == "sign-in") < len(learners):
        await asyncio.sleep(0.05)  # everyone signed in before the quiz starts
    released = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return rec, time.perf_counter() - released


async def run_baseline(base_url: str, learners: list[int], quiz_id: int) -> Recorder:
    rec = Recorder()
    for learner in learners:
        await learner_flow(base_url, learner, quiz_id, 0.0, rec, None)
    return rec


async def download(base_url: str, paths: dict[str, str], times: int) -> dict[str, list[float]]:
    """Each CSV report downloaded `times` times by the class's teacher: seconds each."""
    found: dict[str, list[float]] = {name: [] for name in paths}
    async with aiohttp.ClientSession(base_url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get("/api/v1/session") as response:
            token = (await response.json())["csrf_token"]
        credentials = {"username": TEACHER[0], "password": TEACHER[2]}
        async with http.post("/api/v1/session", json=credentials,
                             headers={"X-CSRFToken": token}) as response:  # fmt: skip
            assert response.status == 200, await response.text()
        for _ in range(times):
            for name, path in paths.items():
                started = time.perf_counter()
                async with http.get(path) as response:
                    body = await response.read()
                    assert response.status == 200 and body.count(b"\n") > 1, name
                found[name].append(time.perf_counter() - started)
    return found


# --- figures ----------------------------------------------------------------------------


def stored_answers(home: Path, quiz_id: int) -> set[str]:
    db = open_db(config_module.load(home=home).db_path)
    try:
        return {r[0] for r in db.conn.execute("SELECT id FROM attempts WHERE quiz_id = ?",
                                              (quiz_id,))}  # fmt: skip
    finally:
        db.conn.close()


def run_figures(rec: Recorder, wall_s: float, stored: set[str], cpu: dict) -> dict:
    figures = {}
    for kind in KINDS:
        samples = [s for s in rec.samples if s.kind == kind]
        ok = [s.ms for s in samples if s.ok]
        figures[kind] = {"count": len(samples), "errors": len(samples) - len(ok),
                         **percentiles(ok)}  # fmt: skip
    acked = set(rec.acknowledged)
    return {"by_type": figures, "wall_s": round(wall_s, 2), "cpu": cpu,
            "acknowledged": len(acked), "stored": len(stored), "lost": len(acked - stored),
            "failures": {f"{k[0]} {k[1]}": n for k, n in rec.failures.items()}}  # fmt: skip


def spread(values: list[float | None]) -> dict:
    found = [v for v in values if v is not None]
    if not found:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(found), 3), "min": round(min(found), 3),
            "max": round(max(found), 3)}  # fmt: skip


def summarise(args, baseline: Recorder, runs: list[dict], csv_s: dict) -> dict:
    unloaded = {kind: percentiles([s.ms for s in baseline.samples if s.kind == kind and s.ok])
                for kind in KINDS}  # fmt: skip
    over = {}
    for kind in ("open quiz", "quiz answer"):
        p99 = spread([run["by_type"][kind]["p99_ms"] for run in runs])
        base = unloaded[kind]["p50_ms"]
        p50 = spread([r["by_type"][kind]["p50_ms"] for r in runs])
        times = round(p99["median"] / base, 1) if base and p99["median"] else None
        over[kind] = {"p99_ms": p99, "p50_ms": p50, "unloaded_p50_ms": base,
                      "p99_vs_unloaded_p50": times}  # fmt: skip
    reports = {name: spread(times) for name, times in csv_s.items()}
    errors = sum(r["by_type"][k]["errors"] for r in runs for k in KINDS)
    lost = sum(r["lost"] for r in runs)
    checks = [
        {"target": f"p99 open quiz < {TARGET_P99_MS:.0f} ms",
         "met": (over["open quiz"]["p99_ms"]["max"] or 1e9) < TARGET_P99_MS},
        {"target": f"p99 quiz answer < {TARGET_P99_MS:.0f} ms",
         "met": (over["quiz answer"]["p99_ms"]["max"] or 1e9) < TARGET_P99_MS},
        {"target": "0 errors, 0 lost", "met": errors == 0 and lost == 0},
        {"target": f"CSV report of the class < {TARGET_CSV_S:.0f} s",
         "met": all((r["max"] or 1e9) < TARGET_CSV_S for r in reports.values())},
    ]  # fmt: skip
    return {"bench": "quiz_burst", "code": code_version(),
            "settings": {"learners": args.learners, "questions": args.questions,
                         "think_ms": args.think_ms, "runs": args.runs,
                         "history_per_learner": args.history},
            "over_runs": over, "csv_report_s": reports, "errors": errors, "lost": lost,
            "targets": checks, "unloaded": unloaded, "runs": runs}  # fmt: skip


def print_report(report: dict) -> None:
    settings = report["settings"]
    print(f"\nQuiz burst: {settings['learners']} learners open a quiz of {settings['questions']}"
          f" questions at once, then answer with {settings['think_ms']:.0f} ms mean pauses;"
          f" {settings['runs']} runs (median, range)")  # fmt: skip
    print(f"{'request':<12} {'p50 ms':>18} {'p99 ms':>22} {'unloaded p50':>13} {'p99/unl.':>9}")
    for kind, row in report["over_runs"].items():
        p50, p99 = row["p50_ms"], row["p99_ms"]
        print(f"{kind:<12} {_r(p50):>18} {_r(p99):>22} {row['unloaded_p50_ms'] or '-':>13}"
              f" {row['p99_vs_unloaded_p50'] or '-':>9}")  # fmt: skip
    print(f"errors {report['errors']}, lost {report['lost']}")
    print(f"\n{'CSV report':<22} {'seconds (median, range)':>26}")
    for name, row in report["csv_report_s"].items():
        print(f"{name:<22} {_r(row):>26}")
    print()
    for check in report["targets"]:
        print(f"{'MET   ' if check['met'] else 'MISSED'} {check['target']}")


def _r(row: dict) -> str:
    if row["median"] is None:
        return "-"
    return f"{row['median']} ({row['min']}-{row['max']})"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=300)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=450.0,
        help="mean pause before each answer (the classroom bench's pace)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--history", type=int, default=60, help="past answers per learner")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads per worker")
    parser.add_argument("--workers", type=int, help="server worker processes")
    parser.add_argument("--server-log-level", default="WARNING")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    return parser.parse_args(argv)  # fmt: skip


def measure(args: argparse.Namespace, home: Path) -> dict:
    print(f"Setting up a class of {args.learners} in {home} ...", flush=True)
    school = build_school(home, args.learners, args.history)
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    server = start_server(home, port, args)
    runs, csv_s = [], {}
    try:
        wait_for_tracing(home)
        warm = new_quiz(home, school["small"], school["items"], args.questions, "Baseline")
        baseline = asyncio.run(run_baseline(base_url, school["baseline"], warm))
        for number in range(args.runs):
            quiz_id = new_quiz(home, school["class"], school["items"], args.questions,
                               f"Run {number + 1}")  # fmt: skip
            print(f"run {number + 1}: {args.learners} learners open quiz {quiz_id} ...", flush=True)
            cpu_before = cpu_snapshot(server.pid)
            rec, wall_s = asyncio.run(run_burst(base_url, school["learners"], quiz_id,
                                                args.think_ms / 1000))  # fmt: skip
            cpu = cpu_used(cpu_before, cpu_snapshot(server.pid))
            runs.append(run_figures(rec, wall_s, stored_answers(home, quiz_id), cpu))
        class_id = school["class"]
        paths = {
            "lessons.csv": f"/teach/classes/{class_id}/reports/lessons.csv",
            "difficult-questions.csv": f"/teach/classes/{class_id}/reports/difficult-questions.csv",
            "quiz report.csv": f"/teach/classes/{class_id}/quizzes/{quiz_id}/report.csv",
        }
        csv_s = asyncio.run(download(base_url, paths, args.runs))
    finally:
        stop_server(server)
    return summarise(args, baseline, runs, csv_s)


def main(argv=None) -> int:
    args = parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="schoolbox-quiz-bench-"))
    try:
        report = measure(args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWrote {args.json}")
    return 1 if report["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
