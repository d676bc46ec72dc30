"""The model store with real files: the real default GGUF, cut-off and tampered copies of it.

No mocks: every import reads, hashes and copies the real SmolLM2-135M file (~98 MB), and
every damaged file is a real file on disk. Full copies are kept few: the broken inputs are
made once per module, and the stores that activation tests change are copied per test.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from models.registry import default, formats
from models.registry import installed as store
from models.registry.installed import ModelStoreError
from tests.conftest import SCHOOLBOX

KIND = "tutor-llm"


# --- helpers ---------------------------------------------------------------------------


def sha256(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def entries(home: Path) -> list[str]:
    """What is in the store's folder, less its lock file."""
    folder = store.root(home)
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock") if folder.exists() else []


def assert_no_leftovers(home: Path) -> None:
    left = [name for name in entries(home) if name.startswith((".importing-", ".tmp-"))]
    assert not left, f"half-finished work left in the store: {left}"


def active_state(home: Path) -> dict:
    """active.json, parsed: it must be whole, valid JSON whenever it exists."""
    return json.loads((store.root(home) / store.ACTIVE_FILE).read_text())


def active_name(home: Path) -> str | None:
    manifest = store.active(home, KIND)
    return manifest.name if manifest else None


def flip_bytes(path: Path, offset: int, count: int = 16) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        original = f.read(count)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in original))


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken(tmp_path_factory, default_gguf) -> dict[str, Path]:
    """A cut-off copy (first 60%) and a tampered copy (same length, 16 bytes flipped in the
    middle of the tensor data), each in a folder of its own; made once for the module."""
    data = default_gguf.read_bytes()
    truncated = tmp_path_factory.mktemp("truncated") / default_gguf.name
    truncated.write_bytes(data[: len(data) * 6 // 10])
    tampered = tmp_path_factory.mktemp("tampered") / default_gguf.name
    shutil.copyfile(default_gguf, tampered)
    flip_bytes(tampered, len(data) // 2)  # tensor data runs from ~1.8 MB to the end
    assert tampered.stat().st_size == len(data) and sha256(tampered) != default.GGUF_SHA256
    return {"truncated": truncated, "tampered": tampered}


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, default_gguf) -> Path:
    """A store holding the default GGUF under two names, `tutor-a` and `tutor-b`; none active.
    Built once; tests that change it work on a copy (`home`)."""
    home = tmp_path_factory.mktemp("two-models") / "home"
    for name in ("tutor-a", "tutor-b"):
        store.import_file(home, default_gguf, name=name, sha256=default.GGUF_SHA256)
    return home


@pytest.fixture
def home(tmp_path, two_models) -> Path:
    """A private, real copy (not hard links: some tests damage the stored files)."""
    target = tmp_path / "home"
    shutil.copytree(two_models, target)
    return target


# --- 1. importing the real default model -----------------------------------------------


def test_importing_the_default_gguf_records_a_verified_manifest_and_again_is_a_no_op(
    tmp_path, default_gguf
):
    home = tmp_path / "home"
    manifest = store.import_file(
        home,
        default_gguf,
        name=default.NAME,
        sha256=default.GGUF_SHA256,
        licence=default.LICENCE,
        source=default.SOURCE,
    )

    assert manifest.name == default.NAME
    assert manifest.kind == "tutor-llm"
    assert manifest.format == "gguf"
    assert manifest.quantisation == "Q4_1"
    assert manifest.sha256 == default.GGUF_SHA256
    assert manifest.size == default_gguf.stat().st_size
    assert manifest.context_length == 8192
    assert manifest.licence == default.LICENCE
    assert manifest.source == default.SOURCE
    assert manifest.architecture == "llama" and manifest.parameters == "135M"

    # The manifest on disk says the same; the stored file is byte-for-byte the one verified.
    on_disk = json.loads((store.root(home) / default.NAME / "manifest.json").read_text())
    assert on_disk == manifest.to_json()
    stored = store.file_path(home, manifest)
    assert stored.parent == store.root(home) / default.NAME
    assert sha256(stored) == default.GGUF_SHA256
    assert stored.stat().st_size == manifest.size
    assert store.models(home) == [manifest]
    assert store.get(home, default.NAME) == manifest
    assert store.active(home, KIND) is None  # importing does not activate
    assert entries(home) == [default.NAME]

    # The same file again: nothing to do, the very same manifest (same added_at) back.
    stamp = stored.stat().st_mtime_ns
    again = store.import_file(home, default_gguf, name=default.NAME, sha256=default.GGUF_SHA256)
    assert again == manifest
    assert entries(home) == [default.NAME]
    assert stored.stat().st_mtime_ns == stamp  # not copied over
    assert_no_leftovers(home)


# --- 2. a cut-off copy -----------------------------------------------------------------


def test_a_truncated_copy_is_refused_as_truncated_and_adds_nothing(tmp_path, broken):
    home = tmp_path / "home"
    with pytest.raises(ModelStoreError) as refused:
        store.import_file(home, broken["truncated"], name="cut-off")
    message = str(refused.value)
    assert "truncated" in message and "not imported" in message
    assert broken["truncated"].name in message
    assert entries(home) == []  # at most the lock file; no model folder, no .importing-*
    assert store.models(home) == []


def test_a_truncated_copy_leaves_an_existing_store_exactly_as_it_was(home, broken):
    store.activate(home, "tutor-a")
    before = (entries(home), (store.root(home) / store.ACTIVE_FILE).read_bytes())
    with pytest.raises(ModelStoreError, match="truncated"):
        store.import_file(home, broken["truncated"])
    assert (entries(home), (store.root(home) / store.ACTIVE_FILE).read_bytes()) == before
    assert_no_leftovers(home)


# --- 3. a tampered copy and its expected sha256 -----------------------------------------


def test_a_tampered_copy_passes_the_header_checks_so_only_its_sha256_can_catch_it(broken):
    facts = formats.inspect(broken["tampered"])
    assert facts.format == "gguf" and facts.quantisation == "Q4_1"


def test_a_tampered_copy_is_refused_when_the_expected_sha256_is_given(tmp_path, broken):
    home = tmp_path / "home"
    with pytest.raises(ModelStoreError) as refused:
        store.import_file(home, broken["tampered"], name="tampered", sha256=default.GGUF_SHA256)
    message = str(refused.value)
    assert "sha256" in message and default.GGUF_SHA256 in message
    assert sha256(broken["tampered"]) in message  # what it got, for the admin to compare
    assert entries(home) == []


def test_a_tampered_copy_is_refused_by_a_sha256sum_sidecar_beside_it(tmp_path, broken):
    folder = tmp_path / "usb"
    folder.mkdir()
    tampered = folder / broken["tampered"].name
    os.link(broken["tampered"], tampered)  # same bytes, a folder of its own for the sidecar
    # Exactly what `sha256sum FILE > FILE.sha256` writes on the machine that has the original.
    (folder / f"{tampered.name}.sha256").write_text(f"{default.GGUF_SHA256}  {tampered.name}\n")
    home = tmp_path / "home"
    with pytest.raises(ModelStoreError, match="sha256"):
        store.import_file(home, tampered, name="tampered")
    assert entries(home) == []


def test_a_matching_sha256sum_sidecar_lets_the_genuine_file_in_under_a_name_from_file_and_hash(
    tmp_path, default_gguf
):
    folder = tmp_path / "usb"
    folder.mkdir()
    genuine = folder / default_gguf.name
    os.link(default_gguf, genuine)
    (folder / f"{genuine.name}.sha256").write_text(f"{default.GGUF_SHA256}  {genuine.name}\n")
    home = tmp_path / "home"
    manifest = store.import_file(home, genuine)
    assert manifest.name == f"smollm2-135m-instruct.q4_1-{default.GGUF_SHA256[:8]}"
    assert manifest.sha256 == default.GGUF_SHA256
    assert manifest.source == f"imported from {genuine.name}"
    assert manifest.licence == "apache-2.0"  # from the GGUF's own metadata
    assert store.import_file(home, genuine) == manifest  # the same name again: a no-op


def test_a_different_file_cannot_take_a_name_already_in_use(home, broken):
    # The tampered copy passes the header checks, so without a sha256 only the name guard
    # stands between it and the genuine `tutor-a`.
    with pytest.raises(ModelStoreError, match="already called 'tutor-a'"):
        store.import_file(home, broken["tampered"], name="tutor-a")
    assert sha256(store.file_path(home, store.get(home, "tutor-a"))) == default.GGUF_SHA256
    assert entries(home) == ["tutor-a", "tutor-b"]


# --- 4. files that are not models ------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("model.gguf", random.Random(7).randbytes(2 << 20)),
        ("model.onnx", b"\x00" + random.Random(8).randbytes(2 << 20)),  # not an ONNX tag
        ("notes.txt", b"This is a lesson plan, not a model.\n" * 50_000),
    ],
    ids=["random-bytes", "random-bytes-named-onnx", "text-file"],
)
def test_a_file_that_is_not_a_model_is_refused_naming_gguf_and_onnx(tmp_path, filename, content):
    path = tmp_path / filename
    path.write_bytes(content)
    home = tmp_path / "home"
    with pytest.raises(ModelStoreError) as refused:
        store.import_file(home, path)
    message = str(refused.value)
    assert "GGUF" in message and "ONNX" in message
    assert entries(home) == []


