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
import re
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
LLAMA_VERSION = "0.3.36"  # as the Makefile's
# The slots' partition UUIDs: fixed, so GRUB, the kernel's root= and RAUC's system.conf
# name the same partitions on every box.
SLOT_A_UUID = "6b1f1a36-5c1e-4c57-9a3e-0d5f6c0a0a01"
SLOT_B_UUID = "6b1f1a36-5c1e-4c57-9a3e-0d5f6c0a0b02"
ROOT_SLOT_MB = 3072  # each of A and B; the root filesystem is about half of it
ESP_MB = 64
DATA_SEED_MB = 64  # the data partition an MBR image carries, until first boot grows it


@dataclass(frozen=True)
class Arch:
    name: str  # uname -m
    debian: str  # dpkg's name
    root_type: str  # the GPT partition type of its root (the Discoverable Partitions Spec)
    table: str  # the partition table: "gpt" (a PC's UEFI) or "mbr" (a Raspberry Pi's firmware)
    grub_format: str  # grub-mkstandalone's --format
    efi_program: str  # the name UEFI starts from EFI/BOOT/ without a boot entry
    console: str  # the serial console: the PC's COM1; the Pi's and qemu virt's PL011 UART
    cross: str = ""  # the GNU triplet of the cross compiler, where this build machine is not one

    @property
    def grub_partmap(self) -> str:
        """GRUB's name for the partition table (its module is part_<name>)."""
        return "msdos" if self.table == "mbr" else "gpt"


ARCHES = {
    "x86_64": Arch(
        name="x86_64",
        debian="amd64",
        root_type="4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        table="gpt",
        grub_format="x86_64-efi",
        efi_program="BOOTX64.EFI",
        console="ttyS0",
    ),
    # Raspberry Pi 4 (and qemu's virt machine): the Pi's firmware starts U-Boot, whose UEFI
    # starts the same GRUB A/B script as on a PC (docs/image.md, "Raspberry Pi").
    "aarch64": Arch(
        name="aarch64",
        debian="arm64",
        root_type="b921b045-1df0-41c3-af44-4c6f280d3fae",
        table="mbr",
        grub_format="arm64-efi",
        efi_program="BOOTAA64.EFI",
        console="ttyAMA0",
        cross="aarch64-linux-gnu",
    ),
}
# An MBR names partitions by the disk's signature and their number: fixed, as the GPT's
# UUIDs are (the firmware partition, root A, root B, the data partition).
MBR_SIGNATURE = "5c4b0a01"


def slot_uuids(arch: Arch) -> tuple[str, str]:
    """Root slots A and B as the kernel's root=PARTUUID= and /dev/disk/by-partuuid name them."""
    if arch.table == "mbr":
        return f"{MBR_SIGNATURE}-02", f"{MBR_SIGNATURE}-03"
    return SLOT_A_UUID, SLOT_B_UUID


def mirrors(arch: Arch) -> list[str]:
    """Debian's archive: main, and for a Pi also non-free-firmware, where the Pi's boot
    firmware is (raspi-firmware: redistributable, not free)."""
    components = "main non-free-firmware" if arch.table == "mbr" else "main"
    return [
        f"deb http://deb.debian.org/debian {SUITE} {components}",
        f"deb http://deb.debian.org/debian {SUITE}-updates {components}",
        f"deb http://deb.debian.org/debian-security {SUITE}-security {components}",
    ]


def run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess:
    """Run a build tool; its output goes to the build's log (stdout)."""
    print("+", " ".join(map(str, command)), flush=True)
    return subprocess.run([str(part) for part in command], check=True, **kwargs)


def wheelhouse(arch: Arch, cache: Path) -> Path:
    """Every wheel the box installs: llama-cpp-python built once for any CPU of the
    architecture (GGML_NATIVE off: on x86-64 AVX2 and FMA, on arm64 plain ARMv8, which a
    Pi 4 runs; not this build machine's own instructions), and the rest from PyPI;
    cached, so a rebuild downloads nothing."""
    wheels = cache / f"wheels-{arch.name}"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob(f"llama_cpp_python-{LLAMA_VERSION}-*.whl")):
        llama_wheel(arch, wheels)
    for old in wheels.glob("schoolbox-*.whl"):
        old.unlink()  # this checkout's, always
    if not arch.cross:
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", wheels,
            "--find-links", wheels, f"{CHECKOUT}[federated]")  # fmt: skip
        return wheels
    cross_wheels(arch, wheels)
    return wheels


