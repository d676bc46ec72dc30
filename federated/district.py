"""The district's side of federated training: its SuperLink, the boxes' nodes it admits,
and the runs it starts. Files live beside the sync hub's, in <hub home>/federation/:

    tls/               CA and SuperLink certificate (identity.make_tls)
    invitation.json    what boxes pin: address + CA, signed by the district
    nodes/<box>.pub    the SuperNode key of each admitted box
    superlink.db       the SuperLink's state (registered nodes survive a restart)
    flwr/config.toml   the `flwr` CLI's connection to this SuperLink (FLWR_HOME)
    app/pyproject.toml the Flower App that runs name: only its configuration; the code is
                       the installed schoolbox package, on the district and on every box
    runs/<time>/       each run's global weights, summary, ONNX model and card
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from federated import identity
from sync.hub import home as hub_store

# Neither the district nor a box phones home: no usage telemetry, no update check.
FLOWER_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
BOX_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a node key's file name


def flower_env(hub_home: Path | None = None) -> dict[str, str]:
    """The environment every Flower process gets: no telemetry, this venv's tools on
    PATH (the SuperLink and SuperNode start `flower-superexec`), our FLWR_HOME."""
    env = {**os.environ, **FLOWER_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if hub_home is not None:
        env["FLWR_HOME"] = str(hub_store.federation_folder(hub_home) / "flwr")
    return env


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def prepare(hub_home: Path, address: str, hosts: list[str]) -> Path:
    """Certificates, the invitation boxes pin, the CLI's connection and the app folder."""
    root = hub_store.federation_folder(hub_home)
    identity.make_tls(root / "tls", hosts)
    ca_pem = (root / "tls" / "ca.pem").read_text()
    document = identity.invitation(hub_store.district_keys(hub_home), address, ca_pem)
    (root / "invitation.json").write_text(json.dumps(document, indent=2) + "\n")
    control = f"127.0.0.1:{address.rsplit(':', 1)[1]}"
    (root / "flwr").mkdir(parents=True, exist_ok=True)
    (root / "flwr" / "config.toml").write_text(
        f'[superlink]\ndefault = "district"\n\n[superlink.district]\naddress = "{control}"\n'
        f'root-certificates = "{root / "tls" / "ca.pem"}"\n'
    )
    (root / "app").mkdir(exist_ok=True)
    (root / "app" / "pyproject.toml").write_text(APP_PYPROJECT)
    (root / "nodes").mkdir(exist_ok=True)
    return root / "invitation.json"


def check_bind(host: str, behind_proxy: bool) -> None:
    """flwr 1.42 binds its Fleet, Control and Runtime APIs to one `--host`, and the
    Control API (start runs, register node keys) has no authentication: refuse any bind
    but loopback unless the operator says a proxy or firewall in front passes only the
    Fleet API (docs/federated.md, "Exposing the SuperLink")."""
    if behind_proxy or host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise identity.IdentityError(
        f"Refusing to listen on {host}: the SuperLink's Control API, which starts runs and "
        "admits nodes without authentication, would be reachable from the network. Listen "
        "on 127.0.0.1 and let boxes in through a proxy that forwards only /v1/fleet/, or, "
        "if such a proxy or firewall is already in front, add --behind-proxy."
    )


def superlink_command(hub_home: Path, host: str, port: int) -> list[str]:
    """The SuperLink: TLS, only registered nodes, and no installing of app dependencies
    at run time (the app is the installed schoolbox package)."""
    tls = hub_store.federation_folder(hub_home) / "tls"
    return [
        tool("flower-superlink"),
        "--ssl-ca-certfile", str(tls / "ca.pem"),
        "--ssl-certfile", str(tls / "server.pem"),
        "--ssl-keyfile", str(tls / "server.key"),
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
        "--database", str(hub_store.federation_folder(hub_home) / "superlink.db"),
        "--host", host, "--port", str(port),
    ]  # fmt: skip


def admit(hub_home: Path, document: dict) -> Path:
    """Accept a box's node request (checked against its sync enrolment); its key file."""
    db = hub_store.open_hub(hub_home)
    try:
        box_id = str(document.get("box_id")) if isinstance(document, dict) else ""
        if not BOX_ID.fullmatch(box_id):
            raise identity.IdentityError(f"{box_id[:40]!r} is not a box id.")
        node_key = identity.check_node_request(document, hub_store.keys_of(db, box_id))
        path = hub_store.federation_folder(hub_home) / "nodes" / f"{box_id}.pub"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(node_key + "\n")
        db.begin()
        hub_store.audit(db, "federation node admitted", box_id)
        db.commit()
    finally:
        db.close()
    return path


def register_admitted(hub_home: Path, only: list[Path] | None = None) -> list[str]:
    """Register the admitted nodes' keys (every one, or `only` these) with the running
    SuperLink; the boxes done. A key the SuperLink already has is left as it is."""
    done = []
    paths = (
        only
        if only is not None
        else sorted((hub_store.federation_folder(hub_home) / "nodes").glob("*.pub"))
    )
    for path in paths:
        result = subprocess.run(
            [tool("flwr"), "supernode", "register", str(path), "district", "--format", "json"],
            env=flower_env(hub_home), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        # `flwr --format json` exits 0 either way; its JSON says what happened.
        try:
            reply = json.loads(result.stdout)
        except ValueError:
            reply = {"error-message": result.stdout + result.stderr}
        if reply.get("success") or "already in use" in str(reply.get("error-message")):
            done.append(path.stem)
        else:
            raise RuntimeError(f"Registering {path.stem} failed: {reply.get('error-message')}")
    return done


def run_command(hub_home: Path, settings: dict) -> list[str]:
    """`flwr run` of the district's app on its SuperLink, with `settings` as run config."""
    pairs = " ".join(f"{k}={_toml(v)}" for k, v in settings.items())
    return [tool("flwr"), "run", str(hub_store.federation_folder(hub_home) / "app"), "district",
            "--run-config", pairs, "--stream"]  # fmt: skip


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


APP_PYPROJECT = """\
# Written by `schoolbox federated serve`. The app's code is the installed schoolbox
# package; this file only names it and its default configuration for `flwr run`.
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "schoolbox-federated"
version = "1.0.0"
dependencies = []

[tool.flwr.app]
publisher = "schoolbox"

[tool.flwr.app.components]
serverapp = "federated.server_app:app"
clientapp = "federated.client_app:app"

[tool.flwr.app.config]
num-server-rounds = 3
local-epochs = 1
learning-rate = 0.003
min-nodes = 2
round-timeout = 1800.0
secure-aggregation = false
dp-epsilon = 0.0
dp-delta = 1e-5
initial = ""
output = ""
"""
