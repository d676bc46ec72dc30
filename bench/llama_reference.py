"""llama.cpp's own batched benchmark, as the reference for the tutor's batching.

`llama-batched-bench` is built from the llama.cpp source that the installed
llama-cpp-python ships (its sdist's vendor/llama.cpp, fetched from PyPI once), with the
same compiler flags as the box's wheel (no AMX: see the Makefile), and cached under
~/.cache/schoolbox/llama-reference/. It is for benchmarks only: the box never runs it.

    .venv/bin/python bench/llama_reference.py --model FILE.gguf --threads 2 \\
        --prompt 560 --tokens 128 --sequences 1 30

With a shared prompt (-pps) every sequence starts from the same prompt, read once, as the
tutor's lesson prefix is (llama-batched-bench has no per-sequence part of a prompt, so
the tutor reads a little more). Prints one JSON line per row; `measure()` returns them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("CACHE_HOME", Path.home() / ".cache" / "schoolbox")) / "llama-reference"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" if platform.machine() == "x86_64" else ""


def binary() -> Path:
    """llama-batched-bench for the installed llama-cpp-python's llama.cpp, built once."""
    version = importlib.metadata.version("llama_cpp_python")
    cpu = hashlib.sha256((_cpu_flags() + NO_AMX).encode()).hexdigest()[:12]
    built = CACHE / f"{version}-{cpu}" / "llama-batched-bench"
    if built.exists():
        return built
    with tempfile.TemporaryDirectory() as scratch:
        source = _source(version, Path(scratch))
        build = Path(scratch) / "build"
        env = {**os.environ, "CFLAGS": NO_AMX, "CXXFLAGS": NO_AMX}
        subprocess.run(
            ["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
             "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF"],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run(
            ["cmake", "--build", str(build), "--target", "llama-batched-bench",
             "-j", str(os.cpu_count() or 1)],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        built.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(build / "bin" / "llama-batched-bench", built)
    return built


def _source(version: str, scratch: Path) -> Path:
    """The sdist's vendored llama.cpp, unpacked in `scratch`."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"llama-cpp-python=={version}", "-d", str(scratch)],
        check=True,
    )  # fmt: skip
    archive = next(scratch.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(archive) as sdist:
        sdist.extractall(scratch, filter="data")
    return next(scratch.glob("llama_cpp_python-*/vendor/llama.cpp"))


def _cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            return line
    return platform.machine()


def measure(
    model: Path, threads: int, prompt: int, tokens: int, sequences: list[int], batch: int = 256
) -> list[dict]:
    """Rows of llama-batched-bench: for each number of sequences, prompt and generation
    speed, with the prompt shared (read once) and one unified KV cache."""
    cells = prompt + max(sequences) * (tokens + 16) + 256
    command = [
        str(binary()), "-m", str(model), "-t", str(threads), "-c", str(cells),
        "-b", str(batch), "-ub", str(batch), "-npp", str(prompt), "-ntg", str(tokens),
        "-npl", ",".join(map(str, sequences)), "-pps", "-kvu", "-fa", "auto",
        "--output-format", "jsonl",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=1800)
    rows = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    if not rows:  # an older build without jsonl: read its markdown table
        rows = _table(done.stdout)
    return rows


def _table(text: str) -> list[dict]:
    header, rows = None, []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "PP" in cells and "TG" in cells:
            header = cells
        elif header and len(cells) == len(header) and re.match(r"^\d", cells[0]):
            rows.append(dict(zip(header, (float(c) for c in cells), strict=True)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--prompt", type=int, default=560)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--sequences", type=int, nargs="+", default=[1, 30])
    args = parser.parse_args()
    for row in measure(args.model, args.threads, args.prompt, args.tokens, args.sequences):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
