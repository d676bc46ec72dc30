"""Tutor benchmark: what the box's path costs over llama.cpp alone, a class asking at once,
retrieval quality, and memory.

What it measures, in one run on one machine:

  1. Retrieval: recall@3 of the right lesson over bench/tutor_questions.yaml (learners'
     questions, each with the demo-pack lesson that answers it), by the same retrieval
     the tutor grounds its answers in. Target >= 0.9.
  2. Direct baseline: llama-cpp-python called in this process on the exact prompts the
     box builds for those questions (same model, same settings: context, threads, batch,
     sampling), streaming. Time to first token (TTFT) and decode tokens/s per prompt.
  3. The box's path: the same questions through the real server (`schoolbox serve`:
     waitress workers, then the tutor service over its Unix socket, then llama.cpp) as a
     signed-in learner, streamed as Server-Sent Events, timed at the client. Targets:
     >= 90% of the direct decode tokens/s, and < 50 ms added to the median TTFT.
  4. A class at once: N learners (default 20) ask at the same instant; a learner told to
     retry (503 + Retry-After) waits that long and asks again. Every request must end in
     an answer or a retry, never an error; it reports wait until the first word, p50/p95.
  5. A class (issue 15): 30 learners with one lesson open ask 30 different questions at
     the same instant, then a second round on two lessons (bench/tutor_class.yaml), through
     the old runtime (one answer at a time, `tutor_parallel = 1`) and the batching one
     (the box's default), each on a fresh server in this run with the same web tier. For
     each: answered, empty, cut, refused; first word p50/p95/max; whole answer p50/p95;
     answer tokens per second while answers flowed; CPU seconds; and one learner alone on
     the cached lesson. Targets: all answered, none empty, first word p95 < 5 s, aggregate
     >= 3x one stream, one learner on a cached lesson < 0.5 s to the first word.
  6. Memory: resident set size of the server's processes with the model loaded.

The two paths take turns, prompt by prompt (direct, then HTTP), so a slow moment of a
shared machine falls on both and each model's prompt-prefix cache sees the same
sequence. The added time to first token is the median of per-prompt differences, and is
also measured directly: the client's time to the first word minus the service's own
(queue plus llama.cpp's prompt processing), since prompt processing varies by hundreds
of milliseconds from run to run, far more than the path adds.

    .venv/bin/python bench/tutor.py                      # the default SmolLM2-135M
    .venv/bin/python bench/tutor.py --model /media/usb/qwen2.5-0.5b-instruct-q4_k_m.gguf

A run with --model writes bench/results/tutor-<model name>.json instead of tutor.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests
import yaml
from classroom_burst import code_version, free_port, start_server, stop_server
from spread import as_text, over_runs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance import config as config_module  # noqa: E402
from appliance.demo.seed import LEARNER_PIN, seed  # noqa: E402
from appliance.server import tutor_settings  # noqa: E402
from appliance.store import open_db  # noqa: E402
from appliance.store.migrations import migrate  # noqa: E402
from appliance.tutor import conversation as tutoring
from appliance.tutor import grounding as tutor_grounding  # noqa: E402
from models.registry import default  # noqa: E402
from models.registry import installed as store
from models.tutor import client as tutor_client  # noqa: E402
from models.tutor.runtime import load_llama  # noqa: E402

HOST = "127.0.0.1"
QUESTIONS = REPO / "bench" / "tutor_questions.yaml"
CLASS_QUESTIONS = REPO / "bench" / "tutor_class.yaml"
RESULTS = REPO / "bench" / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF to measure instead of the default")
    parser.add_argument("--prompts", type=int, default=12, help="questions timed per path")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--learners", type=int, default=20, help="asking at once")
    parser.add_argument(
        "--class-size", type=int, default=30, help="the class scenario's learners (0: skip it)"
    )
    parser.add_argument(
        "--old-parallel", type=int, default=1, help="the baseline's answers at once"
    )
    parser.add_argument(
        "--reading-s", type=float, default=10, help="class: from opening the lesson to asking"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip llama.cpp's own batched benchmark"
    )
    parser.add_argument("--workers", type=int, default=0, help="web workers (default: box's)")
    parser.add_argument("--threads", type=int, default=8, help="threads per web worker")
    parser.add_argument("--server-log-level", default="WARNING")
    parser.add_argument("--runs", type=int, default=3, help="times everything is measured")
    parser.add_argument("--json", type=Path, help="where to write the results")
    return parser.parse_args()


# --- setup ------------------------------------------------------------------------------


def build_box(home: Path, args: argparse.Namespace) -> tuple[config_module.Config, store.Manifest]:
    """The demo school (7 learners per class: 21 learners) with the model to measure."""
    config = config_module.load(
        home=home, tutor_max_tokens=args.max_tokens, tutor_queue_size=max(16, args.learners)
    )
    per_class = max(7, -(-args.class_size // 3))  # the demo school has three classes
    home.mkdir(parents=True, exist_ok=True)
    config_module.ensure_secret(config)
    db = open_db(config.db_path)
    migrate(db)
    seed(db, config, learners_per_class=per_class)
    db.conn.close()
    if args.model:
        manifest = store.import_file(home, args.model, source=f"benchmark: {args.model.name}")
        store.activate(home, manifest.name)
    else:
        manifest = default.install(home, config.model_cache_dir)
    # The server reads its settings from the home, as a box does.
    (home / "schoolbox.toml").write_text(
        f"[schoolbox]\ntutor_max_tokens = {args.max_tokens}\n"
        f"tutor_queue_size = {max(16, args.learners)}\n"
    )
    return config, manifest


def questions(config: config_module.Config, count: int) -> list[dict]:
    """Questions with their lesson and the exact messages the box sends to the model."""
    asked = yaml.safe_load(QUESTIONS.read_text())["questions"]
    db = open_db(config.db_path)
    learner = db.conn.execute("SELECT id FROM users WHERE role = 'learner' LIMIT 1").fetchone()
    picked = asked[:: max(1, len(asked) // count)][:count]
    for question in picked:
        prepared = tutoring.prepare(db, learner[0], question["q"], question["lesson"], None)
        question["messages"] = prepared.messages
    db.conn.close()
    return picked


# --- 1. retrieval -----------------------------------------------------------------------


def recall_at_3(config: config_module.Config) -> dict:
    asked = yaml.safe_load(QUESTIONS.read_text())["questions"]
    db = open_db(config.db_path)
    misses = []
    for question in asked:
        found = [p["lesson_id"] for p in tutor_grounding.retrieve(db, question["q"], None)]
        if question["lesson"] not in found[:3]:
            misses.append({"q": question["q"], "lesson": question["lesson"], "got": found[:3]})
    db.conn.close()
    return {
        "questions": len(asked),
        "recall_at_3": round(1 - len(misses) / len(asked), 3),
        "misses": misses,
    }


# --- 2. direct --------------------------------------------------------------------------


def direct_one(llama, settings, question: dict) -> dict:
    """One prompt straight into llama-cpp-python, streamed, with the box's settings."""
    started = time.perf_counter()
    stamps = []
    for chunk in llama.create_chat_completion(
        messages=question["messages"],
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        repeat_penalty=1.1,
        stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):
            stamps.append(time.perf_counter())
    return _timing(started, stamps, len(stamps))


