"""Shared fixtures: a seeded demo school (built once, copied per test), the app and browsers."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx
import pytest
import requests
from onnx import TensorProto, helper

from appliance.config import Config, ensure_secret
from appliance.config import load as load_config
from appliance.demo.seed import ADMIN, LEARNER_PIN, TEACHERS, seed
from appliance.store import open_db
from appliance.store.migrations import migrate
from appliance.web.app import create_app
from models.knowledge_tracing import runtime as kt_runtime

DEMO_PACK = Path(__file__).parents[1] / "appliance" / "demo" / "pack"
SCHOOLBOX = str(Path(sys.executable).parent / "schoolbox")  # the installed console script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_box(home: Path) -> str:
    """`schoolbox init` a new box; the admin password it showed once."""
    init = subprocess.run(
        [SCHOOLBOX, "--home", str(home), "init", "--site-name", "Lakeside", "--generate-password"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return re.search(r"write it down\): (\S+)", init.stdout).group(1)


def wait_ready(base: str, log: Path | None = None, path: str = "/readyz") -> None:
    """Wait until a real server answers `path` (the box: /readyz; the hub: /healthz)."""
    for _ in range(150):
        try:
            if requests.get(f"{base}{path}", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(log.read_text() if log else "the server did not start")


def start_serve(
    home: Path, log_path: Path, workers: int = 1, threads: int = 4, **settings
) -> tuple[subprocess.Popen, int]:
    """A real `schoolbox serve` on a free loopback port, its output in `log_path`;
    `settings` become SCHOOLBOX_<NAME> variables. The process and its port."""
    port = free_port()
    env = {**os.environ, **{f"SCHOOLBOX_{k.upper()}": str(v) for k, v in settings.items()}}
    with open(log_path, "w") as log:  # the child keeps its own copy of the file
        process = subprocess.Popen(
            [SCHOOLBOX, "--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(workers), "--threads", str(threads)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    return process, port


@pytest.fixture(scope="session")
def default_gguf() -> Path:
    """The real default tutor model (SmolLM2-135M-Instruct Q4_1), fetched once and cached."""
    from models.registry import default

    return default.fetch(load_config().model_cache_dir)


def start_tutor_service(home: Path, socket_path: Path, **settings) -> subprocess.Popen:
    """A real tutor service process (`schoolbox tutor serve`) on `socket_path`."""
    from models.tutor import client as tutor

    env = {**os.environ, "SCHOOLBOX_TUTOR_SOCKET": str(socket_path)}
    env.update({f"SCHOOLBOX_TUTOR_{k.upper()}": str(v) for k, v in settings.items()})
    log = open(home.parent / f"tutor-{socket_path.stem}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [SCHOOLBOX, "--home", str(home), "tutor", "serve"], env=env, stdout=log, stderr=log
    )
    for _ in range(300):
        if tutor.status(socket_path) is not None:
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise AssertionError((home.parent / f"tutor-{socket_path.stem}.log").read_text())


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def tutor_home(tmp_path_factory, default_gguf) -> Path:
    """A box data directory whose model store holds the default tutor model, active."""
    from models.registry import default
    from models.registry import installed as store

    home = tmp_path_factory.mktemp("tutor") / "home"
    manifest = store.import_file(home, default_gguf, name=default.NAME, sha256=default.GGUF_SHA256)
    store.activate(home, manifest.name)
    return home


@pytest.fixture(scope="session")
def sockets() -> Path:
    """A short folder for Unix sockets (their paths are limited to about 100 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="sbx-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tutor_socket(tutor_home, sockets) -> Path:
    """The real tutor service with the real model, loaded once for the whole session."""
    socket_path = sockets / "tutor.sock"
    process = start_tutor_service(tutor_home, socket_path)
    yield socket_path
    stop(process)


@pytest.fixture
def saturated_cpu():
    """Every core kept busy by competing processes, as in a classroom whose box also serves
    pages; they are killed however the test ends."""
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        time.sleep(0.5)  # let the scheduler see them
        yield busy
    finally:
        for process in busy:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def school_template(tmp_path_factory) -> Path:
    """The demo school seeded once per test session; tests get a copy."""
    home = tmp_path_factory.mktemp("template") / "home"
    config = Config(home=home, testing=True)
    home.mkdir()
    ensure_secret(config)
    db = open_db(config.db_path)
    migrate(db)
    seed(db, config, learners_per_class=6)
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()
    return home


@pytest.fixture
def config(tmp_path, school_template) -> Config:
    home = tmp_path / "home"
    shutil.copytree(school_template, home)
    return Config(home=home, testing=True)


@pytest.fixture
def empty_config(tmp_path) -> Config:
    """A box with no site set up yet."""
    return Config(home=tmp_path / "empty", testing=True)


@pytest.fixture
def app(config):
    return create_app(config)


@pytest.fixture
def db(config):
    database = open_db(config.db_path)
    yield database
    database.conn.close()


class Browser:
    """A test client that signs in like a person does and sends the CSRF token with writes."""

    def __init__(self, app):
        self.client = app.test_client()

    def csrf(self) -> str:
        return self.client.get("/api/v1/session").get_json()["csrf_token"]

    def get(self, url, **kw):
        return self.client.get(url, **kw)

    def post(self, url, data=None, **kw):
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf())
        return self.client.post(url, data=data, **kw)

    def api(self, method: str, url: str, json=None):
        headers = {"X-CSRFToken": self.csrf()} if method != "GET" else {}
        return self.client.open(url, method=method, json=json, headers=headers)

    def signin_staff(self, username: str, password: str):
        return self.post("/signin/staff", {"username": username, "password": password})

    def signin_learner(self, learner_id: int, pin: str = LEARNER_PIN):
        return self.post(f"/signin/learner/{learner_id}", {"pin": pin})