def cross_wheels(arch: Arch, wheels: Path) -> None:
    """The wheels for another architecture: schoolbox itself (pure Python), and PyPI's
    wheels for that architecture and the box's Python (Debian 12: CPython 3.11). pip
    would judge the requirements' markers (torch's, by platform_machine) by this
    machine, so uv resolves them for the box, and pip fetches exactly that list."""
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels,
        CHECKOUT)  # fmt: skip
    (ours,) = wheels.glob("schoolbox-*.whl")
    wanted = wheels / "requirements.in"
    wanted.write_text(f"schoolbox[federated] @ {ours.as_uri()}\n")
    resolved = wheels / "requirements.txt"
    run(Path(sys.executable).with_name("uv"), "pip", "compile", "--quiet", "--system-certs",
        "--python-platform", f"{arch.name}-manylinux_2_36", "--python-version", "3.11",
        "--find-links", wheels, "--no-header", "--no-annotate", "--output-file", resolved,
        wanted)  # fmt: skip
    pins = [line for line in resolved.read_text().splitlines()
            if "==" in line and not line.startswith(("schoolbox", "llama-cpp-python"))]  # fmt: skip
    # pip takes --platform literally: every manylinux tag Debian 12's glibc 2.36 runs.
    platforms = [f"manylinux_2_{minor}_{arch.name}" for minor in range(17, 37)]
    platforms += [f"manylinux2014_{arch.name}", f"linux_{arch.name}"]
    run(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        *(option for tag in platforms for option in ("--platform", tag)),
        "--python-version", "3.11", "--implementation", "cp", "--dest", wheels, *pins)  # fmt: skip
    wanted = {wheel_key(*pin.split("==")) for pin in pins}
    for path in wheels.glob("*.whl"):  # an earlier resolution's: never copied into the image
        built_here = path.name.startswith(("schoolbox-", "llama_cpp_python-"))
        if not built_here and wheel_key(*path.name.split("-")[:2]) not in wanted:
            path.unlink()


def wheel_key(name: str, version: str) -> tuple[str, str]:
    """A distribution as a pin and a wheel's file name both spell it (PEP 503 and 427)."""
    return re.sub(r"[-_.]+", "_", name).lower(), version


def llama_wheel(arch: Arch, wheels: Path) -> None:
    """llama-cpp-python's wheel: built here, or for another architecture with Debian's
    cross compiler (it is a ctypes binding: libraries, no CPython extension to cross-build)."""
    cmake = "-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"
    env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1)}
    if arch.cross:
        cmake += (
            f" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR={arch.name}"
            f" -DCMAKE_C_COMPILER={arch.cross}-gcc -DCMAKE_CXX_COMPILER={arch.cross}-g++"
        )
        env["_PYTHON_HOST_PLATFORM"] = f"linux_{arch.name}"  # scikit-build-core's wheel tag
    env["CMAKE_ARGS"] = cmake
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir",
        f"llama-cpp-python=={LLAMA_VERSION}", "-w", wheels, env=env)  # fmt: skip


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
        *initramfs_hooks(arch),
        f'--setup-hook=sync-in {apt_cache} /var/cache/apt/archives',
        f'--customize-hook=sync-out /var/cache/apt/archives {apt_cache}',
        '--customize-hook=rm -f "$1"/var/cache/apt/archives/*.deb',
        f'--customize-hook={HERE / "recipe" / "customize.sh"} "$1"',
        SUITE, root, *mirrors(arch), env=env)  # fmt: skip


def initramfs_hooks(arch: Arch) -> list[str]:
    """mmdebstrap setup hooks that put the initramfs's module list in place before the
    kernel's package builds it (image/recipe/initramfs/): only where there is a list."""
    modules = HERE / "recipe" / "initramfs" / f"modules-{arch.name}"
    if not modules.exists():
        return []
    return [
        '--setup-hook=mkdir -p "$1"/etc/initramfs-tools/conf.d '
        '"$1"/usr/share/initramfs-tools/modules.d',
        f"--setup-hook=upload {HERE / 'recipe' / 'initramfs' / 'schoolbox.conf'} "
        "/etc/initramfs-tools/conf.d/schoolbox.conf",
        f"--setup-hook=upload {modules} /usr/share/initramfs-tools/modules.d/schoolbox",
    ]


