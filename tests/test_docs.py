"""The README and docs/ point only to files that exist: a path in backticks or in the
architecture tree that a move left behind fails here."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# A repository path: one of our top-level folders, then a file or folder name.
PATH = re.compile(
    r"(?<![\w/.-])((?:appliance|sync|models|federated|tests|bench|image|docs)/[\w./-]*\w)"
)


def paths_in(text: str) -> set[str]:
    return {match.rstrip(".") for match in PATH.findall(text)}


def test_every_path_the_docs_name_exists():
    missing = [
        f"{doc.relative_to(REPO)}: {path}"
        for doc in DOCS
        for path in sorted(paths_in(doc.read_text()))
        if not (REPO / path).exists()
    ]
    assert missing == []


def test_the_check_sees_a_path_that_is_gone():
    assert paths_in("see `appliance/tutor_http.py`, and sync/hub/app.py.") == {
        "appliance/tutor_http.py",
        "sync/hub/app.py",
    }
    assert not (REPO / "appliance/tutor_http.py").exists()
