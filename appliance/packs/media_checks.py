"""Check that a resource file is what its name says, reading a stream, never the whole file.

Each check returns a problem for the pack's author (or "" when the file is fine) and
what it learnt (an MP4's length). They look at container headers and codec names, so a
video that would not play in a school's browsers (H.265, say) is refused at import with
a reason, not found broken in class.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 1024 * 1024
MAX_MOOV_BYTES = 32 * 1024 * 1024  # an MP4's index; hours of video need a few MB
MAX_CAPTIONS_BYTES = 1024 * 1024

# Sample-entry codes in an MP4's index: what browsers play, and what they do not.
MP4_VIDEO_OK = {b"avc1": "H.264", b"avc3": "H.264", b"vp09": "VP9", b"av01": "AV1"}
MP4_VIDEO_REFUSED = {b"hvc1": "H.265/HEVC", b"hev1": "H.265/HEVC", b"mp4v": "MPEG-4 Part 2"}
MP4_AUDIO_OK = {b"mp4a": "AAC", b"Opus": "Opus", b".mp3": "MP3"}
WEBM_VIDEO_OK = (b"V_VP8", b"V_VP9", b"V_AV1")
WEBM_AUDIO_OK = (b"A_OPUS", b"A_VORBIS")
CUE_TIMING = re.compile(r"^(\d{2,}:)?\d{2}:\d{2}\.\d{3}\s+-->\s+(\d{2,}:)?\d{2}:\d{2}\.\d{3}")
# Names of the PDF actions that run code or programs; the browser's viewer is the second
# guard, this the first.
PDF_ACTIVE = re.compile(rb"/(JavaScript|JS|Launch)(?![A-Za-z0-9])")


@dataclass
class Checked:
    problem: str = ""
    duration_s: float | None = None


def video(stream: BinaryIO, size: int, suffix: str) -> Checked:
    """An MP4 (H.264, VP9 or AV1) or WebM (VP8, VP9 or AV1) file with a video track."""
    if suffix == ".webm":
        return _webm(stream, need_video=True)
    return _mp4(stream, size, need_video=True)


def audio(stream: BinaryIO, size: int, suffix: str) -> Checked:
    """An MP3, Ogg (Vorbis or Opus) or M4A (AAC) file."""
    head = stream.read(64)
    if suffix == ".mp3":
        sync = len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
        return Checked("" if head.startswith(b"ID3") or sync else "is not an MP3 file")
    if suffix in (".ogg", ".oga", ".opus"):
        return Checked("" if head.startswith(b"OggS") else "is not an Ogg file")
    stream.seek(0)
    return _mp4(stream, size, need_video=False)


def captions(stream: BinaryIO) -> Checked:
    """A WebVTT file: UTF-8, starting with WEBVTT, with at least one timed cue."""
    raw = stream.read(MAX_CAPTIONS_BYTES + 1)
    if len(raw) > MAX_CAPTIONS_BYTES:
        return Checked("is larger than 1 MB; captions are text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Checked("is not UTF-8 text")
    lines = text.splitlines()
    if not lines or not re.match(r"^WEBVTT([ \t].*)?$", lines[0]):
        return Checked("is not WebVTT: its first line must be WEBVTT")
    if not any(CUE_TIMING.match(line.strip()) for line in lines):
        return Checked("has no cues (lines like 00:00:01.000 --> 00:00:04.000)")
    return Checked()


def pdf(stream: BinaryIO, size: int) -> Checked:
    """A PDF with its header and end marker, and no script or program-launching actions."""
    head = stream.read(1024)
    if b"%PDF-" not in head:
        return Checked("is not a PDF file (no %PDF- header)")
    stream.seek(max(0, size - 2048))
    if b"%%EOF" not in stream.read():
        return Checked("is a damaged or cut-off PDF (no %%EOF at its end)")
    stream.seek(0)
    tail = b""
    while chunk := stream.read(CHUNK):
        if PDF_ACTIVE.search(tail + chunk):
            return Checked("holds JavaScript or a launch action, which the box does not serve")
        tail = chunk[-16:]  # a name split across two chunks is still found
    return Checked()


# --- MP4 (ISO base media) -------------------------------------------------------------


def _boxes(stream: BinaryIO, size: int):
    """(type, offset of its content, length of its content) for each top-level box."""
    at = 0
    while at + 8 <= size:
        stream.seek(at)
        header = stream.read(8)
        if len(header) < 8:
            return
        length, kind = struct.unpack(">I4s", header)
        start = at + 8
        if length == 1:
            length = struct.unpack(">Q", stream.read(8))[0]
            start += 8
        elif length == 0:
            length = size - at
        if length < start - at or at + length > size:
            yield b"!bad", at, 0
            return
        yield kind, start, at + length - start
        at += length


def _mp4(stream: BinaryIO, size: int, need_video: bool) -> Checked:
    kinds, moov = [], b""
    for kind, start, length in _boxes(stream, size):
        if kind == b"!bad":
            return Checked("is a damaged or cut-off MP4 file (a box runs past its end)")
        kinds.append(kind)
        if kind == b"moov":
            if length > MAX_MOOV_BYTES:
                return Checked("has an index (moov) larger than 32 MB")
            stream.seek(start)
            moov = stream.read(length)
    if not kinds or kinds[0] != b"ftyp":
        return Checked("is not an MP4 file (it does not start with an ftyp box)")
    if not moov or b"mdat" not in kinds:
        return Checked("is an MP4 file without its index or media (moov or mdat missing)")
    codes = _sample_entries(moov)
    refused = [MP4_VIDEO_REFUSED[c] for c in codes if c in MP4_VIDEO_REFUSED]
    if refused:
        return Checked(f"uses {refused[0]} video, which most browsers cannot play: use H.264")
    if need_video and not any(c in MP4_VIDEO_OK for c in codes):
        return Checked("has no H.264, VP9 or AV1 video track")
    if not need_video and not any(c in MP4_AUDIO_OK for c in codes):
        return Checked("has no AAC, Opus or MP3 audio track")
    return Checked(duration_s=_mp4_duration(moov))


def _sample_entries(moov: bytes) -> set[bytes]:
    """The codec code of every track's first sample entry (in each stsd box)."""
    codes, at = set(), moov.find(b"stsd")
    while at != -1:
        entry = moov[at + 12 : at + 20]  # stsd, version+flags, count; then size, code
        if len(entry) == 8:
            codes.add(entry[4:8])
        at = moov.find(b"stsd", at + 4)
    return codes


def _mp4_duration(moov: bytes) -> float | None:
    at = moov.find(b"mvhd")
    if at == -1:
        return None
    body = moov[at + 4 :]
    if body[:1] == b"\x01" and len(body) >= 32:
        scale, length = struct.unpack(">IQ", body[20:32])
    elif len(body) >= 20:
        scale, length = struct.unpack(">II", body[12:20])
    else:
        return None
    return round(length / scale, 1) if scale else None


# --- WebM (Matroska) -------------------------------------------------------------------


def _webm(stream: BinaryIO, need_video: bool) -> Checked:
    head = stream.read(CHUNK)  # the EBML header and the track list sit at the start
    if not head.startswith(b"\x1a\x45\xdf\xa3") or b"webm" not in head[:64]:
        return Checked("is not a WebM file")
    if need_video and not any(code in head for code in WEBM_VIDEO_OK):
        return Checked("has no VP8, VP9 or AV1 video track")
    if not need_video and not any(code in head for code in WEBM_AUDIO_OK):
        return Checked("has no Opus or Vorbis audio track")
    return Checked()
