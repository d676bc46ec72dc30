"""Read a content pack (folder or .zip) and validate all of it before anything is written.

The format is docs/content-pack.md. Every problem is collected, each naming the file and
field, so an author fixes them all in one go.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from appliance import richtext
from appliance.packs import resources as resource_files
from appliance.packs.resources import Resource, Source

FORMAT_VERSION = 1
MAX_PACK_BYTES = 50 * 1024 * 1024  # everything but resources/, which has its own limits
MAX_RESOURCE_BYTES = 8 * 1024 * 1024 * 1024
RESOURCES = "resources/"
MAX_MEDIA_BYTES = 5 * 1024 * 1024
MAX_TEXT_BYTES = 512 * 1024
MAX_LESSONS = 500
MAX_ITEMS = 10_000
MEDIA_TYPES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".mp3", ".ogg"}
ITEM_TYPES = ("multiple_choice", "numeric", "short_text")

PACK_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,63}$")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SKILL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")


class PackError(ValueError):
    """A pack that cannot be imported; `problems` lists each as 'file: field: message'."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"The content pack has {len(problems)} problem(s):\n{shown}{more}")


@dataclass
class Lesson:
    id: str
    subject: str
    title: str
    summary: str
    position: int
    skills: list[str]
    body_md: str
    body_html: str
    passages: list[tuple[str, str]]


@dataclass
class Item:
    id: str
    lesson_id: str
    type: str
    position: int
    prompt_html: str
    choices: list[str] | None
    answer: dict
    hints: list[str]
    explanation_html: str
    skills: list[str]


@dataclass
class Pack:
    id: str
    version: str
    title: str
    language: str
    licence: str
    authors: list[str]
    description: str
    subjects: list[dict]
    skills: list[dict] = field(default_factory=list)
    lessons: list[Lesson] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    media: dict[str, bytes] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    sources: dict[str, Source] = field(default_factory=dict)  # resources/ files, unread

    @property
    def media_url(self) -> str:
        return media_url(self.id, self.version)


def media_url(pack_id: str, version: str) -> str:
    """Where a pack version's media is served: versioned, so browsers may cache it forever."""
    return f"/media/{pack_id}/{version}"


