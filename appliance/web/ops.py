"""Operations endpoints: health, readiness, metrics, fingerprinted assets and pack media."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

from flask import Blueprint, abort, current_app, jsonify, send_from_directory
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from appliance import health
from appliance.packs.loader import PACK_ID_RE, VERSION_RE
from appliance.store import migrations, site
from appliance.web.access import client_address, current_user, signed_in_required
from appliance.web.db import get_db

bp = Blueprint("ops", __name__)
STATIC_DIR = Path(__file__).parent / "static"
ONE_YEAR = 365 * 24 * 3600


@bp.get("/healthz")
def healthz():
    """The process is up and answering (for systemd and load checks)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready to serve a school: database sound, reachable and current, site set up, secret
    key and active models in place, disk not full."""
    config = current_app.config["SCHOOLBOX"]
    problems = health.problems(config, current_app.extensions.get("schoolbox_database_fault"))
    try:
        db = get_db()
        if migrations.version(db) != migrations.CURRENT_VERSION:
            problems.append("database schema is not current")
        if site.get(db) is None:
            problems.append("the box is not set up yet: run `schoolbox init`")
    except Exception:  # noqa: BLE001 - any failure here means "not ready"
        problems.append("database not reachable")
    if problems:
        return jsonify(status="not ready", problems=problems), 503
    return jsonify(status="ready")


@bp.get("/metrics")
def metrics():
    """Prometheus text format; for loopback (the box's own scraper) or an admin."""
    address = client_address()
    loopback = address != "unknown" and ipaddress.ip_address(address).is_loopback
    user = current_user()
    if not loopback and user is None:
        abort(401)
    if not loopback and user["role"] != "admin":
        abort(403)
    registry = current_app.extensions["schoolbox_metrics"].exposition
    return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}


@bp.get("/assets/<digest>/<path:filename>")
def asset(digest: str, filename: str):
    """Static files under a content fingerprint: cached for a year, re-fetched when changed."""
    response = send_from_directory(STATIC_DIR, filename)
    if digest == asset_digests().get(filename):
        response.headers["Cache-Control"] = f"public, max-age={ONE_YEAR}, immutable"
    return response


@bp.get("/favicon.ico")
def favicon():
    """Every browser asks for it; without it each new visitor logs a 404."""
    response = send_from_directory(STATIC_DIR, "favicon.ico", mimetype="image/vnd.microsoft.icon")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.get("/media/<pack_id>/<version>/<filename>")
@signed_in_required
def media(pack_id: str, version: str, filename: str):
    """A pack's picture or sound. Versioned paths, so cached long; scripts in SVG never run."""
    # Every part is checked, not only the file name: werkzeug decodes %2E%2E before
    # routing, and the data dir beside media/ holds the secret key and the database.
    if not (PACK_ID_RE.match(pack_id) and VERSION_RE.match(version)):
        abort(404)
    folder = current_app.config["SCHOOLBOX"].media_dir / pack_id / version
    response = send_from_directory(folder, filename)
    response.headers["Cache-Control"] = f"private, max-age={ONE_YEAR}, immutable"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    )
    return response


def asset_digests() -> dict[str, str]:
    """Short content hashes of every static file, computed once per process."""
    if "schoolbox_assets" not in current_app.extensions:
        current_app.extensions["schoolbox_assets"] = {
            p.relative_to(STATIC_DIR).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            for p in STATIC_DIR.rglob("*")
            if p.is_file()
        }
    return current_app.extensions["schoolbox_assets"]


def asset_url(filename: str) -> str:
    """The fingerprinted URL of a static file, for templates."""
    return f"/assets/{asset_digests().get(filename, 'missing')}/{filename}"
