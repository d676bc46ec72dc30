"""`schoolbox sync ...` (on a box) and `schoolbox hub ...` (at the district): thin layers
over sync/, which the tests call directly too."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sync import enrolment, hub_store
from sync.enrolment import EnrolmentError
from sync.hub_db import HubDatabaseError
from sync.keys import KeyFileError

from .store import open_db, site


def _box(ctx: click.Context):
    config = ctx.obj["config"]
    db = open_db(config.db_path) if config.db_path.exists() else None
    found = site.get(db) if db else None
    if found is None:
        raise click.ClickException("This box is not set up yet: run `schoolbox init` first.")
    return config, found


def _guarded(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except (EnrolmentError, KeyFileError, HubDatabaseError) as error:
        raise click.ClickException(str(error)) from error


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise click.ClickException(f"{path} is not a readable JSON file ({error}).") from error


def _write_or_print(document: dict, out: Path | None) -> None:
    text = json.dumps(document, indent=2, sort_keys=True)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n")
        click.echo(f"Wrote {out}")


@click.group()
def sync() -> None:
    """This box's side of sync with the district: keys, enrolment, trust."""


@sync.command("enrol")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write it here.")
@click.pass_context
def sync_enrol(ctx, out: Path | None) -> None:
    """The enrolment request to give the district (box id, site name, public keys)."""
    config, found = _box(ctx)
    keys = _guarded(enrolment.ensure_box_keys, config.home, found["box_id"])
    _write_or_print(enrolment.request(keys, found["name"]), out)
    click.echo(f"Fingerprint (read it to the district): {keys.public().fingerprint()}", err=True)


@sync.command("trust")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Replace district keys already trusted.")
@click.pass_context
def sync_trust(ctx, file: Path, replace: bool) -> None:
    """Pin the district's public keys (district.json), or accept its signed key rotation."""
    config, _ = _box(ctx)
    document = _read_json(file)
    if document.get("format") == enrolment.ROTATION_FORMAT:
        keys = _guarded(enrolment.accept_district_rotation, config.home, document)
    else:
        keys = _guarded(enrolment.pin_district, config.home, document, replace)
    click.echo(f"This box now trusts district keys {keys.fingerprint()}.")


@sync.command("rotate-keys")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write it here.")
@click.pass_context
def sync_rotate(ctx, out: Path | None) -> None:
    """New keys for this box, with a request signed by the old ones for the district."""
    from sync import outbox

    config, found = _box(ctx)
    with outbox.sealing_lock(config.home):  # no bundle is sealed with the old keys meanwhile
        waiting = outbox.pending(open_db(config.db_path))
        if waiting:  # signed with the old key, which the hub will no longer accept
            raise click.ClickException(
                f"{len(waiting)} bundle(s) signed with the current keys still wait for the "
                "district: send them (schoolbox sync now) or carry them (schoolbox sync "
                "export, then the district's hub import and schoolbox sync import) first."
            )
        document = _guarded(enrolment.rotate_box_keys, config.home, found["name"])
    _write_or_print(document, out)


def _sync_errors(function, *args, **kwargs):
    from sync.bundle import BundleError
    from sync.outbox import OutboxFull
    from sync.policy import PolicyError
    from sync.transport import SendStopped

    try:
        return function(*args, **kwargs)
    except (EnrolmentError, KeyFileError, BundleError, OutboxFull, PolicyError, SendStopped,
            ConnectionError) as error:  # fmt: skip
        raise click.ClickException(str(error)) from error


