"""`schoolbox serve` with several worker processes sharing one port."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import SCHOOLBOX, init_box, start_serve, wait_ready

pytestmark = pytest.mark.slow


@pytest.fixture
def workers(tmp_path):
    home = tmp_path / "box"
    init_box(home)
    # Web workers only: the tutor service, the supervisor's other child, has its own tests.
    process, port = start_serve(home, tmp_path / "out.log", 2, 2, tutor_service="false")
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


def _listening_pids(port: int) -> set[int]:
    """Processes (not zombies) holding a listening TCP socket on `port`, from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:  # noqa: SIM115
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    found = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                found.add(int(fd_dir.parent.name))
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killing_the_supervisor_leaves_no_worker_or_tutor_behind(tmp_path):
    home = tmp_path / "box"
    init_box(home)
    supervisor, port = start_serve(home, tmp_path / "out.log", 2, 2)
    try:
        wait_ready(f"http://127.0.0.1:{port}", tmp_path / "out.log")
        children = _worker_pids(supervisor.pid)
        assert len(children) == 3  # two workers and the tutor service
        assert _listening_pids(port) <= children
        supervisor.kill()  # kill -9: no chance to stop them itself
        supervisor.wait()
        for _ in range(50):
            if not any(_alive(pid) for pid in children):
                break
            time.sleep(0.1)
        assert not [pid for pid in children if _alive(pid)]
        assert not _listening_pids(port)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        for pid in _worker_pids(supervisor.pid) | _listening_pids(port):
            os.kill(pid, signal.SIGKILL)  # only if the test failed: our own children


def test_a_second_serve_on_a_port_held_by_orphaned_workers_says_so(tmp_path):
    home = tmp_path / "box"
    init_box(home)
    # What an orphaned worker holds: a listening socket with SO_REUSEPORT, which another
    # SO_REUSEPORT socket of the same user could silently share.
    with socket.socket() as orphan:
        orphan.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        orphan.bind(("127.0.0.1", 0))
        orphan.listen()
        port = orphan.getsockname()[1]
        result = subprocess.run(
            [SCHOOLBOX, "--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode != 0
    assert f"port {port} is in use; try schoolbox serve --port " in result.stderr
    assert "serving" not in result.stdout and "Traceback" not in result.stderr


def test_demo_on_a_taken_port_says_so_in_one_line_before_doing_anything(tmp_path):
    home = tmp_path / "demo"
    with socket.socket() as taken:  # a port another program holds, without SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [SCHOOLBOX, "--home", str(home), "demo", "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert re.fullmatch(rf"Error: port {port} is in use; try make run PORT=\d+\n", result.stderr)
    assert "serving" not in result.stdout and not (home / "schoolbox.db").exists()


def test_clients_that_never_finish_their_headers_are_dropped(tmp_path):
    home = tmp_path / "box"
    init_box(home)
    process, port = start_serve(
        home, tmp_path / "out.log", threads=2, tutor_service="false",
        http_header_timeout_s=2, http_connection_limit=20,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    slow = []
    try:
        wait_ready(base, tmp_path / "out.log")
        # More slow clients than the worker has connection slots: each sends a header line
        # every half second and never the blank line that ends them.
        for _ in range(25):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            client.settimeout(0.05)
            slow.append(client)
        started = time.monotonic()
        dropped = set()
        while len(dropped) < len(slow) and time.monotonic() - started < 15:
            for index, client in enumerate(slow):
                if index in dropped:
                    continue
                try:
                    client.sendall(b"X-Slow: 1\r\n")
                    if client.recv(1024) == b"":
                        dropped.add(index)
                except TimeoutError:
                    pass
                except OSError:
                    dropped.add(index)
            time.sleep(0.3)
        assert len(dropped) == len(slow), f"{len(dropped)} of {len(slow)} dropped"
        assert time.monotonic() - started < 12
        assert requests.get(f"{base}/healthz", timeout=5).ok  # a real client gets a slot
    finally:
        for client in slow:
            client.close()
        process.terminate()
        process.wait(timeout=15)


def _raise_own_file_limit(wanted: int) -> None:
    """This test holds a school's connections itself; the server inherits the limit too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"this machine allows {hard} open files a process; the test needs {wanted}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def test_a_worker_keeps_a_school_of_connections_past_file_number_1023(tmp_path):
    """waitress's select() loop cannot watch a file number above 1023: a worker holding a
    big school's keep-alive connections beside its database files died with "filedescriptor
    out of range in select()" and dropped them all."""
    connections = 1060
    _raise_own_file_limit(connections + 512)
    home = tmp_path / "box"
    init_box(home)
    process, port = start_serve(home, tmp_path / "out.log", threads=8, tutor_service="false",
                                http_connection_limit=connections + 40)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    clients = []
    try:
        wait_ready(base, tmp_path / "out.log")
        worker = _worker_pids(process.pid)
        # Every thread opens its database first, as in a school day: their files come first.
        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(lambda _: requests.get(f"{base}/readyz", timeout=10).status_code,
                                range(200))) == {200}  # fmt: skip
        for _ in range(connections):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(client)
        answered = 0
        for client in clients:
            client.settimeout(10)
            answered += client.recv(64).startswith(b"HTTP/1.1 200")
        assert answered == connections
        assert _worker_pids(process.pid) == worker  # the same worker, never restarted
        assert requests.get(f"{base}/healthz", timeout=5).ok
        assert "out of range" not in (tmp_path / "out.log").read_text()
    finally:
        for client in clients:
            client.close()
        process.terminate()
        process.wait(timeout=15)
