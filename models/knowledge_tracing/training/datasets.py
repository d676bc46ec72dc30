"""Where the public data sets lie in a source checkout: ../shared/data beside the repository
(shared/data/README.md lists them and their licences). Never on a box: training only."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO.parent / "shared" / "data"
ASSIST2009 = SHARED_DATA / "kt" / "assist2009"
