"""A built image, booted under qemu the way a box boots it: UEFI (OVMF), its own disk with
room for the data partition, the site file on its ESP, a USB stick if one is given, and
the box's port 80 (and 22, for SSH where the site file allows it) forwarded to loopback
ports of this machine. The image tests (tests/image/) and bench/image.py drive it;
nothing here runs on a box.

The guest's network is qemu's user-mode network with `restrict=on`: the box can reach
nothing but the host's forwarded ports, so nothing it does can leave this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Each architecture's UEFI firmware (Debian's ovmf and qemu-efi-aarch64), its machine, and
# the CPU it is emulated as: for arm64 a Pi 4's Cortex-A72, so that what runs here runs on
# the board (no instruction a Pi 4 lacks), and the fastest to emulate.
FIRMWARE = {
    "x86_64": (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")),
    "aarch64": (Path("/usr/share/AAVMF/AAVMF_CODE.fd"), Path("/usr/share/AAVMF/AAVMF_VARS.fd")),
}
MACHINE = {"x86_64": ("q35", "max"), "aarch64": ("virt", "cortex-a72")}
ESP_OFFSET = 1 << 20  # image/build.py puts the ESP at 1 MiB
# The district hub as a box under qemu sees it (slirp's guestfwd; test_update_from_hub.py).
HUB_ADDRESS = "10.0.2.100"
DATA_ROOM_GB = 6  # free space after the image's partitions, for the data partition


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def prepare_disk(image: Path, work: Path, site_file: Path | None) -> Path:
    """A writable copy of `image` (sparse: quick), grown so first boot finds free space,
    with the site file put on its ESP (mtools: no mount)."""
    disk = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    with disk.open("r+b") as out:
        out.truncate(disk.stat().st_size + (DATA_ROOM_GB << 30))
    if site_file is not None:
        subprocess.run(["mcopy", "-o", "-i", f"{disk}@@{ESP_OFFSET}", str(site_file),
                        "::/schoolbox-site.json"], check=True)  # fmt: skip
    return disk


def read_esp_file(disk: Path, name: str) -> bytes | None:
    """A file from the disk's ESP (the setup report the box leaves for the admin)."""
    result = subprocess.run(["mtype", "-i", f"{disk}@@{ESP_OFFSET}", f"::/{name}"],
                            capture_output=True)  # fmt: skip
    return result.stdout if result.returncode == 0 else None