def refresh_root(root: Path, wheels: Path, hub_home: Path, model: Path, version: str) -> None:
    """An earlier build's root with this checkout's image/rootfs and schoolbox wheel
    (customize.sh with SCHOOLBOX_REFRESH=1): seconds, not minutes, while working."""
    env = customize_env(wheels, hub_home, model, version, SCHOOLBOX_REFRESH="1")
    run(HERE / "recipe" / "customize.sh", root, env=env)


def boot_loader(arch: Arch, root: Path, out: Path) -> Path:
    """The ESP's contents (on a Pi, the firmware partition's): GRUB as one EFI program with
    its A/B script, and grubenv with slot A good and B empty (RAUC marks B once it
    installs to it); on a Pi also its firmware, device trees and U-Boot."""
    esp = out / "esp"
    shutil.rmtree(esp, ignore_errors=True)
    (esp / "EFI" / "BOOT").mkdir(parents=True)
    (root / "tmp" / "grub.cfg").write_text(grub_script(arch))
    modules = (f"part_{arch.grub_partmap} fat ext2 linux normal regexp loadenv test echo sleep"
               " reboot all_video")  # fmt: skip
    run("chroot", root, "grub-mkstandalone", f"--format={arch.grub_format}",
        f"--modules={modules}", f"--output=/tmp/{arch.efi_program}",
        "boot/grub/grub.cfg=/tmp/grub.cfg")  # fmt: skip
    shutil.move(root / "tmp" / arch.efi_program, esp / "EFI" / "BOOT" / arch.efi_program)
    in_root_env = "/tmp/grubenv"  # noqa: S108 - the image root's /tmp, not this machine's
    run("chroot", root, "grub-editenv", in_root_env, "create")
    run("chroot", root, "grub-editenv", in_root_env, "set", "ORDER=A B", "A_OK=1", "A_TRY=0",
        "B_OK=0", "B_TRY=0")  # fmt: skip
    shutil.move(root / "tmp" / "grubenv", esp / "EFI" / "BOOT" / "grubenv")
    (root / "tmp" / "grub.cfg").unlink()
    if arch.table == "mbr":
        raspberry_pi_firmware(root, esp)
    return esp


def grub_script(arch: Arch) -> str:
    """image/recipe/grub.cfg for this architecture's disk: its slots, partition map and
    serial console."""
    slot_a, slot_b = slot_uuids(arch)
    script = (HERE / "recipe" / "grub.cfg").read_text()
    for key, value in {"@SLOT_A_UUID@": slot_a, "@SLOT_B_UUID@": slot_b,
                       "@PARTMAP@": arch.grub_partmap,
                       "@CONSOLE@": arch.console}.items():  # fmt: skip
        script = script.replace(key, value)
    return script


def raspberry_pi_firmware(root: Path, esp: Path) -> None:
    """What a Raspberry Pi 4's boot ROM and firmware read from the first FAT partition:
    the firmware (raspi-firmware), the board's device trees (Debian's kernel), U-Boot
    (u-boot-rpi) and config.txt, which starts U-Boot."""
    for name in ("start4.elf", "fixup4.dat"):
        shutil.copy(root / "usr" / "lib" / "raspi-firmware" / name, esp / name)
    (kernel_dtbs,) = (root / "usr" / "lib").glob("linux-image-*-arm64")
    for tree in (kernel_dtbs / "broadcom").glob("bcm2711-*.dtb"):
        shutil.copy(tree, esp / tree.name)
    shutil.copy(root / "usr" / "lib" / "u-boot" / "rpi_arm64" / "u-boot.bin", esp / "u-boot.bin")
    shutil.copy(HERE / "recipe" / "raspi-config.txt", esp / "config.txt")


