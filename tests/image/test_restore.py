"""Replacing a broken box, on two booted images under qemu (docs/image.md, "Replacing a
broken box"): the old box's admin makes the school's recovery key on Admin > Status, the
box's own sync service leaves a sealed backup with the hub; a new box of the same school,
set up from the same site file, is restored from the hub over SSH with that key, and its
teacher and learner find their class, their PIN and their answers. Every packet either
box sent went to the hub or answered a page.

The hub is `schoolbox hub serve` on the host's loopback (qemu.HUB_ADDRESS, as in
test_update_from_hub.py). Needs the image `make image-test` builds.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests

from image import qemu
from sync.hub import home as hub_store
from tests.image.machines import (
    BOOT_TIMEOUT_S,
    boot,
    claim,
    no_connection_of_its_own,
    site_file,
    ssh,
    ssh_key,
    ssh_when_up,
)
from tests.image.test_update import answers_now
from tests.over_http import csrf, pack_zip, post_form, practise, set_up_a_class

pytestmark = [pytest.mark.image, pytest.mark.slow]

SCHOOLBOX = "/opt/schoolbox/.venv/bin/schoolbox --home /var/lib/schoolbox"


def enrol_at(hub_home, box: qemu.Machine, key) -> None:
    """District IT enrols the box at the hub with the request it prints."""
    request = ssh_when_up(box, key, f"{SCHOOLBOX} sync enrol 2>/dev/null").stdout
    db = hub_store.open_hub(hub_home)
    try:
        hub_store.enrol(db, json.loads(request))
    finally:
        db.close()


def import_demo_pack(box: qemu.Machine, admin: requests.Session) -> None:
    token = csrf(admin.get(f"{box.base}/admin/content").text)
    r = admin.post(f"{box.base}/admin/content", data={"csrf_token": token},
                   files={"pack": ("demo.zip", pack_zip(), "application/zip")})  # fmt: skip
    assert "added to version 1.1.0" in r.text, r.text[:2000]


def test_a_new_box_is_restored_from_the_hub_with_the_schools_data(hub, tmp_path):
    hub_home, port = hub
    key = ssh_key(tmp_path / "keys")
    hub_url = f"http://{qemu.HUB_ADDRESS}"

    old_work = tmp_path / "old"
    old_work.mkdir()
    old = boot(old_work, site_file(old_work, admin_ssh_key=key.with_suffix(".pub"),
                                   hub_url=hub_url), hub_port=port)  # fmt: skip
    try:
        old.wait_for("/healthz", BOOT_TIMEOUT_S)
        admin = claim(old)
        room = set_up_a_class(old.base, admin)
        practise(old.base, room.learner, 2)
        page = admin.get(f"{old.base}/admin/").text
        recovery_key = admin.post(f"{old.base}/admin/recovery-key",
                                  data={"csrf_token": csrf(page), "confirm": "keep"}).content  # fmt: skip
        assert b"schoolbox-private-keys/1" in recovery_key
        enrol_at(hub_home, old, key)
        synced = ssh(old, key, "systemctl start schoolbox-sync.service; "
                               "journalctl -b -u schoolbox-sync -o cat | tail -20")  # fmt: skip
        assert "The hub keeps this box's backup" in synced.stdout, synced.stdout + synced.stderr
    finally:
        old.stop()
    kept = list((hub_home / "backups").glob("*/*.sbxr"))
    assert len(kept) == 1 and b"Tendai" not in kept[0].read_bytes()

    new_work = tmp_path / "new"
    new_work.mkdir()
    new = boot(new_work, site_file(new_work, admin_ssh_key=key.with_suffix(".pub"),
                                   hub_url=hub_url), hub_port=port)  # fmt: skip
    try:
        new.wait_for("/healthz", BOOT_TIMEOUT_S)
        import_demo_pack(new, claim(new))  # the district's pack, as its first sync would
        enrol_at(hub_home, new, key)
        stick = base64.b64encode(recovery_key).decode()
        restored = ssh(new, key, f"echo {stick} | base64 -d > /run/recovery.key && "
                                 f"{SCHOOLBOX} restore --recovery-key /run/recovery.key "
                                 "--from-hub; rm -f /run/recovery.key; "
                                 "systemctl restart schoolbox.target")  # fmt: skip
        assert "answer(s) of 'Hill Primary'" in restored.stdout, restored.stdout + restored.stderr
        new.wait_for("/healthz", BOOT_TIMEOUT_S)
        assert answers_now(new, room) == 2  # the teacher, restored, sees the answers
        learner = requests.Session()  # the learner signs in with the PIN of the old box
        link = f"/signin/learner/{room.learner_id}"
        r = post_form(learner, new.base, link, link, {"pin": room.pin})
        assert r.url.endswith("/learn/") and "Equivalent" in r.text
    finally:
        new.stop()
    no_connection_of_its_own(old_work, hub=qemu.HUB_ADDRESS)
    no_connection_of_its_own(new_work, hub=qemu.HUB_ADDRESS)
