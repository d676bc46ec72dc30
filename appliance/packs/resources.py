"""A pack's resources (resources.yaml and resources/): video with captions, audio, PDF,
EPUB and HTML5 apps, each tied to a lesson and checked before anything is written.

Resource files are read as streams from the folder or zip they came in: a video of a
gigabyte is checked and copied a megabyte at a time, never held whole in memory.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from appliance.packs import epub, media_checks

MB = 1024 * 1024
# What each kind may be, and how large: a lesson's video is minutes, not a film.
KINDS = {
    "video": ({".mp4", ".webm"}, 2048 * MB),
    "audio": ({".mp3", ".ogg", ".oga", ".opus", ".m4a"}, 512 * MB),
    "pdf": ({".pdf"}, 100 * MB),
    "epub": ({".epub"}, 50 * MB),
    "app": ({".zip"}, 50 * MB),
}
MIME_TYPES = {
    ".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
    ".oga": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4", ".pdf": "application/pdf",
    ".epub": "application/epub+zip", ".zip": "application/zip", ".vtt": "text/vtt",
}  # fmt: skip
MAX_RESOURCES = 2000
MAX_APP_FILES = 2000
APP_NAME_RE = re.compile(r"^[A-Za-z0-9._/ -]+$")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # directly in resources/


@dataclass(frozen=True)
class Source:
    """A file still inside the pack (a folder's file or a zip's member), read as a stream."""

    pack_path: Path
    name: str
    size: int
    in_zip: bool

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        if not self.in_zip:
            with open(self.pack_path / self.name, "rb") as stream:
                yield stream
            return
        with zipfile.ZipFile(self.pack_path) as archive, archive.open(self.name) as stream:
            yield stream  # type: ignore[misc]

    def read(self) -> bytes:
        with self.open() as stream:
            return stream.read()


@dataclass
class Resource:
    id: str
    lesson_id: str
    kind: str
    title: str
    description: str
    file: str  # its name in resources/
    mime: str
    size: int
    position: int
    licence: str
    attribution: str
    duration_s: float | None = None
    captions: list[dict] = field(default_factory=list)  # file, language, label
    book: epub.Book | None = None


def read(data, sources: dict[str, Source], pack, check, id_re, language_re) -> None:
    """Check resources.yaml and every file it names; add the good ones to `pack`."""
    if data is None:
        return
    if not isinstance(data, list):
        check.fail("resources.yaml", "must be a list of resources (id, kind, title, lesson, file)")
        return
    if len(data) > MAX_RESOURCES:
        check.fail("resources.yaml", f"lists more than {MAX_RESOURCES} resources")
        return
    lessons = {lesson.id for lesson in pack.lessons}
    seen: set[str] = set()
    for index, raw in enumerate(data):
        where = f"resources.yaml: [{index}]"
        found = _resource(raw, where, index, sources, pack, check, lessons, id_re, language_re)
        if found and found.id in seen:
            check.fail(f"{where}.id", f"{found.id!r} is listed twice")
        elif found:
            seen.add(found.id)
            pack.resources.append(found)


def _resource(raw, where, index, sources, pack, check, lessons, id_re, language_re):
    if not isinstance(raw, dict):
        check.fail(where, "must be a mapping with id, kind, title, lesson and file")
        return None
    resource_id = check.text(raw, "id", where, id_re)
    kind = raw.get("kind")
    if kind not in KINDS:
        check.fail(f"{where}.kind", f"must be one of {', '.join(KINDS)}")
        return None
    title = check.text(raw, "title", where, limit=200)
    lesson = check.text(raw, "lesson", where, id_re)
    if lesson and lesson not in lessons:
        check.fail(f"{where}.lesson", f"{lesson!r} is not a lesson in this pack")
    name = check.text(raw, "file", where, FILE_NAME_RE)
    source = _source(name, where, sources, check) if name else None
    if None in (resource_id, title, lesson, source) or lesson not in lessons:
        return None
    suffix = posixpath.splitext(name)[1].lower()
    suffixes, limit = KINDS[kind]
    if suffix not in suffixes:
        check.fail(f"{where}.file", f"a {kind} is one of {', '.join(sorted(suffixes))}")
        return None
    if source.size > limit:
        check.fail(f"resources/{name}", f"is larger than {limit // MB} MB, the most for a {kind}")
        return None
    found = Resource(
        id=resource_id, lesson_id=lesson, kind=kind, title=title,
        description=check.text(raw, "description", where, required=False, limit=2000),
        file=name, mime=MIME_TYPES[suffix], size=source.size, position=index,
        licence=check.text(raw, "licence", where, required=False, limit=100) or pack.licence,
        attribution=check.text(raw, "attribution", where, required=False, limit=300),
    )  # fmt: skip
    problem = _check_file(found, source, suffix, pack)
    if problem:
        check.fail(f"resources/{name}", problem)
        return None
    if kind == "video":
        found.captions = _captions(raw, where, sources, check, language_re)
        if not found.captions:
            return None
    return found


def _source(name: str, where: str, sources, check) -> Source | None:
    if name not in sources:
        check.fail(f"{where}.file", f"resources/{name} is not in the pack")
        return None
    return sources[name]


def _check_file(found: Resource, source: Source, suffix: str, pack) -> str:
    """What is wrong with the file (or ""), filling in what checking it learnt."""
    if found.kind in ("epub", "app"):
        data = source.read()  # at most 50 MB, and zip reading needs to seek
        if found.kind == "app":
            return app_problem(data)
        try:
            pictures_url = f"{pack.media_url}/epub/{found.id}"
            found.book = epub.read(data, pictures_url, found.title)
        except epub.EpubError as error:
            return str(error)
        return ""
    with source.open() as stream:
        if found.kind == "video":
            checked = media_checks.video(stream, source.size, suffix)
        elif found.kind == "audio":
            checked = media_checks.audio(stream, source.size, suffix)
        else:
            checked = media_checks.pdf(stream, source.size)
    found.duration_s = checked.duration_s
    return checked.problem


def _captions(raw, where, sources, check, language_re) -> list[dict]:
    """A video's caption tracks; at least one, so learners who cannot hear it can follow."""
    tracks = raw.get("captions")
    if not isinstance(tracks, list) or not tracks:
        check.fail(
            f"{where}.captions",
            "a video needs at least one captions track: [{file, language, label}]",
        )
        return []
    found = []
    for n, track in enumerate(tracks):
        at = f"{where}.captions[{n}]"
        if not isinstance(track, dict):
            check.fail(at, "must be a mapping with file, language and label")
            continue
        name = check.text(track, "file", at, FILE_NAME_RE)
        language = check.text(track, "language", at, language_re)
        label = check.text(track, "label", at, limit=60)
        source = _source(name, at, sources, check) if name else None
        if name is None or language is None or label is None or source is None:
            continue
        if not name.lower().endswith(".vtt"):
            check.fail(f"{at}.file", "captions are WebVTT files (.vtt)")
            continue
        with source.open() as stream:
            problem = media_checks.captions(stream).problem
        if problem:
            check.fail(f"resources/{name}", problem)
            continue
        found.append({"file": name, "language": language, "label": label})
    return found if len(found) == len(tracks) else []


def app_problem(data: bytes) -> str:
    """What is wrong with an HTML5 app's zip (or ""): index.html at its top, safe names."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            names = [i.filename for i in infos]
            if archive.testzip() is not None:
                return "is a damaged zip"
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
        return "is not a zip file"
    if len(infos) > MAX_APP_FILES or sum(i.file_size for i in infos) > KINDS["app"][1]:
        return f"unpacks to more than {MAX_APP_FILES} files or 50 MB"
    unsafe = [n for n in names if not safe_app_name(n)]
    if unsafe:
        return f"holds a file with an unsafe name: {unsafe[0]!r}"
    if "index.html" not in names:
        return "has no index.html at its top: the app starts there"
    return ""


def safe_app_name(name: str) -> bool:
    """A relative path of plain parts: no '..', no absolute path, no backslash."""
    parts = name.split("/")
    return bool(APP_NAME_RE.match(name)) and all(p not in ("", ".", "..") for p in parts)
