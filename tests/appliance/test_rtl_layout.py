"""Right-to-left layout in Chromium: the same page in English and in Arabic, screenshot,
and the Arabic one is checked to be the English one mirrored (issue 17).

What is compared: where the page's primary button (its own blue) sits, and which side
the main text starts from. In English both hug the left margin; in Arabic the right,
at the same distance from it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.appliance.test_accessibility import STYLE, _chromium
from tests.conftest import as_role

WIDTH, HEIGHT = 800, 1000
BUTTON = (11, 92, 173)  # .button's background, #0b5cad
PAGE = "/learn/"  # the learner's home: a heading, then a card with a button

pytestmark = pytest.mark.slow


def _screenshot(chromium: str, html: str, folder: Path, name: str) -> Image.Image:
    html = re.sub(r'<link rel="stylesheet"[^>]*>', f"<style>{STYLE.read_text()}</style>", html)
    page = folder / f"{name}.html"
    page.write_text(html)
    shot = folder / f"{name}.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={folder / ('profile-' + name)}",
         "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}",
         page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    return Image.open(shot).convert("RGB")


def _box(image: Image.Image, wanted) -> tuple[int, int, int, int]:
    """The bounding box (left, top, right, bottom) of the pixels `wanted` picks."""
    mask = Image.new("1", image.size)
    mask.putdata([1 if wanted(p) else 0 for p in image.get_flattened_data()])
    found = mask.getbbox()
    assert found, "nothing of the kind is on the page"
    return found


def _ink_edges(image: Image.Image, top: int, bottom: int) -> tuple[int, int]:
    """The left-most and right-most dark text pixel between two rows of the page."""
    band = image.crop((0, top, image.width, bottom))
    left, _, right, _ = _box(band, lambda p: sum(p) < 200)
    return left, right


def test_arabic_pages_are_the_english_ones_mirrored(app, ids, tmp_path):
    chromium = _chromium()
    learner = as_role(app, "learner", ids)
    english = learner.get(PAGE).get_data(as_text=True)
    learner.post("/language", {"language": "ar"})
    arabic = learner.get(PAGE).get_data(as_text=True)
    assert 'dir="rtl"' in arabic and 'dir="ltr"' in english
    shots = {
        "en": _screenshot(chromium, english, tmp_path, "en"),
        "ar": _screenshot(chromium, arabic, tmp_path, "ar"),
    }
    buttons = {name: _box(shot, lambda p: p == BUTTON) for name, shot in shots.items()}
    en_left, ar_right = buttons["en"][0], buttons["ar"][2]
    assert en_left < WIDTH * 0.3, f"the English button starts at x={en_left}"
    assert ar_right > WIDTH * 0.7, f"the Arabic button ends at x={ar_right}"
    assert abs(en_left - (WIDTH - ar_right)) <= 24, (buttons, "not mirrored")
    # The page's heading, just under the header: it starts at
    # the left margin in English and at the right margin in Arabic.
    header_bottom = _box(shots["en"], lambda p: p == (11, 61, 110))[3]  # .top's #0b3d6e
    en_ink = _ink_edges(shots["en"], header_bottom + 10, header_bottom + 120)
    ar_ink = _ink_edges(shots["ar"], header_bottom + 10, header_bottom + 120)
    assert en_ink[0] < WIDTH * 0.2 and ar_ink[1] > WIDTH * 0.8, (en_ink, ar_ink)
    assert abs(en_ink[0] - (WIDTH - ar_ink[1])) <= 24, (en_ink, ar_ink)
