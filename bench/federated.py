"""Federated benchmark: FedAvg over ten unlike schools against training in one place.

Data: fold 1 of ../shared/data/kt/assist2009. Its test learners are the held-out school
that scores every row. Of its train and valid learners a random 10% are a *public corpus*
(as the data of the model every box ships with is public), and the rest are shared out
among 10 synthetic schools. Each school is a real box database (schema, consent,
schoolbox.toml) read through appliance/store/training_data.py, as the ClientApp reads it.

The schools differ (non-IID) in two ways:

- skill mix: learners are sorted by the skill they practised most (assist2009's skill
  indices follow ASSISTments' topic order: graphs, then statistics, then angles...) and
  cut into 10 equal topic bands; school s takes most of its learners from band s (a band
  weighs 1 for its own school and 0.04 for each other school);
- ability: each school has its own centre and spread of ability (a learner's percentile
  of right answers), centres 0.15 to 0.85 and spreads 0.10 to 0.35 in a shuffled order;
  a learner's weight for a school is also the normal density of their percentile there.

A learner goes to one school drawn with those weights (seed 7); the JSON lists each
school's size, its share of its own band and its right-answer rate.

An assist2009 problem tagged with different skill sets in different rows is given the
union of them, since a box's database stores an item's skills once; every row uses the
same canonical answers. Scoring (every row, the same learners): the final weights are
scored with `federated.task.evaluate_recent` on the held-out box, i.e. AUC on the most
recent 20% of each test learner's answers, predicted from all before, with difficulties
from their older 80%: a new school receiving the model.

Rows, each with the same budget of `rounds x local epochs` passes over the data:

- public model: training.model.train on every answer of the public corpus, from
  task.new_model(0); the start of the DP rows;

- centralised: training.model.train on every school's training answers pooled (each
  learner's older 80%, what the boxes train on), rounds x local epochs epochs, from
  task.new_model(0); "centralised from public" the same from the public model;
- schools alone: each school's box trains alone (task.train_locally) for that many epochs;
  the row is the mean over the ten schools (and the spread);
- FedAvg, FedAvg with SecAgg+: the repository's ServerApp and ClientApp (federated/) on
  Flower's Simulation Engine, every box in every round, from task.new_model(0);
- FedAvg with DP (epsilon 1, 3, 8 per box over the whole run, delta 1e-5): the same,
  from the public model, fine-tuning at `--dp-lr` for `--dp-local-epochs` a round. DP-SGD
  from a fresh model on schools of ~300 learners learns little beyond item difficulty
  (0.67 AUC at every epsilon, measured at 5 rounds x 3 epochs); a district starts
  private runs from a public model, as the research on DP training does. The DP target
  is judged against the better centralised row.

The default budget, 5 rounds x 3 local epochs at lr 3e-3, was chosen on this split: with
one local epoch a round a box takes only a handful of Adam steps, and FedAvg after 10 x 1
was 0.015 AUC short of centralised; 10 x 2, 6 x 3 and 10 x 3 came within 0.004-0.007 of
it, and 5 x 3 keeps the three DP rows (DP-SGD takes one gradient per learner) inside the
run's time. Centralised and alone get the same 15 epochs.

Bytes per box per round are the serialised Flower Messages (protobuf, as the SuperLink
carries them) counted at the server's Grid, split into down (district to box) and up;
the table shows train plus evaluate messages per round, the JSON each apart. A box's round
cost is measured outside Ray, in a fresh process on one thread, for a 500-learner school's
month (500 learners x 20 school days x 40 answers = 400,000 answers, as bench/sync.py
counts a month; each learner's answers are assist2009 learners' sequences strung
together): the ClientApp's train and evaluate handlers called directly, reporting CPU
and wall seconds and the process's peak RSS (VmHWM), with and without DP; the median of
`--repeats` runs. Targets (issue 7): FedAvg within 0.01 AUC of centralised and at least
0.02 above the schools-alone mean; DP at epsilon 8 within 0.02 of centralised; a round
under 60 s of one core and under 500 MB for the 500-learner month.

    .venv/bin/python bench/federated.py            # the full run (45 min on 2 cores)
    .venv/bin/python bench/federated.py --quick    # a quick look: 3 schools, 2 rounds
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"  # before anything imports flwr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from appliance.config import Config, ensure_secret  # noqa: E402
from appliance.store import (  # noqa: E402
    audit,
    migrations,
    open_db,
    site,
    training_data,
    transaction,  # noqa: E402
)
from appliance.store.ids import uuid7  # noqa: E402
from models.knowledge_tracing import data as kt_data  # noqa: E402
from models.knowledge_tracing.data import Answer  # noqa: E402
from models.knowledge_tracing.training import datasets

RESULTS = REPO / "bench" / "results" / "federated.json"
TARGETS = {
    "fedavg_within_of_centralised": 0.01,
    "fedavg_above_alone": 0.02,
    "dp8_within_of_centralised": 0.02,
    "round_cpu_s": 60,
    "round_peak_mb": 500,
}
# Any hour; and a school that accepts unmasked and non-private runs, so that the plain and
# DP-only rows can run at all (a box insists on SecAgg+ by default).
BOX_SETTINGS = """[schoolbox]
federated_hours = "0-24"
federated_idle_minutes = 0
federated_require_secure_aggregation = false
"""
MONTH = {"learners": 500, "days": 20, "per_day": 40}
SEED = 7
ROWS = ["centralised", "alone", "fedavg", "secagg", "dp", "cost"]
PUBLIC_SHARE = 0.1  # of the learners outside the held-out school: the public corpus


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 schools' worth, 2 rounds")
    parser.add_argument("--schools", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--local-epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--dp-lr", type=float, default=3e-3, help="DP fine-tunes the public model")
    parser.add_argument("--dp-local-epochs", type=int, default=1)
    parser.add_argument("--epsilons", type=float, nargs="*", default=[1.0, 3.0, 8.0])
    parser.add_argument("--repeats", type=int, default=3, help="box-round measurements")
    parser.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS, help="what to run")
    parser.add_argument("--month-days", type=int, default=MONTH["days"])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--box-round", type=Path, help=argparse.SUPPRESS)  # the child's job
    parser.add_argument("--dp-epsilon", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:  # SecAgg+ needs 3 boxes at least
        args.schools, args.rounds, args.local_epochs, args.repeats = 3, 2, 1, 1
        args.month_days = 2
        args.epsilons = [8.0]
    if args.json is None:  # a quick look never overwrites the full run's figures
        args.json = Path(tempfile.gettempdir()) / "federated-quick.json" if args.quick else RESULTS
    return args


# --- the schools ---------------------------------------------------------------------------


def canonical(learners: list[list[Answer]]) -> list[list[Answer]]:
    """Every answer to a problem with the union of the skills its rows were tagged with
    (a box stores an item's skills once); learners with fewer than 2 answers left out,
    as training_data.read leaves them out."""
    skills: dict[int, set[int]] = {}
    for learner in learners:
        for a in learner:
            skills.setdefault(a.problem, set()).update(a.skills)
    tagged = {p: tuple(sorted(s)) for p, s in skills.items()}
    return [[Answer(a.problem, tagged[a.problem], a.correct) for a in learner]
            for learner in learners if len(learner) >= 2]  # fmt: skip


def share_out(learners: list[list[Answer]], count: int, seed: int = SEED) -> tuple[list, dict]:
    """Learner indices per school: each school mostly one topic band, its own ability mix."""
    rng = np.random.default_rng(seed)
    n = len(learners)
    favourite = [Counter(s for a in learner for s in a.skills).most_common(1)[0][0]
                 for learner in learners]  # fmt: skip
    band = np.empty(n, dtype=int)
    band[np.argsort(favourite, kind="stable")] = np.arange(n) * count // n
    rate = np.array([sum(a.correct for a in learner) / len(learner) for learner in learners])
    percentile = (np.argsort(np.argsort(rate + rng.uniform(0, 1e-6, n))) + 0.5) / n
    centres = rng.permutation(np.linspace(0.15, 0.85, count))
    spreads = rng.permutation(np.linspace(0.10, 0.35, count))
    topic = np.where(band[:, None] == np.arange(count)[None, :], 1.0, 0.04)
    ability = np.exp(-0.5 * ((percentile[:, None] - centres[None, :]) / spreads[None, :]) ** 2)
    weight = topic * ability / spreads[None, :]
    chosen = [rng.choice(count, p=w / w.sum()) for w in weight]
    schools = [[i for i in range(n) if chosen[i] == s] for s in range(count)]
    return schools, {"band": band.tolist(), "centres": centres.tolist(),
                     "spreads": spreads.tolist()}  # fmt: skip


def make_box(home: Path, learners: list[list[Answer]], name: str, days_ago: int = 3) -> Path:
    """A box at `home`: a migrated database holding these learners' answers (one item per
    problem, one skill per skill index), consenting to federated training, with a
    training window of any hour. The last answer is `days_ago` days old."""
    home.mkdir(parents=True)
    (home / "schoolbox.toml").write_text(BOX_SETTINGS)
    config = Config(home=home, testing=True)
    ensure_secret(config)
    db = open_db(config.db_path)
    migrations.migrate(db)
    problems = {a.problem: a.skills for learner in learners for a in learner}
    skills = sorted({s for tagged in problems.values() for s in tagged})
    now = datetime.now(UTC)
    stamp = now.isoformat().replace("+00:00", "Z")
    with transaction(db):
        site.create(db, name)
        db.conn.execute(
            "INSERT INTO packs (id, version, title, language, licence, authors, imported_at)"
            " VALUES ('assist2009', '1', 'ASSISTments 2009', 'en', 'research', '[]', ?)",
            (stamp,),
        )
        db.conn.execute(
            "INSERT INTO lessons (id, pack_id, subject, title, position, body_md, body_html)"
            " VALUES ('a09', 'assist2009', 'maths', 'Skill builder', 1, '', '')"
        )
        db.conn.executemany(
            "INSERT INTO skills (id, pack_id, name) VALUES (?, 'assist2009', ?)",
            [(f"s{s}", f"skill {s}") for s in skills],
        )
        db.conn.executemany(
            "INSERT INTO items (id, pack_id, lesson_id, type, position, prompt_html, answer)"
            " VALUES (?, 'assist2009', 'a09', 'numeric', ?, '', '{}')",
            [(f"p{p}", n) for n, p in enumerate(problems)],
        )
        db.conn.executemany(
            "INSERT INTO item_skills (item_id, skill_id) VALUES (?, ?)",
            [(f"p{p}", f"s{s}") for p, tagged in problems.items() for s in tagged],
        )
        db.conn.executemany(
            "INSERT INTO users (id, public_id, role, display_name, created_at)"
            " VALUES (?, ?, 'learner', ?, ?)",
            [(n + 1, uuid7(), f"Learner {n + 1}", stamp) for n in range(len(learners))],
        )
        site.set_consent(db, audit.SYSTEM, training_data.FEATURE, True)
    # Forty answers a school day, 30 s apart, the last one `days_ago` days back.
    end_ms = int((now - timedelta(days=days_ago)).timestamp() * 1000)
    for n, learner in enumerate(learners):
        first_ms = end_ms - (len(learner) // 40 + 1) * 86_400_000
        rows = []
        for k, a in enumerate(learner):
            at_ms = first_ms + (k // 40) * 86_400_000 + (k % 40) * 30_000
            when = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")
            rows.append((uuid7(at_ms), n + 1, f"p{a.problem}", "a09", str(a.correct),
                         a.correct, when.replace("+00:00", "Z")))  # fmt: skip
        with transaction(db):
            db.conn.executemany(
                "INSERT INTO attempts (id, learner_id, item_id, lesson_id, response, correct,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()
    return home


def month_of_answers(pool: list[list[Answer]], days: int, seed: int = SEED) -> list[list[Answer]]:
    """500 learners x `days` school days x 40 answers, each learner's strung together from
    randomly drawn assist2009 learners' sequences."""
    rng = np.random.default_rng(seed)
    size = days * MONTH["per_day"]
    month = []
    for _ in range(MONTH["learners"]):
        answers: list[Answer] = []
        while len(answers) < size:
            answers += pool[rng.integers(len(pool))]
        month.append(answers[:size])
    return month


