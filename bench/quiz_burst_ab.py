"""Quiz burst, before and after: an older checkout's server and this one's, runs alternated.

On a shared VM the same code's p99 moves by tens of milliseconds from one hour to the
next, so two figures taken apart say little about a change. This starts two real servers
side by side, each with its own copy of the same school (bench/quiz_burst.py's class of
300 with a term's history): one runs the code of an older checkout (put first on the
server's PYTHONPATH), the other this checkout. Runs alternate between them, so both meet
the same machine, and each run is bench/quiz_burst.py's burst: the class opens a started
quiz at once and answers at classroom pace. Only one server is loaded at a time.

    git worktree add /tmp/before b8a6a60
    .venv/bin/python bench/quiz_burst_ab.py --before /tmp/before --runs 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import quiz_burst  # noqa: E402
from classroom_burst import HOST, code_version, cpu_snapshot, cpu_used, free_port  # noqa: E402

DEFAULT_JSON = REPO / "bench" / "results" / "quiz_burst_ab.json"


def start(name: str, code: Path | None, args: argparse.Namespace) -> dict:
    """A school and a server for one side; `code` goes first on the server's path."""
    home = Path(tempfile.mkdtemp(prefix=f"schoolbox-ab-{name}-"))
    school = quiz_burst.build_school(home, args.learners, args.history)
    port = free_port()
    saved = os.environ.get("PYTHONPATH")
    if code is not None:
        os.environ["PYTHONPATH"] = str(code)
    try:
        server = quiz_burst.start_server(home, port, args)
    finally:
        if code is not None:
            if saved is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = saved
    return {"home": home, "school": school, "url": f"http://{HOST}:{port}", "server": server}


def _commit_of(checkout: Path) -> str | None:
    try:
        found = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                               capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return found.stdout.strip()


def one_run(side: dict, args: argparse.Namespace, number: int) -> dict:
    home, school = side["home"], side["school"]
    quiz_id = quiz_burst.new_quiz(home, school["class"], school["items"], args.questions,
                                  f"Run {number}")  # fmt: skip
    before = cpu_snapshot(side["server"].pid)
    rec, wall_s = asyncio.run(quiz_burst.run_burst(side["url"], school["learners"], quiz_id,
                                                   args.think_ms / 1000))  # fmt: skip
    cpu = cpu_used(before, cpu_snapshot(side["server"].pid))
    return quiz_burst.run_figures(rec, wall_s, quiz_burst.stored_answers(home, quiz_id), cpu)


def summary(runs: list[dict]) -> dict:
    def of(kind: str) -> dict:
        return quiz_burst.spread([run["by_type"][kind]["p99_ms"] for run in runs])

    return {"open quiz p99_ms": of("open quiz"), "quiz answer p99_ms": of("quiz answer"),
            "server_cpu_s": quiz_burst.spread([run["cpu"]["server"] for run in runs]),
            "lost": sum(run["lost"] for run in runs),
            "errors": sum(run["by_type"][k]["errors"] for run in runs
                          for k in quiz_burst.KINDS)}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the older code")
    parser.add_argument("--runs", type=int, default=4, help="runs of each side, alternated")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    extra = parser.parse_args(argv)
    args = quiz_burst.parse_args(["--history", "20"])
    before_version = _commit_of(extra.before)
    sides = {"before": start("before", extra.before.resolve(), args),
             "after": start("after", None, args)}  # fmt: skip
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    try:
        for side in sides.values():
            quiz_burst.wait_for_tracing(side["home"])
        for number in range(1, extra.runs + 1):
            for name, side in sides.items():
                runs[name].append(one_run(side, args, number))
                found = runs[name][-1]["by_type"]
                print(f"run {number} {name:<6} p99 open {found['open quiz']['p99_ms']} ms,"
                      f" answer {found['quiz answer']['p99_ms']} ms", flush=True)  # fmt: skip
    finally:
        for side in sides.values():
            quiz_burst.stop_server(side["server"])
            shutil.rmtree(side["home"], ignore_errors=True)
    report = {"bench": "quiz_burst_ab", "before": before_version, "after": code_version(),
              "runs_each": extra.runs, "learners": args.learners,
              "summary": {name: summary(found) for name, found in runs.items()},
              "runs": runs}  # fmt: skip
    print(f"\n{'side':<8} {'p99 open ms':>24} {'p99 answer ms':>24} {'server CPU s':>22}")
    for name, row in report["summary"].items():
        cells = [quiz_burst._r(row[k]) for k in ("open quiz p99_ms", "quiz answer p99_ms",
                                                 "server_cpu_s")]  # fmt: skip
        print(f"{name:<8} {cells[0]:>24} {cells[1]:>24} {cells[2]:>22}")
    extra.json.parent.mkdir(parents=True, exist_ok=True)
    extra.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWrote {extra.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