def test_a_file_with_the_gguf_magic_but_garbage_after_it_is_refused_as_damaged(tmp_path):
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + random.Random(9).randbytes(2 << 20))
    with pytest.raises(ModelStoreError, match="damaged or cut short"):
        store.import_file(tmp_path / "home", path)
    assert entries(tmp_path / "home") == []


def test_a_gguf_too_small_to_be_a_model_is_refused(tmp_path, default_gguf):
    path = tmp_path / "tiny.gguf"
    with default_gguf.open("rb") as source:
        path.write_bytes(source.read(100_000))
    with pytest.raises(ModelStoreError, match="not a plausible GGUF model"):
        store.import_file(tmp_path / "home", path)


def test_a_gguf_cannot_be_imported_as_another_kind_of_model(tmp_path, default_gguf):
    with pytest.raises(ModelStoreError, match="cannot be a knowledge-tracing model"):
        store.import_file(tmp_path / "home", default_gguf, kind="knowledge-tracing")
    with pytest.raises(ModelStoreError, match="Unknown model kind"):
        store.import_file(tmp_path / "home", default_gguf, kind="image-generator")
    assert entries(tmp_path / "home") == []


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelStoreError, match="There is no file"):
        store.import_file(tmp_path / "home", tmp_path / "nowhere.gguf")


