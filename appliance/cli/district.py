"""Commands district IT runs at the hub: `schoolbox hub ...` (keys, enrolment, the hub's
server, USB import, signing updates) and the district's side of `schoolbox federated`."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from pathlib import Path

import click

from appliance.cli.common import guarded, read_json, write_or_print
from appliance.packs.loader import PackError, load
from federated import district
from sync import enrolment, release, site_file, updates
from sync.files import create_secret
from sync.hub import home as hub_store
from sync.hub import os_updates, receive
from sync.hub.app import make_app
from sync.keys import PublicKeys
from sync.os_bundle import OsUpdateError


@click.group()
@click.option("--hub-home", type=click.Path(file_okay=False, path_type=Path),
              envvar="SCHOOLBOX_HUB_HOME", required=True,
              help="The hub's data directory (SCHOOLBOX_HUB_HOME).")  # fmt: skip
@click.pass_context
def hub(ctx, hub_home: Path) -> None:
    """The district hub: its keys and the boxes enrolled."""
    ctx.obj["hub_home"] = hub_home


@hub.command("init")
@click.option(
    "--database", default="", help="A postgresql:// URL (default: SQLite in the hub home)."
)
@click.pass_context
def hub_init(ctx, database: str) -> None:
    """Make the district's keys; give district.json to every box (`schoolbox sync trust`)."""
    home = ctx.obj["hub_home"]
    keys = guarded(hub_store.init, home, database)
    click.echo(f"District keys made in {home}; fingerprint {keys.public().fingerprint()}.")
    click.echo(f"Give {home / 'district.json'} to every box.")


@hub.command("enrol")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--replace", is_flag=True, help="Take new keys for a box without its old key's signature."
)
@click.pass_context
def hub_enrol(ctx, file: Path, replace: bool) -> None:
    """Register a box from its enrolment request."""
    document = read_json(file)
    db = hub_store.open_hub(ctx.obj["hub_home"])
    try:
        outcome = guarded(hub_store.enrol, db, document, replace)
    finally:
        db.close()
    keys, _ = enrolment.check_request(document)
    click.echo(f"Box {keys.owner} ({document['site_name']}): {outcome}; "
               f"fingerprint {keys.fingerprint()}.")  # fmt: skip


@hub.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8090, show_default=True)
@click.pass_context
def hub_serve(ctx, host: str, port: int) -> None:
    """Receive bundles over HTTP (waitress) and show the district dashboard."""
    import waitress

    home = ctx.obj["hub_home"]
    guarded(hub_store.district_keys, home)  # refuse to start without the district's keys
    click.echo(f"District hub on http://{host}:{port}/ (data in {home})")
    waitress.serve(make_app(home), host=host, port=port, threads=4, ident="schoolbox-hub")


@hub.command("import")
@click.argument("stick", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
def hub_import(ctx, stick: Path) -> None:
    """Apply every box's bundles on a USB stick and write acknowledgements onto it."""

    results = receive.import_from_stick(ctx.obj["hub_home"], stick)
    for name, outcome in results.items():
        click.echo(f"{name}: {outcome}")
    click.echo(f"{len(results)} bundle(s) read; acknowledgements written to the stick.")


@hub.command("sign")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["content-pack", "model"]), required=True)
@click.option("--name", help="Model name in the boxes' store (content packs: from the pack).")
@click.option("--version", "version_", help="Model version (content packs: from the pack).")
@click.option("--model-kind", type=click.Choice(["tutor-llm", "knowledge-tracing"]))
@click.pass_context
def hub_sign(ctx, file: Path, kind: str, name, version_, model_kind) -> None:
    """Sign a content pack (zip) or a model file for the boxes; it goes out with the next
    USB import and to boxes that fetch updates."""

    home = ctx.obj["hub_home"]
    if kind == "content-pack":
        try:
            pack = load(file)  # a pack that would not import is not signed
        except PackError as error:
            raise click.ClickException(str(error)) from error
        name, version_ = pack.id, pack.version
    elif not (name and version_):
        raise click.ClickException("A model update needs --name and --version.")
    district = guarded(hub_store.district_keys, home)
    folder = hub_store.updates_folder(home) / f"{kind}-{name}-{version_}"
    updates.sign(district, file, kind, name, version_, folder, model_kind)
    click.echo(f"Signed {kind} {name} {version_} into {folder}.")


