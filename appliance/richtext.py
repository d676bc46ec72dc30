"""Pack Markdown to safe HTML: rendered by markdown-it, then sanitised by nh3 (ammonia)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape

import nh3
from markdown_it import MarkdownIt

# Raw HTML in a pack is shown as text (html=False); the sanitiser is the second wall.
_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td",
    "sub", "sup",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"},
    "h1": {"id"}, "h2": {"id"}, "h3": {"id"},
}  # fmt: skip
_MEDIA_RE = re.compile(r"^media/([A-Za-z0-9._-]+)$")


@dataclass
class Rendered:
    """Safe HTML plus what the source referred to, so the importer can check it."""

    html: str
    media: list[str] = field(default_factory=list)  # file names under media/
    images_without_alt: int = 0


def _inspect(tokens) -> tuple[list[str], int]:
    media, missing_alt = [], 0
    for token in tokens:
        for child in token.children or []:
            if child.type == "image":
                match = _MEDIA_RE.match(child.attrGet("src") or "")
                if match:
                    media.append(match.group(1))
                if not child.content.strip():
                    missing_alt += 1
    return media, missing_alt


def _sanitise(html: str, media_url: str) -> str:
    def rewrite(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src":
            match = _MEDIA_RE.match(value)
            # Only the pack's own media: the box has no internet to fetch anything else.
            return f"{media_url}/{match.group(1)}" if match else None
        return value

    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=rewrite,
        url_schemes={"http", "https"},
        link_rel="noopener noreferrer",
    )


def anchor(heading: str) -> str:
    """The id a lesson's heading gets, so the tutor can link to the passage under it."""
    words = re.findall(r"\w+", heading.lower())
    return "s-" + "-".join(words)[:60] if words else ""


def _add_heading_ids(tokens) -> None:
    for opening, inline in zip(tokens, tokens[1:], strict=False):
        if opening.type == "heading_open" and opening.tag in ("h1", "h2", "h3"):
            if anchor(inline.content):
                opening.attrSet("id", anchor(inline.content))


def render(markdown: str, media_url: str) -> Rendered:
    """A block of Markdown (a lesson) as safe HTML; media/ links point at `media_url`."""
    tokens = _md.parse(markdown)
    media, missing_alt = _inspect(tokens)
    _add_heading_ids(tokens)
    html = _sanitise(_md.renderer.render(tokens, _md.options, {}), media_url)
    return Rendered(html, media, missing_alt)


def render_inline(markdown: str, media_url: str) -> Rendered:
    """A short piece of Markdown (a prompt, a hint) as safe inline HTML."""
    tokens = _md.parseInline(str(markdown))
    media, missing_alt = _inspect(tokens)
    html = _sanitise(_md.renderer.render(tokens, _md.options, {}), media_url)
    return Rendered(html, media, missing_alt)


def text_of(html: str) -> str:
    """The words of a piece of our own rendered (already sanitised) HTML, as plain text."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html or "")).split())


def passages(markdown: str) -> list[tuple[str, str]]:
    """A lesson split at its headings into (heading, text) passages for search and the tutor."""
    found: list[tuple[str, list[str]]] = [("", [])]
    for line in markdown.splitlines():
        heading = re.match(r"^#{1,3}\s+(.*)$", line)
        if heading:
            found.append((heading.group(1).strip(), []))
        else:
            found[-1][1].append(line)
    return [(h, "\n".join(body).strip()) for h, body in found if "\n".join(body).strip() or h]
