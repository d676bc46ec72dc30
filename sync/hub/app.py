"""The district hub as a WSGI app (served by waitress: `schoolbox hub serve`).

    POST /v1/bundles   one bundle (application/octet-stream) -> its signed acknowledgement
    GET  /healthz      the connectivity check boxes make before sending
    GET  /v1/updates   the district's signed updates (envelopes); files under /v1/updates/...
    GET  /v1/os-updates  the OS update bundles offered (records); each at /v1/os-updates/<file>
    POST /v1/backups   a box's sealed backup (sync/recovery.py), kept blind
    POST /v1/backups/newest  a signed request -> the school's newest backup, and a voucher
    GET  /             the district dashboard: boxes, last contact, backlog, mastery

Built on werkzeug's request and response objects without Flask or werkzeug's router (a
few fixed routes are a table): the hub starts without the web app's framework. Every refusal
is JSON with the bundle module's message and status. Files are streamed from disk with
Range requests answered (werkzeug's send_file), so a box resumes a download cut short and
no file is ever held in memory whole.
"""

from __future__ import annotations

import json
from pathlib import Path

from markupsafe import escape
from werkzeug.exceptions import HTTPException
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

from sync import bundle, recovery, updates
from sync.bundle import BundleError
from sync.hub import backups, os_updates, receive
from sync.hub import home as hub_store
from sync.recovery import BackupError

# (method, path) -> endpoint; an update's file is /v1/updates/<folder>/<file>.
ROUTES = {
    ("POST", "/v1/bundles"): "bundles",
    ("GET", "/healthz"): "healthz",
    ("GET", "/v1/updates"): "updates",
    ("GET", "/v1/os-updates"): "os_updates",
    ("POST", "/v1/backups"): "backups",
    ("POST", "/v1/backups/newest"): "newest_backup",
    ("GET", "/"): "dashboard",
}
UPDATE_FILE = "/v1/updates/"
OS_UPDATE_FILE = "/v1/os-updates/"
REFUSALS = {
    404: "No such address on the district hub.",
    405: "This address does not take that method.",
}


def route(method: str, path: str) -> tuple[str | None, dict[str, str], int]:
    """(endpoint, its arguments, 200) for a request, or (None, {}, 404 or 405)."""
    method = "GET" if method == "HEAD" else method  # the server sends no body for HEAD
    if (method, path) in ROUTES:
        return ROUTES[method, path], {}, 200
    parts = path.removeprefix(UPDATE_FILE).split("/") if path.startswith(UPDATE_FILE) else []
    if len(parts) == 2 and all(parts):
        if method == "GET":
            return "update_file", {"folder": parts[0], "file": parts[1]}, 200
        return None, {}, 405
    name = path.removeprefix(OS_UPDATE_FILE) if path.startswith(OS_UPDATE_FILE) else ""
    if name and "/" not in name:
        return ("os_update_file", {"name": name}, 200) if method == "GET" else (None, {}, 405)
    return None, {}, 405 if any(known == path for _, known in ROUTES) else 404


def make_app(hub_home: Path, max_bytes: int = bundle.MAX_BYTES):
    """The hub's WSGI application over the hub's data directory."""

    def app(environ, start_response):
        request = Request(environ, populate_request=False)
        endpoint, arguments, status = route(request.method, request.path)
        try:
            if endpoint:
                response = HANDLERS[endpoint](request, hub_home, max_bytes, **arguments)
            else:
                response = _json({"error": REFUSALS[status]}, status)
        except HTTPException as error:
            response = error.get_response()
        return response(environ, start_response)

    return app


def _bundles(request: Request, hub_home: Path, max_bytes: int) -> Response:
    too_big = _json({"error": f"A bundle may be at most {max_bytes} bytes."}, 413)
    if (request.content_length or 0) > max_bytes:
        return too_big
    data = request.stream.read(max_bytes + 1)  # never more, even without a Content-Length
    if len(data) > max_bytes:
        return too_big
    db = hub_store.open_hub(hub_home)
    try:
        ack = receive.receive(db, hub_home, data)
    except BundleError as error:
        return _json({"error": str(error)}, error.status)
    finally:
        db.close()
    return _json(ack, 200)


def _updates(request: Request, hub_home: Path, max_bytes: int) -> Response:
    root = hub_store.updates_folder(hub_home)
    found = {
        path.parent.name: json.loads(path.read_text())
        for path in sorted(root.glob(f"*/{updates.ENVELOPE}"))
    }
    return _json({"updates": found}, 200)


def _update_file(request: Request, hub_home: Path, max_bytes: int, folder: str, file: str):
    root = hub_store.updates_folder(hub_home).resolve()
    path = (root / folder / file).resolve()
    if root not in path.parents or not path.is_file():  # no path escapes the update folder
        return _json({"error": "No such update file."}, 404)
    return _file(request, path)


