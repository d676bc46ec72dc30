"""Sync benchmark: sealing and opening speed, bytes per answer, draining a month to a hub.

What it measures (one table, and JSON in bench/results/sync.json):

- records/s sealed and opened on one core (`sync.bundle`, a 1 MiB bundle of answers),
  for the default X25519 suite and the hybrid ML-KEM-768+X25519 one, and the hybrid's
  cost as a ratio in the same process;
- bytes per answer on the wire, after compression and encryption: for answer records
  alone, and for a real demo school's bundles, whose mastery, class, usage and health
  records ride along (what a district's link really carries per answer);
- the time to drain a 500-learner school's month (500 x 20 days x 40 answers = 400,000)
  from a box's database to a real hub (`schoolbox hub serve`) on loopback: sealing into
  the outbox, then sending every bundle over HTTP until each is acknowledged.

Targets: >= 50,000 records/s sealed on one core; <= 48 bytes per answer; the month
drained in < 60 s.

    .venv/bin/python bench/sync.py               # the full month (a few minutes to set up)
    .venv/bin/python bench/sync.py --days 2      # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.config import Config, ensure_secret  # noqa: E402
from appliance.demo.seed import seed  # noqa: E402
from appliance.knowledge import tracing as knowledge  # noqa: E402
from appliance.store import attempts, audit, content, open_db, site, transaction, users  # noqa: E402,E501
from appliance.store.ids import uuid7  # noqa: E402
from appliance.store.migrations import migrate  # noqa: E402
from models.registry import default  # noqa: E402
from sync import bundle, enrolment, keys, policy
from sync.box import outbox, transport  # noqa: E402
from sync.hub import home as hub_store

RESULTS = REPO / "bench" / "results" / "sync.json"
TARGETS = {"sealed_per_s": 50_000, "bytes_per_answer": 48, "drain_s": 60}


def answer_rows(count: int, learners: int = 500) -> list[list]:
    """Answers shaped as the policy sends them (pseudonymous learners, real-looking ids)."""
    rng = random.Random(7)
    people = [os.urandom(12).hex() for _ in range(learners)]
    items = [f"fr{lesson:02d}-{n:02d}" for lesson in range(1, 12) for n in range(1, 9)]
    rows = []
    for _ in range(count):
        item = rng.choice(items)
        rows.append([uuid7(), rng.choice(people), item, f"lesson-{item[2:4]}",
                     int(rng.random() < 0.7), rng.choice((0, 0, 0, 1, 2)),
                     rng.randint(2_000, 60_000)])  # fmt: skip
    return sorted(rows)


def seal_and_open(suite: str, rows: list[list], repeats: int = 5) -> dict:
    box, district = keys.generate("bench-box"), keys.generate("district")
    records = {"attempts": {"fields": policy.FIELDS["attempts"], "rows": rows}}
    header = bundle.Header("bench-box", 1, "", "2026-01-01T00:00:00Z",
                           bundle.counts_of(records), suite)  # fmt: skip
    seal_s, open_s, size = [], [], 0
    for _ in range(repeats):
        started = time.process_time()
        data = bundle.seal(header, records, district.public(), box)
        seal_s.append(time.process_time() - started)
        started = time.process_time()
        bundle.open_bundle(data, lambda _: box.public(), district)
        open_s.append(time.process_time() - started)
        size = len(data)
    return {
        "records": len(rows),
        "bundle_bytes": size,
        "bytes_per_answer": round(size / len(rows), 2),
        "sealed_per_s": round(len(rows) / statistics.median(seal_s)),
        "opened_per_s": round(len(rows) / statistics.median(open_s)),
    }


def demo_school(rounds: int = 8, per_round: int = 3) -> dict:
    """The demo school's bytes per answer with every record counted (answers traced by the
    shipped model, so mastery and class records go too): its history in one backlog
    bundle, then `rounds` syncs 15 minutes apart, each after every learner answered
    `per_round` questions, as a school day's bundles go."""
    home = Path(tempfile.mkdtemp(prefix="schoolbox-sync-demo-")) / "box"
    home.mkdir(parents=True)
    config = Config(home=home)
    db = open_db(config.db_path)
    migrate(db)
    ensure_secret(config)
    seed(db, config)
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, "sync", True)
    default.install_knowledge_tracing(home)
    enrolment.ensure_box_keys(home, site.get(db)["box_id"])
    enrolment.pin_district(home, keys.generate("district").public().to_json())
    knowledge.follow(db, home)
    backlog = _sealed(db, home)
    learners = [r[0] for r in db.conn.execute("SELECT id FROM users WHERE role = 'learner'")]
    items = [content.item(db, r[0]) for r in db.conn.execute("SELECT id FROM items")]
    rng = random.Random(5)
    day = {"bundles": 0, "bytes": 0, "records": {}}
    for _ in range(rounds):
        for learner in learners:
            for item in rng.sample(items, per_round):
                took = rng.randint(3_000, 60_000)
                attempts.record(db, learner, item, "1", rng.random() < 0.7, 0, took, None)
        knowledge.follow(db, home)
        found = _sealed(db, home)
        day["bundles"] += found["bundles"]
        day["bytes"] += found["bytes"]
        for kind, count in found["records"].items():
            day["records"][kind] = day["records"].get(kind, 0) + count
    db.conn.close()
    day["bytes_per_answer"] = round(day["bytes"] / day["records"]["attempts"], 1)
    return {"backlog": backlog, "every_15_min": day}


