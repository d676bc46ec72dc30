"""OS updates on the box (sync/box/os_update.py): only district-signed bundles, checked by
the real RAUC; the database copied before an update and put back after a rollback.

The slot switch and the restart are the image's (tests/image/test_update.py boots them);
here `rauc install`, which needs RAUC's service on an A/B system, is stood in for by a
script that records its call, and every other step is real.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance import health, paths
from appliance.cli import main
from image import update
from sync.box import os_update
from sync.box.os_update import NotAgain, OsUpdateError
from sync.hub import os_update_signer
from tests.conftest import as_role

pytestmark = pytest.mark.skipif(
    not (shutil.which("rauc") and shutil.which("mksquashfs")),
    reason="RAUC and squashfs-tools are not installed (make image-tools installs them)",
)


@pytest.fixture(scope="module")
def district(tmp_path_factory) -> Path:
    hub_home = tmp_path_factory.mktemp("hub")
    os_update_signer.ensure(hub_home)
    return hub_home


@pytest.fixture(scope="module")
def signed(district, tmp_path_factory) -> Path:
    """A small bundle signed with the district's OS update key, as image/build.py signs one."""
    folder = tmp_path_factory.mktemp("bundle")
    root = folder / "root.ext4"
    root.write_bytes(os.urandom(1 << 20))  # a stand-in root partition (RAUC wants > 4 KiB packed)
    return update.bundle(root, "schoolbox-x86_64", "0.2.0+test", district,
                         folder / "schoolbox-x86_64-0.2.0.raucb")  # fmt: skip


@pytest.fixture
def keyring(district) -> Path:
    return os_update_signer.certificate_path(district)


@pytest.fixture
def box(tmp_path) -> Path:
    """A data folder with a database holding one answer."""
    home = tmp_path / "box"
    home.mkdir()
    with sqlite3.connect(paths.database(home)) as db:
        db.execute("CREATE TABLE attempts (id INTEGER PRIMARY KEY, item TEXT)")
        db.execute("INSERT INTO attempts (item) VALUES ('fractions-1')")
        db.execute("PRAGMA user_version=6")
    return home


@pytest.fixture
def rauc_install_recorded(tmp_path, monkeypatch) -> Path:
    """`rauc install` recorded, not run (there is no A/B system here); `rauc info` is real."""
    log = tmp_path / "rauc-install.log"
    script = tmp_path / "rauc"
    script.write_text(f'#!/bin/sh\nif [ "$1" = install ]; then echo "$@" >> {log}; exit 0; fi\n'
                      f'exec {shutil.which("rauc")} "$@"\n')  # fmt: skip
    script.chmod(0o755)
    monkeypatch.setattr(os_update, "RAUC", str(script))
    return log


def answers(home: Path) -> list[str]:
    with sqlite3.connect(paths.database(home)) as db:
        return [row[0] for row in db.execute("SELECT item FROM attempts ORDER BY id")]


def schema(home: Path) -> int:
    with sqlite3.connect(paths.database(home)) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def test_rauc_accepts_a_bundle_the_district_signed(signed, keyring):
    found = os_update.inspect(signed, keyring)
    assert (found.version, found.compatible) == ("0.2.0+test", "schoolbox-x86_64")


def test_a_bundle_signed_by_another_key_is_refused(district, tmp_path, keyring):
    another_district = tmp_path / "another-district"  # its own OS update key
    root = tmp_path / "root.ext4"
    root.write_bytes(os.urandom(1 << 16))
    forged = update.bundle(
        root, "schoolbox-x86_64", "9.9.9", another_district, tmp_path / "x.raucb"
    )
    with pytest.raises(OsUpdateError, match="refused.*signed by the district"):
        os_update.inspect(forged, keyring)


