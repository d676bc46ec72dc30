"""The built x86-64 image, booted under qemu with UEFI, as district IT and a school meet it:
it provisions itself from a signed site file on its ESP, the first admin claims it with
the code it left there, a learner practises over the forwarded port, and after a power
cut and a reboot the answers are still there. A tampered site file is refused, and the
box says so on its page.

Needs an image: `make image-test` builds one and runs these (`make test` leaves them
out: they take minutes under qemu without KVM).
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from image import qemu
from tests.image.machines import (
    ADMIN,
    BOOT_TIMEOUT_S,
    boot,
    claim,
    no_connection_of_its_own,
    site_file,
    ssh,
    ssh_key,
    ssh_when_up,
)
from tests.over_http import answers_seen_by_teacher, post_form, practise, set_up_a_class

pytestmark = [pytest.mark.image, pytest.mark.slow]


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    work = tmp_path_factory.mktemp("box")
    key = ssh_key(work)
    machine = boot(work, site_file(work, admin_ssh_key=key.with_suffix(".pub")), tpm=True)
    machine.admin_key = key  # type: ignore[attr-defined]
    try:
        machine.wait_for("/healthz", BOOT_TIMEOUT_S)
        yield machine
    finally:
        machine.stop()


def test_the_box_provisions_itself_and_waits_for_its_first_admin(box):
    page = requests.get(box.base + "/", timeout=30)
    assert page.url.endswith("/setup"), qemu.data_file(box.disk, "/lib/schoolbox/provisioning.json")
    report = json.loads(qemu.read_esp_file(box.disk, "schoolbox-setup.txt") or b"{}")
    assert report["site_name"] == "Hill Primary" and len(report["fingerprint"]) > 10
    # And on the box's own screen (its consoles' login banner; qemu's serial port here).
    deadline = time.monotonic() + 120
    while report["admin_setup_code"] not in box.serial_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, box.tail()
        time.sleep(2)
    assert report["fingerprint"] in box.serial_log.read_text(errors="replace")
    assert qemu.read_esp_file(box.disk, "schoolbox-setup.txt") is not None


def test_district_it_reaches_it_over_ssh_with_the_site_files_key_and_nothing_else(box):
    command = ("cat /proc/cmdline; /opt/schoolbox/.venv/bin/schoolbox --home /var/lib/schoolbox "
               "os-update status")  # fmt: skip
    found = ssh_when_up(box, box.admin_key, command)
    assert "rauc.slot=A" in found.stdout and "Booted from slot A" in found.stdout
    # Keys only: no password is even asked for, and no other key gets in.
    password = ssh(
        box, None, "true", "-o", "PreferredAuthentications=password,keyboard-interactive"
    )
    assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr
    other = ssh_key(box.work / "other")
    assert ssh(box, other, "true").returncode == 255


def test_the_first_admin_claims_it_and_a_learner_practises_then_a_reboot_keeps_it(box):
    base = box.base
    admin = claim(box)
    room = set_up_a_class(base, admin)
    practise(base, room.learner, 3)
    assert answers_seen_by_teacher(base, room.teacher, room.learner_id) == 3

    box.stop()  # a power cut: every acknowledged answer is already on the data partition
    box.start()
    box.wait_for("/healthz", BOOT_TIMEOUT_S)
    teacher = requests.Session()
    post_form(teacher, base, "/signin/staff", "/signin/staff",
              {"username": "amina", "password": "teach-fractions"})  # fmt: skip
    assert answers_seen_by_teacher(base, teacher, room.learner_id) == 3
    # Provisioned once: the setup page is gone, and the code no longer works.
    assert not requests.get(base + "/", timeout=30).url.endswith("/setup")


def test_its_data_is_luks2_opened_by_its_tpm_alone_and_noise_on_the_disk_itself(box):
    # After the reboot above: the TPM2 opened the volume again with nobody typing anything.
    found = ssh_when_up(box, box.admin_key, "findmnt -no SOURCE /var; "
                        "cryptsetup luksDump /dev/disk/by-partlabel/schoolbox-data")  # fmt: skip
    assert found.stdout.splitlines()[0] == "/dev/mapper/schoolbox-data", found.stdout
    assert "systemd-tpm2" in found.stdout, found.stdout
    assert re.search(r"tpm2-hash-pcrs:\s+7$", found.stdout, re.MULTILINE), found.stdout
    keyslots = re.findall(r"^\s+(\d+): luks2$", found.stdout, re.MULTILINE)
    assert len(keyslots) == 1, found.stdout  # the TPM2's: no passphrase anyone could guess
    admin = requests.Session()
    post_form(admin, box.base, "/signin/staff", "/signin/staff",
              {"username": ADMIN[0], "password": ADMIN[1]})  # fmt: skip
    status = admin.get(box.base + "/admin/", timeout=60).text
    assert "encrypted (LUKS2), opened by this box's TPM2 chip" in status
    # The card or disk alone, taken out of the box: the school's name is in its database
    # and in every log, and nowhere to be read.
    assert not qemu.data_partition_holds(box.disk, b"Hill Primary")
    assert not qemu.data_partition_holds(box.disk, b"hill-primary")


def test_a_tampered_site_file_sets_nothing_up_and_the_box_says_why(tmp_path):
    site = site_file(tmp_path)
    document = json.loads(site.read_text())
    document["site"]["wifi"]["passphrase"] = "tembo-kubwa-43"  # one character changed
    site.write_text(json.dumps(document))
    machine = boot(tmp_path, site)
    try:
        machine.wait_for("/healthz", BOOT_TIMEOUT_S)
        page = requests.get(machine.base + "/", timeout=30).text
        assert "did not set itself up" in page and "signature" in page
        assert qemu.read_esp_file(machine.disk, "schoolbox-setup.txt") is None
        # Not set up, so no admin's key: SSH is off (nothing answers on :22).
        closed = ssh(machine, None, "true")
        assert closed.returncode == 255 and "Permission denied" not in closed.stderr, closed.stderr
    finally:
        machine.stop()
    no_connection_of_its_own(tmp_path)


def test_through_a_school_day_and_a_reboot_the_box_reached_out_to_no_one(box):
    """Last: everything above ran on this box (first boot, SSH, pages, a power cut)."""
    no_connection_of_its_own(box.work)
