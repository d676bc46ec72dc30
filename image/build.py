"""Build the box's OS image (`make image`): Debian bookworm from Debian's packages, the box
from its own wheelhouse, nothing else.

    python image/build.py --hub-home HUB [--arch x86_64] [--out build/image]

Steps, each a function below: the wheelhouse (schoolbox and every package it needs,
cached outside the checkout); the root filesystem (mmdebstrap, then
image/recipe/customize.sh, with the apt downloads cached); the boot loader; the
partitions as files (mke2fs -d, never a mount); the disk (genimage); then the compressed
image, its sha256, the list of packages in it, and the district's signature over all of
it. docs/image.md explains the layout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent
sys.path.insert(0, str(CHECKOUT))  # run as a script from a checkout

from image import update  # noqa: E402
from models.registry import default  # noqa: E402
from models.registry.formats import sha256_of  # noqa: E402
from sync import release  # noqa: E402
from sync.hub import home as hub_store  # noqa: E402
from sync.hub import os_update_signer  # noqa: E402

SUITE = "bookworm"
MIRRORS = [
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
]
LLAMA_VERSION = "0.3.36"  # as the Makefile's
# The slots' partition UUIDs: fixed, so GRUB, the kernel's root= and RAUC's system.conf
# name the same partitions on every box.
SLOT_A_UUID = "6b1f1a36-5c1e-4c57-9a3e-0d5f6c0a0a01"
SLOT_B_UUID = "6b1f1a36-5c1e-4c57-9a3e-0d5f6c0a0b02"
ROOT_SLOT_MB = 3072  # each of A and B; the root filesystem is about half of it
ESP_MB = 64


@dataclass(frozen=True)
class Arch:
    name: str  # uname -m
    debian: str  # dpkg's name
    root_type: str  # the GPT partition type of its root (the Discoverable Partitions Spec)


ARCHES = {
    "x86_64": Arch("x86_64", "amd64", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
}


def run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess:
    """Run a build tool; its output goes to the build's log (stdout)."""
    print("+", " ".join(map(str, command)), flush=True)
    return subprocess.run([str(part) for part in command], check=True, **kwargs)


def wheelhouse(arch: Arch, cache: Path) -> Path:
    """Every wheel the box installs: llama-cpp-python built once for any CPU of the
    architecture (GGML_NATIVE off: AVX2 and FMA, not this build machine's own
    instructions), and the rest from PyPI; cached, so a rebuild downloads nothing."""
    wheels = cache / f"wheels-{arch.name}"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob(f"llama_cpp_python-{LLAMA_VERSION}-*.whl")):
        env = {**os.environ, "CMAKE_ARGS": "-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF",
               "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1)}  # fmt: skip
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir",
            f"llama-cpp-python=={LLAMA_VERSION}", "-w", wheels, env=env)  # fmt: skip
    for old in wheels.glob("schoolbox-*.whl"):
        old.unlink()  # this checkout's, always
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", wheels,
        "--find-links", wheels, f"{CHECKOUT}[federated]")  # fmt: skip
    return wheels


