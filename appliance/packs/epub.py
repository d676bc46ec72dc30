"""Read an EPUB into pages the box serves itself: each chapter's text, sanitised like a
lesson, with its pictures, in the book's reading order.

Rendering on the box, rather than shipping a reader script, means a book reads on any
browser, without JavaScript, with the box's own fonts, sizes and right-to-left layout,
and nothing in a book (scripts, styles, remote pictures) reaches a learner's browser.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from urllib.parse import unquote, urldefrag
from xml.etree import ElementTree  # noqa: S405 - expat in Python >= 3.11 refuses entity bombs

import nh3

from appliance import richtext

MAX_UNPACKED = 50 * 1024 * 1024
MAX_FILES = 2000
MAX_CHAPTER_BYTES = 2 * 1024 * 1024
PICTURE_TYPES = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
    "image/webp": ".webp", "image/svg+xml": ".svg",
}  # fmt: skip
# A book's own markup beyond a lesson's: sections, figures and the like.
BOOK_TAGS = richtext.ALLOWED_TAGS | {"section", "figure", "figcaption", "aside", "span", "div"}


class EpubError(ValueError):
    """An EPUB the box cannot read; the message says what is wrong with it."""


@dataclass
class Book:
    title: str
    pages: list[tuple[str, str]] = field(default_factory=list)  # (title, safe HTML)
    pictures: dict[str, bytes] = field(default_factory=dict)  # stored name -> bytes


def read(data: bytes, pictures_url: str, fallback_title: str) -> Book:
    """The book in `data`: pages whose pictures point under `pictures_url`."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise EpubError("is not an EPUB (it is not a zip file)") from error
    with archive:
        files = _files(archive)
        if files.get("mimetype", b"").strip() != b"application/epub+zip":
            raise EpubError("is not an EPUB (its mimetype file is missing or wrong)")
        package = _package_path(files)
        manifest, spine, title = _package(files, package)
        book = Book(title=title or fallback_title)
        folder = posixpath.dirname(package)
        pictures = {
            posixpath.normpath(posixpath.join(folder, href)): f"{n}{PICTURE_TYPES[kind]}"
            for n, (href, kind) in enumerate(manifest.values())
            if kind in PICTURE_TYPES
        }
        chapters = [posixpath.normpath(posixpath.join(folder, manifest[i][0])) for i in spine]
        for path in chapters:
            if path not in files:
                raise EpubError(f"lists {path} in its reading order, but the file is missing")
            book.pages.append(_page(files[path], path, chapters, pictures, pictures_url))
        for path, stored in pictures.items():
            if path in files:
                book.pictures[stored] = files[path]
    if not book.pages:
        raise EpubError("has no chapters in its reading order (spine)")
    return book


def _files(archive: zipfile.ZipFile) -> dict[str, bytes]:
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if len(infos) > MAX_FILES or sum(i.file_size for i in infos) > MAX_UNPACKED:
        raise EpubError(f"unpacks to more than {MAX_FILES} files or 50 MB")
    try:
        return {i.filename: archive.read(i) for i in infos}
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as error:
        raise EpubError(f"is damaged ({type(error).__name__})") from error


def _xml(raw: bytes, name: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(raw)  # noqa: S314 - see the import's note
    except ElementTree.ParseError as error:
        raise EpubError(f"has a {name} that is not valid XML ({error})") from error


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _package_path(files: dict[str, bytes]) -> str:
    if "META-INF/container.xml" not in files:
        raise EpubError("is not an EPUB (META-INF/container.xml is missing)")
    root = _xml(files["META-INF/container.xml"], "META-INF/container.xml")
    for element in root.iter():
        if _local(element.tag) == "rootfile" and element.get("full-path"):
            path = element.get("full-path", "")
            if path in files:
                return path
            raise EpubError(f"names {path} as its package file, but it is missing")
    raise EpubError("names no package file in META-INF/container.xml")


def _package(files, path: str) -> tuple[dict[str, tuple[str, str]], list[str], str]:
    """The manifest (id -> (href, media type)), the spine's ids, and the book's title."""
    root = _xml(files[path], path)
    manifest, spine, title = {}, [], ""
    for element in root.iter():
        name = _local(element.tag)
        item_id, href = element.get("id"), element.get("href")
        if name == "item" and item_id and href:
            manifest[item_id] = (unquote(href), element.get("media-type", ""))
        elif name == "itemref" and element.get("linear", "yes") != "no":
            spine.append(element.get("idref", ""))
        elif name == "title" and not title and element.text:
            title = " ".join(element.text.split())[:200]
    unknown = [i for i in spine if i not in manifest]
    if unknown:
        raise EpubError(f"has {unknown[0]!r} in its reading order but not in its manifest")
    return manifest, spine, title


def _page(raw, path, chapters, pictures, pictures_url) -> tuple[str, str]:
    if len(raw) > MAX_CHAPTER_BYTES:
        raise EpubError(f"has a chapter larger than 2 MB ({path})")
    text = raw.decode("utf-8", errors="replace")
    body = re.search(r"<body[^>]*>(.*)</body>", text, re.S | re.I)
    heading = re.search(r"<(h1|h2|title)[^>]*>(.*?)</\1>", text, re.S | re.I)
    title = richtext.text_of(heading.group(2)) if heading else ""
    folder = posixpath.dirname(path)

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src":
            stored = pictures.get(posixpath.normpath(posixpath.join(folder, unquote(value))))
            return f"{pictures_url}/{stored}" if stored else None
        if tag == "a" and attribute == "href":
            target, fragment = urldefrag(unquote(value))
            if not target:
                return f"#{fragment}" if fragment else None
            joined = posixpath.normpath(posixpath.join(folder, target))
            if joined in chapters:  # a link to another chapter: that page of the reader
                return f"?page={chapters.index(joined) + 1}" + (f"#{fragment}" if fragment else "")
            return None  # the box has no internet: the words stay, the link goes
        return value

    html = nh3.clean(
        body.group(1) if body else "",
        tags=BOOK_TAGS,
        attributes={**richtext.ALLOWED_ATTRIBUTES, "*": {"id", "lang", "dir"}},
        attribute_filter=keep,
        url_schemes=set(),
        link_rel="noopener",
    )
    return title or posixpath.basename(path), html