def test_a_cut_short_bundle_is_refused(signed, tmp_path, keyring):
    cut = tmp_path / "cut.raucb"
    cut.write_bytes(signed.read_bytes()[: signed.stat().st_size // 2])
    with pytest.raises(OsUpdateError, match="refused"):
        os_update.inspect(cut, keyring)


def test_without_the_districts_certificate_nothing_is_trusted(signed, tmp_path):
    with pytest.raises(OsUpdateError, match="refused"):
        os_update.inspect(signed, tmp_path / "no-keyring.pem")


def test_installing_copies_the_database_and_says_which_slot_to_expect(
    box, signed, keyring, rauc_install_recorded
):
    checked = os_update.install(box, signed, "A", [], keyring)
    assert checked.version == "0.2.0+test"
    assert rauc_install_recorded.read_text().split() == ["install", str(signed)]
    pending = json.loads((paths.os_update(box) / "pending.json").read_text())
    assert (pending["from_slot"], pending["to_slot"], pending["version"]) == (
        "A",
        "B",
        "0.2.0+test",
    )
    copy = paths.os_update(box) / "before-update.db"
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT item FROM attempts").fetchall() == [("fractions-1",)]
    # As private as the database itself.
    assert stat.S_IMODE(copy.stat().st_mode) == stat.S_IMODE(paths.database(box).stat().st_mode)


def test_a_slot_that_serves_keeps_the_update(box, signed, keyring, rauc_install_recorded):
    os_update.install(box, signed, "A", [], keyring)
    assert os_update.settle(box, "B") is None  # on trial: not yet decided
    assert (paths.os_update(box) / "pending.json").exists()
    assert os_update.settle(box, "B", good=True) == "updated to 0.2.0+test"
    assert not (paths.os_update(box) / "before-update.db").exists()
    assert os_update.history(box)[0]["outcome"] == "installed"
    with pytest.raises(
        NotAgain, match="installed already"
    ):  # the stick left in: not installed twice
        os_update.install(box, signed, "B", [], keyring)


def test_a_rollback_puts_the_database_back_as_it_was_before_the_update(
    box, signed, keyring, rauc_install_recorded
):
    os_update.install(box, signed, "A", [], keyring)
    # The new slot migrated the database, then could not serve; the box fell back to A.
    with sqlite3.connect(paths.database(box)) as db:
        db.execute("ALTER TABLE attempts ADD COLUMN v7 TEXT")
        db.execute("PRAGMA user_version=7")
    assert os_update.settle(box, "A") == "rolled back from 0.2.0+test"
    assert schema(box) == 6 and answers(box) == ["fractions-1"]
    assert os_update.history(box)[0]["outcome"] == "rolled back"
    assert os_update.settle(box, "A") is None  # done once
    with pytest.raises(NotAgain, match="not tried again"):
        os_update.install(box, signed, "A", [], keyring)


def test_a_refusal_is_remembered_once_for_the_admin(box):
    for _ in range(3):  # a stick left in, boot after boot
        os_update.note_refused(box, "evil.raucb", "evil.raucb was refused: bad signature")
    found = os_update.history(box)
    assert (
        len(found) == 1
        and found[0]["outcome"] == "refused"
        and "bad signature" in found[0]["reason"]
    )


def test_an_install_that_fails_leaves_nothing_pending(box, signed, keyring, tmp_path, monkeypatch):
    script = tmp_path / "rauc-failing"
    script.write_text('#!/bin/sh\nif [ "$1" = install ]; then echo "LastError: '
                      'writing slot failed: No space left on device" >&2; exit 1; fi\n'
                      f'exec {shutil.which("rauc")} "$@"\n')  # fmt: skip
    script.chmod(0o755)
    monkeypatch.setattr(os_update, "RAUC", str(script))
    with pytest.raises(OsUpdateError, match="failed: LastError: writing slot failed"):
        os_update.install(box, signed, "A", [], keyring)
    assert not (paths.os_update(box) / "pending.json").exists()
    assert not (paths.os_update(box) / "before-update.db").exists()
    assert os_update.settle(box, "A") is None and answers(box) == ["fractions-1"]


def test_only_an_ab_system_installs(box, signed, keyring, rauc_install_recorded):
    with pytest.raises(OsUpdateError, match="A/B slot"):
        os_update.install(box, signed, None, [], keyring)
    assert not rauc_install_recorded.exists()


def test_the_booted_slot_comes_from_the_kernel_command_line(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("root=PARTUUID=6b1f ro rauc.slot=B panic=30 quiet schoolbox.trial=1\n")
    assert os_update.booted_slot(cmdline) == "B"
    cmdline.write_text("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n")
    assert os_update.booted_slot(cmdline) is None
    assert os_update.booted_slot(tmp_path / "missing") is None


def test_the_admin_sees_the_system_and_a_rolled_back_update_on_the_image_only(
    tmp_path, monkeypatch, app, ids, config
):
    cmdline, release = tmp_path / "cmdline", tmp_path / "schoolbox-release"
    cmdline.write_text("ro rauc.slot=B quiet\n")
    release.write_text("VERSION=0.1.0+20261204.1330\n")
    monkeypatch.setattr(health, "CMDLINE", cmdline)
    monkeypatch.setattr(health, "RELEASE_FILE", release)
    pending = {"version": "0.2.0", "sha256": "ab" * 32, "from_slot": "B", "to_slot": "A"}
    paths.os_update(config.home).mkdir(parents=True, exist_ok=True)
    (paths.os_update(config.home) / "pending.json").write_text(json.dumps(pending))
    assert os_update.settle(config.home, "B") == "rolled back from 0.2.0"  # no copy: kept as is
    page = as_role(app, "admin", ids).get("/admin/").data.decode()
    assert "<dt>System version</dt><dd>0.1.0+20261204.1330</dd>" in page
    assert "<dt>Started from slot</dt><dd>B</dd>" in page
    assert "could not serve and was rolled back" in page and 'data-outcome="rolled back"' in page
    assert "not encrypted: this box has no TPM2 chip" in page  # no LUKS2 volume opened
    for device, name in (("dm-0", "swap"), ("dm-1", "schoolbox-data")):  # as sysfs lists them
        (tmp_path / "block" / device / "dm").mkdir(parents=True)
        (tmp_path / "block" / device / "dm" / "name").write_text(f"{name}\n")
    monkeypatch.setattr(health, "SYS_BLOCK", tmp_path / "block")
    page = as_role(app, "admin", ids).get("/admin/").data.decode()
    assert "encrypted (LUKS2), opened by this box's TPM2 chip" in page
    cmdline.write_text("ro quiet\n")  # not the image: no such section
    assert "Started from slot" not in as_role(app, "admin", ids).get("/admin/").data.decode()


def test_the_command_needs_a_bundle_or_a_stick_and_finds_nothing_on_an_empty_stick(box, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["--home", str(box), "os-update", "install"]).exit_code == 2
    stick = tmp_path / "stick"
    stick.mkdir()
    result = runner.invoke(
        main, ["--home", str(box), "os-update", "install", "--stick", str(stick)]
    )
    assert result.exit_code == 0 and "No OS update" in result.output
    status = runner.invoke(main, ["--home", str(box), "os-update", "status"])
    assert status.exit_code == 0 and "Booted from slot" in status.output
