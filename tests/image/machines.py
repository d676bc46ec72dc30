"""What the image tests share: the built image, the test district, a signed site file, a
booted box, and its first admin (tests/image/test_boot.py, test_update.py)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from appliance.cli import main
from image import netaudit, qemu
from tests.over_http import post_form

ROOT = Path(__file__).resolve().parents[2]
IMAGE = Path(os.environ.get("SCHOOLBOX_IMAGE", ROOT / "build/image/x86_64/schoolbox-x86_64.img"))
IMAGE_ARM64 = ROOT / "build/image/aarch64/schoolbox-aarch64.img"
# The district whose public keys the image carries (make image-test makes a test one).
DISTRICT = Path(os.environ.get("SCHOOLBOX_IMAGE_HUB_HOME", ROOT / "build/test-district"))
BOOT_TIMEOUT_S = 900  # qemu without KVM on 2 cores; bench/image.py measures the real figure
ADMIN = ("head", "kiboko-ndogo-juu-7")
WIFI_PASSPHRASE = "tembo-kubwa-42"  # the site file's


def site_file(folder: Path, name: str = "schoolbox-site.json",
              admin_ssh_key: Path | None = None, wifi_mode: str = "join",
              hub_url: str | None = None) -> Path:  # fmt: skip
    """A site file signed by the test district; with `hub_url`, the box syncs with that
    hub (and the school has switched sync on)."""
    out = folder / name
    ssh = ["--admin-ssh-key", str(admin_ssh_key)] if admin_ssh_key else []
    ssh += ["--hub-url", hub_url, "--consent", "sync"] if hub_url else []
    result = CliRunner().invoke(main, [
        "image", "site-file", "--hub-home", str(DISTRICT), "--school-id", "hill-primary",
        "--site-name", "Hill Primary", "--wifi-mode", wifi_mode, "--ssid", "Hill Staff",
        "--passphrase", WIFI_PASSPHRASE, "--country", "KE", "--consent", "tutor",
        "--out", str(out), *ssh,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def boot(work: Path, site: Path | None, tpm: bool = False, arch: str = "x86_64",
         hub_port: int | None = None) -> qemu.Machine:  # fmt: skip
    """A fresh copy of the image, with `site` on its ESP (and a TPM2 chip), powered on;
    every packet on its network is captured (work/box*.pcap), for
    `no_connection_of_its_own`. arch "aarch64": the Pi's image on qemu's virt machine.
    `hub_port`: a hub on the host's loopback, which the box reaches at qemu.HUB_ADDRESS."""
    image = IMAGE if arch == "x86_64" else IMAGE_ARM64
    if not image.is_file():
        target = "image-test" if arch == "x86_64" else "image-test-arm64"
        pytest.fail(f"No image at {image}: run `make {target}`, which builds it first.")
    disk = qemu.prepare_disk(image, work, site)
    kvm = os.environ.get("SCHOOLBOX_IMAGE_KVM") == "1" and qemu.kvm_usable() and arch == "x86_64"
    return qemu.Machine(disk, work, accel="kvm" if kvm else "tcg", capture=work / "box.pcap",
                        tpm=tpm, arch=arch, hub_port=hub_port).start()  # fmt: skip


def no_connection_of_its_own(work: Path, hub: str | None = None) -> None:
    """The privacy check, on the image: over every boot captured in `work`, the box sent
    nothing but answers and the local network's plumbing (image/netaudit.py)."""
    captures = sorted(work.glob("box*.pcap"))
    assert captures, f"nothing was captured in {work}"
    sent = [packet for capture in captures for packet in netaudit.sent_by_guest(capture)]
    assert sent, "the capture holds none of the box's packets: is the filter on its NIC?"
    assert netaudit.unexpected(sent, hub=hub) == [], "the box tried to reach out"


def ssh_key(folder: Path) -> Path:
    """A district IT admin's key pair; returns the private key (the public one beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "admin_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "it@district",
                    "-f", str(key)], check=True)  # fmt: skip
    return key


def ssh(box: qemu.Machine, key: Path | None, command: str, *options: str):
    """`command` on the box over SSH as root (its forwarded :22); the finished process."""
    identity = ["-i", str(key)] if key else []
    return subprocess.run(
        ["ssh", *identity, "-p", str(box.ssh_port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30",
         *options, "root@127.0.0.1", command],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def ssh_when_up(box: qemu.Machine, key: Path, command: str, timeout_s: float = 300):
    """`command` over SSH once the box's sshd answers (it starts once the box has made its
    host keys); the finished process."""
    deadline = time.monotonic() + timeout_s
    while (found := ssh(box, key, command)).returncode != 0:
        assert time.monotonic() < deadline, found.stderr
        time.sleep(10)
    return found


def ssh_until(box: qemu.Machine, key: Path, command: str, expected: str,
              timeout_s: float = 120) -> str:  # fmt: skip
    """`command`'s output over SSH once it holds `expected` (tried every 3 s)."""
    deadline = time.monotonic() + timeout_s
    while expected not in (found := ssh(box, key, command)).stdout:
        assert time.monotonic() < deadline, f"{command}: {found.stdout}{found.stderr}"
        time.sleep(3)
    return found.stdout


@contextmanager
def box_with_radios(work: Path, wifi_mode: str) -> Iterator[qemu.Machine]:
    """A box provisioned for Wi-Fi `wifi_mode` with an admin's SSH key (`admin_key`),
    serving, with two simulated radios that hear each other (mac80211_hwsim: qemu has no
    radio); stopped afterwards (tests/image/test_wifi.py, test_wifi_join.py)."""
    key = ssh_key(work)
    site = site_file(work, admin_ssh_key=key.with_suffix(".pub"), wifi_mode=wifi_mode)
    machine = boot(work, site)
    machine.admin_key = key  # type: ignore[attr-defined]
    try:
        machine.wait_for("/healthz", BOOT_TIMEOUT_S)
        ssh_when_up(machine, key, "modprobe mac80211_hwsim radios=2")
        yield machine
    finally:
        machine.stop()


def second_radio_into(namespace: str) -> str:
    """Shell that moves the second radio (wlan1) into network namespace `namespace` (once),
    so that its traffic goes over the air to the box, not through the box's loopback."""
    return f"""
set -e
if ! ip netns list | grep -qw {namespace}; then
  phy=$(basename $(readlink /sys/class/net/wlan1/phy80211))
  ip netns add {namespace}
  iw phy "$phy" set netns name {namespace}
  ip netns exec {namespace} ip link set lo up
fi
ip netns exec {namespace} ip link set wlan1 up
"""


def claim(box: qemu.Machine) -> requests.Session:
    """The first admin claims the box with the setup code it left on its ESP."""
    report = json.loads(qemu.read_esp_file(box.disk, "schoolbox-setup.txt"))
    admin = requests.Session()
    r = post_form(admin, box.base, "/setup", "/setup", {
        "code": report["admin_setup_code"], "display_name": "Head Teacher",
        "username": ADMIN[0], "password": ADMIN[1], "password_again": ADMIN[1]})  # fmt: skip
    assert r.status_code == 200 and "/admin" in r.url, r.text[:2000]
    return admin