# --- the rows ------------------------------------------------------------------------------


def centralised(older: list[list[Answer]], args, heldout, start: Path | None = None) -> dict:
    """Training in one place on `older` answers, from a fresh model or from the weights
    in `start` (.npz); the row, with the trained weights under "arrays"."""
    from federated import task
    from models.knowledge_tracing.training import model as kt_train

    started = time.perf_counter()
    model = task.new_model(0)
    if start is not None:
        with np.load(start) as stored:
            model = task.with_weights([stored[k] for k in stored.files])
    trained = kt_train.train(
        older, [], kt_data.difficulty(older), epochs=args.rounds * args.local_epochs,
        lr=args.lr, seed=0, model=model, log=lambda _: None,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    arrays = task.weights(trained.model)
    return {"auc": task.evaluate_recent(arrays, heldout)["auc"], "seconds": round(seconds, 1),
            "arrays": arrays}  # fmt: skip


def alone(datas: list, args, heldout) -> dict:
    from federated import task

    started = time.perf_counter()
    initial = task.weights(task.new_model(0))
    aucs = []
    for data in datas:
        local = task.train_locally(
            initial, data, epochs=args.rounds * args.local_epochs, lr=args.lr, seed=0
        )
        aucs.append(task.evaluate_recent(local.arrays, heldout)["auc"])
    return {
        "auc": statistics.mean(aucs),
        "auc_per_school": [round(a, 4) for a in aucs],
        "auc_sd": round(statistics.stdev(aucs), 4) if len(aucs) > 1 else 0.0,
        "seconds": round(time.perf_counter() - started, 1),
    }


@contextmanager
def counted_messages():
    """Bytes of every Message the server's Grid sends and receives, serialised as the
    SuperLink carries them, by direction and message type."""
    from flwr.common.serde import message_to_proto
    from flwr.superlink.grid import InMemoryGrid

    counts: dict[str, list[int]] = {}
    push, pull = InMemoryGrid.push_messages, InMemoryGrid.pull_messages

    def tally(direction: str, messages) -> None:
        for message in messages:
            kind = message.metadata.message_type.split(".")[0]
            entry = counts.setdefault(f"{direction} {kind}", [0, 0])
            entry[0] += 1
            entry[1] += message_to_proto(message).ByteSize()

    def counting_push(self, messages):
        messages = list(messages)
        ids = push(self, messages)  # gives each its message id first
        tally("down", messages)
        return ids

    def counting_pull(self, message_ids):
        replies = list(pull(self, message_ids))
        tally("up", replies)
        return replies

    InMemoryGrid.push_messages, InMemoryGrid.pull_messages = counting_push, counting_pull
    try:
        yield counts
    finally:
        InMemoryGrid.push_messages, InMemoryGrid.pull_messages = push, pull


def federated_row(boxes: list[Path], output: Path, args, heldout, **settings) -> dict:
    """One run of the repository's ServerApp and ClientApp on the Simulation Engine."""
    os.environ["SCHOOLBOX_FEDERATED_BOXES"] = os.pathsep.join(str(b) for b in boxes)
    from flwr.simulation import run_simulation

    from federated import client_app, server_app, task

    config = {
        "output": str(output),
        "min-nodes": len(boxes),
        "num-server-rounds": args.rounds,
        "local-epochs": args.local_epochs,
        "learning-rate": args.lr,
        **settings,
    }
    with counted_messages() as counts:
        started = time.perf_counter()
        run_simulation(
            server_app=server_app.make_app(config), client_app=client_app.app,
            num_supernodes=len(boxes),
            backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}},
        )  # fmt: skip
        wall = time.perf_counter() - started
    summary = json.loads((output / "run.json").read_text())
    with np.load(output / "global.npz") as stored:
        final = [stored[k] for k in stored.files]
    boxes_n, rounds = len(boxes), args.rounds

    def per_box_round(key: str, rounds_seen: int) -> int:
        return round(counts.get(key, [0, 0])[1] / (boxes_n * rounds_seen))

    # The run scores the starting model once, then every round's: rounds + 1 evaluations.
    traffic = {
        "train_down": per_box_round("down train", rounds),
        "train_up": per_box_round("up train", rounds),
        "evaluate_down": per_box_round("down evaluate", rounds + 1),
        "evaluate_up": per_box_round("up evaluate", rounds + 1),
        "messages": {k: {"count": c, "bytes": b} for k, (c, b) in counts.items()},
    }
    traffic["down"] = traffic["train_down"] + traffic["evaluate_down"]
    traffic["up"] = traffic["train_up"] + traffic["evaluate_up"]
    return {
        "auc": task.evaluate_recent(final, heldout)["auc"],
        "rounds": rounds,
        "bytes_per_box_round": traffic,
        "simulation_s": round(wall, 1),
        "simulation_s_per_round": round(wall / rounds, 1),
        "epsilon_spent": summary["epsilon"],
        "boxes_trained": [h.get("boxes_trained") for h in summary["history"]],
        "every_box_every_round": all(h.get("boxes_trained") == boxes_n for h in summary["history"]),
        "boxes_auc_by_round": [round(h.get("auc", float("nan")), 4) for h in summary["history"]],
        "boxes_auc_initial": round(summary["initial"].get("auc", float("nan")), 4),
    }


