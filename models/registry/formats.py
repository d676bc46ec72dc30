"""What a model file is: GGUF or ONNX, checked from its header before the box trusts it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from models.knowledge_tracing.contract import KTModelError, check

GGUF_MAGIC = b"GGUF"
# A real model is at least this big; anything smaller is an empty or cut-off download.
MIN_BYTES = {"gguf": 1 << 20, "onnx": 100}
MAX_BYTES = 32 << 30


class ModelFileError(ValueError):
    """A model file the box refuses; the message says why, for the admin importing it."""


@dataclass(frozen=True)
class Inspected:
    format: str  # "gguf" or "onnx"
    quantisation: str
    context_length: int | None
    architecture: str
    parameters: str
    licence: str
    title: str
    languages: tuple[str, ...] = ()  # what the file says it speaks (GGUF general.languages)


def sha256_of(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def sniff(path: Path) -> str:
    """The file's format from its first bytes, not its name."""
    with path.open("rb") as source:
        head = source.read(8)
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    # An ONNX ModelProto starts with field 1 (ir_version, a varint): tag byte 0x08.
    if head[:1] == b"\x08" and path.suffix.lower() == ".onnx":
        return "onnx"
    raise ModelFileError(
        f"{path.name} is neither a GGUF model (for the tutor) nor an ONNX model "
        "(for knowledge tracing). Check that you picked the model file itself."
    )


def inspect(path: Path) -> Inspected:
    """Check a model file's header and size, and read what the manifest records."""
    if not path.is_file():
        raise ModelFileError(f"There is no file at {path}.")
    kind = sniff(path)
    size = path.stat().st_size
    if size < MIN_BYTES[kind] or size > MAX_BYTES:
        raise ModelFileError(
            f"{path.name} is {size:,} bytes, which is not a plausible {kind.upper()} model."
        )
    return _inspect_gguf(path) if kind == "gguf" else _inspect_onnx(path)


def _inspect_gguf(path: Path) -> Inspected:
    # gguf-py (and numpy with it) only when a model is imported, not in every process.
    from gguf import LlamaFileType

    from models.registry import gguf_header

    try:
        header = gguf_header.read(path)
    except gguf_header.HeaderError as error:
        raise ModelFileError(
            f"{path.name} is damaged or cut short (truncated): {error}. "
            "Copy it again from the source and check its sha256."
        ) from error
    if not header.tensors or header.data_end > path.stat().st_size:
        raise ModelFileError(f"{path.name} is cut short (truncated): its tensors run past its end.")

    def field(key: str, default=None):
        found = header.metadata.get(key)
        return found if found is not None else default

    architecture = str(field("general.architecture", "unknown"))
    file_type = field("general.file_type")
    try:
        quantisation = LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except (TypeError, ValueError):
        quantisation = "unknown"
    context = field(f"{architecture}.context_length")
    if field("tokenizer.chat_template") is None:
        raise ModelFileError(
            f"{path.name} has no chat template, so it is not an instruction (chat) model. "
            "The tutor needs an instruct model, for example one named '...-Instruct'."
        )
    return Inspected(
        format="gguf",
        quantisation=quantisation,
        context_length=int(context) if context is not None else None,
        architecture=architecture,
        parameters=str(field("general.size_label", "")),
        licence=str(field("general.license", "")),
        title=str(field("general.name", path.stem)),
        languages=_languages(field("general.languages")),
    )


def _languages(declared: object) -> tuple[str, ...]:
    """The languages a GGUF declares, as lower-case primary tags ("en", "fr")."""
    if not isinstance(declared, list):
        return ()
    return tuple(dict.fromkeys(str(tag).split("-")[0].lower() for tag in declared if tag))


def _inspect_onnx(path: Path) -> Inspected:
    """Only knowledge-tracing step graphs are ONNX on the box: check the contract."""
    try:
        metadata = check(path)
    except KTModelError as error:
        raise ModelFileError(str(error)) from error
    return Inspected(
        format="onnx",
        quantisation=metadata.get("quantisation", "unknown"),
        context_length=None,
        architecture=metadata.get("architecture", "onnx"),
        parameters=metadata.get("parameters", ""),
        licence=metadata.get("licence", ""),
        title=metadata.get("title", path.stem),
    )