def packages(arch: Arch) -> list[str]:
    names = []
    for name in ("packages-common.txt", f"packages-{arch.name}.txt"):
        for line in (HERE / "recipe" / name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                names.append(line.strip())
    return names


def release_version() -> str:
    """This build's version: the package's, and when it was built (RAUC and the status page)."""
    with (CHECKOUT / "pyproject.toml").open("rb") as source:
        version = tomllib.load(source)["project"]["version"]
    return f"{version}+{time.strftime('%Y%m%d.%H%M', time.gmtime())}"


def customize_env(wheels: Path, hub_home: Path, model: Path, version: str,
                  **more: str) -> dict[str, str]:  # fmt: skip
    """What image/recipe/customize.sh reads (its header lists each)."""
    certificate = os_update_signer.ensure(hub_home)[1]
    return {**os.environ, "SCHOOLBOX_TREE": str(HERE / "rootfs"), "SCHOOLBOX_WHEELS": str(wheels),
            "SCHOOLBOX_DISTRICT": str(hub_store.public_keys_path(hub_home)),
            "SCHOOLBOX_MODEL": str(model), "SCHOOLBOX_UPDATE_CERT": str(certificate),
            "SCHOOLBOX_RELEASE": version, **more}  # fmt: skip


def root_filesystem(arch: Arch, root: Path, cache: Path, wheels: Path, hub_home: Path,
                    model: Path, version: str) -> None:  # fmt: skip
    """Debian with the box installed, in the folder `root` (mmdebstrap as root)."""
    apt_cache = cache / f"apt-{arch.debian}"
    apt_cache.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    env = customize_env(wheels, hub_home, model, version)
    run("mmdebstrap", "--mode=root", "--variant=minbase", f"--architectures={arch.debian}",
        "--include=" + ",".join(packages(arch)),
        # Downloads are kept between builds (mmdebstrap(1), "--skip=download/empty").
        "--skip=download/empty", "--skip=essential/unlink",
        '--setup-hook=mkdir -p "$1"/var/cache/apt/archives',
        f'--setup-hook=sync-in {apt_cache} /var/cache/apt/archives',
        f'--customize-hook=sync-out /var/cache/apt/archives {apt_cache}',
        '--customize-hook=rm -f "$1"/var/cache/apt/archives/*.deb',
        f'--customize-hook={HERE / "recipe" / "customize.sh"} "$1"',
        SUITE, root, *MIRRORS, env=env)  # fmt: skip


def refresh_root(root: Path, wheels: Path, hub_home: Path, model: Path, version: str) -> None:
    """An earlier build's root with this checkout's image/rootfs and schoolbox wheel
    (customize.sh with SCHOOLBOX_REFRESH=1): seconds, not minutes, while working."""
    env = customize_env(wheels, hub_home, model, version, SCHOOLBOX_REFRESH="1")
    run(HERE / "recipe" / "customize.sh", root, env=env)


def boot_loader(root: Path, out: Path) -> Path:
    """The ESP's contents: GRUB as one EFI program with its A/B script, and grubenv with
    slot A good and B empty (RAUC marks B once it installs to it)."""
    esp = out / "esp"
    shutil.rmtree(esp, ignore_errors=True)
    (esp / "EFI" / "BOOT").mkdir(parents=True)
    script = (HERE / "recipe" / "grub.cfg").read_text()
    script = script.replace("@SLOT_A_UUID@", SLOT_A_UUID).replace("@SLOT_B_UUID@", SLOT_B_UUID)
    (root / "tmp" / "grub.cfg").write_text(script)
    modules = "part_gpt fat ext2 linux normal regexp loadenv test echo sleep reboot all_video"
    run("chroot", root, "grub-mkstandalone", "--format=x86_64-efi", f"--modules={modules}",
        "--output=/tmp/BOOTX64.EFI", "boot/grub/grub.cfg=/tmp/grub.cfg")  # fmt: skip
    shutil.move(root / "tmp" / "BOOTX64.EFI", esp / "EFI" / "BOOT" / "BOOTX64.EFI")
    in_root_env = "/tmp/grubenv"  # noqa: S108 - the image root's /tmp, not this machine's
    run("chroot", root, "grub-editenv", in_root_env, "create")
    run("chroot", root, "grub-editenv", in_root_env, "set", "ORDER=A B", "A_OK=1", "A_TRY=0",
        "B_OK=0", "B_TRY=0")  # fmt: skip
    shutil.move(root / "tmp" / "grubenv", esp / "EFI" / "BOOT" / "grubenv")
    (root / "tmp" / "grub.cfg").unlink()
    return esp


def rauc_config(arch: Arch, root: Path) -> None:
    """RAUC's system.conf, naming the slots by the partition UUIDs the disk is made with."""
    text = (HERE / "recipe" / "rauc-system.conf").read_text()
    for key, value in {"@ARCH@": arch.name, "@SLOT_A_UUID@": SLOT_A_UUID,
                       "@SLOT_B_UUID@": SLOT_B_UUID}.items():  # fmt: skip
        text = text.replace(key, value)
    (root / "etc" / "rauc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "rauc" / "system.conf").write_text(text)


def package_list(root: Path) -> list[dict]:
    """What the image holds, SBOM-style: every Debian package and Python distribution."""
    fields = "${Package}\t${Version}\t${Architecture}\n"
    listed = subprocess.run(["chroot", str(root), "dpkg-query", "-W", "-f", fields],
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    found = [{"type": "deb", "name": n, "version": v, "arch": a}
             for n, v, a in (line.split("\t") for line in listed.splitlines())]  # fmt: skip
    wheels = subprocess.run(
        ["chroot", str(root), "/opt/schoolbox/.venv/bin/python", "-m", "pip", "list",
         "--format=json"], check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found += [{"type": "pypi", "name": wheel["name"], "version": wheel["version"]}
              for wheel in json.loads(wheels)]  # fmt: skip
    return found


def root_partition(root: Path, out: Path) -> Path:
    """The root filesystem as an ext4 file, made from the folder (mke2fs -d, no mount).
    No journal: it is never written on the box."""
    image = out / "root.ext4"
    image.unlink(missing_ok=True)
    run("mke2fs", "-q", "-t", "ext4", "-O", "^has_journal", "-L", "schoolbox-root",
        "-E", "root_owner=0:0", "-d", root, image, f"{ROOT_SLOT_MB}M")  # fmt: skip
    return image


def disk(arch: Arch, out: Path, esp: Path, root_image: Path) -> Path:
    """ESP, root slot A (this build), root slot B (empty until the first update), as one
    GPT disk file (genimage). The data partition is made on the box at first boot."""
    name = f"schoolbox-{arch.name}.img"
    config = out / "genimage.cfg"
    config.write_text(f"""
image esp.vfat {{
    vfat {{ label = "SCHOOLBOX" }}
    mountpoint = "/"
    size = {ESP_MB}M
}}
image {name} {{
    hdimage {{ partition-table-type = "gpt" }}
    partition esp {{
        image = "esp.vfat"
        partition-type-uuid = "U"
        offset = 1M
    }}
    partition root-a {{
        image = "{root_image}"
        partition-type-uuid = "{arch.root_type}"
        partition-uuid = "{SLOT_A_UUID}"
    }}
    partition root-b {{
        partition-type-uuid = "{arch.root_type}"
        partition-uuid = "{SLOT_B_UUID}"
        size = {ROOT_SLOT_MB}M
    }}
}}
""")
    tmp = out / "genimage-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    run("genimage", "--config", config, "--rootpath", esp, "--tmppath", tmp,
        "--inputpath", out, "--outputpath", out)  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)
    return out / name


def publish(image: Path, packages_in: list[dict], hub_home: Path, compress: bool,
            bundle: Path) -> dict:  # fmt: skip
    """The files district IT downloads: the image (xz), the same system as an update bundle,
    the package list, their sha256 and the district's signature over each (sync/release.py)."""
    files = [image]
    if compress:
        run("xz", "--threads=0", "-6", "--keep", "--force", image)
        files = [image.with_name(image.name + ".xz")]
    sbom = image.with_name(image.name.replace(".img", ".packages.json"))
    sbom.write_text(json.dumps(packages_in, indent=1) + "\n")
    sums = {path.name: sha256_of(path) for path in [*files, bundle, sbom]}
    image.with_name(image.name + ".sha256").write_text(
        "".join(f"{digest}  {name}\n" for name, digest in sums.items())
    )
    district = hub_store.district_keys(hub_home)
    release.sign(district, [*files, bundle, sbom], image.with_name(image.name + release.SUFFIX))
    return sums


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="x86_64", choices=sorted(ARCHES))
    parser.add_argument("--hub-home", type=Path, required=True,
                        help="The district hub's home: its public keys go into the image, "
                             "its private key signs the image.")  # fmt: skip
    parser.add_argument("--out", type=Path, default=CHECKOUT / "build" / "image")
    parser.add_argument("--cache", type=Path,
                        default=Path.home() / ".cache" / "schoolbox" / "image")  # fmt: skip
    parser.add_argument("--no-compress", action="store_true", help="Leave the .img as it is.")
    parser.add_argument("--refresh", action="store_true",
                        help="Reuse the last build's Debian root; reinstall only schoolbox "
                             "and image/rootfs (quick, while working on the image).")  # fmt: skip
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("building an image needs root (mmdebstrap --mode=root, chroot)")
    arch = ARCHES[args.arch]
    out = args.out / arch.name
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def step(name, function, *step_args):
        started = time.monotonic()
        result = function(*step_args)
        timings[name] = round(time.monotonic() - started, 1)
        return result

    model_cache = Path(os.environ.get("SCHOOLBOX_MODEL_CACHE", args.cache.parent / "models"))
    model = step("default model", default.fetch, model_cache)
    wheels = step("wheelhouse", wheelhouse, arch, args.cache)
    root = out / "root"
    version = release_version()
    if args.refresh and (root / "opt" / "schoolbox" / ".venv").is_dir():
        step("root refreshed", refresh_root, root, wheels, args.hub_home, model, version)
    else:
        step("root filesystem", root_filesystem, arch, root, args.cache, wheels, args.hub_home,
             model, version)  # fmt: skip
    esp = step("boot loader", boot_loader, root, out)
    step("update slots", rauc_config, arch, root)
    listed = step("package list", package_list, root)
    root_image = step("root partition", root_partition, root, out)
    image = step("disk", disk, arch, out, esp, root_image)
    bundle = out / f"schoolbox-{arch.name}-{version}.raucb"
    for old in [*out.glob("*.raucb"), *out.glob("*.raucb.content")]:  # earlier builds'
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    step("update bundle", update.bundle, root_image, f"schoolbox-{arch.name}", version,
         args.hub_home, bundle)  # fmt: skip
    sums = step("publish", publish, image, listed, args.hub_home, not args.no_compress, bundle)
    root_mb = subprocess.run(["du", "-sm", str(root)], check=True, capture_output=True,
                             text=True).stdout.split()[0]  # fmt: skip
    report = {"arch": arch.name, "image": str(image), "release": version, "bundle": str(bundle),
              "bundle_mb": round(bundle.stat().st_size / 1e6), "files": sums, "seconds": timings,
              "installed_root_mb": int(root_mb)}  # fmt: skip
    (out / "build.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