@pytest.fixture
def browser(app) -> Browser:
    return Browser(app)


@pytest.fixture
def ids(db) -> dict:
    """Ids of the demo school's people and classes, looked up by role and name."""
    rows = db.conn.execute("SELECT id, role, username, display_name FROM users").fetchall()
    classes = {r["name"]: r["id"] for r in db.conn.execute("SELECT id, name FROM classes")}
    teachers = {r["username"]: r["id"] for r in rows if r["role"] == "teacher"}
    learners_by_class = {}
    for name, class_id in classes.items():
        learners_by_class[name] = [
            r["learner_id"]
            for r in db.conn.execute(
                "SELECT learner_id FROM enrolments WHERE class_id = ? ORDER BY learner_id",
                (class_id,),
            )
        ]
    return {
        "admin": next(r["id"] for r in rows if r["role"] == "admin"),
        "teachers": teachers,
        "classes": classes,
        "learners": learners_by_class,
    }


def as_role(app, role: str, ids: dict) -> Browser:
    """A browser signed in as the demo admin, teacher amina, or a learner of Class 4A."""
    browser = Browser(app)
    if role == "admin":
        response = browser.signin_staff(ADMIN[0], ADMIN[2])
    elif role == "teacher":
        response = browser.signin_staff(TEACHERS[0][0], TEACHERS[0][2])
    elif role == "learner":
        response = browser.signin_learner(ids["learners"]["Class 4A"][0])
    else:
        return browser
    assert response.status_code == 302, response.data[:500]
    return browser


def form_value(html: bytes, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"'.encode(), html)
    assert match, f"no field {name}"
    return match.group(1).decode()


def kt_graph(path, inputs=kt_runtime.INPUTS, outputs=kt_runtime.OUTPUTS, opset=17, nan=False):
    """A small hand-made ONNX graph with the given names (p = sigmoid(item), or NaN)."""
    sizes = {"skill_state": 4, "learner_state": 4}
    value_in = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["rows", sizes.get(n, 1)])
                for n in inputs]  # fmt: skip
    first = inputs[2] if len(inputs) > 2 else inputs[0]
    nodes = [helper.make_node("Sigmoid", [first], ["sig"])]
    if nan:
        nodes += [helper.make_node("Sub", ["sig", "sig"], ["zero"]),
                  helper.make_node("Div", ["zero", "zero"], [outputs[0]])]  # fmt: skip
    else:
        nodes += [helper.make_node("Identity", ["sig"], [outputs[0]])]
    nodes += [helper.make_node("Identity", [inputs[0]], [outputs[1]]),
              helper.make_node("Identity", [inputs[1]], [outputs[2]])]  # fmt: skip
    value_out = [
        helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, ["rows", 1]),
        helper.make_tensor_value_info(outputs[1], TensorProto.FLOAT, ["rows", 4]),
        helper.make_tensor_value_info(outputs[2], TensorProto.FLOAT, ["rows", 4]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "kt", value_in, value_out),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# What makes a test slow (`make test-fast` leaves these out): the real LLM, a server or
# database process, or cores kept busy on purpose. A test that uses one of these fixtures
# is marked slow here; a module that starts such things itself carries the mark.
SLOW_FIXTURES = {
    "default_gguf", "tutor_home", "tutor_socket", "saturated_cpu", "hub_server", "postgres_url",
    "boxes",
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("hub_home") == "postgresql"
        if on_postgres or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