def _os_updates(request: Request, hub_home: Path, max_bytes: int) -> Response:
    return _json({"os_updates": os_updates.listing(hub_home)}, 200)


def _os_update_file(request: Request, hub_home: Path, max_bytes: int, name: str) -> Response:
    path = os_updates.bundle_path(hub_home, name)
    if path is None:
        return _json({"error": "No such OS update."}, 404)
    return _file(request, path)


def _backups(request: Request, hub_home: Path, max_bytes: int) -> Response:
    limit = recovery.MAX_BYTES
    if (request.content_length or 0) > limit:
        return _json({"error": f"A backup may be at most {limit >> 20} MB."}, 413)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        return _json({"error": f"A backup may be at most {limit >> 20} MB."}, 413)
    db = hub_store.open_hub(hub_home)
    try:
        return _json(backups.store(db, hub_home, data), 200)
    except BackupError as error:
        return _json({"error": str(error)}, 403)
    finally:
        db.close()


def _newest_backup(request: Request, hub_home: Path, max_bytes: int) -> Response:
    body = request.stream.read(4096)
    db = hub_store.open_hub(hub_home)
    try:
        path, voucher = backups.newest_for(
            db, hub_home, body, request.headers.get(backups.SIGNATURE_HEADER, "")
        )
    except BackupError as error:
        return _json({"error": str(error)}, 404 if isinstance(error, backups.NoBackup) else 403)
    finally:
        db.close()
    response = _file(request, path)
    response.headers[backups.VOUCHER_HEADER] = voucher
    return response


def _file(request: Request, path: Path) -> Response:
    """`path` streamed, with Range and conditional requests answered (206, 304, 416)."""
    return send_file(path, request.environ, mimetype="application/octet-stream",
                     conditional=True, max_age=0)  # fmt: skip


def _healthz(request: Request, hub_home: Path, max_bytes: int) -> Response:
    return _json({"status": "ok"}, 200)


def _dashboard(request: Request, hub_home: Path, max_bytes: int) -> Response:
    db = hub_store.open_hub(hub_home)
    try:
        boxes = hub_store.boxes(db)
        health = {r["box_id"]: dict(r) for r in db.execute("SELECT * FROM health")}
        mastery = {
            r[0]: (r[1], r[2])
            for r in db.execute(
                "SELECT box_id, avg(p), count(DISTINCT learner) FROM mastery GROUP BY box_id"
            )
        }
        skills = db.execute(
            "SELECT b.site_name, c.skill, sum(c.learners), sum(c.mean_p * c.learners)"
            " / sum(c.learners) FROM class_skills c JOIN boxes b ON b.box_id = c.box_id"
            " GROUP BY b.site_name, c.skill ORDER BY b.site_name, c.skill"
        ).fetchall()
    finally:
        db.close()
    per_skill = "".join(_row(r[0], r[1], r[2], f"{100 * float(r[3]):.0f}%") for r in skills)
    rows = "".join(
        _row(b["site_name"], b["box_id"], b["last_contact"] or "never", b["last_seq"],
             health.get(b["box_id"], {}).get("backlog", "-"), _mean(mastery.get(b["box_id"])))
        for b in boxes
    )  # fmt: skip
    page = (
        "<!doctype html><html lang='en'><meta charset='utf-8'><title>District hub</title>"
        "<h1>District hub</h1><table><thead><tr><th>School</th><th>Box</th>"
        "<th>Last contact</th><th>Bundles</th><th>Answers waiting on the box</th>"
        "<th>Mean mastery (learners)</th></tr></thead><tbody>" + rows + "</tbody></table>"
        "<h2>Mastery by school and skill</h2><table><thead><tr><th>School</th><th>Skill</th>"
        "<th>Learners</th><th>Mean mastery</th></tr></thead><tbody>"
        + per_skill
        + "</tbody></table>"
    )
    return Response(page, 200, content_type="text/html; charset=utf-8")


def _row(*cells) -> str:
    """A table row, every cell escaped: nothing a box sent is ever markup."""
    return "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in cells) + "</tr>"


def _mean(found) -> str:
    return "-" if not found or found[0] is None else f"{100 * found[0]:.0f}% ({found[1]})"


def _json(body: dict, status: int) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")


HANDLERS = {
    "bundles": _bundles, "healthz": _healthz, "dashboard": _dashboard, "updates": _updates,
    "update_file": _update_file, "os_updates": _os_updates, "os_update_file": _os_update_file,
    "backups": _backups, "newest_backup": _newest_backup,
}  # fmt: skip