@hub.group("os-update")
def hub_os_update() -> None:
    """OS update bundles (image/update.py) offered to the boxes, which fetch them at sync."""


@hub_os_update.command("publish")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def hub_os_update_publish(ctx, bundle: Path) -> None:
    """Offer BUNDLE (a .raucb signed with this district's OS update key) to the boxes."""
    try:
        record = os_updates.publish(ctx.obj["hub_home"], bundle)
    except OsUpdateError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Published {record['file']}: version {record['version']} for "
               f"{record['compatible']} boxes, {record['size'] >> 20} MB. Boxes fetch it at "
               "their next syncs and install it at night.")  # fmt: skip


@hub_os_update.command("list")
@click.pass_context
def hub_os_update_list(ctx) -> None:
    """The bundles offered, oldest first (a box takes the newest for its kind)."""
    for record in os_updates.listing(ctx.obj["hub_home"]):
        click.echo(f"{record['published_at']}  {record['compatible']:<18} {record['version']:<28} "
                   f"{record['file']}")  # fmt: skip


@hub_os_update.command("withdraw")
@click.argument("name")
@click.pass_context
def hub_os_update_withdraw(ctx, name: str) -> None:
    """Stop offering the bundle NAME: boxes that downloaded it and have not installed it
    yet delete it at their next sync."""
    if not os_updates.withdraw(ctx.obj["hub_home"], name):
        raise click.ClickException(f"No OS update called {name} is published.")
    click.echo(f"Withdrew {name}.")


@hub.command("rotate-keys")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.pass_context
def hub_rotate(ctx, out: Path) -> None:
    """New district keys; OUT, signed by the old key, moves every box over."""
    home = ctx.obj["hub_home"]
    old = guarded(hub_store.district_keys, home)
    new = guarded(hub_store.rotate, home)
    write_or_print(enrolment.district_rotation(old, new), out)


HUB_HOME = click.option(
    "--hub-home", type=click.Path(file_okay=False, path_type=Path), envvar="SCHOOLBOX_HUB_HOME",
    required=True, help="The district hub's data directory (SCHOOLBOX_HUB_HOME).",
)  # fmt: skip