def mbr_board_files(root: Path) -> None:
    """board()'s changes to files: fstab, the data partition's definition, crypttab, and
    the initramfs script that grows the data partition (image/recipe/initramfs/)."""
    fstab = root / "etc" / "fstab"
    text = fstab.read_text().replace("PARTLABEL=esp ", f"PARTUUID={MBR_SIGNATURE}-01")
    text = text.replace("/dev/disk/schoolbox-var   /var", f"PARTUUID={MBR_SIGNATURE}-04 /var")
    fstab.write_text(text)
    (root / "usr" / "lib" / "repart.d" / "50-schoolbox-data.conf").unlink(missing_ok=True)
    (root / "etc" / "crypttab").write_text(
        "# No encrypted volume: this board has no TPM2 to seal a key with (docs/image.md).\n"
    )
    recipe = HERE / "recipe" / "initramfs"
    for part in ("hooks", "scripts/local-premount"):
        (root / "etc" / "initramfs-tools" / part).mkdir(parents=True, exist_ok=True)
        shutil.copy(recipe / part / "schoolbox-grow-data",
                    root / "etc" / "initramfs-tools" / part / "schoolbox-grow-data")  # fmt: skip


def board(arch: Arch, root: Path) -> None:
    """What differs on a board whose disk has an MBR (a Raspberry Pi): the firmware
    partition named by number, a data partition that the image carries and the initramfs
    grows at first boot (systemd-repart makes it only on GPT), and no TPM2 to seal it."""
    if arch.table != "mbr":
        return
    mbr_board_files(root)
    run("chroot", root, "systemctl", "disable", "schoolbox-data-encrypt.service")
    # raspi-firmware's hooks copy every new kernel and initramfs to /boot/firmware, for
    # a Pi whose firmware starts Linux itself; here U-Boot and GRUB start it from the
    # slot, and the firmware partition is made by image/build.py alone.
    for hook in ("kernel/postinst.d", "kernel/postrm.d", "initramfs/post-update.d"):
        (root / "etc" / hook / "z50-raspi-firmware").unlink(missing_ok=True)
    shutil.rmtree(root / "boot" / "firmware", ignore_errors=True)
    run("chroot", root, "update-initramfs", "-u", "-k", "all")


def rauc_config(arch: Arch, root: Path) -> None:
    """RAUC's system.conf, naming the slots by the partition UUIDs the disk is made with."""
    text = (HERE / "recipe" / "rauc-system.conf").read_text()
    slot_a, slot_b = slot_uuids(arch)
    for key, value in {"@ARCH@": arch.name, "@SLOT_A_UUID@": slot_a,
                       "@SLOT_B_UUID@": slot_b}.items():  # fmt: skip
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
    disk file (genimage). On GPT the data partition is made on the box at first boot; on
    an MBR (a Pi) the image carries a small one that first boot grows."""
    name = f"schoolbox-{arch.name}.img"
    config = out / "genimage.cfg"
    config.write_text(mbr_layout(out, name, root_image) if arch.table == "mbr"
                      else gpt_layout(arch, name, root_image))  # fmt: skip
    tmp = out / "genimage-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    run("genimage", "--config", config, "--rootpath", esp, "--tmppath", tmp,
        "--inputpath", out, "--outputpath", out)  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)
    return out / name


# The ESP (on a Pi, the firmware partition) as genimage makes it from image/build.py's
# esp folder: the same on both partition tables.
ESP_GENIMAGE = f"""
image esp.vfat {{
    vfat {{ label = "SCHOOLBOX" }}
    mountpoint = "/"
    size = {ESP_MB}M
}}"""


def gpt_layout(arch: Arch, name: str, root_image: Path) -> str:
    return f"""{ESP_GENIMAGE}
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
"""


def mbr_layout(out: Path, name: str, root_image: Path) -> str:
    """A Pi's card: the firmware partition first (FAT32, the only kind its boot ROM
    reads), the two root slots, then a small empty data partition that first boot grows."""
    data = out / "data.ext4"
    data.unlink(missing_ok=True)
    run("mke2fs", "-q", "-t", "ext4", "-L", "schoolbox-data", data, f"{DATA_SEED_MB}M")
    return f"""{ESP_GENIMAGE}
image {name} {{
    hdimage {{
        partition-table-type = "mbr"
        disk-signature = 0x{MBR_SIGNATURE}
    }}
    partition firmware {{
        image = "esp.vfat"
        partition-type = 0x0C
        bootable = true
        offset = 1M
    }}
    partition root-a {{
        image = "{root_image}"
        partition-type = 0x83
    }}
    partition root-b {{
        partition-type = 0x83
        size = {ROOT_SLOT_MB}M
    }}
    partition data {{
        image = "{data}"
        partition-type = 0x83
    }}
}}
"""


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
    step("board", board, arch, root)
    esp = step("boot loader", boot_loader, arch, root, out)
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
