"""Pack resources: video with captions, audio, PDF, EPUB and HTML5 apps. Checked on import
(a bad file names itself and changes nothing), served with Range requests, counted for
a lesson's completion, found by search, and an app kept in its sandbox."""

from __future__ import annotations

import re
import shutil
import struct
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from appliance.packs.importer import import_pack
from appliance.packs.loader import PackError, load
from appliance.store import assignments, attempts, audit, content, resources, transaction, users
from tests.conftest import DEMO_PACK, as_role

DEMO_RESOURCES = DEMO_PACK / "resources"


@pytest.fixture
def pack_dir(tmp_path) -> Path:
    folder = tmp_path / "pack"
    shutil.copytree(DEMO_PACK, folder)
    return folder


def _problems(folder: Path) -> str:
    with pytest.raises(PackError) as error:
        load(folder)
    return "\n".join(error.value.problems)


def _fresh_learner(db, ids) -> int:
    """Class 4A's first learner, without the resource history the demo seed gave them."""
    learner_id = ids["learners"]["Class 4A"][0]
    with transaction(db):
        db.conn.execute("DELETE FROM resource_progress WHERE learner_id = ?", (learner_id,))
    return learner_id


def _wait_for(db, sql: str, params: tuple, timeout: float = 3.0):
    """A row written by store.soon (committed within half a second), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.conn.execute(sql, params).fetchone()
        if row is not None:
            return row
        time.sleep(0.05)
    return None


def test_the_demo_pack_has_a_checked_resource_of_every_kind():
    pack = load(DEMO_PACK)
    kinds = {r.kind for r in pack.resources}
    assert kinds == {"video", "audio", "pdf", "epub", "app"}
    video = next(r for r in pack.resources if r.file.endswith(".mp4"))
    assert video.mime == "video/mp4" and 15 <= video.duration_s <= 17  # read from its index
    assert video.captions == [
        {"file": "halves-and-quarters.en.vtt", "language": "en", "label": "English"}
    ]
    book = next(r for r in pack.resources if r.kind == "epub").book
    assert [title for title, _ in book.pages][0] == "1. Where is Kibo?" and len(book.pages) == 3
    assert "<script" not in "".join(html for _, html in book.pages)
    assert (DEMO_PACK / "README.md").read_text().count("resources/") >= 1  # licence stated


def _mp4_with_codec(code: bytes) -> bytes:
    """The demo MP4 with its video sample entry renamed (an H.265 file, to the checker)."""
    data = bytearray((DEMO_RESOURCES / "halves-and-quarters.mp4").read_bytes())
    at = data.find(b"stsd")  # the first track's sample entry: its codec code
    assert data[at + 16 : at + 20] == b"avc1"
    data[at + 16 : at + 20] = code
    return bytes(data)


@pytest.mark.parametrize(
    ("file", "content", "expected"),
    [
        ("halves-and-quarters.mp4", lambda: _mp4_with_codec(b"hvc1"), "H.265/HEVC video"),
        ("halves-and-quarters.mp4", lambda: (DEMO_RESOURCES / "halves-and-quarters.mp4").read_bytes()[:5000], "damaged or cut-off MP4"),
        ("hops.webm", lambda: b"not a webm at all", "is not a WebM file"),
        ("halves-and-quarters.en.vtt", lambda: b"1\n00:00.000 --> 00:01.000\nhi\n", "first line must be WEBVTT"),
        ("six-oclock-bus.ogg", lambda: b"ID3 this is an mp3 header", "is not an Ogg file"),
        ("equivalent-fractions-worksheet.pdf", lambda: (DEMO_RESOURCES / "equivalent-fractions-worksheet.pdf").read_bytes().replace(b"/Title", b"/JS   "), "JavaScript or a launch action"),
        ("equivalent-fractions-worksheet.pdf", lambda: (DEMO_RESOURCES / "equivalent-fractions-worksheet.pdf").read_bytes()[:900], "cut-off PDF"),
        ("the-lost-goat.epub", lambda: b"PK\x05\x06" + b"\0" * 18, "mimetype file is missing"),
        ("which-is-bigger.zip", lambda: _zip_of({"game.html": b"<p>hi</p>"}), "no index.html"),
        ("which-is-bigger.zip", lambda: _zip_of({"index.html": b"x", "../../escape.js": b"x"}), "unsafe name"),
    ],
)  # fmt: skip
def test_a_broken_resource_is_refused_naming_its_file_and_nothing_changes(
    pack_dir, db, config, file, content, expected
):
    (pack_dir / "resources" / file).write_bytes(content())
    problems = _problems(pack_dir)
    assert f"resources/{file}" in problems and expected in problems, problems
    before = db.conn.execute("SELECT count(*) FROM resources").fetchone()[0]
    with pytest.raises(PackError):
        import_pack(db, config.media_dir, pack_dir, audit.SYSTEM)
    assert db.conn.execute("SELECT count(*) FROM resources").fetchone()[0] == before


def _zip_of(files: dict[str, bytes]) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_resources_yaml_mistakes_are_named(pack_dir):
    listing = pack_dir / "resources.yaml"
    found = {r["id"]: r for r in yaml.safe_load(listing.read_text())}
    del found["demo-video-hops"]["captions"]
    found["demo-app-which-is-bigger"]["file"] = "missing.zip"
    found["demo-pdf-equivalent-worksheet"]["kind"] = "slideshow"
    found["demo-epub-lost-goat"]["lesson"] = "no-such-lesson"
    listing.write_text(yaml.safe_dump(list(found.values())))
    problems = _problems(pack_dir)
    assert "resources/missing.zip is not in the pack" in problems
    assert "kind: must be one of video, audio, pdf, epub, app" in problems
    assert "'no-such-lesson' is not a lesson in this pack" in problems
    assert "a video needs at least one captions track" in problems


def test_a_zipped_pack_keeps_its_resources_in_place_until_copied(pack_dir, tmp_path, db, config):
    archive = tmp_path / "pack.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(pack_dir.rglob("*")):
            if path.is_file():
                out.write(path, "demo/" + path.relative_to(pack_dir).as_posix())
    pack = load(archive)
    assert set(pack.sources) >= {"halves-and-quarters.mp4", "hops.webm"}
    assert all(s.in_zip for s in pack.sources.values())
    (pack_dir / "pack.yaml").write_text(
        (pack_dir / "pack.yaml").read_text().replace("version: 1.1.0", "version: 1.5.0")
    )


def test_import_writes_each_kind_where_it_is_served(db, config):
    folder = config.media_dir / "schoolbox-demo" / "1.1.0"
    assert (folder / "resources" / "halves-and-quarters.mp4").stat().st_size == (
        DEMO_RESOURCES / "halves-and-quarters.mp4"
    ).stat().st_size
    assert (folder / "apps" / "demo-app-which-is-bigger" / "index.html").exists()
    assert list((folder / "epub" / "demo-epub-lost-goat").iterdir())  # the book's picture
    assert db.conn.execute("SELECT count(*) FROM resource_pages").fetchone()[0] == 3
    result = db.conn.execute("SELECT count(*) FROM resources WHERE retired = 0").fetchone()[0]
    assert result == 6


def test_a_video_is_served_with_range_requests_for_seeking(app, ids):
    learner = as_role(app, "learner", ids)
    url = resources.get(_db(app), "demo-video-halves-and-quarters")["url"]
    size = (DEMO_RESOURCES / "halves-and-quarters.mp4").stat().st_size
    whole = learner.get(url)
    assert whole.status_code == 200 and whole.mimetype == "video/mp4"
    assert whole.headers["Accept-Ranges"] == "bytes" and len(whole.data) == size
    part = learner.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and len(part.data) == 1000
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{size}"
    assert part.data == (DEMO_RESOURCES / "halves-and-quarters.mp4").read_bytes()[1000:2000]
    tail = learner.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and len(tail.data) == 100
    assert learner.get(url, headers={"Range": f"bytes={size + 10}-"}).status_code == 416
    captions = learner.get(url.replace("halves-and-quarters.mp4", "halves-and-quarters.en.vtt"))
    assert captions.mimetype == "text/vtt" and captions.data.startswith(b"WEBVTT")
    saved = learner.get(url + "?download=1")
    assert saved.headers["Content-Disposition"].startswith("attachment")


def test_resource_files_need_a_signed_in_user(app):
    anonymous = app.test_client()
    url = "/media/schoolbox-demo/1.1.0/resources/halves-and-quarters.mp4"
    assert anonymous.get(url).status_code in (302, 401)
    assert anonymous.get("/learn/resources/demo-video-halves-and-quarters").status_code in (
        302,
        401,
    )


def _db(app):
    from appliance.store import open_db

    return open_db(app.config["SCHOOLBOX"].db_path)


def test_each_kind_has_its_page(app, ids):
    learner = as_role(app, "learner", ids)
    video = learner.get("/learn/resources/demo-video-halves-and-quarters").get_data(as_text=True)
    assert '<video class="resource-player" controls' in video
    assert 'kind="captions"' in video and 'srclang="en"' in video
    audio = learner.get("/learn/resources/demo-audio-six-oclock-bus").get_data(as_text=True)
    assert "<audio" in audio and "six-oclock-bus.ogg" in audio
    pdf = learner.get("/learn/resources/demo-pdf-equivalent-worksheet").get_data(as_text=True)
    assert "Open the PDF" in pdf and "?download=1" in pdf
    book = learner.get("/learn/resources/demo-epub-lost-goat").get_data(as_text=True)
    assert "Where is Kibo?" in book and "Page 1 of 3" in book and 'rel="next"' in book
    assert "/media/schoolbox-demo/1.1.0/epub/demo-epub-lost-goat/" in book  # its picture
    assert learner.get("/learn/resources/demo-epub-lost-goat?page=9").status_code == 404
    game = learner.get("/learn/resources/demo-app-which-is-bigger").get_data(as_text=True)
    assert 'sandbox="allow-scripts"' in game
    lesson = learner.get("/learn/lessons/fractions-01-parts-of-a-whole").get_data(as_text=True)
    assert "/learn/resources/demo-video-halves-and-quarters" in lesson


def test_an_app_runs_sandboxed_without_cookie_or_network(app, ids):
    learner = as_role(app, "learner", ids)
    page = learner.get("/learn/resources/demo-app-which-is-bigger").get_data(as_text=True)
    src = re.search(r'<iframe[^>]+src="([^"]+)"', page).group(1)
    anonymous = app.test_client()  # the sandboxed frame sends no cookie
    index = anonymous.get(src)
    assert index.status_code == 200 and b"Which fraction is bigger?" in index.data
    policy = index.headers["Content-Security-Policy"]
    assert "sandbox allow-scripts" in policy and "connect-src 'none'" in policy
    assert "allow-same-origin" not in policy
    assert anonymous.get(src.replace("index.html", "app.js")).status_code == 200
    forged = re.sub(r"/apps/[0-9a-f]+/", "/apps/" + "0" * 32 + "/", src)
    assert anonymous.get(forged).status_code == 404
    assert anonymous.get(src.replace("index.html", "../../../secret.key")).status_code == 404


def test_opening_and_finishing_resources_complete_the_lesson(app, db, ids):
    learner_id = _fresh_learner(db, ids)
    learner = as_role(app, "learner", ids)
    lesson_id = "fractions-01-parts-of-a-whole"
    with transaction(db):
        assignments.set_lesson(db, audit.SYSTEM, ids["classes"]["Class 4A"], lesson_id)
    items = [
        r[0] for r in db.conn.execute("SELECT id FROM items WHERE lesson_id = ?", (lesson_id,))
    ]
    for item_id in items:  # every question right: without the video, not done yet
        attempts.record(db, learner_id, content.item(db, item_id), "x", True, 0, None, None)

    def status() -> str:
        found = assignments.of_learner(db, learner_id)
        return next(a["status"] for a in found if a["id"] == lesson_id)

    assert status() == "in_progress"
    learner.get("/learn/resources/demo-video-halves-and-quarters")
    assert _wait_for(db, "SELECT 1 FROM resource_progress WHERE learner_id = ?", (learner_id,))
    assert status() == "in_progress"  # opened, not watched
    done = learner.post(
        "/learn/resources/demo-video-halves-and-quarters/done",
        headers={"Accept": "application/json"},
    )
    assert done.get_json() == {"status": "done", "resource_id": "demo-video-halves-and-quarters"}
    assert status() == "done"


def test_a_pdf_opened_or_a_book_read_to_its_end_is_done(app, db, ids):
    learner_id = _fresh_learner(db, ids)
    learner = as_role(app, "learner", ids)
    learner.get("/learn/resources/demo-pdf-equivalent-worksheet")
    sql = "SELECT done_at FROM resource_progress WHERE learner_id = ? AND resource_id = ?"
    assert _wait_for(db, sql, (learner_id, "demo-pdf-equivalent-worksheet"))[0]
    learner.get("/learn/resources/demo-epub-lost-goat?page=2")
    assert _wait_for(db, sql, (learner_id, "demo-epub-lost-goat"))[0] is None
    last = learner.get("/learn/resources/demo-epub-lost-goat?page=3").get_data(as_text=True)
    assert "You have finished this." in last
    assert db.conn.execute(sql, (learner_id, "demo-epub-lost-goat")).fetchone()[0]


def test_the_done_button_works_without_javascript_and_only_for_learners(app, db, ids):
    _fresh_learner(db, ids)
    learner = as_role(app, "learner", ids)
    page = learner.get("/learn/resources/demo-audio-six-oclock-bus").get_data(as_text=True)
    assert "I have finished it" in page
    answer = learner.post("/learn/resources/demo-audio-six-oclock-bus/done")
    assert answer.status_code == 303
    again = learner.get("/learn/resources/demo-audio-six-oclock-bus").get_data(as_text=True)
    assert "You have finished this." in again
    teacher = as_role(app, "teacher", ids)
    assert teacher.post("/learn/resources/demo-audio-six-oclock-bus/done").status_code == 403
    assert "I have finished it" not in teacher.get(
        "/learn/resources/demo-audio-six-oclock-bus"
    ).get_data(as_text=True)


def test_search_finds_resources_by_title(app, ids):
    learner = as_role(app, "learner", ids)
    page = learner.get("/learn/search?q=goat").get_data(as_text=True)
    assert "/learn/resources/demo-epub-lost-goat" in page
    found = learner.get("/api/v1/search?q=goat").get_json()
    assert "demo-epub-lost-goat" in {r["resource_id"] for r in found["resources"]}


def test_erasing_a_learner_removes_their_resource_progress(app, db, ids):
    learner_id = ids["learners"]["Class 4A"][0]
    resources.finish(db, learner_id, "demo-audio-six-oclock-bus")
    exported = users.export_learner(db, audit.SYSTEM, learner_id)
    assert "demo-audio-six-oclock-bus" in str(exported)
    with transaction(db):
        users.erase_learner(db, audit.SYSTEM, learner_id)
    left = db.conn.execute(
        "SELECT count(*) FROM resource_progress WHERE learner_id = ?", (learner_id,)
    ).fetchone()[0]
    assert left == 0


def test_an_import_that_would_fill_the_disk_is_refused_before_copying(
    pack_dir, db, config, monkeypatch
):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 50 * 2**20, 50 * 2**20)
    )
    (pack_dir / "pack.yaml").write_text(
        (pack_dir / "pack.yaml").read_text().replace("version: 1.1.0", "version: 1.6.0")
    )
    with pytest.raises(PackError) as error:
        import_pack(db, config.media_dir, pack_dir, audit.SYSTEM)
    assert "free some space" in str(error.value)
    assert not (config.media_dir / "schoolbox-demo" / "1.6.0").exists()
    assert db.conn.execute("SELECT version FROM packs").fetchone()[0] == "1.1.0"


def test_mp4_boxes_are_walked_not_read_whole(tmp_path):
    """A 3 GB MP4 (sparse: its media are zeros) is checked by reading its index only."""
    from appliance.packs import media_checks

    demo = (DEMO_RESOURCES / "halves-and-quarters.mp4").read_bytes()
    header = demo[: demo.find(b"mdat") - 4]  # ftyp and moov (the demo file is fast-start)
    big = tmp_path / "big.mp4"
    with open(big, "wb") as out:
        out.write(header)
        length = 3 * 2**30
        out.write(struct.pack(">I4sQ", 1, b"mdat", length + 16))
        out.truncate(len(header) + 16 + length)
    with open(big, "rb") as stream:
        checked = media_checks.video(stream, big.stat().st_size, ".mp4")
    assert checked.problem == "" and checked.duration_s


def test_a_teacher_composes_a_lesson_with_a_video_and_a_learner_finishes_it(app, db, ids):
    class_id = ids["classes"]["Class 4A"]
    _fresh_learner(db, ids)
    teacher = as_role(app, "teacher", ids)
    form = teacher.get(f"/teach/classes/{class_id}/lessons/new").get_data(as_text=True)
    value = "fractions-01-parts-of-a-whole//demo-video-halves-and-quarters"
    assert f'value="{value}"' in form
    made = teacher.post(
        f"/teach/classes/{class_id}/lessons",
        {"title": "Watch then read", "part": [value, "reading-02-main-idea//demo-epub-lost-goat"],
         f"order-{value}": "1"},
    )  # fmt: skip
    assert made.status_code == 302, made.data[:300]
    lesson_id = db.conn.execute("SELECT max(id) FROM class_lessons").fetchone()[0]
    parts = db.conn.execute(
        "SELECT resource_id FROM class_lesson_parts WHERE class_lesson_id = ? ORDER BY position",
        (lesson_id,),
    ).fetchall()
    assert [p[0] for p in parts] == ["demo-video-halves-and-quarters", "demo-epub-lost-goat"]
    learner = as_role(app, "learner", ids)
    page = learner.get(f"/learn/class-lessons/{lesson_id}").get_data(as_text=True)
    assert "/learn/resources/demo-video-halves-and-quarters" in page and "0 of 2 parts done" in page
    learner.post("/learn/resources/demo-video-halves-and-quarters/done")
    learner.get("/learn/resources/demo-epub-lost-goat?page=3")
    page = learner.get(f"/learn/class-lessons/{lesson_id}").get_data(as_text=True)
    assert "2 of 2 parts done" in page
    api = learner.get(f"/api/v1/class-lessons/{lesson_id}").get_json()
    assert api["parts"][0]["resource"]["kind"] == "video" and api["lesson"]["status"] == "done"
    wrong = teacher.api("POST", f"/api/v1/classes/{class_id}/lessons", {
        "title": "Mismatch", "parts": [{"lesson_id": "reading-01-finding-facts",
                                        "resource_id": "demo-video-halves-and-quarters"}]})  # fmt: skip
    assert (
        wrong.status_code == 400 and "no longer available" in wrong.get_json()["error"]["message"]
    )


def _big_mp4(path: Path, media_bytes: int) -> None:
    """A valid MP4 of `media_bytes` of (sparse, zero) media behind the demo film's index."""
    demo = (DEMO_RESOURCES / "halves-and-quarters.mp4").read_bytes()
    header = demo[: demo.find(b"mdat") - 4]
    with open(path, "wb") as out:
        out.write(header + struct.pack(">I4sQ", 1, b"mdat", media_bytes + 16))
        out.truncate(len(header) + 16 + media_bytes)


