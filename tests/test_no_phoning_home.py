"""No process of the box connects anywhere but loopback (issue 13).

The real server with its workers, knowledge-tracing follower and tutor service, `sync now`
against a real hub, and a federated round on real SuperLink and SuperNode processes are
run again under `strace -f -e trace=connect`, which sees every connect() of every process
and thread, C libraries included (onnxruntime's telemetry is C++). Any connect() to an
address that is not loopback, and any DNS lookup at all, fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# Real-part tests that start every kind of process the box and the district run.
AUDITED = [
    "tests/appliance/test_tutor_serve.py",  # `serve`: workers, follower, tutor service
    "tests/appliance/test_e2e_serve.py",  # a whole school day over HTTP
    "tests/sync/test_crash.py",  # `sync now` to a real hub, killed and rerun
    # A real run on a SuperLink and SuperNodes (Flower, torch), signed and fetched by a box
    "tests/federated/test_deployment.py::"
    "test_a_run_from_the_shipped_weights_reaches_a_box_over_http_and_a_worse_model_does_not",
    "tests/federated/test_client_app.py",  # a box's ClientApp, DP-SGD included (Opacus)
]
CONNECT = re.compile(r"^(\d+)\s+connect\(\d+, \{sa_family=(AF_INET6?),(.*?)\}")
PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None, reason="strace is not installed (apt-get install strace)"
)


def outside_loopback(trace: str) -> list[str]:
    """The connect() lines of an strace log that leave the machine or look a name up."""
    found = []
    for line in trace.splitlines():
        match = CONNECT.match(line)
        if not match:
            continue  # AF_UNIX, AF_NETLINK, AF_UNSPEC (a UDP socket's disconnect)
        address = next(a for a in ADDRESS.search(match.group(3)).groups() if a)
        port = int(PORT.search(match.group(3)).group(1))
        loopback = address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1")
        if not loopback or port == 53:
            found.append(line)
    return found


def traced(command: list[str], log: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect", "-o", str(log), *command],
        **kwargs,
    )


def test_the_audit_sees_a_connect_that_leaves_the_machine(tmp_path):
    """The audit itself can fail: a C-level connect() to a LAN address is caught."""
    probe = (
        "import socket; s = socket.socket(); s.settimeout(0.05)\n"
        "try: s.connect(('10.255.255.1', 443))\nexcept OSError: pass"
    )
    traced([sys.executable, "-c", probe], tmp_path / "trace.log", check=True)
    trace = (tmp_path / "trace.log").read_text()
    assert [line for line in outside_loopback(trace) if "10.255.255.1" in line]


def test_importing_the_models_switches_telemetry_off_before_onnxruntime():
    script = (
        "import os, sys\n"
        "import models.knowledge_tracing.runtime\n"
        "assert 'onnxruntime' not in sys.modules or os.environ['ORT_DISABLE_TELEMETRY'] == '1'\n"
        "print(os.environ['ORT_DISABLE_TELEMETRY'], os.environ['FLWR_TELEMETRY_ENABLED'])"
    )
    env = {k: v for k, v in os.environ.items() if "TELEMETRY" not in k}
    env["ORT_DISABLE_TELEMETRY"] = "0"  # an operator's shell cannot switch it back on
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["1", "0"]


@pytest.mark.slow
def test_serve_tutor_sync_and_a_federated_round_connect_only_to_loopback(tmp_path):
    log = tmp_path / "connect.log"
    run = traced(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "t"), *AUDITED],
        log, cwd=ROOT, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    trace = log.read_text()
    assert len(CONNECT.findall(trace) or re.findall(r"connect\(", trace)) > 10  # it saw them
    assert outside_loopback(trace) == []
