"""Shared fixtures of the image tests: a district hub on the host's loopback."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import SCHOOLBOX, free_port, stop, wait_ready
from tests.image.machines import DISTRICT


@pytest.fixture
def hub(tmp_path):
    """A copy of the test district's hub (its keys and OS update key, no bundles), served."""
    home = tmp_path / "hub"
    shutil.copytree(DISTRICT, home, ignore=shutil.ignore_patterns("os-updates", "updates",
                                                                  "federation"))  # fmt: skip
    port = free_port()
    log = open(tmp_path / "hub.log", "w")  # noqa: SIM115
    process = subprocess.Popen([SCHOOLBOX, "hub", "--hub-home", str(home), "serve", "--port",
                                str(port)], stdout=log, stderr=log)  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}", tmp_path / "hub.log", "/healthz")
        yield home, port
    finally:
        stop(process)
