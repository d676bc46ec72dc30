"""The `schoolbox` command: a thin layer over the library functions the tests call too."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import click

from . import config as config_module
from .logs import setup as setup_logs
from .store import audit, open_db, site, transaction, users
from .store.migrations import SchemaTooNew, migrate


def _config(ctx: click.Context) -> config_module.Config:
    return ctx.obj["config"]


def _db(config: config_module.Config):
    config.home.mkdir(parents=True, exist_ok=True)
    db = open_db(config.db_path)
    migrate(db)
    return db


@click.group()
@click.option("--home", type=click.Path(path_type=Path), help="Data directory (SCHOOLBOX_HOME).")
@click.pass_context
def main(ctx: click.Context, home: Path | None) -> None:
    """Schoolbox: lessons, practice and progress for a school, with no internet."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_module.load(home=home)


@main.command()
@click.option("--site-name", prompt="School name", help="The school's name.")
@click.option("--admin-username", default="admin", show_default=True)
@click.option("--admin-name", default="Administrator", show_default=True)
@click.option(
    "--generate-password", is_flag=True, help="Generate the admin password and show it once."
)
@click.pass_context
def init(
    ctx, site_name: str, admin_username: str, admin_name: str, generate_password: bool
) -> None:
    """Set up this box: the site, its secret key, and the first admin."""
    config = _config(ctx)
    db = _db(config)
    if site.get(db):
        raise click.ClickException(f"This box is already set up (data in {config.home}).")
    if generate_password or not sys.stdin.isatty():
        password = secrets.token_urlsafe(12)
        shown = True
    else:
        password = click.prompt("Admin password", hide_input=True, confirmation_prompt=True)
        shown = False
    config_module.ensure_secret(config)
    try:
        with transaction(db):
            site.create(db, site_name)
            users.create_staff(db, audit.SYSTEM, "admin", admin_name, admin_username, password)
            audit.record(db, audit.SYSTEM, "site.init", "site", 1)
    except users.UserError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Set up {site_name!r} in {config.home}.")
    click.echo(f"Admin username: {admin_username}")
    if shown:
        click.echo(f"Admin password (shown once, write it down): {password}")


@main.command()
@click.option("--host", help="Address to listen on (the box: 0.0.0.0).")
@click.option("--port", type=int, help="Port to listen on.")
@click.option("--threads", type=int, help="Threads per worker process.")
@click.option("--workers", type=int, help="Worker processes (default: one per core, up to 4).")
@click.pass_context
def serve(ctx, host, port, threads, workers) -> None:
    """Serve the school's web app with waitress."""
    config = _config(ctx).with_(host=host, port=port, threads=threads, workers=workers)
    _serve(config)


def _serve(config: config_module.Config) -> None:
    from . import server

    setup_logs(config.log_level)
    try:
        _db(config).conn.close()  # migrate once, before any worker starts
    except SchemaTooNew as error:
        raise click.ClickException(str(error)) from error
    config_module.ensure_secret(config)
    click.echo(
        f"Schoolbox serving on http://{config.host}:{config.port}/ with {config.workers} "
        f"worker(s) x {config.threads} threads (data in {config.home})"
    )
    server.run(config)


@main.command()
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--no-serve", is_flag=True, help="Seed the demo school but do not serve it.")
@click.pass_context
def demo(ctx, port: int, no_serve: bool) -> None:
    """Seed the demo school (once) and serve it on 127.0.0.1."""
    from .demo.seed import DEMO_LOGINS, seed

    config = _config(ctx).with_(host="127.0.0.1", port=port)
    db = _db(config)
    config_module.ensure_secret(config)
    if site.get(db) is None:
        click.echo("Seeding the demo school (first run only)...")
        seed(db, config)
    click.echo("Demo logins:")
    for line in DEMO_LOGINS:
        click.echo(f"  {line}")
    db.conn.close()
    if not no_serve:
        _serve(config)


@main.group()
def content() -> None:
    """Content packs."""


@content.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.pass_context
def content_import(ctx, path: Path) -> None:
    """Import a content pack from a folder (a USB stick) or a .zip."""
    from .packs.importer import import_pack
    from .packs.loader import PackError

    config = _config(ctx)
    try:
        result = import_pack(_db(config), config.media_dir, path, audit.SYSTEM)
    except PackError as error:
        raise click.ClickException(str(error)) from error
    click.echo(result.message)


@main.group()
def learner() -> None:
    """A learner's data: export and erasure."""


@learner.command("export")
@click.argument("learner_id", type=int)
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), help="File to write (default stdout)."
)
@click.pass_context
def learner_export(ctx, learner_id: int, output: Path | None) -> None:
    """Export everything the box holds about one learner as JSON."""
    db = _db(_config(ctx))
    with transaction(db):
        data = users.export_learner(db, audit.SYSTEM, learner_id)
    if data is None:
        raise click.ClickException(f"No learner with id {learner_id}.")
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if output:
        output.write_text(text + "\n")
        click.echo(f"Wrote {output}")
    else:
        click.echo(text)


@learner.command("erase")
@click.argument("learner_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def learner_erase(ctx, learner_id: int, yes: bool) -> None:
    """Erase a learner's personal data and answers (right to be forgotten)."""
    db = _db(_config(ctx))
    if not yes:
        click.confirm(f"Erase learner {learner_id}'s name, PIN and every answer?", abort=True)
    with transaction(db):
        erased = users.erase_learner(db, audit.SYSTEM, learner_id)
    if not erased:
        raise click.ClickException(f"No learner with id {learner_id}.")
    click.echo(f"Erased learner {learner_id}; a tombstone is kept for the district.")


@main.group()
def user() -> None:
    """Staff accounts."""


@user.command("add")
@click.argument("username")
@click.option("--name", "display_name", required=True)
@click.option(
    "--role", type=click.Choice(["teacher", "admin"]), default="teacher", show_default=True
)
@click.pass_context
def user_add(ctx, username: str, display_name: str, role: str) -> None:
    """Add a teacher or admin; the password is generated and shown once."""
    db = _db(_config(ctx))
    password = secrets.token_urlsafe(12)
    try:
        with transaction(db):
            users.create_staff(db, audit.SYSTEM, role, display_name, username, password)
    except users.UserError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Created {role} {username}. Password (shown once): {password}")


if __name__ == "__main__":  # pragma: no cover
    main()
