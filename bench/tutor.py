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
  5. Memory: resident set size of the server's processes with the model loaded.

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
RESULTS = REPO / "bench" / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF to measure instead of the default")
    parser.add_argument("--prompts", type=int, default=12, help="questions timed per path")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--learners", type=int, default=20, help="asking at once")
    parser.add_argument("--workers", type=int, default=0, help="web workers (default: box's)")
    parser.add_argument("--threads", type=int, default=8, help="threads per web worker")
    parser.add_argument("--server-log-level", default="WARNING")
    parser.add_argument("--json", type=Path, help="where to write the results")
    return parser.parse_args()


# --- setup ------------------------------------------------------------------------------


def build_box(home: Path, args: argparse.Namespace) -> tuple[config_module.Config, store.Manifest]:
    """The demo school (7 learners per class: 21 learners) with the model to measure."""
    config = config_module.load(
        home=home, tutor_max_tokens=args.max_tokens, tutor_queue_size=max(16, args.learners)
    )
    home.mkdir(parents=True, exist_ok=True)
    config_module.ensure_secret(config)
    db = open_db(config.db_path)
    migrate(db)
    seed(db, config, learners_per_class=7)
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


# --- 5. memory --------------------------------------------------------------------------


def server_memory(root_pid: int, model_file: Path) -> dict:
    """RSS of the server's processes (MB), the tutor service's apart (it maps the model)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    total = tutor = 0.0
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
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
    port = free_port()
    server = start_server(home, port, args)
    base = f"http://{HOST}:{port}"
    try:
        socket_path = config.tutor_socket_path
        for _ in range(300):
            if (tutor_client.status(socket_path) or {}).get("model"):
                break
            time.sleep(0.1)
        db = open_db(config.db_path)
        learner_ids = [r[0] for r in db.conn.execute("SELECT id FROM users WHERE role = 'learner'")]
        db.conn.close()
        direct_runs, http_runs = interleaved(config, manifest, base, learner_ids[0], asked)
        memory = server_memory(server.pid, store.file_path(home, manifest))
        crowd = class_at_once(base, learner_ids[: args.learners], asked)
    finally:
        stop_server(server)
    report = build_report(args, manifest, retrieval, direct_runs, http_runs, crowd, memory)
    print_table(report)
    path = args.json or RESULTS / (
        "tutor.json" if not args.model else f"tutor-{manifest.name}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


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
        "targets": {
            "recall_at_3>=0.9": retrieval["recall_at_3"] >= 0.9,
            "tokens_per_s_ratio>=0.9": rate_ratio is not None and rate_ratio >= 0.9,
            "ttft_added<50ms": ttft_added is not None and ttft_added < 50,
            "class_no_errors": crowd["errors"] == 0 and crowd["answered"] == crowd["learners"],
        },
    }


def print_table(report: dict) -> None:
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
    memory = report["memory"]
    print(f"server RSS with the model loaded: {memory['server_total_mb']} MB in all, "
          f"tutor service {memory['tutor_service_mb']} MB")  # fmt: skip
    print(
        "targets:",
        ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in report["targets"].items()),
    )


if __name__ == "__main__":
    sys.exit(main())
