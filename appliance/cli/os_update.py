"""`schoolbox os-update`: the box's signed A/B system updates (sync/box/os_update.py).

The image's units run these: `install --stick DIR` as root once the booted slot is
good, `settle` before anything opens the database, `settle --good` after mark-good.
An admin with SSH may run `install BUNDLE` and `status` by hand.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from appliance.cli.common import config_of
from sync.box import os_update

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
@click.option("--no-reboot", is_flag=True, help="Leave the restart to the caller.")
@click.pass_context
def install(ctx, bundle: Path | None, stick: Path | None, no_reboot: bool) -> None:
    """Install a district-signed update into the other slot; the box restarts into it."""
    home = config_of(ctx).home
    if bundle is not None:
        found = [bundle]
    elif stick is not None:
        found = os_update.find_bundles([stick])
    else:
        raise click.UsageError("Name a bundle, or a stick with --stick.")
    if not found:
        click.echo("No OS update was found.")
        return
    errors = []
    for candidate in found:  # the first one that installs wins
        try:
            checked = os_update.install(home, candidate, os_update.booted_slot(), SERVICES)
        except os_update.NotAgain as error:
            click.echo(str(error))
            return
        except os_update.OsUpdateError as error:
            errors.append(str(error))
            os_update.note_refused(home, candidate.name, str(error))
            continue
        click.echo(f"Installed version {checked.version}; the box restarts into it.")
        if not no_reboot:
            subprocess.run(["systemctl", "--no-block", "reboot"], check=False)
        return
    raise click.ClickException(" ".join(errors))


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