# --- 5. activation and rollback --------------------------------------------------------


def test_activate_then_rollback_goes_back_one_model_at_a_time_until_none_is_left(home):
    assert store.active(home, KIND) is None
    assert store.active_stamp(home) == 0

    store.activate(home, "tutor-a")
    assert active_name(home) == "tutor-a"
    assert active_state(home) == {KIND: {"name": "tutor-a", "history": []}}
    first_stamp = store.active_stamp(home)
    assert first_stamp != 0

    store.activate(home, "tutor-b")
    assert active_name(home) == "tutor-b"
    assert active_state(home) == {KIND: {"name": "tutor-b", "history": ["tutor-a"]}}
    assert store.active_stamp(home) != first_stamp

    # Activating the active model again changes nothing (no duplicate in the history).
    store.activate(home, "tutor-b")
    assert active_state(home) == {KIND: {"name": "tutor-b", "history": ["tutor-a"]}}

    back = store.rollback(home, KIND)
    assert back.name == "tutor-a" and active_name(home) == "tutor-a"
    assert active_state(home) == {KIND: {"name": "tutor-a", "history": []}}

    before = (store.root(home) / store.ACTIVE_FILE).read_bytes()
    with pytest.raises(ModelStoreError, match="no earlier tutor-llm model"):
        store.rollback(home, KIND)
    assert (store.root(home) / store.ACTIVE_FILE).read_bytes() == before
    assert active_name(home) == "tutor-a"
    assert_no_leftovers(home)


def test_rollback_with_nothing_ever_active_is_refused(home):
    with pytest.raises(ModelStoreError, match="no earlier tutor-llm model"):
        store.rollback(home, KIND)
    with pytest.raises(ModelStoreError, match="no earlier knowledge-tracing model"):
        store.rollback(home, "knowledge-tracing")


def test_activating_a_name_not_in_the_store_is_refused(home):
    store.activate(home, "tutor-a")
    with pytest.raises(ModelStoreError, match="no model called 'tutor-c'"):
        store.activate(home, "tutor-c")
    assert active_name(home) == "tutor-a"