# --- one box's round, on one core ------------------------------------------------------------


def box_round(home: Path, args) -> dict:
    """The child's job: the ClientApp's train then evaluate handler on `home`, timed."""
    import torch

    torch.set_num_threads(1)
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, Metadata, RecordDict
    from flwr.common.serde import message_to_proto

    from federated import client_app, task

    arrays = task.weights(task.new_model(0))
    config = {"server-round": 1, "num-server-rounds": args.rounds,
              "local-epochs": args.local_epochs, "learning-rate": args.lr,
              "dp-epsilon": args.dp_epsilon}  # fmt: skip
    context = Context(run_id=1, node_id=1, node_config={"box-home": str(home)},
                      state=RecordDict(), run_config={})  # fmt: skip
    before_mb = _peak_mb()
    result = {"rss_after_imports_mb": before_mb}
    for kind in ("train", "evaluate"):
        content = RecordDict({"arrays": ArrayRecord(arrays), "config": ConfigRecord(config)})
        metadata = Metadata(run_id=1, message_id=uuid7(), src_node_id=0, dst_node_id=1,
                            reply_to_message_id="", group_id="1", created_at=time.time(),
                            ttl=3600.0, message_type=kind)  # fmt: skip
        message = Message(content=content, metadata=metadata)
        wall, cpu = time.perf_counter(), time.process_time()
        reply = client_app.app(message, context)
        result[f"{kind}_s"] = time.perf_counter() - wall
        result[f"{kind}_cpu_s"] = time.process_time() - cpu
        result[f"peak_after_{kind}_mb"] = _peak_mb()
        if reply.has_error():
            raise RuntimeError(f"the box's {kind} failed: {reply.error.reason}")
        result[f"{kind}_bytes_up"] = message_to_proto(reply).ByteSize()
        if kind == "train":
            arrays = reply.content["arrays"].to_numpy_ndarrays()
    result["round_s"] = result["train_s"] + result["evaluate_s"]
    result["round_cpu_s"] = result["train_cpu_s"] + result["evaluate_cpu_s"]
    result["peak_mb"] = _peak_mb()
    return result


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure_box_round(home: Path, args, epsilon: float) -> dict:
    """Median of `repeats` box rounds, each in a fresh process on one thread."""
    runs = []
    for _ in range(args.repeats):
        found = subprocess.run(
            [sys.executable, __file__, "--box-round", str(home), "--dp-epsilon", str(epsilon),
             "--rounds", str(args.rounds), "--local-epochs", str(args.local_epochs),
             "--lr", str(args.lr)],
            capture_output=True, text=True, check=False,
            env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )  # fmt: skip
        if found.returncode != 0:
            raise RuntimeError(f"the box round failed:\n{found.stderr[-3000:]}")
        runs.append(json.loads(found.stdout.strip().splitlines()[-1]))
    keys = [k for k in runs[0] if isinstance(runs[0][k], int | float)]
    median = {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}
    return {**median, "repeats": len(runs), "runs": runs}