def _timing(started: float, stamps: list[float], tokens: int | None) -> dict:
    if not stamps:
        return {"ttft_ms": None, "tokens": 0, "tokens_per_s": None}
    decode_s = stamps[-1] - stamps[0]
    tokens = tokens or len(stamps)
    return {
        "ttft_ms": (stamps[0] - started) * 1000,
        "tokens": tokens,
        "tokens_per_s": (tokens - 1) / decode_s if decode_s > 0 and tokens > 1 else None,
    }


# --- 3. the box's path ------------------------------------------------------------------


def signed_in(base: str, learner_id: int) -> requests.Session:
    http = requests.Session()
    token = http.get(f"{base}/api/v1/session", timeout=10).json()["csrf_token"]
    http.headers["X-CSRFToken"] = token
    reply = http.post(
        f"{base}/api/v1/session", json={"learner_id": learner_id, "pin": LEARNER_PIN}, timeout=10
    )
    reply.raise_for_status()
    http.headers["X-CSRFToken"] = reply.json()["csrf_token"]
    return http


def ask_streaming(http: requests.Session, base: str, question: dict) -> dict:
    """One question as Server-Sent Events; client-side timestamps of each token event."""
    body = {"question": question["q"], "lesson_id": question["lesson"], "stream": True}
    started = time.perf_counter()
    reply = http.post(f"{base}/api/v1/tutor/answers", json=body, stream=True, timeout=300)
    if reply.status_code != 200:
        return {
            "status": reply.status_code,
            "retry_after": int(reply.headers.get("Retry-After", 0) or 0),
        }
    stamps, done, event = [], {}, None
    for line in reply.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "token":
            stamps.append(time.perf_counter())
        elif line.startswith("data: ") and event == "done":
            done = json.loads(line[6:])
    first_at = stamps[0] if stamps else None
    return {
        "status": 200,
        **_timing(started, stamps, done.get("tokens")),
        "first_at": first_at,
        "service_ttft_ms": (done.get("service_first_token_s") or 0) * 1000,
        "outcome": done.get("outcome"),  # answered, cut, empty (lesson passages) ...
    }


