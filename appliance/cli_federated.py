"""`schoolbox federated ...`: a thin layer over federated/ (node.py on a box, district.py
at the district), which the tests call directly too.

On a box:            enrol (node request), trust FILE (invitation), join (the SuperNode)
At the district:     admit FILE, serve (the SuperLink), run (a training run, then ship)
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import click

from .cli_sync import _box, _guarded, _read_json, _write_or_print
from .store import training_data

NO_CONSENT = 78  # EX_CONFIG: the systemd unit does not restart on it (RestartPreventExitStatus)

HUB_HOME = click.option(
    "--hub-home", type=click.Path(file_okay=False, path_type=Path), envvar="SCHOOLBOX_HUB_HOME",
    required=True, help="The district hub's data directory (SCHOOLBOX_HUB_HOME).",
)  # fmt: skip


@click.group()
def federated() -> None:
    """Federated training of the knowledge-tracing model (Flower)."""


# -- on a box ------------------------------------------------------------------------------


@federated.command("enrol")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write it here.")
@click.pass_context
def federated_enrol(ctx, out: Path | None) -> None:
    """This box's SuperNode key, signed with its sync key, for the district to admit."""
    from federated import node

    config, found = _box(ctx)
    _write_or_print(_guarded(node.request, config.home, found["box_id"]), out)


@federated.command("trust")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def federated_trust(ctx, file: Path) -> None:
    """Pin the district's SuperLink address and certificate from its signed invitation."""
    from federated import node

    config, _ = _box(ctx)
    body = _guarded(node.accept_invitation, config.home, _read_json(file))
    click.echo(f"This box will train with the district's SuperLink at {body['superlink']}.")


@federated.command("join")
@click.option("--port", default=9094, show_default=True, help="The SuperNode's local port.")
@click.pass_context
def federated_join(ctx, port: int) -> None:
    """Run this box's SuperNode (a long-running service), only if the school consented."""
    from federated import node

    config, _ = _box(ctx)
    if not training_data.consented(config.db_path):
        message = ("This school has not consented to federated training, so no node was "
                   "started. An admin can consent on the admin page (Consent).")  # fmt: skip
        click.echo(message, err=True)
        ctx.exit(NO_CONSENT)
    command = _guarded(node.supernode_command, config.home, port)
    window = f"{config.federated_hours}, weekends {config.federated_weekends}"
    click.echo(f"Joining federated training as box home {config.home} (window {window}).")
    node.limit_self(config.federated_memory_mb)
    os.execve(command[0], command, node.environment(config.home))  # noqa: S606 - the service is the node


# -- at the district -----------------------------------------------------------------------


@federated.command("admit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@HUB_HOME
def federated_admit(file: Path, hub_home: Path) -> None:
    """Admit an enrolled box's SuperNode key (its node request); registered with the
    SuperLink now if it is running, or when `federated serve` next starts."""
    from federated import district

    path = _guarded(district.admit, hub_home, _read_json(file))
    click.echo(f"Admitted the node of box {path.stem}.")
    try:
        district.register_admitted(hub_home, only=[path])  # the others are registered already
        click.echo("Its node is registered with the running SuperLink.")
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        click.echo("The SuperLink is not running; the node is registered when it starts.")


@federated.command("serve")
@HUB_HOME
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Where all three of flwr's APIs listen; only loopback without --behind-proxy.",
)
@click.option("--port", default=8000, show_default=True)
@click.option(
    "--name",
    "names",
    multiple=True,
    help="A name or address boxes use to reach this SuperLink (repeat).",
)
@click.option("--behind-proxy", is_flag=True,
              help="A proxy or firewall in front passes only the Fleet API (/v1/fleet/), so "
                   "--host may be an address other machines reach.")  # fmt: skip