def version_key(version: str) -> tuple[int, int, int]:
    """A MAJOR.MINOR.PATCH version as a tuple that compares the way people expect."""
    match = VERSION_RE.match(version)
    if not match:
        raise ValueError(f"not a MAJOR.MINOR.PATCH version: {version!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


# --- reading files from a folder or a zip -------------------------------------------


def _read_files(path: Path) -> tuple[dict[str, bytes], dict[str, Source]]:
    """Every file of the pack by its path relative to the pack's root, read; and the
    files under resources/, by name, left in place to be read as streams."""
    if path.is_dir():
        return _read_folder(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return _read_zip(path)
    raise PackError([f"{path.name}: not a folder or a .zip file"])


def _read_folder(root: Path) -> tuple[dict[str, bytes], dict[str, Source]]:
    files, sources, total = {}, {}, 0
    for file in sorted(root.rglob("*")):
        if not file.is_file() or file.is_symlink():
            continue
        name = file.relative_to(root).as_posix()
        if name.startswith(RESOURCES):
            sources[name[len(RESOURCES) :]] = Source(root, name, file.stat().st_size, False)
            continue
        total += file.stat().st_size
        if total > MAX_PACK_BYTES:
            raise PackError([f"{root.name}: the pack is larger than 50 MB (resources/ aside)"])
        files[name] = file.read_bytes()
    _check_resource_total(root.name, sources)
    return files, sources


def _read_zip(path: Path) -> tuple[dict[str, bytes], dict[str, Source]]:
    try:
        return _read_zip_entries(path)
    except PackError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, ValueError) as error:
        raise PackError([f"{path.name}: the zip is damaged ({type(error).__name__})"]) from error


def _read_zip_entries(path: Path) -> tuple[dict[str, bytes], dict[str, Source]]:
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        names = [i.filename for i in infos]
        bad = [n for n in names if n.startswith("/") or ".." in n.split("/")]
        if bad:
            raise PackError([f"{path.name}: unsafe path in zip: {bad[0]}"])
        prefix = _common_folder(names)
        sources = {
            i.filename[len(prefix) + len(RESOURCES) :]: Source(path, i.filename, i.file_size, True)
            for i in infos
            if i.filename[len(prefix) :].startswith(RESOURCES)
        }
        infos = [i for i in infos if not i.filename[len(prefix) :].startswith(RESOURCES)]
        # Sizes from the directory, checked before reading, so a zip bomb costs nothing.
        if sum(i.file_size for i in infos) > MAX_PACK_BYTES:
            raise PackError([f"{path.name}: the pack is larger than 50 MB unpacked"])
        _check_resource_total(path.name, sources)
        return {i.filename[len(prefix) :]: archive.read(i) for i in infos}, sources


def _check_resource_total(name: str, sources: dict[str, Source]) -> None:
    if sum(s.size for s in sources.values()) > MAX_RESOURCE_BYTES:
        raise PackError([f"{name}: its resources/ folder is larger than 8 GB"])


def _common_folder(names: list[str]) -> str:
    """'pack/' when every file sits inside one top-level folder, else ''."""
    if "pack.yaml" in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        return tops.pop() + "/"
    return ""


# --- validation ---------------------------------------------------------------------


class _Checker:
    """Collects problems; each check returns a usable value or None."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def text(self, data: dict, key: str, where: str, pattern=None, required=True, limit=10_000):
        value = data.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.fail(f"{where}.{key}" if where else key, "is required and must be text")
            return None
        value = str(value).strip()
        if not value or len(value) > limit:
            self.fail(f"{where}.{key}", f"must be 1 to {limit} characters")
            return None
        if pattern is not None and not pattern.match(value):
            self.fail(f"{where}.{key}", f"{value!r} is not allowed here ({_describe(pattern)})")
            return None
        return value

    def text_list(self, data: dict, key: str, where: str, minimum=1) -> list[str] | None:
        value = data.get(key)
        if isinstance(value, str):
            value = [value]
        ok = isinstance(value, list) and all(
            isinstance(v, str | int | float) and not isinstance(v, bool) and str(v).strip()
            for v in value
        )
        if not isinstance(value, list) or not ok or len(value) < minimum:
            self.fail(f"{where}.{key}", f"must be a list of at least {minimum} text value(s)")
            return None
        return [str(v).strip() for v in value]


def _show(value: object) -> str:
    """A value for an error message. Only scalars are shown: a YAML alias bomb expands to
    gigabytes when printed, though it costs nothing to load."""
    if isinstance(value, str | int | float | bool) or value is None:
        return repr(value)[:80]
    return f"a {type(value).__name__}"


def _describe(pattern: re.Pattern) -> str:
    return {
        PACK_ID_RE: "lowercase letters, digits and '-', 3-64 characters",
        ID_RE: "letters, digits, '-' and '_', up to 64 characters",
        SKILL_ID_RE: "letters, digits, '.', '-' and '_', 3-64 characters",
        VERSION_RE: "MAJOR.MINOR.PATCH, for example 1.0.0",
        LANGUAGE_RE: "a BCP 47 tag such as en or pt-BR",
    }.get(pattern, pattern.pattern)


def _yaml(files: dict[str, bytes], name: str, check: _Checker):
    try:
        return yaml.safe_load(files[name].decode("utf-8"))
    except UnicodeDecodeError:
        check.fail(name, "is not UTF-8 text")
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        check.fail(name, f"is not valid YAML{line}")
    return None


def _front_matter(text: str) -> tuple[str, str] | None:
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n?(.*)$", text, re.S)
    return (match.group(1), match.group(2)) if match else None


def load(path: str | Path) -> Pack:
    """Read and validate the pack at `path`; raise PackError listing every problem."""
    files, sources = _read_files(Path(path))
    check = _Checker()
    pack = _manifest(files, check)
    if pack is None:
        raise PackError(check.problems)
    pack.sources = sources
    _media(files, pack, check)
    _skills(files, pack, check)
    _lessons(files, pack, check)
    _items(files, pack, check)
    if "resources.yaml" in files:
        data = _yaml(files, "resources.yaml", check)
        resource_files.read(data, sources, pack, check, ID_RE, LANGUAGE_RE)
    if check.problems:
        raise PackError(check.problems)
    return pack


def _manifest(files: dict[str, bytes], check: _Checker) -> Pack | None:
    if "pack.yaml" not in files:
        check.fail("pack.yaml", "is missing: a pack's top folder must hold pack.yaml")
        return None
    data = _yaml(files, "pack.yaml", check)
    if not isinstance(data, dict):
        if not check.problems:
            check.fail("pack.yaml", "must be a mapping of fields (id, version, title, ...)")
        return None
    if data.get("format") != FORMAT_VERSION:
        check.fail(
            "pack.yaml: format",
            f"must be {FORMAT_VERSION}; this box does not know format {_show(data.get('format'))}",
        )
        return None
    w = "pack.yaml:"
    fields = {
        "id": check.text(data, "id", w, PACK_ID_RE),
        "version": check.text(data, "version", w, VERSION_RE),
        "title": check.text(data, "title", w, limit=200),
        "language": check.text(data, "language", w, LANGUAGE_RE),
        "licence": check.text(data, "licence", w, limit=100),
        "authors": check.text_list(data, "authors", w),
        "description": check.text(data, "description", w, required=False, limit=2000),
    }
    subjects = []
    for i, subject in enumerate(data.get("subjects") or []):
        if isinstance(subject, dict):
            sid = check.text(subject, "id", f"{w} subjects[{i}]", ID_RE)
            title = check.text(subject, "title", f"{w} subjects[{i}]", limit=100)
            subjects.append({"id": sid, "title": title})
    if not subjects:
        check.fail("pack.yaml: subjects", "must list at least one subject with id and title")
    if any(v is None for v in fields.values()):
        return None
    return Pack(subjects=subjects, **fields)


def _media(files: dict[str, bytes], pack: Pack, check: _Checker) -> None:
    for name, content in files.items():
        if not name.startswith("media/"):
            continue
        base = posixpath.basename(name)
        suffix = posixpath.splitext(base)[1].lower()
        if "/" in name[len("media/") :] or not FILE_NAME_RE.match(base):
            check.fail(name, "media files sit directly in media/ with plain names")
        elif suffix not in MEDIA_TYPES:
            check.fail(name, f"{suffix or 'no extension'} is not a picture or sound type we serve")
        elif len(content) > MAX_MEDIA_BYTES:
            check.fail(name, "is larger than 5 MB")
        else:
            pack.media[base] = content


def _skills(files: dict[str, bytes], pack: Pack, check: _Checker) -> None:
    if "skills.yaml" not in files:
        check.fail("skills.yaml", "is missing")
        return
    data = _yaml(files, "skills.yaml", check)
    if not isinstance(data, list) or not data:
        check.fail("skills.yaml", "must be a list of skills (id, name, subject)")
        return
    subjects = {s["id"] for s in pack.subjects}
    seen = set()
    for i, skill in enumerate(data):
        where = f"skills.yaml: [{i}]"
        if not isinstance(skill, dict):
            check.fail(where, "must be a mapping with id, name and subject")
            continue
        sid = check.text(skill, "id", where, SKILL_ID_RE)
        name = check.text(skill, "name", where, limit=100)
        subject = check.text(skill, "subject", where, ID_RE)
        if subject and subject not in subjects:
            check.fail(f"{where}.subject", f"{subject!r} is not one of pack.yaml's subjects")
        if sid in seen:
            check.fail(f"{where}.id", f"{sid!r} is listed twice")
        seen.add(sid)
        description = check.text(skill, "description", where, required=False, limit=500)
        pack.skills.append(
            {"id": sid, "name": name, "subject": subject, "description": description}
        )


def _rendered(check: _Checker, where: str, rendered: richtext.Rendered, pack: Pack) -> str:
    for name in rendered.media:
        if name not in pack.media:
            check.fail(where, f"refers to media/{name}, which is not in the pack")
    if rendered.images_without_alt:
        check.fail(where, "has a picture without alt text: write ![what it shows](media/...)")
    return rendered.html


def _lessons(files: dict[str, bytes], pack: Pack, check: _Checker) -> None:
    names = sorted(n for n in files if n.startswith("lessons/") and n.endswith(".md"))
    if not names:
        check.fail("lessons/", "holds no lessons (*.md)")
    if len(names) > MAX_LESSONS:
        check.fail("lessons/", f"holds more than {MAX_LESSONS} lessons")
        return
    subjects = {s["id"] for s in pack.subjects}
    skills = {s["id"] for s in pack.skills}
    seen = set()
    for name in names:
        lesson = _lesson(files[name], name, pack, check, subjects, skills)
        if lesson and lesson.id in seen:
            check.fail(f"{name}: id", f"{lesson.id!r} is used by another lesson")
        elif lesson:
            seen.add(lesson.id)
            pack.lessons.append(lesson)


def _lesson(raw, name, pack, check, subjects, skills) -> Lesson | None:
    if len(raw) > MAX_TEXT_BYTES:
        check.fail(name, "is larger than 512 KB")
        return None
    try:
        split = _front_matter(raw.decode("utf-8"))
    except UnicodeDecodeError:
        check.fail(name, "is not UTF-8 text")
        return None
    if not split:
        check.fail(name, "must start with a front matter block between '---' lines")
        return None
    try:
        meta = yaml.safe_load(split[0])
    except yaml.YAMLError:
        check.fail(name, "its front matter is not valid YAML")
        return None
    if not isinstance(meta, dict):
        check.fail(name, "its front matter must hold id, title, subject, order and skills")
        return None
    where = f"{name}:"
    lesson_id = check.text(meta, "id", where, ID_RE)
    title = check.text(meta, "title", where, limit=200)
    subject = check.text(meta, "subject", where, ID_RE)
    if subject and subject not in subjects:
        check.fail(f"{name}: subject", f"{subject!r} is not one of pack.yaml's subjects")
    order = meta.get("order")
    if not isinstance(order, int) or isinstance(order, bool):
        check.fail(f"{name}: order", "must be a whole number")
    lesson_skills = check.text_list(meta, "skills", where) or []
    for skill in lesson_skills:
        if skill not in skills:
            check.fail(f"{name}: skills", f"{skill!r} is not in skills.yaml")
    body = split[1].strip()
    if not body:
        check.fail(name, "has no lesson text after the front matter")
    html = _rendered(check, name, richtext.render(body, pack.media_url), pack)
    if None in (lesson_id, title, subject) or not isinstance(order, int):
        return None
    return Lesson(
        id=lesson_id,
        subject=subject,
        title=title,
        summary=check.text(meta, "summary", where, required=False, limit=300),
        position=order,
        skills=lesson_skills,
        body_md=body,
        body_html=html,
        passages=richtext.passages(body),
    )


def _items(files: dict[str, bytes], pack: Pack, check: _Checker) -> None:
    lessons = {lesson.id for lesson in pack.lessons}
    skills = {s["id"] for s in pack.skills}
    seen: set[str] = set()
    for name in sorted(n for n in files if n.startswith("items/") and n.endswith(".yaml")):
        data = _yaml(files, name, check)
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            check.fail(name, "must hold `lesson:` and a list `items:`")
            continue
        lesson_id = data.get("lesson")
        if lesson_id not in lessons:
            check.fail(f"{name}: lesson", f"{_show(lesson_id)} is not a lesson in this pack")
            continue
        for index, raw in enumerate(data["items"]):
            where = f"{name}: items[{index}]"
            item = _item(raw, where, lesson_id, index, pack, check, skills)
            if item and item.id in seen:
                check.fail(f"{where}.id", f"{item.id!r} is used by another item")
            elif item:
                seen.add(item.id)
                pack.items.append(item)
    if len(pack.items) > MAX_ITEMS:
        check.fail("items/", f"holds more than {MAX_ITEMS} items")


def _item(raw, where, lesson_id, index, pack, check, skills) -> Item | None:
    if not isinstance(raw, dict):
        check.fail(where, "must be a mapping with id, type, prompt, answer, skills and hints")
        return None
    item_id = check.text(raw, "id", where, ID_RE)
    kind = raw.get("type")
    if kind not in ITEM_TYPES:
        check.fail(f"{where}.type", f"must be one of {', '.join(ITEM_TYPES)}")
        return None
    prompt = check.text(raw, "prompt", where, limit=5000)
    item_skills = check.text_list(raw, "skills", where) or []
    for skill in item_skills:
        if skill not in skills:
            check.fail(f"{where}.skills", f"{skill!r} is not in skills.yaml")
    hints = check.text_list(raw, "hints", where) or []

    def inline(text: str, field_name: str) -> str:
        rendered = richtext.render_inline(text, pack.media_url)
        return _rendered(check, f"{where}.{field_name}", rendered, pack)

    choices, answer = _answer(raw, where, kind, check, inline)
    explanation = check.text(raw, "explanation", where, required=False, limit=5000)
    if item_id is None or prompt is None or answer is None or not item_skills or not hints:
        return None
    return Item(
        id=item_id,
        lesson_id=lesson_id,
        type=kind,
        position=index,
        prompt_html=inline(prompt, "prompt"),
        choices=choices,
        answer=answer,
        hints=[inline(h, "hints") for h in hints],
        explanation_html=inline(explanation, "explanation") if explanation else "",
        skills=item_skills,
    )


def _answer(raw, where, kind, check, inline) -> tuple[list[str] | None, dict | None]:
    """The rendered choices (multiple choice) and the answer key, or None on a problem."""
    if kind == "multiple_choice":
        choices = check.text_list(raw, "choices", where, minimum=2)
        answer = raw.get("answer")
        if choices is None:
            return None, None
        if (
            not isinstance(answer, int)
            or isinstance(answer, bool)
            or not (0 <= answer < len(choices))
        ):
            check.fail(f"{where}.answer", f"must be an index into choices (0..{len(choices) - 1})")
            return None, None
        return [inline(c, "choices") for c in choices], {"index": answer}
    if kind == "numeric":
        answer, tolerance = raw.get("answer"), raw.get("tolerance", 0)
        numbers_ok = all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in (answer, tolerance)
        )
        if not numbers_ok or tolerance < 0:
            check.fail(f"{where}.answer", "must be a number, and tolerance a number >= 0")
            return None, None
        return None, {"value": answer, "tolerance": tolerance}
    accepted = check.text_list(raw, "accepted", where)
    if accepted is None:
        return None, None
    return None, {"accepted": accepted, "case_sensitive": bool(raw.get("case_sensitive", False))}
