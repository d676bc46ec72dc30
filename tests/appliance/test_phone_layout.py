"""Every page fits a 360 px phone: nothing makes the page scroll sideways (issue 13).

Each page the accessibility test renders is opened in headless Chromium at 360x740 with
the real stylesheet; a script measures the page's width against the viewport and names
the elements that stick out. Wide tables may scroll inside their own box, never the page.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.appliance.test_accessibility import STYLE, _chromium, _pages, in_chromium

MEASURE = """<script>window.addEventListener('load', function () {
var width = window.innerWidth, wide = [];
document.querySelectorAll('body *').forEach(function (e) {
  var box = e.getBoundingClientRect();
  if (box.right > width + 1 && getComputedStyle(e).position !== 'fixed') {
    var inScroller = false;
    for (var p = e.parentElement; p; p = p.parentElement) {
      var o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') { inScroller = true; break; }
    }
    if (!inScroller) wide.push(e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') + ':' + Math.round(box.right));
  }
});
var r = document.createElement('pre'); r.id = 'layout';
r.textContent = 'viewport=' + width + ' page=' + document.documentElement.scrollWidth + ' wide=' + wide.slice(0, 5).join(',');
document.body.appendChild(r); parent.postMessage(r.textContent, '*'); });</script>"""
# Headless Chromium's window is at least 500 px wide, so the page is measured inside a
# 360x740 frame, which reports back to the window by postMessage.
FRAME = """<!doctype html><html><body><iframe src="{src}" width="360" height="740"></iframe>
<script>window.addEventListener('message', function (m) {{ var r = document.createElement('pre');
r.id = 'layout'; r.textContent = m.data; document.body.appendChild(r); }});</script></body></html>"""


def _layout(chromium: str, html: str, folder: Path, name: str) -> tuple[int, int, str]:
    html = re.sub(r'<link rel="stylesheet"[^>]*>', f"<style>{STYLE.read_text()}</style>", html)
    page = folder / f"{name}.html"
    page.write_text(html.replace("</body>", f"{MEASURE}</body>"))
    frame = folder / f"{name}-frame.html"
    frame.write_text(FRAME.format(src=page.name))
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={folder / ('profile-' + name)}",
         "--hide-scrollbars", "--virtual-time-budget=5000", "--dump-dom", frame.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    match = re.search(r'<pre id="layout">viewport=(\d+) page=(\d+) wide=(.*?)</pre>', out, re.S)
    assert match, f"the layout script did not finish on {name}"
    return int(match.group(1)), int(match.group(2)), match.group(3)


def test_every_page_fits_a_360px_phone(app, ids, db, tmp_path):
    measured = in_chromium(_layout, _pages(app, ids, db), tmp_path)
    assert all(viewport == 360 for viewport, _, _ in measured.values()), measured
    too_wide = {name: f"{page} px: {wide}" for name, (vp, page, wide) in measured.items()
                if page > vp}  # fmt: skip
    assert not too_wide, "\n".join(f"{name}: {why}" for name, why in too_wide.items())


def test_the_layout_check_catches_a_page_too_wide(tmp_path):
    bad = '<!doctype html><html lang="en"><body><div style="width:600px">x</div></body></html>'
    viewport, page, wide = _layout(_chromium(), bad, tmp_path, "bad")
    assert page > viewport and "div" in wide


pytestmark = pytest.mark.slow