def interleaved(config, manifest, base: str, learner_id: int, asked: list[dict]):
    """Each prompt directly, then through the box, in turn: a slow moment of the shared
    machine then falls on both paths, and each model's prompt cache sees the same
    sequence. The first prompt is a warm-up for both."""
    settings = tutor_settings(config)
    llama = load_llama(store.file_path(config.home, manifest), settings)
    http = signed_in(base, learner_id)
    direct_runs, http_runs = [], []
    for question in [asked[0], *asked]:
        direct_runs.append(direct_one(llama, settings, question))
        http_runs.append(ask_streaming(http, base, question))
    del llama
    return direct_runs[1:], http_runs[1:]


# --- 4. a class at once -----------------------------------------------------------------


def class_at_once(base: str, learner_ids: list[int], asked: list[dict]) -> dict:
    sessions = [signed_in(base, learner_id) for learner_id in learner_ids]
    barrier = threading.Barrier(len(sessions))
    results: list[dict] = [{} for _ in sessions]

    def learner(index: int) -> None:
        question = asked[index % len(asked)]
        retries, errors = 0, []
        barrier.wait()
        started = time.perf_counter()
        while True:
            try:
                outcome = ask_streaming(sessions[index], base, question)
            except requests.RequestException as error:
                errors.append(type(error).__name__)
                break
            if outcome["status"] == 503:
                retries += 1
                time.sleep(outcome["retry_after"] or 1)
                continue
            if outcome["status"] != 200 or not outcome.get("tokens"):
                errors.append(str(outcome["status"]))
            break
        first_at = None if errors else outcome.get("first_at")
        results[index] = {
            "retries": retries,
            "errors": errors,
            "first_word_s": None if first_at is None else first_at - started,  # retries included
            "answered": not errors,
            "outcome": None if errors else outcome.get("outcome"),
        }

    threads = [threading.Thread(target=learner, args=(i,)) for i in range(len(sessions))]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    waits = [r["first_word_s"] for r in results if r["first_word_s"] is not None]
    return {
        "learners": len(sessions),
        "answered": sum(r["answered"] for r in results),
        # How each answer ended: a model's words (answered/cut) or the lessons' (empty...).
        "outcomes": dict(Counter(r["outcome"] for r in results if r["outcome"])),
        "told_to_retry": sum(r["retries"] for r in results),
        "learners_told_to_retry": sum(1 for r in results if r["retries"]),
        "errors": sum(len(r["errors"]) for r in results),
        "first_word_s": _percentiles(waits),
        "all_answered_after_s": round(time.perf_counter() - began, 1),
    }


# --- 5. a class on one lesson, then two: one answer at a time against side by side -----


def class_rounds(size: int) -> list[dict]:
    """The class scenario's rounds (bench/tutor_class.yaml) for `size` learners."""
    spec = yaml.safe_load(CLASS_QUESTIONS.read_text())["rounds"]
    first = spec[0]
    one = [{"q": q, "lesson": first["lesson"]} for q in first["questions"]][:size]
    two: list[dict] = []
    for part in spec[1]["lessons"]:
        if "take" in part:
            two += one[: part["take"]]
        else:
            two += [{"q": q, "lesson": part["lesson"]} for q in part["questions"]]
    return [{"name": first["name"], "asks": one}, {"name": spec[1]["name"], "asks": two[:size]}]


def class_scenario(home: Path, args, manifest, learner_ids: list[int], parallel: int) -> dict:
    """Serve the box with `tutor_parallel = parallel`; each round's learners ask at once;
    then one learner alone on the first round's (cached) lesson, five times."""
    streams = str(args.class_size + 2)  # the same web tier for both: room for the class
    env = {"SCHOOLBOX_TUTOR_PARALLEL": str(parallel), "SCHOOLBOX_TUTOR_STREAMS": streams}
    os.environ.update(env)  # the same web tier for both: only the tutor runtime differs
    port = free_port()
    server = start_server(home, port, args)
    base = f"http://{HOST}:{port}"
    model_file = store.file_path(home, manifest)
    try:
        status = _wait_for_model(home)
        rounds = []
        for spec in class_rounds(args.class_size):
            before = cpu_seconds(server.pid, model_file)
            outcome = ask_at_once(base, learner_ids, spec["asks"], args.reading_s)
            after = cpu_seconds(server.pid, model_file)
            outcome["cpu_s"] = {k: round(after[k] - before[k], 1) for k in after}
            rounds.append({"name": spec["name"], **outcome})
        lesson = class_rounds(args.class_size)[0]["asks"]
        alone = signed_in(base, learner_ids[0])
        single = [ask_streaming(alone, base, ask) for ask in lesson[:5]]
    finally:
        stop_server(server)
        for key in env:
            os.environ.pop(key, None)
    firsts = [r["ttft_ms"] / 1000 for r in single if r.get("ttft_ms") is not None]
    return {
        "tutor_parallel": parallel,
        "service": {k: status.get(k) for k in ("parallel", "cells", "model")},
        "rounds": rounds,
        "single_learner_cached_lesson_first_word_s": {
            "median": round(statistics.median(firsts), 3) if firsts else None,
            "max": round(max(firsts), 3) if firsts else None,
        },
    }