# --- the report ----------------------------------------------------------------------------


def code_version() -> dict:
    """The commit measured, and a digest of any uncommitted changes to the code it runs."""
    paths = ["federated", "models", "appliance", "bench/federated.py"]
    try:
        commit = _git("rev-parse", "--short", "HEAD").strip()
        diff = _git("diff", "HEAD", "--", *paths)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    digest = hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None
    return {"commit": commit, "dirty": bool(diff), "uncommitted_sha256": digest}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout  # fmt: skip


def targets_of(rows: dict, cost: dict) -> list[dict]:
    """Each target beside the figure it judges (only those whose rows were run)."""
    auc = {key: row["auc"] for key, row in rows.items()}
    checks = []
    if {"centralised", "fedavg"} <= auc.keys():
        checks.append(("FedAvg AUC: centralised minus FedAvg", auc["centralised"] - auc["fedavg"],
                       "<=", TARGETS["fedavg_within_of_centralised"]))  # fmt: skip
    if {"alone", "fedavg"} <= auc.keys():
        checks.append(("FedAvg AUC: FedAvg minus schools alone", auc["fedavg"] - auc["alone"],
                       ">=", TARGETS["fedavg_above_alone"]))  # fmt: skip
    if {"centralised", "dp_8"} <= auc.keys():
        # Against the better of centralised from a fresh model and from the public one.
        best = max(auc["centralised"], auc.get("centralised_public", auc["centralised"]))
        checks.append(("DP eps 8 AUC: best centralised minus DP", best - auc["dp_8"],
                       "<=", TARGETS["dp8_within_of_centralised"]))  # fmt: skip
    for mode, row in cost.items():
        checks.append((f"box round ({mode}): CPU s on one core", row["round_cpu_s"], "<",
                       TARGETS["round_cpu_s"]))  # fmt: skip
        checks.append((f"box round ({mode}): peak MB", row["peak_mb"], "<",
                       TARGETS["round_peak_mb"]))  # fmt: skip
    out = []
    for name, value, op, target in checks:
        ok = value <= target if op == "<=" else value >= target if op == ">=" else value < target
        out.append({"target": name, "value": round(value, 4), "op": op, "limit": target,
                    "met": bool(ok)})  # fmt: skip
    return out


