"""What every `schoolbox` command shares: the configuration, the database, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import click

from appliance import config as config_module
from appliance.store import (
    DatabaseFileError,
    open_db,
    site,
)
from appliance.store.migrations import SchemaTooNew, migrate
from sync.enrolment import EnrolmentError
from sync.hub.db import HubDatabaseError
from sync.keys import KeyFileError

# Faults an operator can fix (a setting, the database file): one line saying what to do,
# never a traceback.
OPERATOR_ERRORS = (config_module.ConfigError, DatabaseFileError, SchemaTooNew)


def config_of(ctx: click.Context) -> config_module.Config:
    return ctx.obj["config"]


def migrated_db(config: config_module.Config):
    config.home.mkdir(parents=True, exist_ok=True)
    db = open_db(config.db_path)
    migrate(db)
    return db


def box_of(ctx: click.Context):
    config = ctx.obj["config"]
    db = open_db(config.db_path) if config.db_path.exists() else None
    found = site.get(db) if db else None
    if found is None:
        raise click.ClickException("This box is not set up yet: run `schoolbox init` first.")
    return config, found


def guarded(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except (EnrolmentError, KeyFileError, HubDatabaseError) as error:
        raise click.ClickException(str(error)) from error


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise click.ClickException(f"{path} is not a readable JSON file ({error}).") from error


def write_or_print(document: dict, out: Path | None) -> None:
    text = json.dumps(document, indent=2, sort_keys=True)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n")
        click.echo(f"Wrote {out}")