def forget_conversations(home: Path) -> None:
    """Each run starts as the first: the tutor gives an item's hints one more each time
    a learner asks, and masks the items a learner has seen (both counted from the kept
    conversations), so runs would otherwise differ by what the run before asked."""
    db = open_db(config_module.load(home=home).db_path)
    try:
        with db.conn:
            db.conn.execute("DELETE FROM tutor_messages")
    finally:
        db.conn.close()


def _wait_for_model(home: Path) -> dict:
    socket_path = config_module.load(home=home).tutor_socket_path
    for _ in range(600):
        status = tutor_client.status(socket_path) or {}
        if status.get("model"):
            return status
        time.sleep(0.1)
    raise RuntimeError("the tutor service did not load its model")


def ask_at_once(base: str, learner_ids: list[int], asks: list[dict], reading_s: float) -> dict:
    """Each learner opens their lesson, reads for `reading_s`, and asks their own question
    at the same instant as the rest; one told to retry (503 + Retry-After) waits that long
    and asks again."""
    sessions = [signed_in(base, learner_id) for learner_id in learner_ids[: len(asks)]]
    barrier = threading.Barrier(len(sessions))
    results: list[dict] = [{} for _ in sessions]

    def learner(index: int) -> None:
        # The learner opens the lesson page (the tutor panel is on it), reads, then asks.
        sessions[index].get(f"{base}/learn/lessons/{asks[index]['lesson']}", timeout=60)
        barrier.wait()
        time.sleep(reading_s)
        started = time.perf_counter()
        refused = 0
        while True:
            try:
                reply = ask_streaming(sessions[index], base, asks[index])
            except requests.RequestException as error:
                reply = {"status": type(error).__name__}
            if reply["status"] != 503:
                break
            refused += 1
            time.sleep(reply["retry_after"] or 1)
        ended = time.perf_counter()
        first_at = reply.get("first_at")
        results[index] = {
            "status": reply["status"],
            "outcome": reply.get("outcome"),
            "tokens": reply.get("tokens") or 0,
            "refused": refused,
            "first_word_s": None if first_at is None else first_at - started,
            "whole_s": ended - started,
            "first_at": first_at,
            "ended": ended,
        }

    threads = [threading.Thread(target=learner, args=(i,)) for i in range(len(sessions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarise_class(results)


EMPTY_OUTCOMES = ("empty", "waited", "from_lessons")  # the lessons' words, not the model's


def summarise_class(results: list[dict]) -> dict:
    outcomes = Counter(
        (r["outcome"] or str(r["status"])).replace("_key_hidden", "") for r in results
    )
    firsts = [r["first_word_s"] for r in results if r["first_word_s"] is not None]
    wholes = [r["whole_s"] for r in results if r["status"] == 200]
    tokens = sum(r["tokens"] for r in results)
    flowing = [r for r in results if r["first_at"] is not None]
    span = max(r["ended"] for r in flowing) - min(r["first_at"] for r in flowing) if flowing else 0
    return {
        "learners": len(results),
        "answered": outcomes.get("answered", 0) + outcomes.get("cut", 0),
        "empty": sum(outcomes.get(k, 0) for k in EMPTY_OUTCOMES),
        "cut": outcomes.get("cut", 0),
        "refused": sum(r["refused"] for r in results),  # 503s, each retried after Retry-After
        "errors": sum(1 for r in results if r["status"] != 200),
        "outcomes": dict(outcomes),
        "first_word_s": {**_percentiles(firsts), "max": round(max(firsts), 3) if firsts else None},
        "whole_answer_s": _percentiles(wholes),
        "tokens": tokens,
        # Answer tokens per second while answers flowed (first word to last end).
        "aggregate_tokens_per_s": round(tokens / span, 1) if span > 0 else None,
    }


def cpu_seconds(root_pid: int, model_file: Path) -> dict:
    """CPU seconds used so far by the server's processes, and by the tutor service alone."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = tutor = 0.0
    for pid in _process_tree(root_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
            maps = Path(f"/proc/{pid}/maps").read_text()
        except (OSError, IndexError):
            continue
        total += used
        if str(model_file) in maps:
            tutor += used
    return {"server": total, "tutor_service": tutor}


def _process_tree(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


# --- 6. memory --------------------------------------------------------------------------


def server_memory(root_pid: int, model_file: Path) -> dict:
    """RSS of the server's processes (MB), the tutor service's apart (it maps the model)."""
    total = tutor = 0.0
    for pid in _process_tree(root_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss = int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
            maps = Path(f"/proc/{pid}/maps").read_text()
        except (OSError, StopIteration):
            continue
        total += rss / 1024
        if str(model_file) in maps:
            tutor += rss / 1024
    return {"server_total_mb": round(total), "tutor_service_mb": round(tutor)}


# --- report -----------------------------------------------------------------------------


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
    }


def summary(runs: list[dict]) -> dict:
    rates = [r["tokens_per_s"] for r in runs if r.get("tokens_per_s")]
    ttfts = [r["ttft_ms"] for r in runs if r.get("ttft_ms") is not None]
    return {
        "prompts": len(runs),
        "tokens": sum(r.get("tokens") or 0 for r in runs),
        "tokens_per_s_median": round(statistics.median(rates), 1) if rates else None,
        "ttft_ms": {k: round(v, 1) for k, v in _percentiles(ttfts).items() if v is not None},
    }


def main() -> int:
    args = parse_args()
    home = Path(tempfile.mkdtemp(prefix="schoolbox-tutor-bench-")) / "home"
    config, manifest = build_box(home, args)
    asked = questions(config, args.prompts)
    print(f"model {manifest.name} ({manifest.quantisation}, {manifest.size / 1e6:.0f} MB); "
          f"{len(asked)} prompts, up to {args.max_tokens} tokens each", flush=True)  # fmt: skip
    retrieval = recall_at_3(config)
    reports = []
    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs}", flush=True)
        reports.append(measure(home, config, manifest, asked, retrieval, args))
    report = reports[-1]  # every detail of the last run; the figures of all below
    if args.class_size and not args.no_reference:
        reference = llama_reference(args, config, manifest)
        for each in reports:
            each["class"]["aggregate_vs_llama_cpp"] = versus_llama(each, reference, args)
        report["class"]["llama_cpp_reference"] = reference
    report["runs"] = [headline(each) for each in reports]
    report["over_runs"] = over_runs(report["runs"])
    report["targets"] = targets(report["over_runs"], args)
    print_table(report)
    path = args.json or RESULTS / (
        "tutor.json" if not args.model else f"tutor-{manifest.name}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


def measure(home: Path, config, manifest, asked: list, retrieval: dict, args) -> dict:
    """One run: one learner on both paths, the older crowd, then the class scenario with
    each runtime, every part on a fresh server and with no kept conversations."""
    forget_conversations(home)
    port = free_port()
    server = start_server(home, port, args)
    base = f"http://{HOST}:{port}"
    try:
        _wait_for_model(home)
        db = open_db(config.db_path)
        learner_ids = [r[0] for r in db.conn.execute("SELECT id FROM users WHERE role = 'learner'")]
        db.conn.close()
        direct_runs, http_runs = interleaved(config, manifest, base, learner_ids[0], asked)
        memory = server_memory(server.pid, store.file_path(home, manifest))
        crowd = class_at_once(base, learner_ids[: args.learners], asked)
    finally:
        stop_server(server)
    report = build_report(args, manifest, retrieval, direct_runs, http_runs, crowd, memory)
    if args.class_size:
        class_runs = {}
        for label, parallel in (("one_at_a_time", args.old_parallel), ("side_by_side", 0)):
            print(f"class scenario: {label}", flush=True)
            forget_conversations(home)
            class_runs[label] = class_scenario(home, args, manifest, learner_ids, parallel)
        report["class"] = class_report(class_runs, report["http"]["tokens_per_s_median"], args)
    return report


def build_report(args, manifest, retrieval, direct_runs, http_runs, crowd, memory) -> dict:
    direct_summary, http_summary = summary(direct_runs), summary(http_runs)
    rate_ratio = None
    if direct_summary["tokens_per_s_median"] and http_summary["tokens_per_s_median"]:
        rate_ratio = round(
            http_summary["tokens_per_s_median"] / direct_summary["tokens_per_s_median"], 3
        )
    # Paired by prompt (the same prompt, in the same place in the sequence, on both paths):
    # prefill time varies a lot between prompts, far more than the path adds.
    added = [
        h["ttft_ms"] - d["ttft_ms"]
        for d, h in zip(direct_runs, http_runs, strict=True)
        if d.get("ttft_ms") is not None and h.get("ttft_ms") is not None
    ]
    ttft_added = round(statistics.median(added), 1) if added else None
    # The same, measured rather than subtracted: the client's time to the first word minus
    # the service's own (its queue plus llama.cpp's prompt processing). What remains is
    # the box's path: HTTP, Flask, retrieval and prompt, the socket, the SSE relay.
    path_ms = [h["ttft_ms"] - h["service_ttft_ms"] for h in http_runs if h.get("service_ttft_ms")]
    return {
        "benchmark": "tutor",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": code_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "model": {
            "name": manifest.name,
            "quantisation": manifest.quantisation,
            "size_mb": round(manifest.size / 1e6),
            "parameters": manifest.parameters,
        },  # fmt: skip
        "settings": {"prompts": args.prompts, "max_tokens": args.max_tokens},
        "retrieval": retrieval,
        "direct": direct_summary,
        "http": http_summary,
        "http_vs_direct": {
            "tokens_per_s_ratio": rate_ratio,
            "ttft_added_ms_median_paired": ttft_added,
            "ttft_added_ms_per_prompt": [round(a, 1) for a in added],
            "path_ms_median_measured": round(statistics.median(path_ms), 1) if path_ms else None,
            "path_ms_per_prompt": [round(p, 1) for p in path_ms],
        },
        "class_at_once": crowd,
        "memory": memory,
    }


def llama_reference(args, config, manifest) -> dict:
    """llama.cpp's own batched benchmark with the same model, threads and batch size, the
    lesson's shared prompt as long as the box's (bench/llama_reference.py)."""
    import llama_reference as reference

    db = open_db(config.db_path)
    learner = db.conn.execute("SELECT id FROM users WHERE role = 'learner'").fetchone()[0]
    lesson = class_rounds(args.class_size)[0]["asks"][0]
    messages = tutoring.prepare(db, learner, lesson["q"], lesson["lesson"], None).messages
    db.conn.close()
    shared = _shared_tokens(store.file_path(config.home, manifest), messages)
    threads = tutor_settings(config).n_threads
    rows = reference.measure(
        store.file_path(config.home, manifest), threads, shared, args.max_tokens,
        [1, args.class_size],
    )  # fmt: skip
    return {"threads": threads, "shared_prompt_tokens": shared, "rows": rows}


def _shared_tokens(model: Path, messages: list[dict]) -> int:
    from models.tutor.engine import LlamaEngine, Sampling

    engine = LlamaEngine(
        model, cache_bytes=64 << 20, sequences=1, batch_tokens=64, threads=1, sampling=Sampling()
    )
    try:
        return engine.prompt(messages)[1]
    finally:
        engine.close()


def class_report(runs: dict, one_stream: float | None, args) -> dict:
    ours = runs["side_by_side"]["rounds"][0]["aggregate_tokens_per_s"]
    return {
        **runs,
        "reading_s": args.reading_s,
        "aggregate_vs_one_stream": round(ours / one_stream, 2) if one_stream and ours else None,
        "aggregate_vs_llama_cpp": None,  # set once llama.cpp's own bench has run
    }


def versus_llama(report: dict, reference: dict, args) -> dict | None:
    """Round 1's aggregate tokens/s over llama.cpp's at the same number of sequences."""
    ours = report["class"]["side_by_side"]["rounds"][0]["aggregate_tokens_per_s"]
    at_size = [r for r in reference["rows"] if int(r.get("pl", r.get("B", 0))) == args.class_size]
    if not (at_size and ours):
        return None
    generation = at_size[0].get("speed_tg", at_size[0].get("S_TG t/s"))
    return {"llama_cpp_tokens_per_s": generation, "ratio": round(ours / generation, 3)}


def headline(report: dict) -> dict:
    """One run's figures, flat, for the median and range over runs."""
    figures = {
        "recall_at_3": report["retrieval"]["recall_at_3"],
        "direct_tokens_per_s": report["direct"]["tokens_per_s_median"],
        "box_tokens_per_s": report["http"]["tokens_per_s_median"],
        "box_vs_direct_tokens_per_s": report["http_vs_direct"]["tokens_per_s_ratio"],
        "ttft_added_ms": report["http_vs_direct"]["ttft_added_ms_median_paired"],
        "path_ms": report["http_vs_direct"]["path_ms_median_measured"],
        "crowd_first_word_p95_s": report["class_at_once"]["first_word_s"]["p95"],
        "crowd_errors": report["class_at_once"]["errors"],
        "crowd_unanswered": report["class_at_once"]["learners"]
        - report["class_at_once"]["answered"],
        "server_mb": report["memory"]["server_total_mb"],
        "tutor_service_mb": report["memory"]["tutor_service_mb"],
    }
    if "class" not in report:
        return figures
    for label in ("one_at_a_time", "side_by_side"):
        run = report["class"][label]
        for number, each in enumerate(run["rounds"], start=1):
            key = f"{label}.r{number}."
            figures.update({
                key + "answered": each["answered"],
                key + "empty": each["empty"],
                key + "cut": each["cut"],
                key + "refused": each["refused"],
                key + "first_word_p50_s": each["first_word_s"]["p50"],
                key + "first_word_p95_s": each["first_word_s"]["p95"],
                key + "first_word_max_s": each["first_word_s"]["max"],
                key + "whole_answer_p50_s": each["whole_answer_s"]["p50"],
                key + "whole_answer_p95_s": each["whole_answer_s"]["p95"],
                key + "aggregate_tokens_per_s": each["aggregate_tokens_per_s"],
                key + "cpu_s_tutor_service": each["cpu_s"]["tutor_service"],
                key + "cpu_s_server": each["cpu_s"]["server"],
            })  # fmt: skip
        cached = run["single_learner_cached_lesson_first_word_s"]["median"]
        figures[f"{label}.cached_lesson_first_word_s"] = cached
    figures["aggregate_vs_one_stream"] = report["class"]["aggregate_vs_one_stream"]
    versus = report["class"]["aggregate_vs_llama_cpp"]
    figures["aggregate_vs_llama_cpp"] = versus["ratio"] if versus else None
    return figures


def targets(figures: dict, args) -> dict:
    """The issue's targets, judged on the medians over runs."""

    def median(name: str, missing: float) -> float:
        value = figures.get(name, {}).get("median")
        return missing if value is None else value

    judged = {
        "recall_at_3>=0.9": median("recall_at_3", 0) >= 0.9,
        "tokens_per_s_ratio>=0.9": median("box_vs_direct_tokens_per_s", 0) >= 0.9,
        "ttft_added<50ms": median("ttft_added_ms", 1e9) < 50,
        "class_no_errors": figures["crowd_errors"]["max"] == 0
        and figures["crowd_unanswered"]["max"] == 0,
    }
    if not args.class_size:
        return judged
    rounds = {name.rsplit(".", 1)[0] for name in figures if name.startswith("side_by_side.r")}
    answered_all = all(
        figures[f"{r}.answered"]["min"] == args.class_size and figures[f"{r}.empty"]["max"] == 0
        for r in rounds
    )
    return {
        **judged,
        "class_all_answered_none_empty": answered_all,
        "class_first_word_p95<5s": median("side_by_side.r1.first_word_p95_s", 1e9) < 5,
        "class_aggregate>=3x_one_stream": median("aggregate_vs_one_stream", 0) >= 3,
        "single_learner_cached_lesson<0.5s": median("side_by_side.cached_lesson_first_word_s", 1e9)
        < 0.5,
        "class_aggregate>=0.8x_llama_cpp": median("aggregate_vs_llama_cpp", 0) >= 0.8,
    }


def print_class(report: dict) -> None:
    runs = {k: v for k, v in report["class"].items() if isinstance(v, dict) and "rounds" in v}
    columns = [(label, i) for i in range(2) for label in runs]
    print("\nclass scenario (" + "; ".join(
        f"round {i + 1}: {r['name']}, {r['learners']} learners"
        for i, r in enumerate(runs["side_by_side"]["rounds"])) + ")")  # fmt: skip
    print(f"{'':28}" + "".join(f"{label[:14] + ' r' + str(i + 1):>18}" for label, i in columns))

    def row(name: str, pick) -> None:
        print(
            f"{name:28}"
            + "".join(f"{pick(runs[label]['rounds'][i])!s:>18}" for label, i in columns)
        )

    row("answered", lambda r: r["answered"])
    row("empty (from the lessons)", lambda r: r["empty"])
    row("cut (length or time cap)", lambda r: r["cut"])
    row("refused (503, retried)", lambda r: r["refused"])
    row("first word p50 s", lambda r: r["first_word_s"]["p50"])
    row("first word p95 s", lambda r: r["first_word_s"]["p95"])
    row("first word max s", lambda r: r["first_word_s"]["max"])
    row("whole answer p50 s", lambda r: r["whole_answer_s"]["p50"])
    row("whole answer p95 s", lambda r: r["whole_answer_s"]["p95"])
    row("aggregate tokens/s", lambda r: r["aggregate_tokens_per_s"])
    row("CPU s, tutor service", lambda r: r["cpu_s"]["tutor_service"])
    row("CPU s, whole server", lambda r: r["cpu_s"]["server"])
    for label, run in runs.items():
        single = run["single_learner_cached_lesson_first_word_s"]
        print(f"{label}: one learner on the cached lesson, first word median {single['median']} s "
              f"(max {single['max']}); service: {run['service']}")  # fmt: skip
    print(f"aggregate vs one stream: {report['class']['aggregate_vs_one_stream']}x; "
          f"vs llama.cpp's batched bench: {report['class']['aggregate_vs_llama_cpp']}")  # fmt: skip


OVER_RUNS = (
    ("decode tokens/s, direct llama.cpp", "direct_tokens_per_s"),
    ("decode tokens/s, the box", "box_tokens_per_s"),
    ("  ratio (>= 0.9)", "box_vs_direct_tokens_per_s"),
    ("first word added, ms (< 50)", "ttft_added_ms"),
    ("the path's own ms", "path_ms"),
    ("crowd first word p95 s", "crowd_first_word_p95_s"),
    ("tutor service RSS MB", "tutor_service_mb"),
    ("class aggregate / one stream (>= 3)", "aggregate_vs_one_stream"),
    ("class aggregate / llama.cpp (>= 0.8)", "aggregate_vs_llama_cpp"),
)
CLASS_OVER_RUNS = (
    ("answered", "answered"), ("empty", "empty"), ("cut", "cut"), ("refused", "refused"),
    ("first word p50 s", "first_word_p50_s"), ("first word p95 s", "first_word_p95_s"),
    ("first word max s", "first_word_max_s"), ("whole answer p50 s", "whole_answer_p50_s"),
    ("whole answer p95 s", "whole_answer_p95_s"),
    ("aggregate tokens/s", "aggregate_tokens_per_s"),
    ("CPU s, tutor service", "cpu_s_tutor_service"),
)  # fmt: skip


def print_over_runs(report: dict) -> None:
    figures = report["over_runs"]
    print(f"\nover {len(report['runs'])} runs, median (range)")
    for label, name in OVER_RUNS:
        if name in figures:
            print(f"{label:38} {as_text(figures[name]):>26}")
    columns = sorted(
        {name.rsplit(".", 1)[0] for name in figures if ".r" in name},
        key=lambda c: (c.split(".")[1], c),
    )
    if not columns:
        return
    print(f"{'':24}" + "".join(f"{c:>26}" for c in columns))
    for label, name in CLASS_OVER_RUNS:
        cells = [as_text(figures[f"{c}.{name}"]) for c in columns]
        print(f"{label:24}" + "".join(f"{cell:>26}" for cell in cells))
    for runtime in ("one_at_a_time", "side_by_side"):
        cached = figures[f"{runtime}.cached_lesson_first_word_s"]
        print(f"{runtime}: one learner on the cached lesson, first word {as_text(cached)} s")


def print_table(report: dict) -> None:
    print("\nthe last run")
    d, h = report["direct"], report["http"]
    rows = [
        ("", "direct llama.cpp", "box (HTTP+SSE)", "target"),
        ("decode tokens/s (median)", d["tokens_per_s_median"], h["tokens_per_s_median"],
         f"ratio {report['http_vs_direct']['tokens_per_s_ratio']} (>= 0.9)"),
        ("TTFT p50 ms", d["ttft_ms"].get("p50"), h["ttft_ms"].get("p50"),
         f"{report['http_vs_direct']['ttft_added_ms_median_paired']:+} ms paired (< 50)"),
        ("TTFT p95 ms", d["ttft_ms"].get("p95"), h["ttft_ms"].get("p95"), ""),
        ("path's own ms to 1st word", "", report["http_vs_direct"]["path_ms_median_measured"],
         "client TTFT - service TTFT"),
        ("tokens generated", d["tokens"], h["tokens"], ""),
    ]  # fmt: skip
    print()
    for row in rows:
        print(f"{row[0]:26} {row[1]!s:>18} {row[2]!s:>18}   {row[3]}")
    crowd = report["class_at_once"]
    print(f"\n{crowd['learners']} learners at once: {crowd['answered']} answered, "
          f"{crowd['told_to_retry']} retries asked of {crowd['learners_told_to_retry']} learners, "
          f"{crowd['errors']} errors; first word after p50 {crowd['first_word_s']['p50']} s, "
          f"p95 {crowd['first_word_s']['p95']} s; all answered after "
          f"{crowd['all_answered_after_s']} s")  # fmt: skip
    retrieval = report["retrieval"]
    print(f"retrieval recall@3: {retrieval['recall_at_3']} over {retrieval['questions']} "
          "questions (>= 0.9)")  # fmt: skip
    if "class" in report:
        print_class(report)
    memory = report["memory"]
    print(f"server RSS with the model loaded: {memory['server_total_mb']} MB in all, "
          f"tutor service {memory['tutor_service_mb']} MB")  # fmt: skip
    print_over_runs(report)
    print(
        "targets, on the medians:",
        ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in report["targets"].items()),
    )


if __name__ == "__main__":
    sys.exit(main())
