"""The arm64 image (Raspberry Pi 4), built from the same recipe as the PC's, on qemu's
virt machine with a Pi 4's CPU: UEFI starts GRUB from the MBR's FAT partition as U-Boot
does on the board, the box provisions itself from a signed site file, grows the data
partition it carries into the rest of the card, and serves; a learner practises and the
box reaches out to no one.

Needs the arm64 image: `make image-test-arm64` builds it and runs this (emulating arm64
on this x86-64 host is slow, so neither `make test` nor `make image-test` runs it).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from image import qemu
from tests.image.machines import (
    BOOT_TIMEOUT_S,
    boot,
    claim,
    no_connection_of_its_own,
    site_file,
    ssh_key,
    ssh_when_up,
)
from tests.over_http import answers_seen_by_teacher, practise, set_up_a_class

pytestmark = [pytest.mark.image, pytest.mark.arm64, pytest.mark.slow]
ARM64_BOOT_TIMEOUT_S = 3 * BOOT_TIMEOUT_S  # arm64 emulated on x86-64 is a few times slower


def test_the_arm64_image_provisions_itself_grows_its_data_and_serves(tmp_path):
    key = ssh_key(tmp_path)
    box = boot(tmp_path, site_file(tmp_path, admin_ssh_key=key.with_suffix(".pub")),
               arch="aarch64")  # fmt: skip
    try:
        box.wait_for("/healthz", ARM64_BOOT_TIMEOUT_S)
        found = ssh_when_up(box, key, "uname -m; cat /proc/cmdline; findmnt -no SOURCE,SIZE /var")
        machine, cmdline, var = found.stdout.splitlines()[:3]
        assert machine == "aarch64" and "rauc.slot=A" in cmdline, found.stdout
        # /var is the data partition the image carried, grown from 64 MB into the card.
        assert var.split()[0].endswith("4") and var.split()[1].endswith("G"), found.stdout
        admin = claim(box)
        room = set_up_a_class(box.base, admin)
        practise(box.base, room.learner, 3)
        assert answers_seen_by_teacher(box.base, room.teacher, room.learner_id) == 3
    finally:
        box.stop()
    report = json.loads(qemu.read_esp_file(box.disk, "schoolbox-setup.txt") or b"{}")
    assert report["site_name"] == "Hill Primary"
    table = json.loads(subprocess.run(["sfdisk", "--json", str(box.disk)], check=True,
                                      capture_output=True, text=True).stdout)  # fmt: skip
    partitions = table["partitiontable"]["partitions"]
    assert table["partitiontable"]["label"] == "dos" and len(partitions) == 4
    assert partitions[-1]["size"] * 512 > (qemu.DATA_ROOM_GB - 1) << 30
    no_connection_of_its_own(tmp_path)
