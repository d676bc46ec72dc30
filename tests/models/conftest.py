"""Fixtures of the models tests: a model store with two tutor models."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from models.registry import default
from models.registry import installed as store


@pytest.fixture(scope="session")
def two_models(tmp_path_factory, default_gguf) -> Path:
    home = tmp_path_factory.mktemp("two-models") / "home"
    store.import_file(home, default_gguf, name="model-a", sha256=default.GGUF_SHA256)
    store.import_file(home, default_gguf, name="model-b", sha256=default.GGUF_SHA256)
    store.activate(home, "model-a")
    return home


@pytest.fixture
def home(tmp_path, two_models) -> Path:
    """A store with model-a active and model-b beside it. Files are hard links: the store
    never writes a model file in place, and active.json is replaced, not edited."""
    home = tmp_path / "home"
    shutil.copytree(two_models, home, copy_function=os.link)
    return home
