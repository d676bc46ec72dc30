"""A GGUF file's metadata and where its tensor data ends, read from its header alone.

The layout is ggml's GGUF specification (github.com/ggml-org/ggml, docs/gguf.md):
magic, version, tensor count, key/value count, the key/values, the tensor infos, then
the tensor data at the next multiple of `general.alignment`. gguf-py's GGUFReader reads
the same, but builds every array (a tokenizer's 49,152 strings, its merges) as numpy
views: 5 s on a PC for SmolLM2-135M, about 50 s of a first boot under qemu or on a
Pi. Here arrays are skipped, not read, so checking a model file costs a few
milliseconds; what the manifest needs (strings and numbers) is kept.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# Value types (the specification's gguf_metadata_value_type) and their struct codes.
SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
STRING, ARRAY = 8, 9


class HeaderError(ValueError):
    """Not a GGUF file this reader understands, or one cut short."""


@dataclass(frozen=True)
class Header:
    metadata: dict[str, Any]  # every key; arrays as None (skipped)
    tensors: int
    data_end: int  # the byte just past the last tensor's data


def read(path: Path) -> Header:
    """The header of the GGUF file at `path`; HeaderError if it is damaged or truncated."""
    try:
        with path.open("rb") as source:
            return _read(_Cursor(source, os.fstat(source.fileno()).st_size))
    except (struct.error, EOFError, UnicodeDecodeError, KeyError, ValueError) as error:
        if isinstance(error, HeaderError):
            raise
        raise HeaderError(f"its header cannot be read ({error})") from error


class _Cursor:
    """Reads through the file, refusing any length that runs past its end (a garbage
    length must not make us allocate gigabytes)."""

    def __init__(self, source: BinaryIO, size: int) -> None:
        self.source, self.size = source, size

    def exactly(self, size: int) -> bytes:
        if self.source.tell() + size > self.size:
            raise EOFError(f"a field of {size} bytes runs past the end of the file")
        return self.source.read(size)

    def skip(self, size: int) -> None:
        if self.source.tell() + size > self.size:
            raise EOFError(f"an array of {size} bytes runs past the end of the file")
        self.source.seek(size, 1)

    def unpack(self, layout: str) -> tuple:
        return struct.unpack("<" + layout, self.exactly(struct.calcsize("<" + layout)))

    def u32(self) -> int:
        return self.unpack("I")[0]

    def u64(self) -> int:
        return self.unpack("Q")[0]

    def string(self) -> str:
        return self.exactly(self.u64()).decode("utf-8")


def _read(at: _Cursor) -> Header:
    if at.exactly(4) != MAGIC:
        raise HeaderError("it does not start with GGUF")
    version, tensor_count, kv_count = at.unpack("IQQ")
    if version < 2:
        raise HeaderError(f"GGUF version {version} is too old (2 or later is read)")
    metadata = {}
    for _ in range(kv_count):
        key = at.string()
        metadata[key] = _value(at, at.u32())
    last = 0
    for _ in range(tensor_count):
        at.string()  # the tensor's name
        n_dims = at.u32()
        if n_dims > 8:  # ggml's GGML_MAX_DIMS is 4
            raise HeaderError(f"a tensor with {n_dims} dimensions")
        dims = at.unpack(f"{n_dims}Q")
        kind, offset = at.unpack("IQ")
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        elements = 1
        for dim in dims:
            elements *= dim
        last = max(last, offset + elements // block * size)
    alignment = int(metadata.get("general.alignment") or DEFAULT_ALIGNMENT)
    start = -(-at.source.tell() // alignment) * alignment
    return Header(metadata, tensor_count, start + last)


SHORT_LIST = 64


def _value(at: _Cursor, kind: int) -> Any:
    if kind in SCALARS:
        return at.unpack(SCALARS[kind])[0]
    if kind == STRING:
        return at.string()
    if kind == ARRAY:
        item, count = at.unpack("IQ")
        if item == STRING and count <= SHORT_LIST:  # general.languages, tags: kept
            return [at.string() for _ in range(count)]
        if item == STRING:  # the tokenizer's vocabulary: skipped
            for _ in range(count):
                at.skip(at.u64())
        elif item in SCALARS:
            at.skip(count * struct.calcsize("<" + SCALARS[item]))
        else:
            for _ in range(count):  # arrays of arrays: rare, read through
                _value(at, item)
        return None
    raise HeaderError(f"unknown value type {kind}")
