"""Commands for the school's data: a plain copy, the recovery key, sealed backups, restore.

schoolbox backup OUT                  a plain, consistent copy of the database
schoolbox backup OUT --sealed         the sealed backup the hub keeps, on a stick instead
schoolbox recovery-key OUT            the school's recovery key (the private half to OUT)
schoolbox restore --recovery-key K (--from-hub | --file F)   onto a newly set-up box
"""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli.common import box_of, config_of
from appliance.store import open_db
from appliance.store.school_data import RestoreError
from sync.box import backup as school_backup
from sync.box import os_update
from sync.enrolment import EnrolmentError
from sync.files import write_durably
from sync.keys import KeyFileError
from sync.recovery import BackupError

ERRORS = (BackupError, RestoreError, KeyFileError, EnrolmentError)
_FILE = click.Path(dir_okay=False, path_type=Path)


@click.command("backup")
@click.argument("out", type=_FILE)
@click.option(
    "--sealed",
    is_flag=True,
    help="Seal it to the school's recovery key and sign it, as the hub keeps it.",
)
@click.pass_context
def backup(ctx, out: Path, sealed: bool) -> None:
    """Copy the box's database to OUT, consistent and synced to disk, while it serves
    (SQLite's backup API, never a plain copy). Without --sealed it holds names and answers
    in the clear: keep it as safe as the box."""
    config = config_of(ctx)
    if not config.db_path.exists():
        raise click.ClickException(f"There is no database at {config.db_path} to copy.")
    if out.exists():
        raise click.ClickException(f"{out} exists already; name a new file.")
    try:
        if sealed:
            box_of(ctx)
            write_durably(out, _guard(school_backup.make, open_db(config.db_path), config.home))
        else:
            os_update.copy_database(config.db_path, out)
    except OSError as error:  # a full stick, a folder that is not there
        raise click.ClickException(f"The copy could not be written: {error}") from error
    click.echo(f"Copied the database to {out} ({out.stat().st_size >> 10} KB"
               f"{', sealed' if sealed else ''}).")  # fmt: skip


@click.command("recovery-key")
@click.argument("out", type=_FILE)
@click.pass_context
def recovery_key(ctx, out: Path) -> None:
    """Make the school's recovery key: its private half goes to OUT (a stick the school
    keeps locked away), and from now on this box's backups are sealed to it."""
    config, _ = box_of(ctx)
    try:
        public = school_backup.new_recovery_key(config.home, out).public()
    except FileExistsError as error:
        raise click.ClickException(f"{out} exists already; name a new file.") from error
    except OSError as error:
        raise click.ClickException(f"The key could not be written: {error}") from error
    click.echo(
        f"Recovery key {public.fingerprint()} written to {out}. Keep it away from the box: "
        "without it no backup can be opened, and anyone with it and a backup can read the "
        "school's data."
    )


@click.command("restore")
@click.option("--recovery-key", "key_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), required=True, help="The school's recovery key file.")  # fmt: skip
@click.option("--from-hub", is_flag=True, help="Fetch the school's newest backup from the hub.")
@click.option("--url", help="The hub (default: the sync_url setting).")
@click.option("--file", "backup_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="A sealed backup on a stick instead.")  # fmt: skip
@click.pass_context
def restore(ctx, key_file: Path, from_hub: bool, url: str | None, backup_file: Path | None) -> None:
    """Bring a school's data (accounts, classes, answers, mastery) onto this newly set-up
    box, from the hub or a stick, opened with the school's recovery key."""
    config, _ = box_of(ctx)
    if from_hub == (backup_file is not None):
        raise click.UsageError("Give one of --from-hub or --file.")
    db = open_db(config.db_path)
    key = _guard(school_backup.read_key, key_file)
    if backup_file is not None:
        data = backup_file.read_bytes()
    else:
        target = url or config.sync_url
        if not target:
            raise click.UsageError("No hub address: give --url or set sync_url.")
        data = _guard(school_backup.fetch_newest, db, config.home, target)
    header, copied = _guard(school_backup.restore, db, config.home, data, key)
    click.echo(
        f"Restored {copied['users']} account(s), {copied['classes']} class(es) and "
        f"{copied['attempts']} answer(s) of {header.site_name!r} from the backup box "
        f"{header.box_id} made at {header.created_at}. Restart the box's services (or the "
        "box) so they use the restored keys."
    )


def _guard(function, *args):
    try:
        return function(*args)
    except ERRORS as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:  # the hub cannot be reached, a stick pulled out
        raise click.ClickException(f"Not restored: {error}") from error


COMMANDS = (backup, recovery_key, restore)
