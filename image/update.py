"""OS update bundles: an image build's root partition as a RAUC bundle, signed with the
district's OS update key (sync/hub/os_update_signer.py), for `schoolbox os-update install`
on the box (docs/image.md, "Updating the box").

    python image/update.py --hub-home HUB [--arch x86_64] [--out build/image]

image/build.py makes one with every image; this command makes one again from the last
build (another version, say). `with_files` makes a variant of a root partition without
mounting it (debugfs), which the image tests use for a deliberately broken update.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from a checkout

from sync.hub import os_update_signer  # noqa: E402

# zstd: quick to pack on the build host and to unpack on a Pi; the image's own download
# is xz. RAUC's verity format checks every block of the bundle as the box reads it.
SQUASHFS_ARGS = "-comp zstd -Xcompression-level 6"


def manifest(compatible: str, version: str, root_name: str) -> str:
    """RAUC's manifest (rauc.readthedocs.io, "Reference", "Manifest"): one image, the root."""
    return (
        f"[update]\ncompatible={compatible}\nversion={version}\n\n"
        "[bundle]\nformat=verity\n\n"
        f"[image.rootfs]\nfilename={root_name}\n"
    )


def bundle(root_image: Path, compatible: str, version: str, hub_home: Path, out: Path) -> Path:
    """Sign `root_image` as an update bundle at `out` with the OS update key of the district
    whose hub home is `hub_home` (another district's home: a bundle the box must refuse)."""
    key, certificate = os_update_signer.ensure(hub_home)
    content = out.with_name(out.name + ".content")
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir(parents=True)
    try:
        os.link(root_image, content / "root.ext4")  # same file system: no copy of 3 GB
    except OSError:
        subprocess.run(["cp", "--sparse=always", str(root_image), str(content / "root.ext4")],
                       check=True)  # fmt: skip
    (content / "manifest.raucm").write_text(manifest(compatible, version, "root.ext4"))
    out.unlink(missing_ok=True)
    try:
        subprocess.run(["rauc", "bundle", f"--cert={certificate}", f"--key={key}",
                        f"--mksquashfs-args={SQUASHFS_ARGS}", str(content), str(out)],
                       check=True, capture_output=True, text=True)  # fmt: skip
    finally:
        shutil.rmtree(content, ignore_errors=True)
    return out


def with_files(root_image: Path, out: Path, files: dict[str, bytes]) -> Path:
    """A copy of a root partition with `files` (absolute paths in it) replaced, made
    with debugfs, never mounted; each keeps root's ownership and mode 0644."""
    subprocess.run(["cp", "--sparse=always", str(root_image), str(out)], check=True)
    staged = out.with_name(out.name + ".files")
    staged.mkdir(exist_ok=True)
    commands = []
    for number, (path, data) in enumerate(files.items()):
        local = staged / str(number)
        local.write_bytes(data)
        commands += [f"rm {path}", f"write {local} {path}", f"sif {path} mode 0100644",
                     f"sif {path} uid 0", f"sif {path} gid 0"]  # fmt: skip
    script = staged / "commands"
    script.write_text("\n".join(commands) + "\n")
    try:
        subprocess.run(["debugfs", "-w", "-f", str(script), str(out)], check=True,
                       capture_output=True)  # fmt: skip
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


def read_file(root_image: Path, path: str) -> bytes:
    """One file of a root partition, read without mounting it."""
    return subprocess.run(["debugfs", "-R", f"cat {path}", str(root_image)], check=True,
                          capture_output=True).stdout  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="x86_64")
    parser.add_argument("--hub-home", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=HERE.parent / "build" / "image")
    parser.add_argument("--version", help="Default: the version the build wrote.")
    args = parser.parse_args(argv)
    folder = args.out / args.arch
    release = read_file(folder / "root.ext4", "/etc/schoolbox-release").decode()
    version = args.version or release.partition("VERSION=")[2].strip()
    out = folder / f"schoolbox-{args.arch}-{version}.raucb"
    bundle(folder / "root.ext4", f"schoolbox-{args.arch}", version, args.hub_home, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
