"""The front end for old devices: small pages, gzip, cached assets, marked strings, no JS needed."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

from tests.conftest import as_role

TEMPLATES = Path(__file__).parents[2] / "appliance" / "web" / "templates"
VISIBLE_ATTRIBUTES = {"placeholder", "aria-label", "title", "alt"}
JINJA = re.compile(r"{#.*?#}|{%.*?%}|{{.*?}}", re.S)


class _Text(HTMLParser):
    """Collects literal text and visible attribute values left once Jinja is removed."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("pre", "code", "script", "style"):
            self.skip += 1
        self.found += [
            v for k, v in attrs if k in VISIBLE_ATTRIBUTES and v and re.search(r"[A-Za-z]", v)
        ]

    def handle_endtag(self, tag):
        if tag in ("pre", "code", "script", "style"):
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip and re.search(r"[A-Za-z]", data):
            self.found.append(data.strip())


def test_every_user_visible_string_in_templates_is_marked_for_translation():
    unmarked = {}
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert len(templates) > 20, f"the templates are not in {TEMPLATES}"
    for template in templates:
        parser = _Text()
        parser.feed(JINJA.sub("", template.read_text()))
        if parser.found:
            unmarked[template.relative_to(TEMPLATES).as_posix()] = parser.found
    assert unmarked == {}


def test_marked_strings_extract_into_a_catalogue(tmp_path):
    root = Path(__file__).parents[2]
    target = tmp_path / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg", "-k", "_l",
         "-o", str(target), "."],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    catalogue = target.read_text()
    for message in ("Type your PIN", "Check my answer", "Please type a number, like 3, 0.5 or 1/2.",
                    "A PIN is 4 to 6 digits."):  # fmt: skip
        assert f'msgid "{message}"' in catalogue
    assert catalogue.count("msgid ") > 150


def test_a_lesson_page_is_under_100_kb_on_the_wire_with_its_stylesheet(app, ids, db):
    learner = as_role(app, "learner", ids)
    worst = 0
    for (lesson_id,) in db.conn.execute("SELECT id FROM lessons"):
        page = learner.get(f"/learn/lessons/{lesson_id}", headers={"Accept-Encoding": "gzip"})
        assert page.headers["Content-Encoding"] == "gzip"
        css_url = (
            re.search(rb'href="(/assets/[^"]+)"', gzip.decompress(page.data)).group(1).decode()
        )
        css = learner.get(css_url, headers={"Accept-Encoding": "gzip"})
        worst = max(worst, len(page.data) + len(css.data))
    assert 0 < worst < 100 * 1024


def test_static_assets_are_fingerprinted_and_cached_long(browser):
    html = browser.get("/signin").data.decode()
    url = re.search(r'href="(/assets/([0-9a-f]{12})/style\.css)"', html).group(1)
    response = browser.get(url)
    assert response.status_code == 200
    assert (
        "immutable" in response.headers["Cache-Control"]
        and "max-age=31536000" in response.headers["Cache-Control"]
    )
    stale = browser.get("/assets/000000000000/style.css")
    assert "immutable" not in stale.headers.get("Cache-Control", "")


def test_pages_need_no_scripts_and_the_only_one_is_the_deferred_tutor_enhancement(app, ids):
    learner = as_role(app, "learner", ids)
    for path in (
        "/learn/",
        "/learn/lessons",
        "/learn/lessons/fractions-01-parts-of-a-whole",
        "/learn/practice/fractions-01-parts-of-a-whole",
        "/learn/progress",
    ):
        html = learner.get(path).data.decode()
        scripts = re.findall(r"<script[^>]*>", html)
        # No inline script, nothing from elsewhere: only the tutor panel's own file, which
        # streams answers; its form posts and works without it (test_tutor checks that).
        assert all(re.fullmatch(r'<script src="/assets/\w+/tutor.js" defer>', s) for s in scripts)
        assert "<html lang=" in html and 'name="viewport"' in html


def test_pack_media_is_served_with_scripts_disabled(app, ids):
    learner = as_role(app, "learner", ids)
    svg = learner.get("/media/schoolbox-demo/1.1.0/pizza-quarters.svg")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    assert "sandbox" in svg.headers["Content-Security-Policy"]
    assert learner.get("/media/schoolbox-demo/1.1.0/../../secret.key").status_code == 404