@click.command("admit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@HUB_HOME
def federated_admit(file: Path, hub_home: Path) -> None:
    """Admit an enrolled box's SuperNode key (its node request); registered with the
    SuperLink now if it is running, or when `federated serve` next starts."""

    path = guarded(district.admit, hub_home, read_json(file))
    click.echo(f"Admitted the node of box {path.stem}.")
    try:
        district.register_admitted(hub_home, only=[path])  # the others are registered already
        click.echo("Its node is registered with the running SuperLink.")
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        click.echo("The SuperLink is not running; the node is registered when it starts.")


@click.command("serve")
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

    guarded(district.check_bind, host, behind_proxy)
    hosts = list(names) or ["127.0.0.1", "localhost"]
    invitation = guarded(district.prepare, hub_home, f"{hosts[0]}:{port}", hosts)
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


@click.command("run")
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
    # torch, only for the district's training run: the hub's other commands never load it.
    from federated import ship as shipping

    out = hub_store.federation_folder(hub_home) / "runs" / time.strftime("%Y%m%d-%H%M%S")
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


@click.group()
def image() -> None:
    """The OS image district IT flashes: check a download, and write each school's site file."""


@image.command("verify")
@click.argument("signature", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--district-keys", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The district's public keys file (district.json from the hub).")  # fmt: skip
@click.option("--hub-home", type=click.Path(file_okay=False, path_type=Path),
              envvar="SCHOOLBOX_HUB_HOME", help="Or the hub's data directory.")  # fmt: skip
def image_verify(signature: Path, district_keys: Path | None, hub_home: Path | None) -> None:
    """Check a downloaded image before flashing: SIGNATURE is its .sig.json; every file it
    names must be beside it, unchanged, and signed by the district."""
    if district_keys is not None:
        keys_file = district_keys
    elif hub_home is not None:
        keys_file = hub_store.public_keys_path(hub_home)
    else:
        raise click.UsageError("Say whose signature to trust: --district-keys or --hub-home.")
    trusted = guarded(lambda: PublicKeys.from_json(read_json(keys_file)))
    try:
        checked = release.verify(signature, trusted)
    except release.ReleaseError as error:
        raise click.ClickException(f"Do not flash: {error}") from error
    for name, digest in checked.items():
        click.echo(f"ok  {digest[:16]}  {name}")
    click.echo(f"Signed by district key {trusted.fingerprint()}: safe to flash.")


@image.command("site-file")
@click.option("--hub-home", type=click.Path(file_okay=False, path_type=Path),
              envvar="SCHOOLBOX_HUB_HOME", required=True,
              help="The hub's data directory: the district key signs the file.")  # fmt: skip
@click.option("--school-id", required=True, help="Short id, e.g. hill-primary.")
@click.option("--site-name", required=True, help="The school's name, shown on the box.")
@click.option("--wifi-mode", type=click.Choice(site_file.WIFI_MODES), required=True,
              help="join: the school's network; access-point: the box is the network.")  # fmt: skip
@click.option("--ssid", required=True, help="The Wi-Fi network's name.")
@click.option("--passphrase", prompt="Wi-Fi passphrase", hide_input=True,
              confirmation_prompt=True, help="8-63 characters (prompted if left out).")  # fmt: skip
@click.option("--country", required=True, help="Two-letter country code (radio rules), e.g. KE.")
@click.option("--hub-url", help="The district hub's address; leave out for USB-only sync.")
@click.option("--consent", "consents", multiple=True, type=click.Choice(site_file.CONSENTS),
              help="A feature the school already agreed to (repeat; default: none).")  # fmt: skip
@click.option("--admin-ssh-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An admin's SSH public key file; without one, SSH stays off.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help=f"Where to write it (boot partition: {site_file.FILE_NAME}).")  # fmt: skip
def image_site_file(hub_home: Path, school_id, site_name, wifi_mode, ssid, passphrase, country,
                    hub_url, consents, admin_ssh_key, out: Path) -> None:  # fmt: skip
    """Write a school's site file, signed with the district's key."""
    district_keys = guarded(hub_store.district_keys, hub_home)
    try:
        document = site_file.write(
            district_keys,
            school_id=school_id,
            site_name=site_name,
            wifi={"mode": wifi_mode, "ssid": ssid, "passphrase": passphrase, "country": country},
            hub=hub_url,
            consent={name: name in consents for name in site_file.CONSENTS},
            admin_ssh_key=admin_ssh_key.read_text().strip() if admin_ssh_key else None,
        )
    except site_file.SiteFileError as error:
        raise click.ClickException(str(error)) from error
    create_secret_file(out, json.dumps(document, indent=2).encode() + b"\n")
    click.echo(f"Wrote {out} for {site_name!r}, signed by district key "
               f"{document['signed_by']}. It holds the Wi-Fi passphrase: keep it as you "
               "would the passphrase.")  # fmt: skip


def create_secret_file(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, refusing to overwrite one that exists."""
    if not create_secret(path, data):
        raise click.ClickException(f"{path} exists already; choose another name or remove it.")


COMMANDS = (hub, image)
FEDERATED = (federated_admit, federated_serve, federated_run)