def _sealed(db, home: Path) -> dict:
    """Seal what waits; the new bundles' count, bytes and records (then mark them sent)."""
    outbox.seal_pending(db, home)
    sealed = outbox.pending(db)
    records: dict[str, int] = {}
    for row in sealed:
        for kind, count in json.loads(row["counts"]).items():
            records[kind] = records.get(kind, 0) + count
    total = sum(row["bytes"] for row in sealed)
    with transaction(db):  # as if acknowledged: the next call sees only new bundles
        db.conn.execute("UPDATE sync_outbox SET acked_at = 'bench' WHERE acked_at IS NULL")
    answers = records.get("attempts", 0)
    return {"bundles": len(sealed), "bytes": total, "records": records,
            "bytes_per_answer": round(total / answers, 1) if answers else None}  # fmt: skip


def month_box(home: Path, days: int, learners: int = 500, per_day: int = 40) -> int:
    """A box with the demo content and `learners` x `days` x `per_day` answers."""
    config = Config(home=home)
    home.mkdir(parents=True, exist_ok=True)
    db = open_db(config.db_path)
    migrate(db)
    ensure_secret(config)
    seed(db, config)
    items = [(r[0], r[1]) for r in db.conn.execute("SELECT id, lesson_id FROM items")]
    with transaction(db):
        people = [users.create_learner(db, audit.SYSTEM, f"L{n}", "2468", b"k" * 32)
                  for n in range(learners)]  # fmt: skip
        site.set_consent(db, audit.SYSTEM, "sync", True)
    rng = random.Random(3)
    start = datetime(2026, 10, 1, 8, tzinfo=UTC)
    for day in range(days):
        rows = []
        for learner in people:
            for n in range(per_day):
                at = start + timedelta(days=day, seconds=30 * n + rng.randint(0, 20))
                item, lesson = rng.choice(items)
                when = at.isoformat().replace("+00:00", "Z")
                rows.append((uuid7(), learner, item, lesson, "1", int(rng.random() < 0.7), 0,
                             rng.randint(2_000, 60_000), when))  # fmt: skip
        with transaction(db):
            db.conn.executemany(
                "INSERT INTO attempts (id, learner_id, item_id, lesson_id, response, correct,"
                " hints_used, duration_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    count = db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    db.conn.close()
    return count


def drain(days: int) -> dict:
    """Seal a school's backlog and send it to a real hub on loopback; time both."""
    work = Path(tempfile.mkdtemp(prefix="schoolbox-sync-bench-"))
    box_home, hub_home = work / "box", work / "hub"
    answers = month_box(box_home, days)
    db = open_db(box_home / "schoolbox.db")
    found = site.get(db)
    box_keys = enrolment.ensure_box_keys(box_home, found["box_id"])
    district = hub_store.init(hub_home)
    hub_db = hub_store.open_hub(hub_home)
    hub_store.enrol(hub_db, enrolment.request(box_keys, found["name"]))
    hub_db.close()
    enrolment.pin_district(box_home, district.public().to_json())
    port = _free_port()
    script = Path(sys.executable).parent / "schoolbox"
    hub = subprocess.Popen(
        [str(script), "hub", "--hub-home", str(hub_home), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            if transport.reachable(url, 1):
                break
            time.sleep(0.1)
        started = time.perf_counter()
        sealed = outbox.seal_pending(db, box_home)
        sealed_s = time.perf_counter() - started
        sent = transport.send_pending(db, box_home, url)
        total_s = time.perf_counter() - started
    finally:
        hub.terminate()
        hub.wait(10)
    hub_db = hub_store.open_hub(hub_home)
    at_hub = hub_db.execute("SELECT count(*) FROM attempts").fetchone()[0]
    hub_db.close()
    return {
        "answers": answers,
        "bundles": len(sealed),
        "acknowledged": sent,
        "at_hub": at_hub,
        "seal_s": round(sealed_s, 1),
        "drain_s": round(total_s, 1),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=20, help="school days of answers to drain")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = answer_rows(20_000)
    suites = {suite: seal_and_open(suite, rows) for suite in bundle.SUITES}
    demo = demo_school()
    month = drain(args.days)
    report = {
        "benchmark": "sync",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "suites": suites,
        "hybrid_over_x25519": {
            "seal_time": round(
                suites["x25519"]["sealed_per_s"] / suites["mlkem768-x25519"]["sealed_per_s"], 3
            ),
            "extra_bytes_per_bundle": suites["mlkem768-x25519"]["bundle_bytes"]
            - suites["x25519"]["bundle_bytes"],
        },  # fmt: skip
        "demo_school": demo,
        "month": month,
        "targets": TARGETS,
    }
    print(f"{'suite':<18}{'answers':>9}{'bytes/answer':>14}{'sealed/s':>11}{'opened/s':>11}")
    for name, row in suites.items():
        print(f"{name:<18}{row['records']:>9}{row['bytes_per_answer']:>14}"
              f"{row['sealed_per_s']:>11}{row['opened_per_s']:>11}")  # fmt: skip
    for name, found in demo.items():
        print(f"demo school, {name}: {found['bytes_per_answer']} bytes per answer, "
              f"every record counted ({found['bytes']} B, {found['records']})")  # fmt: skip
    hybrid = report["hybrid_over_x25519"]
    print(f"\nhybrid suite: {hybrid['seal_time']}x the sealing time, "
          f"+{hybrid['extra_bytes_per_bundle']} bytes a bundle")  # fmt: skip
    print(f"month: {month['answers']} answers in {month['bundles']} bundles; sealed in "
          f"{month['seal_s']} s, all acknowledged after {month['drain_s']} s; "
          f"{month['at_hub']} at the hub")  # fmt: skip
    checks = [
        ("sealed/s on one core", suites["x25519"]["sealed_per_s"], ">=", TARGETS["sealed_per_s"]),
        ("bytes per answer", suites["x25519"]["bytes_per_answer"], "<=",
         TARGETS["bytes_per_answer"]),
        ("month drained, s", month["drain_s"], "<", TARGETS["drain_s"]),
    ]  # fmt: skip
    for name, value, op, target in checks:
        ok = value >= target if op == ">=" else value <= target if op == "<=" else value < target
        print(f"{'PASS' if ok else 'FAIL'}  {name:<22} {op} {target:<8} got {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWrote {args.json}")
    return 0 if month["at_hub"] == month["answers"] else 1


if __name__ == "__main__":
    sys.exit(main())