def _peak_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


@pytest.mark.slow
def test_the_real_server_streams_a_large_video_without_holding_it_in_memory(tmp_path):
    """300 MB through `schoolbox serve` (waitress), whole and in seeks: the worker's peak
    memory grows by far less than the file, and every byte read is the file's."""
    import subprocess

    import requests

    from tests.conftest import SCHOOLBOX, init_box, start_serve, stop, wait_ready

    home, pack = tmp_path / "box", tmp_path / "pack"
    password = init_box(home)
    shutil.copytree(DEMO_PACK, pack)
    size = 300 * 2**20
    _big_mp4(pack / "resources" / "halves-and-quarters.mp4", size)
    subprocess.run([SCHOOLBOX, "--home", str(home), "content", "import", str(pack)], check=True,
                   capture_output=True)  # fmt: skip
    process, port = start_serve(home, tmp_path / "serve.log", 1, 4, tutor_service="false")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, tmp_path / "serve.log")
        http = requests.Session()
        token = http.get(f"{base}/api/v1/session").json()["csrf_token"]
        signed = http.post(f"{base}/api/v1/session", json={"username": "admin", "password": password},
                           headers={"X-CSRFToken": token})  # fmt: skip
        assert signed.status_code == 200, signed.text
        url = f"{base}/media/schoolbox-demo/1.1.0/resources/halves-and-quarters.mp4"
        assert http.get(url, headers={"Range": "bytes=0-99"}).status_code == 206  # warm
        out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(process.pid)],
                             capture_output=True, text=True).stdout  # fmt: skip
        worker = next(
            int(line.split()[0]) for line in out.splitlines() if "resource_tracker" not in line
        )
        before = _peak_kb(worker)
        total = 0
        with http.get(url, stream=True) as whole:
            assert whole.status_code == 200
            for block in whole.iter_content(1 << 20):
                total += len(block)
        assert total == (pack / "resources" / "halves-and-quarters.mp4").stat().st_size
        for start in range(0, size - 6 * 2**20, 37 * 2**20):  # seeks: each a 4 MB window of zeros
            part = http.get(
                url, headers={"Range": f"bytes={start + 2**20}-{start + 2**20 + 2**22 - 1}"}
            )
            assert part.status_code == 206 and part.content == bytes(2**22)
        grown_mb = (_peak_kb(worker) - before) / 1024
        assert grown_mb < 40, f"the worker's peak memory grew by {grown_mb:.0f} MB"
    finally:
        stop(process)
