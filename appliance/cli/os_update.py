"""`schoolbox os-update`: the box's signed A/B system updates (sync/box/os_update.py).

The image's units run these: `install --stick DIR --downloaded` as root once the booted
slot is good (at boot, when a stick is plugged in, and at night for a bundle downloaded
from the hub), `settle` before anything opens the database, `settle --good` after mark-good.
An admin with SSH may run `install BUNDLE` and `status` by hand.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from appliance.cli.common import config_of
from models.registry.formats import sha256_of
from sync.box import os_download, os_update

# What writes the database: stopped before the copy an update can be rolled back to.
SERVICES = ["schoolbox-web.service", "schoolbox-jobs.service", "schoolbox-sync.service",
            "schoolbox-tutor.service", "schoolbox-federated.service"]  # fmt: skip


@click.group("os-update")
def os_update_group() -> None:
    """Signed system updates (A/B slots): install one, and settle it after a restart."""


@os_update_group.command("install")
@click.argument("bundle", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))  # fmt: skip
@click.option("--stick", type=click.Path(file_okay=False, path_type=Path),
              help="A mounted USB stick to look on for *.raucb (the image mounts it).")  # fmt: skip
@click.option("--downloaded", is_flag=True,
              help="Also install a bundle the sync downloaded from the hub.")  # fmt: skip
@click.option("--no-reboot", is_flag=True, help="Leave the restart to the caller.")
@click.pass_context
def install(ctx, bundle: Path | None, stick: Path | None, downloaded: bool,
            no_reboot: bool) -> None:  # fmt: skip
    """Install a district-signed update into the other slot; the box restarts into it."""
    home = config_of(ctx).home
    if bundle is None and stick is None and not downloaded:
        raise click.UsageError("Name a bundle, a stick with --stick, or --downloaded.")
    found = [bundle] if bundle is not None else []
    found += os_update.find_bundles([stick]) if stick is not None else []
    from_hub = os_download.ready(home) if downloaded else []
    if not found + from_hub:
        click.echo("No OS update was found.")
        return
    errors = []
    for candidate in found + from_hub:  # the first one that installs wins; a stick's first
        try:
            checked = os_update.install(home, candidate, os_update.booted_slot(), SERVICES)
        except os_update.NotAgain as error:  # a stick left in: the hub's bundle may be new
            click.echo(str(error))
            _forget_download(candidate, from_hub)
            continue
        except os_update.OsUpdateError as error:
            errors.append(str(error))
            digest = sha256_of(candidate) if candidate in from_hub else None  # not fetched again
            os_update.note_refused(home, candidate.name, str(error), digest)
            _forget_download(candidate, from_hub)
            continue
        _forget_download(candidate, from_hub)  # in the other slot now
        click.echo(f"Installed version {checked.version}; the box restarts into it.")
        if not no_reboot:
            subprocess.run(["systemctl", "--no-block", "reboot"], check=False)
        return
    if errors:
        raise click.ClickException(" ".join(errors))


def _forget_download(bundle: Path, downloaded: list[Path]) -> None:
    if bundle in downloaded:
        os_download.discard(bundle)


@os_update_group.command("settle")
@click.option("--good", is_flag=True, help="This slot was just marked good.")
@click.pass_context
def settle(ctx, good: bool) -> None:
    """After a restart: keep an update that serves, or put the database back after a rollback."""
    outcome = os_update.settle(config_of(ctx).home, os_update.booted_slot(), good=good)
    click.echo(f"OS update {outcome}." if outcome else "No OS update was waiting.")


@os_update_group.command("status")
@click.pass_context
def status(ctx) -> None:
    """This boot's slot, and the updates installed, rolled back or refused."""
    home = config_of(ctx).home
    click.echo(f"Booted from slot {os_update.booted_slot() or '(not an A/B system)'}.")
    for entry in os_update.history(home):
        click.echo(f"{entry['at']}  {entry['outcome']:<12} {entry.get('version') or ''}")


COMMANDS = (os_update_group,)
