"""The GGUF header reader (models/registry/gguf_header.py) agrees with gguf-py's
GGUFReader on the real default model, and refuses cut-off or garbage files."""

from __future__ import annotations

import random

import gguf
import pytest

from models.registry import gguf_header


def test_it_reads_what_gguf_py_reads_from_the_default_model(default_gguf):
    header = gguf_header.read(default_gguf)
    reader = gguf.GGUFReader(default_gguf)
    assert header.tensors == len(reader.tensors)
    assert header.data_end == max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue  # the reader's own entries for the version and counts
        if field.types and field.types[0] != gguf.GGUFValueType.ARRAY:
            assert header.metadata[key] == field.contents(), key
    assert header.metadata["tokenizer.ggml.tokens"] is None  # arrays are skipped


@pytest.mark.parametrize("keep", [3, 24, 1_000, 500_000, 2_000_000])
def test_a_file_cut_short_is_refused_or_ends_before_its_tensors(default_gguf, tmp_path, keep):
    cut = tmp_path / "cut.gguf"
    with default_gguf.open("rb") as source:
        cut.write_bytes(source.read(keep))
    try:
        header = gguf_header.read(cut)
    except gguf_header.HeaderError:
        return
    assert header.data_end > cut.stat().st_size  # formats.py refuses it as truncated


def test_garbage_lengths_are_refused_without_reading_gigabytes(tmp_path):
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + random.Random(9).randbytes(1 << 16))
    with pytest.raises(gguf_header.HeaderError):
        gguf_header.read(garbage)