@sync.command("now")
@click.option("--url", help="The hub to send to (default: the sync_url setting).")
@click.pass_context
def sync_now(ctx, url: str | None) -> None:
    """Seal what is waiting into bundles, and send them if the hub can be reached."""
    from sync import outbox, transport

    config, found = _box(ctx)
    db = open_db(config.db_path)
    if not site.is_consented(db, "sync"):
        raise click.ClickException("The school has not switched sync on (admin, consent page).")
    sealed = _sync_errors(outbox.seal_pending, db, config.home, config.sync_settings())
    click.echo(f"Sealed {len(sealed)} bundle(s); {len(outbox.pending(db))} waiting.")
    target = url or config.sync_url
    if not target:
        return
    if not transport.reachable(target):
        click.echo(f"The hub at {target} cannot be reached; bundles wait.")
        return
    sent = _sync_errors(transport.send_pending, db, config.home, target)
    click.echo(f"The hub acknowledged {sent} bundle(s).")
    from sync import updates

    incoming = config.home / "updates-incoming"
    _sync_errors(transport.fetch_updates, target, incoming)
    for name, outcome in updates.apply_all(
        db, config.home, incoming, config.sync_require_signed_updates
    ).items():
        click.echo(f"Update {name}: {outcome}")


@sync.command("export")
@click.argument("stick", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
def sync_export(ctx, stick: Path) -> None:
    """Seal what is waiting and copy every pending bundle onto a USB stick."""
    from sync import outbox, transport

    config, found = _box(ctx)
    db = open_db(config.db_path)
    _sync_errors(outbox.seal_pending, db, config.home, config.sync_settings())
    copied = transport.export_to(db, config.home, stick, found["box_id"])
    click.echo(f"Copied {copied} bundle(s) to {stick}. Take the stick to the district.")


@sync.command("import")
@click.argument("stick", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
def sync_import(ctx, stick: Path) -> None:
    """Read the district's acknowledgements from a USB stick and prune what it holds."""
    from sync import transport, updates

    config, found = _box(ctx)
    db = open_db(config.db_path)
    pruned = _sync_errors(transport.import_acks, db, config.home, stick, found["box_id"])
    click.echo(f"The district holds {pruned} more bundle(s); they were removed here.")
    results = updates.apply_all(db, config.home, stick / transport.USB_FOLDER / transport.UPDATES,
                                config.sync_require_signed_updates)  # fmt: skip
    for name, outcome in results.items():
        click.echo(f"Update {name}: {outcome}")


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
    keys = _guarded(hub_store.init, home, database)
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
    document = _read_json(file)
    db = hub_store.open_hub(ctx.obj["hub_home"])
    try:
        outcome = _guarded(hub_store.enrol, db, document, replace)
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

    from sync.hub_app import make_app

    home = ctx.obj["hub_home"]
    _guarded(hub_store.district_keys, home)  # refuse to start without the district's keys
    click.echo(f"District hub on http://{host}:{port}/ (data in {home})")
    waitress.serve(make_app(home), host=host, port=port, threads=4, ident="schoolbox-hub")


@hub.command("import")
@click.argument("stick", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
def hub_import(ctx, stick: Path) -> None:
    """Apply every box's bundles on a USB stick and write acknowledgements onto it."""
    from sync import transport

    results = transport.hub_import_from(ctx.obj["hub_home"], stick)
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
    from sync import updates

    home = ctx.obj["hub_home"]
    if kind == "content-pack":
        from .packs.loader import PackError, load

        try:
            pack = load(file)  # a pack that would not import is not signed
        except PackError as error:
            raise click.ClickException(str(error)) from error
        name, version_ = pack.id, pack.version
    elif not (name and version_):
        raise click.ClickException("A model update needs --name and --version.")
    district = _guarded(hub_store.district_keys, home)
    folder = updates.hub_folder(home) / f"{kind}-{name}-{version_}"
    updates.sign(district, file, kind, name, version_, folder, model_kind)
    click.echo(f"Signed {kind} {name} {version_} into {folder}.")


@hub.command("rotate-keys")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.pass_context
def hub_rotate(ctx, out: Path) -> None:
    """New district keys; OUT, signed by the old key, moves every box over."""
    home = ctx.obj["hub_home"]
    old = _guarded(hub_store.district_keys, home)
    new = _guarded(hub_store.rotate, home)
    _write_or_print(enrolment.district_rotation(old, new), out)