# --- 6. a stored file damaged after import ---------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "bytes-changed", "deleted"])
def test_activation_refuses_a_model_whose_stored_file_was_damaged_and_keeps_the_active_one(
    home, damage
):
    store.activate(home, "tutor-a")
    before = (store.root(home) / store.ACTIVE_FILE).read_bytes()
    stored = store.file_path(home, store.get(home, "tutor-b"))
    if damage == "truncated":
        os.truncate(stored, stored.stat().st_size // 2)
    elif damage == "bytes-changed":
        flip_bytes(stored, stored.stat().st_size // 2)
    else:
        stored.unlink()

    with pytest.raises(ModelStoreError) as refused:
        store.activate(home, "tutor-b")
    message = str(refused.value)
    assert "'tutor-b'" in message and "damaged or missing" in message
    assert "not changed" in message and "Import the model again" in message
    assert active_name(home) == "tutor-a"
    assert (store.root(home) / store.ACTIVE_FILE).read_bytes() == before


def test_rollback_refuses_to_go_back_to_a_model_damaged_since(home):
    store.activate(home, "tutor-a")
    store.activate(home, "tutor-b")
    before = (store.root(home) / store.ACTIVE_FILE).read_bytes()
    stored = store.file_path(home, store.get(home, "tutor-a"))
    os.truncate(stored, stored.stat().st_size - 1)
    with pytest.raises(ModelStoreError, match="'tutor-a' is damaged or missing"):
        store.rollback(home, KIND)
    assert active_name(home) == "tutor-b"
    assert (store.root(home) / store.ACTIVE_FILE).read_bytes() == before


# --- 7. names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["tutors/a", "../escape", "..", "Tutor-A"],  # each costs a real ~2 s GGUF inspection
)
def test_an_unusable_model_name_is_refused_and_nothing_is_written(tmp_path, default_gguf, name):
    home = tmp_path / "home"
    with pytest.raises(ModelStoreError, match="not a usable model name"):
        store.import_file(home, default_gguf, name=name)
    assert entries(home) == []
    assert not (tmp_path / "escape").exists()
    assert store.get(home, name) is None


def test_names_that_reach_outside_the_store_find_nothing(home):
    (home / "manifest.json").write_text(json.dumps(store.get(home, "tutor-a").to_json()))
    assert store.get(home, "..") is None
    with pytest.raises(ModelStoreError, match="no model called"):
        store.activate(home, "..")


# --- 8. the `schoolbox models` commands ------------------------------------------------


def schoolbox(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SCHOOLBOX, "--home", str(home), "models", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def listed(home: Path) -> dict[str, str]:
    """`models list` as {name: mark}; the mark is '*' for the active model."""
    result = schoolbox(home, "list")
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        mark, name = line[0], line[2:].split()[0]
        rows[name] = mark
    return rows


@pytest.mark.slow
def test_the_models_commands_import_list_activate_rollback_and_refuse_a_bad_file(
    tmp_path, default_gguf, broken
):
    home = tmp_path / "box"

    empty = schoolbox(home, "list")
    assert empty.returncode == 0 and "No models yet" in empty.stdout

    first = schoolbox(home, "import", str(default_gguf), "--name", "tutor-a", "--activate")
    assert first.returncode == 0, first.stderr
    assert "Imported tutor-a (tutor-llm, Q4_1, 98 MB" in first.stdout
    assert "tutor-a is now the active tutor-llm model" in first.stdout
    assert listed(home) == {"tutor-a": "*"}

    second = schoolbox(home, "import", str(default_gguf), "--name", "tutor-b")
    assert second.returncode == 0, second.stderr
    assert "now the active" not in second.stdout
    assert listed(home) == {"tutor-a": "*", "tutor-b": " "}

    as_json = schoolbox(home, "list", "--json")
    manifests = {m["name"]: m for m in json.loads(as_json.stdout)}
    assert manifests["tutor-b"]["sha256"] == default.GGUF_SHA256
    assert manifests["tutor-b"]["quantisation"] == "Q4_1"

    switched = schoolbox(home, "activate", "tutor-b")
    assert switched.returncode == 0, switched.stderr
    assert "tutor-b is now the active tutor-llm model" in switched.stdout
    assert listed(home) == {"tutor-a": " ", "tutor-b": "*"}

    back = schoolbox(home, "rollback")
    assert back.returncode == 0, back.stderr
    assert "Rolled back: tutor-a is the active tutor-llm model again" in back.stdout
    assert listed(home) == {"tutor-a": "*", "tutor-b": " "}

    nothing_earlier = schoolbox(home, "rollback")
    assert nothing_earlier.returncode != 0
    assert "no earlier tutor-llm model" in nothing_earlier.stderr

    unknown = schoolbox(home, "activate", "tutor-c")
    assert unknown.returncode != 0 and "no model called 'tutor-c'" in unknown.stderr

    before = schoolbox(home, "list").stdout
    for bad, says in [(broken["truncated"], "truncated"), (broken["tampered"], "sha256")]:
        refused = schoolbox(
            home, "import", str(bad), "--name", "bad", "--sha256", default.GGUF_SHA256,
            "--activate",
        )  # fmt: skip
        assert refused.returncode != 0
        assert says in refused.stderr and "not imported" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert refused.stdout == ""
        assert schoolbox(home, "list").stdout == before
    assert_no_leftovers(home)
    assert active_state(home)[KIND]["name"] == "tutor-a"


# --- bugs found while writing these tests, now fixed --------------------------------


def test_a_model_cannot_be_named_after_the_stores_own_active_json(tmp_path, default_gguf):
    home = tmp_path / "home"
    store.import_file(home, default_gguf, name="active.json")  # a model name like any other
    # The store's own state lives under a dot name no model can take.
    store.import_file(home, default_gguf, name="tutor-a")
    store.activate(home, "tutor-a")
    assert active_name(home) == "tutor-a"


def test_importing_the_model_again_as_advised_repairs_a_damaged_stored_file(home, default_gguf):
    stored = store.file_path(home, store.get(home, "tutor-b"))
    os.truncate(stored, stored.stat().st_size // 2)
    with pytest.raises(ModelStoreError, match="Import the model again"):
        store.activate(home, "tutor-b")
    store.import_file(home, default_gguf, name="tutor-b", sha256=default.GGUF_SHA256)
    store.activate(home, "tutor-b")
    assert active_name(home) == "tutor-b"
