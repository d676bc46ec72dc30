"""Commands for trying the box and developing it: `schoolbox demo`."""

from __future__ import annotations

import click

from appliance import config as config_module
from appliance.cli.box import ensure_port_free, run_server
from appliance.cli.common import config_of, migrated_db
from appliance.demo.seed import DEMO_LOGINS, seed
from appliance.store import (
    site,
)
from models.registry import default
from models.registry import installed as store


@click.command()
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--no-serve", is_flag=True, help="Seed the demo school but do not serve it.")
@click.pass_context
def demo(ctx, port: int, no_serve: bool) -> None:
    """Seed the demo school (once) and serve it on 127.0.0.1."""

    config = config_of(ctx).with_(host="127.0.0.1", port=port)
    hint = "make run PORT={port}"
    if not no_serve:
        ensure_port_free(config, hint)  # before minutes of seeding and downloading
    db = migrated_db(config)
    config_module.ensure_secret(config)
    if site.get(db) is None:
        click.echo("Seeding the demo school (first run only)...")
        seed(db, config)

    if store.active(config.home, "knowledge-tracing") is None:
        default.install_knowledge_tracing(config.home)
    if store.active(config.home, "tutor-llm") is None:
        click.echo("Installing the default tutor model (SmolLM2-135M-Instruct)...")
        try:
            default.install(config.home, config.model_cache_dir)
        except store.ModelStoreError as error:  # the demo still runs: lessons answer instead
            click.echo(f"No tutor model: {error}", err=True)
    click.echo("Demo logins:")
    for line in DEMO_LOGINS:
        click.echo(f"  {line}")
    db.conn.close()
    if not no_serve:
        run_server(config, hint)


COMMANDS = (demo,)
