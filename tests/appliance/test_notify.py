"""Telling systemd the truth: ready only once the box serves, the watchdog fed only while
it does, and nothing at all outside systemd."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest
import requests
from click.testing import CliRunner

from appliance import notify
from appliance.cli import main
from appliance.config import load, secret_is_private
from appliance.paths import private_mode
from sync.files import create_secret, write_durably
from tests.conftest import SCHOOLBOX, free_port, init_box, start_tutor_service, stop


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    """A datagram socket where systemd would listen; its messages as a list of strings."""
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(0.2)
    monkeypatch.setenv(notify.NOTIFY_SOCKET, str(path))
    received: list[str] = []
    done = threading.Event()

    def collect():
        while not done.is_set():
            try:
                received.append(listener.recv(4096).decode())
            except TimeoutError:
                pass

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    yield received
    done.set()
    thread.join()
    listener.close()


def wait_for(received: list[str], field: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(field in message.split("\n") for message in received):
            return True
        time.sleep(0.05)
    return False


def test_ready_reaches_systemd_with_a_status_line(systemd):
    assert notify.ready("serving on port 80")
    assert wait_for(systemd, "READY=1", 2)
    assert "STATUS=serving on port 80" in systemd[0].split("\n")


def test_outside_systemd_nothing_is_sent(monkeypatch):
    monkeypatch.delenv(notify.NOTIFY_SOCKET, raising=False)
    assert notify.ready() is False
    monkeypatch.setenv(notify.WATCHDOG_USEC, "1000000")
    monkeypatch.setenv(notify.NOTIFY_SOCKET, "relative/path")  # not a socket systemd gives
    assert notify.send("WATCHDOG=1") is False


def test_the_watchdog_is_fed_only_while_the_service_is_healthy(systemd, monkeypatch):
    monkeypatch.setenv(notify.WATCHDOG_USEC, "100000")  # a ping every 50 ms
    healthy = threading.Event()
    stop_pinging = threading.Event()
    notify.keep_alive(healthy.is_set, stop_pinging)
    time.sleep(0.3)
    assert not wait_for(systemd, "WATCHDOG=1", 0.1)  # up, but cannot serve: no ping
    healthy.set()
    assert wait_for(systemd, "WATCHDOG=1", 2)
    stop_pinging.set()


def test_no_watchdog_without_watchdogsec(monkeypatch):
    monkeypatch.delenv(notify.WATCHDOG_USEC, raising=False)
    assert notify.keep_alive(lambda: True, threading.Event()) is None


def test_sync_without_consent_ends_as_no_failure_of_the_timer(config):
    result = CliRunner().invoke(main, ["--home", str(config.home), "sync", "now"])
    assert result.exit_code == 78  # the unit's SuccessExitStatus
    assert "has not switched sync on" in result.output


# --- secrets on the image's shared data folder -------------------------------------------


def test_a_secret_is_its_owners_alone_in_a_plain_folder(tmp_path):
    create_secret(tmp_path / "key", b"k")
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600


def test_a_secret_is_readable_by_the_services_group_in_the_shared_folder(tmp_path):
    shared = tmp_path / "data"
    shared.mkdir()
    shared.chmod(0o2770)  # as the image's tmpfiles.d makes /var/lib/schoolbox
    (shared / "keys").mkdir()  # Linux passes the set-group-ID bit on
    create_secret(shared / "keys" / "box.key", b"k")
    write_durably(shared / "keys" / "pinned.json", b"{}")
    assert private_mode(shared / "keys") == 0o640
    for name in ("box.key", "pinned.json"):
        assert stat.S_IMODE((shared / "keys" / name).stat().st_mode) == 0o640


def test_the_box_warns_of_a_group_readable_secret_only_outside_the_shared_folder(tmp_path):
    plain = load(home=tmp_path / "plain")
    shared = load(home=tmp_path / "shared")
    shared.home.mkdir()
    shared.home.chmod(0o2770)
    for config in (plain, shared):
        config.home.mkdir(exist_ok=True)
        config.secret_path.write_text("x")
        config.secret_path.chmod(0o640)
    assert not secret_is_private(plain)
    assert secret_is_private(shared)
    shared.secret_path.chmod(0o644)  # others may read: never private
    assert not secret_is_private(shared)


# --- the real services under a pretend systemd ----------------------------------------------


@pytest.mark.slow
def test_serve_says_ready_only_once_it_answers_healthz_and_feeds_the_watchdog(tmp_path, systemd):
    home = tmp_path / "box"
    init_box(home)
    port = free_port()
    env = {**os.environ, notify.WATCHDOG_USEC: "2000000", "SCHOOLBOX_TUTOR_SERVICE": "false",
           "SCHOOLBOX_JOBS": "false"}  # fmt: skip
    with open(tmp_path / "serve.log", "w") as log:
        process = subprocess.Popen(
            [SCHOOLBOX, "--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        assert wait_for(systemd, "READY=1", 60), (tmp_path / "serve.log").read_text()
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert wait_for(systemd, "WATCHDOG=1", 5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert wait_for(systemd, "STOPPING=1", 2)
    finally:
        stop(process)


@pytest.mark.slow
def test_the_jobs_run_as_a_service_of_their_own(tmp_path, systemd):
    home = tmp_path / "box"
    init_box(home)
    env = {**os.environ, notify.WATCHDOG_USEC: "1000000"}
    process = subprocess.Popen([SCHOOLBOX, "--home", str(home), "jobs"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert wait_for(systemd, "READY=1", 30)
        assert wait_for(systemd, "WATCHDOG=1", 5)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output
        assert "Traceback" not in output
    finally:
        stop(process)


@pytest.mark.slow
def test_the_tutor_says_ready_once_its_socket_answers(tutor_home, tmp_path, systemd, monkeypatch):
    from models.tutor import client as tutor

    monkeypatch.setenv(notify.WATCHDOG_USEC, "1000000")
    socket_path = tmp_path / "tutor.sock"
    process = start_tutor_service(tutor_home, socket_path)  # returns once the socket answers
    try:
        assert wait_for(systemd, "READY=1", 10)
        assert tutor.status(socket_path) is not None
        assert wait_for(systemd, "WATCHDOG=1", 5)
    finally:
        stop(process)


def test_in_the_shared_folder_the_database_and_model_list_are_the_groups(tmp_path):
    from appliance.store import open_db
    from models.registry import default
    from models.registry import installed as model_store

    shared = tmp_path / "data"
    shared.mkdir()
    shared.chmod(0o2770)
    db = open_db(shared / "schoolbox.db")
    db.execute("CREATE TABLE t (x)")
    db.conn.close()
    assert stat.S_IMODE((shared / "schoolbox.db").stat().st_mode) == 0o660
    default.install_knowledge_tracing(shared)
    listed = model_store.root(shared) / model_store.ACTIVE_FILE
    assert stat.S_IMODE(listed.stat().st_mode) & 0o040  # the web app's user reads it
    for folder in model_store.root(shared).iterdir():  # and enters each model's folder
        if folder.is_dir():
            assert stat.S_IMODE(folder.stat().st_mode) & 0o050 == 0o050, folder
            for file in folder.iterdir():  # and reads its manifest, card and weights
                assert stat.S_IMODE(file.stat().st_mode) & 0o040, file


def test_the_status_page_shows_each_services_memory_on_the_image(tmp_path, monkeypatch, app,
                                                                 ids):  # fmt: skip
    from appliance import health
    from tests.conftest import as_role

    for name, used, cache in (("schoolbox-web", 150_000_000, 40_000_000),
                              ("schoolbox-tutor", 380_000_000, 200_000_000)):  # fmt: skip
        (tmp_path / f"{name}.service").mkdir()
        (tmp_path / f"{name}.service" / "memory.current").write_text(f"{used}\n")
        (tmp_path / f"{name}.service" / "memory.stat").write_text(
            f"anon 1000\nfile {cache + 5}\nactive_file 5\ninactive_file {cache}\n"
        )
    (tmp_path / "ssh.service").mkdir()  # not the box's: not shown
    monkeypatch.setattr(health, "SERVICES_CGROUP", tmp_path)
    assert health.service_memory() == {
        "schoolbox-tutor": health.ServiceMemory(380_000_000, 180_000_000),
        "schoolbox-web": health.ServiceMemory(150_000_000, 110_000_000),
    }
    page = as_role(app, "admin", ids).get("/admin/").data.decode()
    assert ('<th scope="row">schoolbox-tutor</th><td data-bytes="180000000">180 MB</td>'
            '<td data-bytes-total="380000000">380 MB</td>') in page  # fmt: skip
    monkeypatch.setattr(health, "SERVICES_CGROUP", tmp_path / "none")  # not on the image
    assert "schoolbox-web" not in as_role(app, "admin", ids).get("/admin/").data.decode()
