"""System updates on the built image, under qemu, as district IT delivers them on a USB
stick: a district-signed update is installed into the other slot and the box restarts
into it with its data; an update signed by another key is refused and the box says so;
an update whose database migration fails is rolled back, slot and database both.

One box goes through all three, in order (minutes each under qemu without KVM). Needs
the image that `make image-test` builds, and its root partition (build/image/x86_64/).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import requests

from image import qemu, update
from tests.image.machines import (
    ADMIN,
    BOOT_TIMEOUT_S,
    DISTRICT,
    IMAGE,
    boot,
    claim,
    no_connection_of_its_own,
    site_file,
)
from tests.over_http import (
    TEACHER,
    answers_seen_by_teacher,
    post_form,
    practise,
    set_up_a_class,
)

pytestmark = [pytest.mark.image, pytest.mark.slow]

ROOT_PARTITION = IMAGE.with_name("root.ext4")
UPDATE_TIMEOUT_S = 2400  # install 3 GB and restart, twice over, without KVM
SITE_PACKAGES = "/opt/schoolbox/.venv/lib/python3.11/site-packages"
# Appended to the update's migrations: 7 works, 8 fails, so the database the update leaves
# is one the previous version cannot read (schema 7) unless the box puts its copy back.
BROKEN_MIGRATIONS = b"""

def _v7_update_test(db):
    db.execute("CREATE TABLE update_test_v7 (x)")


def _v8_update_test_fails(db):
    raise RuntimeError("migration 8 fails: an update broken on purpose by tests/image")


MIGRATIONS.extend([_v7_update_test, _v8_update_test_fails])
CURRENT_VERSION = len(MIGRATIONS)
"""


def built_release() -> str:
    text = update.read_file(ROOT_PARTITION, "/etc/schoolbox-release").decode()
    return text.partition("VERSION=")[2].strip()


def bundle_of(work: Path, version: str, files: dict[str, bytes], **signer) -> Path:
    """An update bundle of the built root with `files` changed, as version `version`."""
    root = update.with_files(ROOT_PARTITION, work / f"root-{version}.ext4", files)
    try:
        return update.bundle(root, "schoolbox-x86_64", version, DISTRICT,
                             work / f"schoolbox-x86_64-{version}.raucb", **signer)  # fmt: skip
    finally:
        root.unlink(missing_ok=True)


def restart_with_stick(box: qemu.Machine, bundle: Path) -> None:
    """Power off, plug in a stick holding `bundle`, power on."""
    box.stop()
    box.stick = qemu.stick([bundle], box.work / "stick.img")
    bundle.unlink()  # on the stick now; each is most of a gigabyte
    box.start()


def system_status(box: qemu.Machine, admin: requests.Session) -> str:
    """Admin > Status's System section ('' while the box does not answer)."""
    try:
        page = admin.get(box.base + "/admin/", timeout=30).text
    except requests.RequestException:
        return ""
    return page.partition("<h2>System</h2>")[2].partition("<h2>")[0]


def wait_for_outcome(box: qemu.Machine, admin: requests.Session, outcome: str, count: int) -> str:
    """The System section once it lists `count` updates with `outcome`."""
    deadline = time.monotonic() + UPDATE_TIMEOUT_S
    while time.monotonic() < deadline:
        section = system_status(box, admin)
        if section.count(f'data-outcome="{outcome}"') >= count:
            return section
        if box.process is not None and box.process.poll() is not None:
            raise RuntimeError(f"qemu stopped:\n{box.tail()}")
        time.sleep(15)
    raise TimeoutError(f"no update {outcome!r} after {UPDATE_TIMEOUT_S} s:\n{box.tail(120)}")


