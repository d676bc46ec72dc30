"""Video streaming: 50 learners watch the same 720p lesson video, seeking as they go.

What it measures
    Against the real server (`schoolbox serve` on 127.0.0.1, as bench/classroom_burst.py
    starts it), with the demo school, a pack holding one 720p H.264 video (made here with
    ffmpeg, 2.5 Mbit/s, cached in build/) and N learners (default 50), each signed in on
    its own connection:

      seeking     each learner starts the video (the first 2 MB, as a player buffers),
                  then seeks --seeks times to a random place and plays on from there
                  (--reads Range requests of 2 MB each, back to back)
      sequential  each learner downloads the whole file in one request (the baseline,
                  in the same process: the same bytes with no seeking)

    Clients read as fast as loopback allows, so the figures are the server's ceiling,
    not a Wi-Fi's. For each scenario, --runs runs: throughput (MB/s and Mbit/s), the
    server's CPU seconds (all its processes, from /proc) and so its CPU per GB served,
    the share of the box's cores that 100 Mbit/s of video would take, the time to the
    first byte of each Range request (a seek's wait), and every byte checked against
    the file.

Target (issue 17): the box saturates the Wi-Fi's typical 100 Mbit/s before its CPU,
that is, serving 100 Mbit/s of video takes less than all of the box's cores.

    .venv/bin/python bench/video_stream.py
    .venv/bin/python bench/video_stream.py --learners 10 --runs 1 --json /tmp/v.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import yaml  # noqa: E402
from classroom_burst import (  # noqa: E402
    HOST,
    PIN,
    build_school,
    code_version,
    cpu_snapshot,
    cpu_used,
    free_port,
    percentiles,
    start_server,
    stop_server,
)

from appliance import config as config_module  # noqa: E402
from appliance.demo.seed import PACK_DIR  # noqa: E402
from appliance.packs.importer import import_pack  # noqa: E402
from appliance.store import audit, open_db  # noqa: E402

WIFI_MBIT = 100.0
CHUNK = 2 * 1024 * 1024  # what a browser's player asks for at a time, about
VIDEO_CACHE = REPO / "build" / "bench-video-720p.mp4"
RESOURCE_ID = "bench-video-720p"
DEFAULT_JSON = REPO / "bench" / "results" / "video_stream.json"


def make_video(seconds: int) -> Path:
    """A 720p H.264 + AAC test film, 2.5 Mbit/s, fast-start (made once, then cached)."""
    if VIDEO_CACHE.exists():
        return VIDEO_CACHE
    if shutil.which("ffmpeg") is None:
        raise SystemExit("This benchmark makes its 720p video with ffmpeg: apt-get install ffmpeg")
    VIDEO_CACHE.parent.mkdir(exist_ok=True)
    partial = VIDEO_CACHE.with_suffix(".partial.mp4")
    subprocess.run(
        ["ffmpeg", "-y", "-v", "error",
         "-f", "lavfi", "-i", f"testsrc2=s=1280x720:r=30:d={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k", "-maxrate", "2500k",
         "-bufsize", "5000k", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
         "-movflags", "+faststart", str(partial)],
        check=True,
    )  # fmt: skip
    partial.rename(VIDEO_CACHE)
    return VIDEO_CACHE


def add_video_pack(home: Path, video: Path) -> str:
    """The demo pack at a higher version with the 720p video in its first lesson; the
    URL the video is served at."""
    pack = home / "bench-pack"
    shutil.copytree(PACK_DIR, pack)
    shutil.copy(video, pack / "resources" / "bench-720p.mp4")
    listing = yaml.safe_load((pack / "resources.yaml").read_text())
    listing.append({
        "id": RESOURCE_ID, "kind": "video", "title": "A 720p test film",
        "lesson": "fractions-01-parts-of-a-whole", "file": "bench-720p.mp4",
        "captions": [{"file": "halves-and-quarters.en.vtt", "language": "en", "label": "English"}],
    })  # fmt: skip
    (pack / "resources.yaml").write_text(yaml.safe_dump(listing))
    manifest = yaml.safe_load((pack / "pack.yaml").read_text())
    manifest["version"] = "9.0.0"
    (pack / "pack.yaml").write_text(yaml.safe_dump(manifest))
    config = config_module.load(home=home)
    db = open_db(config.db_path)
    try:
        import_pack(db, config.media_dir, pack, audit.SYSTEM)
    finally:
        db.conn.close()
    return f"/media/{manifest['id']}/9.0.0/resources/bench-720p.mp4"


async def sign_in(http: aiohttp.ClientSession, learner_id: int) -> None:
    async with http.get("/api/v1/session") as response:
        token = (await response.json())["csrf_token"]
    body = {"learner_id": learner_id, "pin": PIN}
    async with http.post("/api/v1/session", json=body, headers={"X-CSRFToken": token}) as response:
        if response.status != 200:
            raise RuntimeError(f"sign-in failed: {response.status}")


class Tally:
    def __init__(self) -> None:
        self.bytes = 0
        self.first_byte_ms: list[float] = []
        self.errors: dict[str, int] = {}
        self.wrong = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def fetch(http, url: str, start: int, end: int | None, film: bytes, tally: Tally) -> None:
    """One request (a Range when `end` is set), timed to its first byte, bytes checked."""
    headers = {"Range": f"bytes={start}-{end}"} if end is not None else {}
    began = time.perf_counter()
    try:
        async with http.get(url, headers=headers) as response:
            if response.status not in (200, 206):
                tally.error(str(response.status))
                return
            got, first = bytearray(), True
            async for block in response.content.iter_chunked(256 * 1024):
                if first:
                    tally.first_byte_ms.append((time.perf_counter() - began) * 1000)
                    first = False
                got += block
            tally.bytes += len(got)
            if bytes(got) != film[start : (end + 1 if end is not None else None)]:
                tally.wrong += 1
    except (aiohttp.ClientError, TimeoutError) as error:
        tally.error(type(error).__name__)


async def learner(base, url, learner_id, film, args, tally, seed: int, sequential: bool):
    timeout = aiohttp.ClientTimeout(total=600)
    jar = aiohttp.CookieJar(unsafe=True)  # cookies from 127.0.0.1, an IP address
    async with aiohttp.ClientSession(base_url=base, timeout=timeout, cookie_jar=jar) as http:
        await sign_in(http, learner_id)
        if sequential:
            await fetch(http, url, 0, None, film, tally)
            return
        rng = random.Random(seed)
        await fetch(http, url, 0, CHUNK - 1, film, tally)  # press play: the first buffer
        for _ in range(args.seeks):
            at = rng.randrange(0, len(film) - CHUNK)
            for n in range(args.reads):  # play on from there
                start = at + n * CHUNK
                if start >= len(film):
                    break
                await fetch(http, url, start, min(start + CHUNK, len(film)) - 1, film, tally)


async def scenario(base, url, learners, film, args, server_pid, sequential, run) -> dict:
    tally = Tally()
    before, began = cpu_snapshot(server_pid), time.perf_counter()
    await asyncio.gather(*[
        learner(base, url, learner_id, film, args, tally, run * 1000 + i, sequential)
        for i, learner_id in enumerate(learners)
    ])  # fmt: skip
    elapsed = time.perf_counter() - began
    cpu = cpu_used(before, cpu_snapshot(server_pid))
    megabytes = tally.bytes / 1e6
    server_cpu = cpu["server"] or 0.0
    cpu_per_gb = server_cpu / (megabytes / 1000) if megabytes else None
    wifi_mb_s = WIFI_MBIT / 8
    return {
        "seconds": round(elapsed, 2),
        "megabytes": round(megabytes, 1),
        "mb_per_s": round(megabytes / elapsed, 1),
        "mbit_per_s": round(megabytes * 8 / elapsed, 1),
        "server_cpu_s": cpu["server"],
        "client_cpu_s": cpu["client"],
        "other_cpu_s": cpu.get("other"),
        "server_cpu_s_per_gb": round(cpu_per_gb, 2) if cpu_per_gb else None,
        # At 100 Mbit/s the server serves 0.0125 GB each second, on os.cpu_count() cores.
        "cores_share_at_100_mbit_pct": round(
            100 * cpu_per_gb * wifi_mb_s / 1000 / os.cpu_count(), 1
        )
        if cpu_per_gb
        else None,
        "server_cpu_pct_of_box": round(100 * server_cpu / elapsed / os.cpu_count(), 1),
        "first_byte_ms": percentiles(tally.first_byte_ms),
        "requests": len(tally.first_byte_ms),
        "errors": tally.errors,
        "wrong_bytes": tally.wrong,
    }


def _summary(runs: list[dict], key: str) -> dict:
    values = [r[key] for r in runs if r[key] is not None]
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(args: argparse.Namespace, home: Path) -> dict:
    film_path = make_video(args.seconds)
    film = film_path.read_bytes()  # the client's copy, to check every byte served
    learners = [learner.id for learner in build_school(home, args.learners, knowledge_model=False)]
    url = add_video_pack(home, film_path)
    port = args.port or free_port()
    server = start_server(home, port, args)
    base = f"http://{HOST}:{port}"
    results: dict[str, list[dict]] = {"sequential": [], "seeking": []}
    try:
        for run in range(args.runs):  # alternated, so drift on the machine hits both alike
            for name in ("sequential", "seeking"):
                found = asyncio.run(
                    scenario(base, url, learners, film, args, server.pid, name == "sequential", run)
                )
                results[name].append(found)
                print(f"  run {run + 1} {name}: {found['mbit_per_s']} Mbit/s,"
                      f" server CPU {found['server_cpu_s_per_gb']} s/GB", flush=True)  # fmt: skip
    finally:
        stop_server(server)
    keys = ("mbit_per_s", "mb_per_s", "server_cpu_s_per_gb", "cores_share_at_100_mbit_pct",
            "server_cpu_pct_of_box")  # fmt: skip
    summary = {name: {k: _summary(runs, k) for k in keys} for name, runs in results.items()}
    for name, runs in results.items():
        summary[name]["first_byte_p99_ms"] = _summary(
            [{"v": r["first_byte_ms"]["p99_ms"]} for r in runs], "v"
        )
        summary[name]["errors"] = sum(sum(r["errors"].values()) for r in runs)
        summary[name]["wrong_bytes"] = sum(r["wrong_bytes"] for r in runs)
    seek, seq = (
        summary["seeking"]["mb_per_s"]["median"],
        summary["sequential"]["mb_per_s"]["median"],
    )
    share = summary["seeking"]["cores_share_at_100_mbit_pct"]["median"]
    return {
        "benchmark": "video_stream",
        "code": code_version(),
        "machine": {"cores": os.cpu_count()},
        "settings": {
            "learners": args.learners,
            "runs": args.runs,
            "seeks": args.seeks,
            "reads_per_seek": args.reads,
            "chunk_bytes": CHUNK,
            "video_seconds": args.seconds,
            "video_bytes": len(film),
            "video": "1280x720 H.264 2.5 Mbit/s + AAC, fast-start",
            "threads": args.threads,
            "workers": args.workers,
        },  # fmt: skip
        "summary": summary,
        "seeking_vs_sequential_throughput": round(seek / seq, 2) if seek and seq else None,
        "targets": [
            {
                "figure": "share of the box's cores to serve 100 Mbit/s of video, seeking",
                "target": "< 100% (the Wi-Fi saturates first)",
                "measured": share,
                "met": share is not None and share < 100,
            }
        ],  # fmt: skip
        "runs": results,
    }


def print_report(report: dict) -> None:
    print(f"\nVideo streaming: {report['settings']['learners']} learners, "
          f"{report['settings']['video_bytes'] / 1e6:.1f} MB 720p film, "
          f"{report['machine']['cores']} cores; median (min-max) of "
          f"{report['settings']['runs']} runs\n")  # fmt: skip
    print(f"{'figure':44} {'sequential (baseline)':>24} {'seeking':>24}")
    rows = [
        ("throughput, Mbit/s", "mbit_per_s"),
        ("server CPU, seconds per GB served", "server_cpu_s_per_gb"),
        ("server CPU, % of the box while serving", "server_cpu_pct_of_box"),
        ("box's cores needed for 100 Mbit/s, %", "cores_share_at_100_mbit_pct"),
        ("p99 time to first byte of a request, ms", "first_byte_p99_ms"),
    ]
    for label, key in rows:
        cells = []
        for name in ("sequential", "seeking"):
            s = report["summary"][name][key]
            cells.append(f"{s['median']} ({s['min']}-{s['max']})")
        print(f"{label:44} {cells[0]:>24} {cells[1]:>24}")
    errors = [report["summary"][n]["errors"] for n in ("sequential", "seeking")]
    wrong = [report["summary"][n]["wrong_bytes"] for n in ("sequential", "seeking")]
    print(f"{'errors / responses with wrong bytes':44} {f'{errors[0]} / {wrong[0]}':>24}"
          f" {f'{errors[1]} / {wrong[1]}':>24}")  # fmt: skip
    print(f"\nseeking / sequential throughput: {report['seeking_vs_sequential_throughput']}x")
    for target in report["targets"]:
        verdict = "met" if target["met"] else "MISSED"
        print(f"target: {target['figure']} {target['target']}: {target['measured']}% ({verdict})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seeks", type=int, default=4, help="seeks per learner")
    parser.add_argument("--reads", type=int, default=3, help="2 MB Range requests after a seek")
    parser.add_argument("--seconds", type=int, default=60, help="length of the test film")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads per worker")
    parser.add_argument("--workers", type=int, help="server worker processes")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--server-log-level", default="WARNING")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="schoolbox-video-")) / "home"
    try:
        report = measure(args, home)
    finally:
        if not args.keep:
            shutil.rmtree(home.parent, ignore_errors=True)
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
