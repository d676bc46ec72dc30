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
import os
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from appliance.cli import main
from image import qemu
from tests.over_http import answers_seen_by_teacher, post_form, practise, set_up_a_class

pytestmark = [pytest.mark.image, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = Path(os.environ.get("SCHOOLBOX_IMAGE", ROOT / "build/image/x86_64/schoolbox-x86_64.img"))
# The district whose public keys the image carries (make image-test makes a test one).
DISTRICT = Path(os.environ.get("SCHOOLBOX_IMAGE_HUB_HOME", ROOT / "build/test-district"))
BOOT_TIMEOUT_S = 900  # qemu without KVM on 2 cores; bench/image.py measures the real figure
ADMIN = ("head", "kiboko-ndogo-juu-7")


def site_file(folder: Path, name: str = "schoolbox-site.json") -> Path:
    out = folder / name
    result = CliRunner().invoke(main, [
        "image", "site-file", "--hub-home", str(DISTRICT), "--school-id", "hill-primary",
        "--site-name", "Hill Primary", "--wifi-mode", "join", "--ssid", "Hill Staff",
        "--passphrase", "tembo-kubwa-42", "--country", "KE", "--consent", "tutor",
        "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def boot(work: Path, site: Path | None) -> qemu.Machine:
    if not IMAGE.is_file():
        pytest.fail(f"No image at {IMAGE}: run `make image-test`, which builds it first.")
    disk = qemu.prepare_disk(IMAGE, work, site)
    accel = "kvm" if os.environ.get("SCHOOLBOX_IMAGE_KVM") == "1" and qemu.kvm_usable() else "tcg"
    return qemu.Machine(disk, work, accel=accel).start()


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    work = tmp_path_factory.mktemp("box")
    machine = boot(work, site_file(work))
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
    assert qemu.read_esp_file(box.disk, "schoolbox-setup.txt") is not None


def test_the_first_admin_claims_it_and_a_learner_practises_then_a_reboot_keeps_it(box):
    base = box.base
    report = json.loads(qemu.read_esp_file(box.disk, "schoolbox-setup.txt"))
    admin = requests.Session()
    r = post_form(admin, base, "/setup", "/setup", {
        "code": report["admin_setup_code"], "display_name": "Head Teacher",
        "username": ADMIN[0], "password": ADMIN[1], "password_again": ADMIN[1]})  # fmt: skip
    assert r.status_code == 200 and "/admin" in r.url, r.text[:2000]
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
    finally:
        machine.stop()