LABELS = {
    "public": "public model (DP's start)",
    "centralised": "centralised",
    "centralised_public": "centralised from public",
    "alone": "each school alone (mean)",
    "fedavg": "FedAvg",
    "secagg": "FedAvg + SecAgg+",
}


def label_of(key: str) -> str:
    return LABELS.get(key) or f"FedAvg + DP eps {key.removeprefix('dp_')}"


def print_table(report: dict) -> None:
    rows, cost, settings = report["rows"], report["box_round"], report["settings"]
    print(f"\nheld-out school: {report['heldout']['learners']} learners, "
          f"{report['heldout']['scored_answers']} recent answers scored; "
          f"{settings['schools']} schools; {settings['rounds']} rounds x "
          f"{settings['local_epochs']} local epoch(s), so "
          f"{settings['epochs_centralised_and_alone']} epochs for centralised and alone; "
          f"lr {settings['lr']}")  # fmt: skip
    print(f"\n{'row':26}{'AUC':>7}{'rounds':>7}{'up B':>8}{'down B':>8}{'CPU s':>7}"
          f"{'peak MB':>8}{'sim s/rd':>9}")  # fmt: skip
    print(f"{'':26}{'':>7}{'':>7}{'(per box and round)':>23}{'(box, 1 core)':>16}"
          f"{'(2 cores)':>9}")  # fmt: skip
    for key, row in rows.items():
        traffic = row.get("bytes_per_box_round") or {}
        box = cost.get("dp" if key.startswith("dp_") else "plain", {}) if traffic else {}
        print(f"{label_of(key):26}{row['auc']:>7.4f}{row.get('rounds', '-'):>7}"
              f"{traffic.get('up', '-'):>8}{traffic.get('down', '-'):>8}"
              f"{box.get('round_cpu_s', '-'):>7}{box.get('peak_mb', '-'):>8}"
              f"{row.get('simulation_s_per_round', '-'):>9}")  # fmt: skip
    if "alone" in rows:
        print(f"schools alone, per school: {rows['alone']['auc_per_school']}")
    for mode, box in cost.items():
        print(f"box round, {mode} ({report['month']['learners']} learners, "
              f"{report['month']['answers']} answers; one thread; median of {box['repeats']}): "
              f"train {box['train_cpu_s']} + evaluate {box['evaluate_cpu_s']} CPU s "
              f"({box['round_s']} s wall); peak {box['peak_mb']} MB, of which "
              f"{box['rss_after_imports_mb']} MB after imports")  # fmt: skip
    if {"fedavg", "secagg"} <= rows.keys():
        print("SecAgg+ rows: the box's masking and key-sharing work is not in the one-core "
              "figures; the simulation's round took "
              f"{rows['secagg']['simulation_s_per_round']} s against "
              f"{rows['fedavg']['simulation_s_per_round']} s for plain FedAvg")  # fmt: skip
    print()
    for t in report["targets"]:
        print(f"{'PASS' if t['met'] else 'FAIL'}  {t['target']:<44} {t['op']:>2} "
              f"{t['limit']:<6} got {t['value']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.box_round:
        print(json.dumps(box_round(args.box_round, args)))
        return 0
    if not (datasets.ASSIST2009 / "assist2009_pid_train1.csv").is_file():
        print(f"The data set is not here: {datasets.ASSIST2009} (fold 1 of assist2009; "
              "see ../shared/data/README.md).")  # fmt: skip
        return 1
    started = time.perf_counter()
    import torch

    torch.set_num_threads(1)  # as a box trains; two threads beside Ray's workers oversubscribe
    fold = kt_data.fold(1, datasets.ASSIST2009)
    everyone = canonical(fold["train"] + fold["valid"] + fold["test"])
    tested = len(canonical(fold["test"]))
    pupils, heldout_learners = everyone[:-tested], everyone[-tested:]
    # A public corpus (as the shipped model's data is public) comes out first, at random;
    # the schools share out the rest. DP runs start from the model trained on it.
    public_ids = set(np.random.default_rng(SEED).permutation(len(pupils))[
        : round(PUBLIC_SHARE * len(pupils))].tolist())  # fmt: skip
    public = [pupils[i] for i in sorted(public_ids)]
    pupils = [learner for i, learner in enumerate(pupils) if i not in public_ids]
    schools, split = share_out(pupils, 10)
    schools = schools[: args.schools]  # --quick: the first few of the ten
    work = Path(tempfile.mkdtemp(prefix="schoolbox-federated-bench-"))
    print(f"building {len(schools)} school boxes and the held-out box in {work}...", flush=True)
    boxes = [make_box(work / f"school{s}", [pupils[i] for i in school], f"School {s}")
             for s, school in enumerate(schools)]  # fmt: skip
    held_box = make_box(work / "heldout", heldout_learners, "Held-out school")
    datas = [training_data.read(b / "schoolbox.db") for b in boxes]
    heldout = training_data.read(held_box / "schoolbox.db")
    older = []
    for school, data in zip(schools, datas, strict=True):
        if [len(x) for x in data.learners] != [len(pupils[i]) for i in school]:
            raise RuntimeError("a box's learners did not read back as they were written")
        older += [pupils[i][:cut] for i, cut in zip(school, data.recent_from, strict=True)]
    school_info = [
        {"learners": len(school), "answers": sum(len(pupils[i]) for i in school),
         "own_band_share": round(sum(split["band"][i] == s for i in school) / len(school), 3),
         "right_rate": round(statistics.mean(a.correct for i in school for a in pupils[i]), 3),
         "ability_centre": round(split["centres"][s], 3),
         "ability_spread": round(split["spreads"][s], 3)}
        for s, school in enumerate(schools)
    ]  # fmt: skip
    for s, info in enumerate(school_info):
        print(f"  school {s}: {info}")

    public_npz = work / "public.npz"

    def public_row() -> dict:
        found = centralised(public, args, heldout)  # every answer: the corpus is public
        np.savez(public_npz, *found.pop("arrays"))
        return {**found, "learners": len(public), "answers": sum(len(x) for x in public)}

    def centralised_row(start: Path | None = None) -> dict:
        found = centralised(older, args, heldout, start)
        found.pop("arrays")
        return {**found, "start": "public model" if start else "fresh"}

    def dp_row(epsilon: float) -> dict:
        found = federated_row(boxes, work / f"dp{epsilon:g}", args, heldout,
                              **{"dp-epsilon": epsilon, "initial": str(public_npz),
                                 "learning-rate": args.dp_lr,
                                 "local-epochs": args.dp_local_epochs})  # fmt: skip
        return {**found, "dp_epsilon": epsilon, "dp_delta": 1e-5, "start": "public model",
                "learning_rate": args.dp_lr, "local_epochs": args.dp_local_epochs}  # fmt: skip

    runs = {
        "public": public_row,  # always: the DP rows start from it
        "centralised": centralised_row,
        "centralised_public": lambda: centralised_row(public_npz),
        "alone": lambda: alone(datas, args, heldout),
        "fedavg": lambda: federated_row(boxes, work / "fedavg", args, heldout),
        "secagg": lambda: federated_row(boxes, work / "secagg", args, heldout,
                                        **{"secure-aggregation": True}),
        **{f"dp_{e:g}": (lambda e=e: dp_row(e)) for e in args.epsilons},
    }  # fmt: skip
    rows: dict[str, dict] = {}
    for key, run in runs.items():
        if key != "public" and key.split("_")[0] not in args.rows:
            continue
        print(f"{label_of(key)}...", flush=True)
        wall = time.perf_counter()
        rows[key] = {**run(), "row_s": round(time.perf_counter() - wall, 1)}
        print(f"  AUC {rows[key]['auc']:.4f} ({rows[key]['row_s']:.0f} s)", flush=True)
        if rows[key].get("every_box_every_round") is False:
            print(f"  WARNING: some box sat a round out: {rows[key]['boxes_trained']}")

    month, cost = month_of_answers(pupils, args.month_days), {}
    if "cost" in args.rows:
        print("a 500-learner month's box round on one core...", flush=True)
        month_box = make_box(work / "month", month, "Month school")
        cost = {"plain": measure_box_round(month_box, args, 0.0),
                "dp": measure_box_round(month_box, args, max(args.epsilons or [8.0]))}  # fmt: skip
    report = {
        "benchmark": "federated",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": code_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {
            "fold": 1,
            "schools": len(schools),
            "rounds": args.rounds,
            "local_epochs": args.local_epochs,
            "lr": args.lr,
            "epochs_centralised_and_alone": args.rounds * args.local_epochs,
            "public_share": PUBLIC_SHARE,
            "public_learners": len(public),
            "dp_learning_rate": args.dp_lr,
            "dp_local_epochs": args.dp_local_epochs,
            "quick": args.quick,
            "seed": SEED,
        },  # fmt: skip
        "method": {
            "scoring": "task.evaluate_recent on the held-out box (fold 1's test learners): "
            "AUC on each learner's most recent 20% of answers, from all before",
            "bytes": "serialised Flower Messages at the server's Grid, per box and round: "
            "train plus evaluate messages (each apart as well)",
            "box_round": "the ClientApp's train and evaluate handlers in a fresh process on "
            "one torch thread: CPU seconds, and peak RSS (VmHWM)",
        },
        "schools": school_info,
        "heldout": {
            "learners": len(heldout.learners),
            "scored_answers": heldout.answers - sum(heldout.recent_from),
        },  # fmt: skip
        "rows": rows,
        "month": {**MONTH, "days": args.month_days, "answers": sum(len(x) for x in month)},
        "box_round": cost,
        "box_round_dp_epsilon": max(args.epsilons or [8.0]),
        "targets": [],
        "run_s": 0.0,
    }
    report["targets"] = targets_of(rows, cost)
    report["run_s"] = round(time.perf_counter() - started, 1)
    print_table(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nran {report['run_s']:.0f} s; wrote {args.json}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
