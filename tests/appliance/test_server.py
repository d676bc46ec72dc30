"""`schoolbox serve` with several worker processes sharing one port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
import requests

from tests.conftest import SCHOOLBOX, free_port, init_box, wait_ready

pytestmark = pytest.mark.slow


@pytest.fixture
def workers(tmp_path):
    home = tmp_path / "box"
    init_box(home)
    port = free_port()
    # Web workers only: the tutor service, the supervisor's other child, has its own tests.
    env = {**os.environ, "SCHOOLBOX_TUTOR_SERVICE": "false"}
    process = subprocess.Popen(
        [SCHOOLBOX, "--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "2", "--threads", "2"],
        stdout=open(tmp_path / "out.log", "w"), stderr=subprocess.STDOUT, env=env,  # noqa: SIM115
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_ready(base)
    yield base, process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0


def _worker_pids(parent: int) -> set[int]:
    """The worker processes (multiprocessing's resource tracker is a child too)."""
    out = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(parent)], capture_output=True, text=True
    )
    return {
        int(line.split()[0]) for line in out.stdout.splitlines() if "resource_tracker" not in line
    }


def test_metrics_add_up_over_every_worker(workers):
    base, process = workers
    before = _healthz_count(base)
    for _ in range(40):  # a new connection each time, so the kernel spreads them
        assert requests.get(f"{base}/healthz", timeout=5, headers={"Connection": "close"}).ok
    assert _healthz_count(base) == before + 40
    assert len(_worker_pids(process.pid)) == 2


def _healthz_count(base: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=5).text
    found = re.search(
        r'schoolbox_requests_total\{endpoint="ops.healthz",method="GET",status="200"\} (\S+)', text
    )
    return float(found.group(1)) if found else 0.0


def test_a_worker_that_dies_is_replaced_and_the_box_keeps_answering(workers):
    base, process = workers
    victims = _worker_pids(process.pid)
    victim = max(victims)
    subprocess.run(["kill", "-9", str(victim)], check=True)
    for _ in range(50):
        pids = _worker_pids(process.pid)
        if victim not in pids and len(pids) >= len(victims):
            break
        time.sleep(0.2)
    assert victim not in pids and len(pids) >= len(victims)
    wait_ready(base)
    assert all(
        requests.get(f"{base}/readyz", timeout=5, headers={"Connection": "close"}).ok
        for _ in range(10)
    )


def test_serve_gives_up_with_a_clear_error_when_workers_cannot_start(tmp_path):
    import socket

    home = tmp_path / "box"
    init_box(home)
    with socket.socket() as taken:  # a port another program holds, without SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [SCHOOLBOX, "--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode != 0
    assert "keep dying" in result.stderr