def data_partition(disk: Path) -> tuple[int, int] | None:
    """Where the box's data partition lies on `disk`: (offset, size) in bytes; None before
    first boot made it."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True,
                                      capture_output=True, text=True).stdout)  # fmt: skip
    found = [p for p in table["partitiontable"]["partitions"] if p.get("name") == "schoolbox-data"]
    return (found[0]["start"] * 512, found[0]["size"] * 512) if found else None


def data_file(disk: Path, path: str) -> str:
    """A file from the box's data partition (mounted at /var on the box), read without
    mounting (debugfs, forgiving a disk whose power was cut): what a failing test shows.
    An encrypted partition (a box with a TPM2) cannot be read this way."""
    where = data_partition(disk)
    if where is None:
        return "(no data partition yet)"
    loop = subprocess.run(["losetup", "--find", "--show", "--read-only",
                           f"--offset={where[0]}", str(disk)],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    try:
        shown = subprocess.run(["debugfs", "-c", "-R", f"cat {path}", loop],
                               capture_output=True, text=True)  # fmt: skip
        return shown.stdout or shown.stderr
    finally:
        subprocess.run(["losetup", "--detach", loop], check=False)


def data_partition_holds(disk: Path, needle: bytes, chunk: int = 16 << 20) -> bool:
    """Whether `needle` is anywhere in the data partition's raw bytes: what someone who
    took the card or disk out of the box could read."""
    where = data_partition(disk)
    if where is None:
        return False
    offset, size = where
    with disk.open("rb") as raw:
        raw.seek(offset)
        tail = b""
        for _ in range(0, size, chunk):
            block = tail + raw.read(chunk)
            if needle in block:
                return True
            tail = block[-len(needle) :]
    return False


def stick(files: list[Path], out: Path) -> Path:
    """A USB stick's image: one FAT file system (no partition table, as many sticks come)
    holding `files` (mtools: no mount)."""
    size_kb = sum(path.stat().st_size for path in files) // 1024 + 32 * 1024
    out.unlink(missing_ok=True)
    subprocess.run(["mkfs.vfat", "-C", "-F", "32", "-n", "UPDATE", str(out), str(size_kb)],
                   check=True, capture_output=True)  # fmt: skip
    for path in files:
        subprocess.run(["mcopy", "-i", str(out), str(path), f"::/{path.name}"], check=True)
    return out


def grubenv(disk: Path) -> dict[str, str]:
    """The boot loader's A/B state on the disk's ESP (GRUB's 1 KiB environment block)."""
    text = read_esp_file(disk, "EFI/BOOT/grubenv") or b""
    pairs = (line.split("=", 1) for line in text.decode().splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


def set_grubenv(disk: Path, work: Path, **changes: str) -> None:
    """Change the ESP's grubenv (e.g. EXTRA kernel parameters), keeping its 1 KiB size."""
    values = {**grubenv(disk), **changes}
    body = "# GRUB Environment Block\n" + "".join(f"{k}={v}\n" for k, v in values.items())
    block = work / "grubenv"
    block.write_bytes(body.encode().ljust(1024, b"#"))
    subprocess.run(["mcopy", "-o", "-i", f"{disk}@@{ESP_OFFSET}", str(block),
                    "::/EFI/BOOT/grubenv"], check=True)  # fmt: skip


@dataclass
class Machine:
    """One running guest: its qemu process, serial log and the loopback port of its :80."""

    disk: Path
    work: Path
    port: int = field(default_factory=free_port)
    ssh_port: int = field(default_factory=free_port)  # the box's :22 (SSH is off unless keyed)
    memory_mb: int = 2048
    cpus: int = 2
    accel: str = "tcg"
    stick: Path | None = None  # a USB stick's image, plugged in from power-on
    capture: Path | None = None  # every frame on the box's network, as a pcap file
    tpm: bool = False  # a TPM2 (swtpm; its state in work/tpm, kept across power cuts)
    arch: str = "x86_64"  # or "aarch64": qemu's virt machine, as close to a Pi as qemu is
    hub_port: int | None = None  # a district hub on the host's loopback, seen at HUB_ADDRESS
    process: subprocess.Popen | None = None
    swtpm: subprocess.Popen | None = None
    started_at: float = 0.0

    @property
    def serial_log(self) -> Path:
        return self.work / "serial.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        code, blank_variables = FIRMWARE[self.arch]
        variables = self.work / "efi-variables.fd"
        if not variables.exists():
            shutil.copy(blank_variables, variables)
        machine, cpu = MACHINE[self.arch]
        cpu = "host" if self.accel == "kvm" else cpu
        return [
            f"qemu-system-{self.arch}", "-machine", f"{machine},accel={self.accel}", "-cpu", cpu,
            "-smp", str(self.cpus), "-m", str(self.memory_mb),
            "-drive", f"if=pflash,format=raw,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,file={variables}",
            # The disk first, whatever else is plugged in (a USB stick must not be booted),
            # and no network boot ROM: the box only ever starts from its own disk.
            "-drive", f"file={self.disk},if=none,id=disk,format=raw,cache=unsafe",
            "-device", "virtio-blk-pci,drive=disk,bootindex=0",
            "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:80,"
                       f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22{self.hub_forward}",
            "-device", "virtio-net-pci,netdev=net0,romfile=",
            "-display", "none", "-monitor", "none", "-nodefaults",
            "-serial", f"file:{self.serial_log}",
        ] + ([] if self.capture is None else [
            "-object", f"filter-dump,id=capture,netdev=net0,file={self.capture}",
        ]) + ([] if not self.tpm else [
            "-chardev", f"socket,id=tpm,path={self.tpm_socket}",
            "-tpmdev", "emulator,id=tpm0,chardev=tpm", "-device", "tpm-tis,tpmdev=tpm0",
        ]) + ([] if self.stick is None else [
            "-device", "qemu-xhci,id=usb",
            "-drive", f"if=none,id=stick,format=raw,file={self.stick}",
            "-device", "usb-storage,bus=usb.0,drive=stick",
        ])  # fmt: skip

    @property
    def hub_forward(self) -> str:
        """The hub's address on the box's network, relayed to the host's loopback (socat,
        once per connection: a chardev would take only the first)."""
        if self.hub_port is None:
            return ""
        return f",guestfwd=tcp:{HUB_ADDRESS}:80-cmd:socat - TCP:127.0.0.1:{self.hub_port}"

    @property
    def tpm_socket(self) -> Path:
        return self.work / "tpm" / "swtpm.sock"

    def start_tpm(self) -> None:
        """The box's TPM2 chip: swtpm, until qemu lets go of it (--terminate)."""
        self.tpm_socket.parent.mkdir(exist_ok=True)
        self.tpm_socket.unlink(missing_ok=True)
        self.swtpm = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--terminate",
             "--tpmstate", f"dir={self.tpm_socket.parent}",
             "--ctrl", f"type=unixio,path={self.tpm_socket}"],
            stdout=subprocess.DEVNULL, stderr=(self.work / "swtpm.log").open("ab"),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self.tpm_socket.exists():
            if self.swtpm.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"swtpm did not start: {(self.work / 'swtpm.log').read_text()}")
            time.sleep(0.1)

    def start(self) -> Machine:
        if self.tpm:
            self.start_tpm()
        self.started_at = time.monotonic()
        if self.capture is not None and self.capture.exists():  # qemu starts a new file
            self.capture.rename(self.capture.with_suffix(f".{time.monotonic_ns()}.pcap"))
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                        stderr=(self.work / "qemu.log").open("ab"))  # fmt: skip
        return self

    def wait_for(self, path: str = "/healthz", timeout_s: float = 600) -> float:
        """Seconds from power-on until `path` answers 200; TimeoutError with the serial log."""
        deadline = self.started_at + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"qemu stopped ({self.process.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.base + path, timeout=5) as response:  # noqa: S310
                    if response.status == 200:
                        return time.monotonic() - self.started_at
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"{path} did not answer in {timeout_s:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 80) -> str:
        try:
            text = self.serial_log.read_text(errors="replace")
        except OSError:
            return "(no serial output)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 120) -> None:
        """Power off: ACPI would need a monitor, so the box is simply switched off, as a
        power cut does (every write the box acknowledged is already on its disk)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        if self.swtpm is not None:  # it ends with qemu's connection; this is in case not
            self.swtpm.terminate()
            self.swtpm.wait(timeout=30)
            self.swtpm = None
