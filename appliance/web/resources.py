"""A pack's resources for learners: a video or a sound with its captions, a PDF in the
browser's own viewer, an EPUB read page by page, an HTML5 app in a sandbox; and "done".

Files are served by werkzeug's send_file: the operating system's file, in chunks, with
Range requests (seeking), never read whole into Python's memory. An app's files come
from their own route, sandboxed: the app runs with no cookie, no access to the box's
pages, and no network (its CSP allows nothing but its own files).
"""

from __future__ import annotations

import hashlib
import hmac

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)

from appliance.packs.loader import PACK_ID_RE, VERSION_RE
from appliance.packs.resources import safe_app_name
from appliance.store import resources
from appliance.web.access import current_user, learner_required, signed_in_required
from appliance.web.db import get_db

bp = Blueprint("resource", __name__)
ONE_DAY = 86_400
# An app may use its own scripts, styles, pictures and sounds, and nothing else: no
# fetches to anywhere (the sandbox leaves it without the learner's cookie anyway), no
# forms, no frames, no way out of its sandboxed frame.
APP_POLICY = (
    "default-src 'self' data: blob:; script-src 'self' 'unsafe-inline' 'unsafe-eval';"
    " style-src 'self' 'unsafe-inline'; connect-src 'none'; form-action 'none';"
    " base-uri 'none'; object-src 'none'; frame-ancestors 'self'; sandbox allow-scripts"
)
MEDIA_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
PDF_POLICY = (
    "default-src 'none'; frame-ancestors 'self'"  # Chromium's viewer will not run sandboxed
)


@bp.get("/learn/resources/<resource_id>")
@signed_in_required
def show(resource_id: str):
    db = get_db()
    found = resources.get(db, resource_id)
    if not found:
        abort(404)
    page, contents = None, []
    if found["kind"] == "epub":
        number = request.args.get("page", "1")
        page = (
            resources.page(db, resource_id, int(number))
            if number.isdigit() and len(number) < 6
            else None
        )
        if page is None:
            abort(404)
        contents = resources.contents(db, resource_id)
    status = _note_progress(db, found, page)
    return render_template(
        "learner/resource.html",
        resource=found,
        page=page,
        contents=contents,
        status=status,
        kind_names=resources.KIND_NAMES,
        app_url=_app_url(found, "index.html") if found["kind"] == "app" else None,
    )


def _note_progress(db, found: dict, page: dict | None) -> str | None:
    """A learner's "opened" note (done, for a PDF, an app, or a book's last page); their
    status with the resource. None for staff, who are not tracked."""
    learner = current_user()
    if learner["role"] != "learner":
        return None
    if page is not None and page["page"] == found["page_count"]:
        resources.finish(db, learner["id"], found["id"])
        return "done"
    before = resources.progress(db, learner["id"], [found["id"]]).get(found["id"])
    resources.opened(db, learner["id"], found)
    if before == "done" or found["kind"] in resources.DONE_WHEN_OPENED:
        return "done"
    return "opened"


@bp.post("/learn/resources/<resource_id>/done")
@learner_required
def done(resource_id: str):
    """The learner finished a video or a sound: sent by the player at its end, or by the
    learner's own button where JavaScript is off."""
    db = get_db()
    found = resources.get(db, resource_id)
    if not found:
        abort(404)
    resources.finish(db, current_user()["id"], resource_id)
    if request.accept_mimetypes.best == "application/json":
        return {"status": "done", "resource_id": resource_id}
    return redirect(url_for("resource.show", resource_id=resource_id), 303)


@bp.get("/media/<pack_id>/<version>/resources/<filename>")
@signed_in_required
def file(pack_id: str, version: str, filename: str):
    """A resource's file, with Range requests; `?download=1` saves it instead."""
    if not (PACK_ID_RE.match(pack_id) and VERSION_RE.match(version)):
        abort(404)
    folder = current_app.config["SCHOOLBOX"].media_dir / pack_id / version / "resources"
    response = send_from_directory(
        folder,
        filename,
        mimetype="text/vtt" if filename.endswith(".vtt") else None,
        as_attachment=request.args.get("download") == "1",
        max_age=ONE_DAY,
    )
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"  # versioned path
    if response.mimetype == "application/pdf":
        response.headers["Content-Security-Policy"] = PDF_POLICY
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
    else:
        response.headers["Content-Security-Policy"] = MEDIA_POLICY
    return response


@bp.get("/media/<pack_id>/<version>/epub/<resource_id>/<filename>")
@signed_in_required
def book_picture(pack_id: str, version: str, resource_id: str, filename: str):
    """A picture from an EPUB, as the box unpacked it on import."""
    if not (PACK_ID_RE.match(pack_id) and VERSION_RE.match(version)):
        abort(404)
    folder = current_app.config["SCHOOLBOX"].media_dir / pack_id / version / "epub" / resource_id
    response = send_from_directory(folder, filename, max_age=ONE_DAY)
    response.headers["Content-Security-Policy"] = MEDIA_POLICY
    return response


def _signature(pack_id: str, version: str, resource_id: str) -> str:
    """Stands in for sign-in on an app's files: the sandboxed frame sends no cookie, so
    only a page the box served to a signed-in user holds the address."""
    key = current_app.secret_key
    key = key if isinstance(key, bytes) else str(key).encode()
    message = f"app/{pack_id}/{version}/{resource_id}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def _app_url(found: dict, path: str) -> str:
    pack_id, version, resource_id = found["pack_id"], found["version"], found["id"]
    sig = _signature(pack_id, version, resource_id)
    return f"/apps/{sig}/{pack_id}/{version}/{resource_id}/{path}"


@bp.get("/apps/<sig>/<pack_id>/<version>/<resource_id>/<path:filename>")
def app_file(sig: str, pack_id: str, version: str, resource_id: str, filename: str):
    """An HTML5 app's file, for its sandboxed frame."""
    if not (PACK_ID_RE.match(pack_id) and VERSION_RE.match(version) and safe_app_name(filename)):
        abort(404)
    if not hmac.compare_digest(sig, _signature(pack_id, version, resource_id)):
        abort(404)
    folder = current_app.config["SCHOOLBOX"].media_dir / pack_id / version / "apps" / resource_id
    response = send_from_directory(folder, filename, max_age=ONE_DAY)
    response.headers["Content-Security-Policy"] = APP_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response