@pytest.fixture(scope="module")
def school(tmp_path_factory):
    """A provisioned box with a class, and three answers recorded before any update."""
    if not ROOT_PARTITION.is_file():
        pytest.fail(f"No root partition at {ROOT_PARTITION}: run `make image-test`.")
    work = tmp_path_factory.mktemp("updated-box")
    box = boot(work, site_file(work))
    try:
        box.wait_for("/healthz", BOOT_TIMEOUT_S)
        admin = claim(box)
        room = set_up_a_class(box.base, admin)
        practise(box.base, room.learner, 3)
        yield box, admin, room
    finally:
        box.stop()


def signed_in(box: qemu.Machine, who: tuple[str, str]) -> requests.Session:
    session = requests.Session()
    post_form(session, box.base, "/signin/staff", "/signin/staff",
              {"username": who[0], "password": who[1]})  # fmt: skip
    return session


def answers_now(box: qemu.Machine, room) -> int:
    """The learner's answers, as their teacher sees them (signed in afresh)."""
    return answers_seen_by_teacher(box.base, signed_in(box, TEACHER), room.learner_id)


def test_a_signed_update_from_a_stick_is_installed_and_keeps_the_schools_data(school):
    box, _, room = school
    version = built_release() + ".update1"
    release = f"VERSION={version}\n".encode()
    restart_with_stick(box, bundle_of(box.work, version, {"/etc/schoolbox-release": release}))
    box.wait_for("/healthz", BOOT_TIMEOUT_S)
    admin = signed_in(box, ADMIN)
    section = wait_for_outcome(box, admin, "installed", 1)
    assert version in section and re.search(r"Started from slot</dt><dd>B<", section), section
    env = qemu.grubenv(box.disk)
    # B boots; A, which it came from, is not started again by itself.
    assert env["ORDER"].startswith("B") and (env["B_OK"], env["B_TRY"], env["A_OK"]) == (
        "1",
        "0",
        "0",
    )
    assert answers_now(box, room) == 3


def test_an_update_signed_by_another_key_is_refused_and_the_box_says_why(school, tmp_path):
    box, _, _ = school
    another_district = tmp_path / "another-district"  # its own OS update key
    stand_in = tmp_path / "root.ext4"  # its signature is refused before anything is read
    stand_in.write_bytes(os.urandom(1 << 20))
    forged = update.bundle(stand_in, "schoolbox-x86_64", "99.0", another_district,
                           tmp_path / "schoolbox-x86_64-99.0.raucb")  # fmt: skip
    before = qemu.grubenv(box.disk)
    restart_with_stick(box, forged)
    box.wait_for("/healthz", BOOT_TIMEOUT_S)
    section = wait_for_outcome(box, signed_in(box, ADMIN), "refused", 1)
    assert "was refused" in section and "signed by the district" in section, section
    assert qemu.grubenv(box.disk)["ORDER"] == before["ORDER"]


def test_an_update_whose_migration_fails_is_rolled_back_with_the_database(school):
    box, _, room = school
    migrations = f"{SITE_PACKAGES}/appliance/store/migrations.py"
    broken = update.read_file(ROOT_PARTITION, migrations) + BROKEN_MIGRATIONS
    version = built_release() + ".broken"
    restart_with_stick(box, bundle_of(box.work, version, {
        migrations: broken, "/etc/schoolbox-release": f"VERSION={version}\n".encode()}))  # fmt: skip
    box.wait_for("/healthz", BOOT_TIMEOUT_S)
    section = wait_for_outcome(box, signed_in(box, ADMIN), "rolled back", 1)
    # Back on B, with the update before it, and the database as it was before the update:
    # B's software cannot read schema 7, so serving at all says the copy was put back.
    assert re.search(r"Started from slot</dt><dd>B<", section) and version in section, section
    assert "could not serve and was rolled back" in section
    assert answers_now(box, room) == 3
    practise(box.base, room.learner, 1)  # and it records answers again
    assert answers_now(box, room) == 4


def test_through_every_update_the_box_reached_out_to_no_one(school):
    no_connection_of_its_own(school[0].work)
