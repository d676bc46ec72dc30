"""Make the demo pack's resources (video, audio, PDF, EPUB, HTML5 app) from sources kept
in this repository, so each file can be rebuilt and its licence is the pack's own.

A developer's tool, not run on the box: it needs ffmpeg and espeak-ng (Debian packages).
The files it writes under appliance/demo/pack/resources/ are committed, so neither a
fresh clone nor a box needs those programs. Run: python -m appliance.demo.make_resources
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).parent
SOURCES = HERE / "resources_src"
OUT = HERE / "pack" / "resources"
FIXED_TIME = (2026, 12, 1, 0, 0, 0)  # zip entries dated alike, so a rebuild is byte-identical

# The bar video: what is drawn from second to second, and the narration said over it.
BAR_SCENES = [
    (0, 4, 1, "This long bar is one whole."),
    (4, 8, 2, "Cut it into two equal parts. Each part is one half."),
    (8, 12, 4, "Cut each half again. Now there are four equal parts: four quarters."),
    (12, 16, 4, "One part shaded out of four equal parts is one quarter."),
]
HOPS_SCENES = [
    (0, 4, "The number line from zero to one is cut into four equal steps."),
    (4, 8, "Each hop is one quarter. One hop lands on one quarter."),
    (8, 12, "Two hops land on two quarters, which is the same as one half."),
]


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def _speech(text: str, wav: Path) -> None:
    _run("espeak-ng", "-v", "en-gb", "-s", "140", "-w", str(wav), text)


def _timestamp(seconds: float) -> str:
    return f"00:{int(seconds) // 60:02d}:{seconds % 60:06.3f}"


def _captions(scenes: list[tuple], path: Path) -> None:
    cues = [
        f"{n}\n{_timestamp(start)} --> {_timestamp(end)}\n{scene[-1]}\n"
        for n, (start, end, *scene) in enumerate(scenes, 1)
    ]
    path.write_text("WEBVTT\n\n" + "\n".join(cues), encoding="utf-8")


def _narration(scenes: list[tuple], work: Path) -> Path:
    """One audio track with each scene's sentence starting at the scene's second."""
    parts, filters = [], []
    for n, (start, _end, *scene) in enumerate(scenes):
        wav = work / f"line{n}.wav"
        _speech(scene[-1], wav)
        parts += ["-i", str(wav)]
        filters.append(f"[{n}]adelay={int(start * 1000)}:all=1[a{n}]")
    mix = "".join(f"[a{n}]" for n in range(len(scenes)))
    total = scenes[-1][1]
    out = work / "narration.wav"
    _run(
        "ffmpeg", "-y", *parts, "-filter_complex",
        ";".join(filters) + f";{mix}amix=inputs={len(scenes)}:normalize=0,apad,atrim=0:{total}",
        str(out),
    )  # fmt: skip
    return out


def _bar_filters() -> str:
    """A bar 480 px wide, split into 1, 2 then 4 parts, one part shaded at the end."""
    drawn = ["drawbox=x=80:y=140:w=480:h=80:color=0x345566:t=4"]
    for start, end, parts, _text in BAR_SCENES:
        on = f"enable='between(t,{start},{end})'"
        for cut in range(1, parts):
            drawn.append(
                f"drawbox=x={80 + cut * 480 // parts}:y=140:w=4:h=80:color=0x345566:t=fill:{on}"
            )
        if start >= 12:
            drawn.append(f"drawbox=x=84:y=144:w={480 // parts - 6}:h=72:color=0x2b7bb9:t=fill:{on}")
    return ",".join(drawn)


def _hops_filters() -> str:
    """A number line 0 to 1 with four steps; a dot hops one, then two quarters."""
    drawn = ["drawbox=x=80:y=180:w=480:h=4:color=0x345566:t=fill"]
    drawn += [f"drawbox=x={80 + k * 120}:y=165:w=4:h=34:color=0x345566:t=fill" for k in range(5)]
    for start, end, stop in ((4, 8, 1), (8, 12, 2)):
        drawn.append(
            f"drawbox=x={80 + stop * 120 - 10}:y=150:w=24:h=24:color=0x2b7bb9:t=fill:"
            f"enable='between(t,{start},{end})'"
        )
    return ",".join(drawn)


def make_video(scenes, filters: str, audio: Path, out: Path, webm: bool) -> None:
    total = scenes[-1][1]
    codec = (
        ["-c:v", "libvpx-vp9", "-b:v", "150k", "-c:a", "libopus", "-b:a", "32k"]
        if webm
        else ["-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p",
              "-b:v", "150k", "-c:a", "aac", "-b:a", "48k", "-movflags", "+faststart"]
    )  # fmt: skip
    _run(
        "ffmpeg", "-y", "-f", "lavfi", "-i", f"color=c=0xfffdf7:s=640x360:r=15:d={total}",
        "-i", str(audio), "-vf", filters, *codec, "-shortest", "-map_metadata", "-1",
        "-fflags", "+bitexact", str(out),
    )  # fmt: skip


def make_story_audio(work: Path, out: Path) -> None:
    """The reading lesson's story, read aloud (the words are the lesson's own)."""
    lesson = (HERE / "pack" / "lessons" / "reading-01-finding-facts.md").read_text("utf-8")
    story = lesson.split("## Story: The Six O'Clock Bus", 1)[1].split("\n## ", 1)[0]
    text = "The Six O'Clock Bus. " + re.sub(r"\s+", " ", story).strip()
    wav = work / "story.wav"
    _speech(text, wav)
    _run("ffmpeg", "-y", "-i", str(wav), "-c:a", "libvorbis", "-q:a", "1", "-ac", "1",
         "-map_metadata", "-1", "-fflags", "+bitexact", str(out))  # fmt: skip


def _pdf_text(x: int, y: int, size: int, text: str) -> str:
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"BT /F1 {size} Tf {x} {y} Td ({safe}) Tj ET"


def make_worksheet(out: Path) -> None:
    """A one-page printable worksheet: shade the bars to show equivalent fractions."""
    lines = [
        _pdf_text(56, 780, 20, "Equivalent fractions: a worksheet"),
        _pdf_text(
            56, 752, 11, "Shade each bar to show the fraction. Then write a fraction equal to it."
        ),
    ]
    for row, (parts, label) in enumerate(((2, "1/2"), (4, "2/4"), (3, "1/3"), (6, "2/6"))):
        y = 680 - row * 110
        lines.append(_pdf_text(56, y + 40, 14, f"{row + 1}. Shade {label}"))
        lines.append(f"0.2 0.33 0.4 RG 2 w 56 {y} 420 32 re S")
        lines += [
            f"{56 + k * 420 // parts} {y} m {56 + k * 420 // parts} {y + 32} l S"
            for k in range(1, parts)
        ]
        lines.append(_pdf_text(56, y - 22, 12, "A fraction equal to it: ______"))
    lines.append(_pdf_text(56, 80, 9, "Schoolbox demo pack, CC BY 4.0, Schoolbox contributors."))
    stream = "\n".join(lines).encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (Equivalent fractions: a worksheet) /Author (Schoolbox contributors) >>",
    ]
    body, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(body))
        body += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    out.write_bytes(bytes(body))


def _zip(out: Path, entries: list[tuple[str, bytes]], stored_first: bool = False) -> None:
    with zipfile.ZipFile(out, "w") as archive:
        for index, (name, data) in enumerate(entries):
            info = zipfile.ZipInfo(name, FIXED_TIME)
            stored = stored_first and index == 0
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            archive.writestr(info, data)


def make_epub(out: Path) -> None:
    """A short storybook in EPUB 3 from resources_src/storybook/ (mimetype first, stored)."""
    source = SOURCES / "storybook"
    files = sorted(p for p in source.rglob("*") if p.is_file())
    entries = [("mimetype", b"application/epub+zip")]
    entries += [(p.relative_to(source).as_posix(), p.read_bytes()) for p in files]
    _zip(out, entries, stored_first=True)


def make_app(out: Path) -> None:
    source = SOURCES / "compare-app"
    files = sorted(p for p in source.rglob("*") if p.is_file())
    _zip(out, [(p.relative_to(source).as_posix(), p.read_bytes()) for p in files])


def main() -> None:
    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install {tool}")
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bar_audio = _narration(BAR_SCENES, work)
        make_video(BAR_SCENES, _bar_filters(), bar_audio, OUT / "halves-and-quarters.mp4", False)
        _captions(BAR_SCENES, OUT / "halves-and-quarters.en.vtt")
        hops_audio = _narration(HOPS_SCENES, work)
        make_video(HOPS_SCENES, _hops_filters(), hops_audio, OUT / "hops.webm", True)
        _captions(HOPS_SCENES, OUT / "hops.en.vtt")
        make_story_audio(work, OUT / "six-oclock-bus.ogg")
    make_worksheet(OUT / "equivalent-fractions-worksheet.pdf")
    make_epub(OUT / "the-lost-goat.epub")
    make_app(OUT / "which-is-bigger.zip")
    for path in sorted(OUT.iterdir()):
        print(f"{path.stat().st_size:>9,d}  {path.name}")


if __name__ == "__main__":
    main()
