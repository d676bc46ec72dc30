"""`schoolbox sync ...` (on a box) and `schoolbox hub ...` (at the district): thin layers
over sync/, which the tests call directly too."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sync import enrolment, hub_store
from sync.enrolment import EnrolmentError
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
    except (EnrolmentError, KeyFileError) as error:
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
    config, found = _box(ctx)
    document = _guarded(enrolment.rotate_box_keys, config.home, found["name"])
    _write_or_print(document, out)


@click.group()
@click.option("--hub-home", type=click.Path(file_okay=False, path_type=Path),
              envvar="SCHOOLBOX_HUB_HOME", required=True,
              help="The hub's data directory (SCHOOLBOX_HUB_HOME).")  # fmt: skip
@click.pass_context
def hub(ctx, hub_home: Path) -> None:
    """The district hub: its keys and the boxes enrolled."""
    ctx.obj["hub_home"] = hub_home


@hub.command("init")
@click.pass_context
def hub_init(ctx) -> None:
    """Make the district's keys; give district.json to every box (`schoolbox sync trust`)."""
    home = ctx.obj["hub_home"]
    keys = _guarded(hub_store.init, home)
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


@hub.command("rotate-keys")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.pass_context
def hub_rotate(ctx, out: Path) -> None:
    """New district keys; OUT, signed by the old key, moves every box over."""
    home = ctx.obj["hub_home"]
    old = _guarded(hub_store.district_keys, home)
    new = _guarded(hub_store.rotate, home)
    _write_or_print(enrolment.district_rotation(old, new), out)