def federated_serve(hub_home: Path, host: str, port: int, names: tuple[str, ...],
                    behind_proxy: bool) -> None:  # fmt: skip
    """Run the district's SuperLink: TLS, and only admitted boxes' nodes."""
    from federated import district

    _guarded(district.check_bind, host, behind_proxy)
    hosts = list(names) or ["127.0.0.1", "localhost"]
    invitation = _guarded(district.prepare, hub_home, f"{hosts[0]}:{port}", hosts)
    click.echo(f"Give boxes {invitation} (`schoolbox federated trust FILE`).")
    superlink = subprocess.Popen(  # noqa: S603 - our own venv's flower-superlink
        district.superlink_command(hub_home, host, port), env=district.flower_env(hub_home)
    )
    signal.signal(signal.SIGTERM, lambda *_: superlink.terminate())
    try:
        _register_when_up(district, hub_home, superlink)
        click.echo(f"SuperLink on {host}:{port} (TLS; node authentication on).")
        superlink.wait()
    finally:
        if superlink.poll() is None:
            superlink.terminate()
            superlink.wait(timeout=30)


def _register_when_up(district, hub_home: Path, superlink: subprocess.Popen) -> None:
    for _ in range(60):
        if superlink.poll() is not None:
            raise click.ClickException("The SuperLink stopped while starting; see its log above.")
        try:
            done = district.register_admitted(hub_home)
            click.echo(f"{len(done)} admitted node(s) registered.")
            return
        except (RuntimeError, subprocess.TimeoutExpired):
            time.sleep(1)
    raise click.ClickException("The SuperLink did not answer; admitted nodes are not registered.")


@federated.command("run")
@HUB_HOME
@click.option("--rounds", default=3, show_default=True)
@click.option("--min-boxes", default=3, show_default=True, help="Boxes a round needs.")
@click.option("--local-epochs", default=1, show_default=True)
@click.option(
    "--epsilon",
    default=0.0,
    show_default=True,
    help="Differential privacy budget per box for the whole run; 0 = off.",
)
@click.option("--secure-aggregation/--no-secure-aggregation", default=True, show_default=True)
@click.option("--round-timeout", default=1800.0, show_default=True, help="Seconds.")
@click.option("--ship/--no-ship", default=True, show_default=True,
              help="Export, sign and queue the model for the boxes.")  # fmt: skip
@click.option("--initial", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from these weights (.npz). Default: the last shipped run's, else "
                   "the shipped model's (models/shipped/kt.float.npz).")  # fmt: skip
def federated_run(hub_home: Path, rounds, min_boxes, local_epochs, epsilon,
                  secure_aggregation, round_timeout, ship, initial) -> None:  # fmt: skip
    """Start a training run on the SuperLink and wait for it; then ship the model if it
    beat its start on the boxes' held-out answers."""
    from federated import district
    from federated import ship as shipping

    out = district.folder(hub_home) / "runs" / time.strftime("%Y%m%d-%H%M%S")
    start = shipping.starting_weights(hub_home, initial)
    click.echo(f"Starting from {start or 'a fresh model (the shipped weights are missing)'}.")
    settings = {
        "num-server-rounds": rounds, "min-nodes": min_boxes, "local-epochs": local_epochs,
        "dp-epsilon": epsilon, "secure-aggregation": secure_aggregation,
        "round-timeout": round_timeout, "output": str(out), "initial": str(start or ""),
    }  # fmt: skip
    result = subprocess.run(district.run_command(hub_home, settings),  # noqa: S603
                            env=district.flower_env(hub_home), check=False)  # fmt: skip
    if result.returncode != 0 or not (out / "run.json").exists():
        raise click.ClickException(f"The run did not finish (flwr exit {result.returncode}).")
    summary = json.loads((out / "run.json").read_text())
    if shipping.nothing_trained(summary):
        raise click.ClickException(
            "No box trained in any round, so this run did nothing and nothing is shipped. "
            "Boxes train only inside their training window (federated_hours), with the "
            "school's consent and a quiet classroom; see each box's `federated join` log."
        )
    scores = f"{_auc(summary['initial'])} -> {_auc(summary['final'])}"
    click.echo(f"Run finished: held-out AUC {scores}; epsilon {summary['epsilon']:.2f}; "
               f"results in {out}")  # fmt: skip
    if ship:
        try:
            folder = shipping.ship(hub_home, out)
        except shipping.ShipError as error:
            raise click.ClickException(str(error)) from error
        click.echo(f"Signed for the boxes: {folder}")


def _auc(scores: dict) -> str:
    auc = scores.get("auc")
    return "not scored" if auc is None or math.isnan(auc) else f"{auc:.4f}"
