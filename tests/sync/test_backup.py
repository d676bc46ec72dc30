"""The school's sealed backup and its restore onto a new box (sync/recovery.py,
sync/box/backup.py, sync/hub/backups.py, appliance/store/school_data.py).

The whole path is real: the demo school's SQLite file, `schoolbox sync now` sending the
backup to `schoolbox hub serve` on a loopback port, a second box set up with `schoolbox
init`, and `schoolbox restore` fetching it back. The refusals are checked on the same
code: a wrong recovery key, a changed byte, a voucher that is not the district's, a box
that already has a school, a pack the new box lacks; each leaves the new box unchanged.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from appliance import paths
from appliance.cli import main
from appliance.config import Config, pin_key
from appliance.demo.seed import LEARNER_PIN, PACK_DIR
from appliance.packs.importer import import_pack
from appliance.store import audit, open_db, transaction, users
from appliance.store.school_data import RestoreError
from sync import enrolment, policy, recovery
from sync.box import backup
from sync.hub import backups as hub_backups
from sync.hub import home as hub_store
from sync.keys import generate
from sync.recovery import BackupError
from tests.conftest import as_role


def run(home: Path, *args: str):
    result = CliRunner().invoke(main, ["--home", str(home), *args])
    return result


def counts(home: Path) -> dict[str, int]:
    db = open_db(paths.database(home))
    try:
        found = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                 for t in ("users", "classes", "enrolments", "attempts", "mastery")}  # fmt: skip
        found["site"] = db.execute("SELECT box_id FROM site").fetchone()[0]
        return found
    finally:
        db.conn.close()


def new_box(tmp_path: Path, hub_home: Path, site_name: str, pack: bool = True) -> Path:
    """A box set up with `schoolbox init` (the demo pack imported, as the first sync brings
    the district's packs), enrolled at the hub under `site_name`, district keys pinned."""
    home = tmp_path / "new-box"
    result = run(home, "init", "--site-name", site_name, "--admin-username", "newadmin",
                 "--admin-name", "New Admin", "--generate-password")  # fmt: skip
    assert result.exit_code == 0, result.output
    db = open_db(paths.database(home))
    if pack:
        import_pack(db, home / "media", PACK_DIR, audit.SYSTEM)
    keys = enrolment.ensure_box_keys(home, db.execute("SELECT box_id FROM site").fetchone()[0])
    db.conn.close()
    hub_db = hub_store.open_hub(hub_home)
    hub_store.enrol(hub_db, enrolment.request(keys, site_name))
    hub_db.close()
    enrolment.pin_district(home, json.loads((hub_home / "district.json").read_text()))
    return home


@pytest.fixture
def recovery_key(box, tmp_path) -> Path:
    """The school's recovery key, made on the old box; the private half on a 'stick'."""
    out = tmp_path / "stick" / "recovery.key"
    out.parent.mkdir()
    result = run(box, "recovery-key", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_a_new_box_gets_the_schools_data_back_from_the_hub(
    box, db, recovery_key, hub_home, hub_server, tmp_path
):
    url = f"http://127.0.0.1:{hub_server}"
    with transaction(db):  # gaps in the answers' rowids, as an erasure leaves them
        db.execute("DELETE FROM predictions WHERE attempt_id IN"
                   " (SELECT id FROM attempts WHERE rowid <= 3)")  # fmt: skip
        db.execute("DELETE FROM attempts WHERE rowid <= 3")
    old = counts(box)
    assert old["attempts"] > 0 and old["classes"] > 0
    result = run(box, "sync", "now", "--url", url)
    assert result.exit_code == 0, result.output
    assert "The hub keeps this box's backup" in result.output
    kept = list((hub_home / "backups").glob("*/*.sbxr"))
    assert len(kept) == 1
    learner = db.execute("SELECT id, display_name FROM users WHERE role = 'learner'").fetchone()
    assert learner[1].encode() not in kept[0].read_bytes()  # the hub holds it sealed
    assert "The hub keeps" not in run(box, "sync", "now", "--url", url).output  # once a day

    site_name = db.execute("SELECT name FROM site").fetchone()[0]
    home = new_box(tmp_path, hub_home, site_name)
    own_box_id = counts(home)["site"]
    result = run(home, "restore", "--recovery-key", str(recovery_key), "--from-hub", "--url", url)
    assert result.exit_code == 0, result.output
    assert f"{old['attempts']} answer(s)" in result.output

    restored = counts(home)
    assert {k: restored[k] for k in old if k != "site"} == {k: old[k] for k in old if k != "site"}
    assert restored["site"] == own_box_id != old["site"]  # the new box stays itself at the hub
    new_db = open_db(paths.database(home))
    key = pin_key(Config(home=home, testing=True))
    assert users.check_pin(new_db, learner[0], LEARNER_PIN, key) is not None  # PINs still work
    assert policy.pseudonymiser(home)("learner", "7") == policy.pseudonymiser(box)("learner", "7")
    marks = "SELECT kind, mark FROM sync_marks ORDER BY kind"
    assert new_db.execute(marks).fetchall() == db.execute(marks).fetchall()  # nothing sent twice
    rowids = "SELECT max(rowid), sum(rowid) FROM attempts"  # the marks count answers by rowid
    assert new_db.execute(rowids).fetchall() == db.execute(rowids).fetchall()
    assert (
        new_db.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'school_data.restore'"
        ).fetchone()[0]
        == 1
    )
    new_db.conn.close()


def test_a_box_of_another_school_gets_no_backup(box, recovery_key, hub_home, hub_server, tmp_path):
    url = f"http://127.0.0.1:{hub_server}"
    assert run(box, "sync", "now", "--url", url).exit_code == 0
    home = new_box(tmp_path, hub_home, "Hillside Secondary")
    before = counts(home)
    result = run(home, "restore", "--recovery-key", str(recovery_key), "--from-hub", "--url", url)
    assert result.exit_code != 0
    assert "no backup of 'Hillside Secondary'" in result.output
    assert counts(home) == before


def test_only_an_enrolled_box_may_leave_a_backup_or_ask_for_one(box, db, recovery_key, hub_home,
                                                                 hub_server):  # fmt: skip
    url = f"http://127.0.0.1:{hub_server}"
    sealed = backup.make(db, box)
    stranger = generate("not-enrolled")
    header = recovery.read_header(sealed)
    forged = recovery.seal(
        recovery.Header("not-enrolled", header.site_name, header.created_at, header.schema,
                        header.recovery),
        {recovery.DATABASE: b"x", "secret.key": b"y"}, backup.recovery_key(box), stranger,
    )  # fmt: skip
    answer = requests.post(f"{url}/v1/backups", data=forged, timeout=30)
    assert answer.status_code == 403 and "not enrolled" in answer.json()["error"]
    body, signature = recovery.request(stranger, "2026-12-05T00:00:00Z")
    answer = requests.post(f"{url}/v1/backups/newest", data=body, timeout=30,
                           headers={hub_backups.SIGNATURE_HEADER: signature})  # fmt: skip
    assert answer.status_code == 403
    # An enrolled box's key over another box's request is refused too.
    own = enrolment.ensure_box_keys(box, header.box_id)
    body, _ = recovery.request(stranger, "2026-12-05T00:00:00Z")
    _, wrong = recovery.request(own, "2026-12-05T00:00:00Z")
    answer = requests.post(f"{url}/v1/backups/newest", data=body, timeout=30,
                           headers={hub_backups.SIGNATURE_HEADER: wrong})  # fmt: skip
    assert answer.status_code == 403
    assert not (hub_home / "backups").exists()


@pytest.fixture
def sealed(box, db, recovery_key) -> bytes:
    return backup.make(db, box)


@pytest.fixture
def fresh(tmp_path, hub_home, db) -> Path:
    return new_box(tmp_path, hub_home, db.execute("SELECT name FROM site").fetchone()[0])


def test_a_backup_opens_only_with_the_key_it_was_sealed_to(sealed, recovery_key, fresh, tmp_path):
    other = tmp_path / "other.key"
    assert run(fresh, "recovery-key", str(other)).exit_code == 0
    backup_file = tmp_path / "school.sbxr"
    backup_file.write_bytes(sealed)
    before, secret = counts(fresh), paths.secret(fresh).read_bytes()
    result = run(fresh, "restore", "--recovery-key", str(other), "--file", str(backup_file))
    assert result.exit_code != 0 and "sealed to recovery key" in result.output
    assert counts(fresh) == before and paths.secret(fresh).read_bytes() == secret
    result = run(fresh, "restore", "--recovery-key", str(recovery_key), "--file", str(backup_file))
    assert result.exit_code == 0, result.output  # the right key opens the same file


@pytest.mark.parametrize("where", ["header", "ciphertext", "signature"])
def test_a_changed_byte_is_refused(sealed, box, recovery_key, where):
    data = bytearray(sealed)
    offset = {"header": 12, "ciphertext": len(data) // 2, "signature": len(data) - 5}[where]
    data[offset] ^= 0x01
    old_box = enrolment.ensure_box_keys(box, recovery.read_header(sealed).box_id).public()
    with pytest.raises(BackupError):
        recovery.check_signature(bytes(data), old_box)
    if where == "ciphertext":
        with pytest.raises(BackupError, match="does not open"):
            recovery.open_backup(bytes(data), backup.read_key(recovery_key))


def test_a_backup_the_district_does_not_vouch_for_is_not_used(sealed, hub_home):
    district = hub_store.district_keys(hub_home)
    good = recovery.voucher(district, sealed)
    assert recovery.check_voucher(good, district.public(), sealed).box_id
    with pytest.raises(BackupError, match="not vouched"):
        recovery.check_voucher(recovery.voucher(generate("district"), sealed),
                               district.public(), sealed)  # fmt: skip
    changed = bytearray(sealed)
    changed[len(changed) // 2] ^= 1
    with pytest.raises(BackupError, match="not vouched"):  # the voucher names one backup
        recovery.check_voucher(good, district.public(), bytes(changed))


def test_a_restore_never_replaces_a_school_already_on_the_box(sealed, recovery_key, box):
    before = counts(box)
    with pytest.raises(RestoreError, match="already has learners"):
        backup.restore(open_db(paths.database(box)), box, sealed, backup.read_key(recovery_key))
    assert counts(box) == before


def test_a_restore_needs_the_packs_the_answers_belong_to(sealed, recovery_key, hub_home, db,
                                                         tmp_path):  # fmt: skip
    site_name = db.execute("SELECT name FROM site").fetchone()[0]
    home = new_box(tmp_path, hub_home, site_name, pack=False)
    before = counts(home)
    keys = (paths.secret(home).read_bytes(), policy.pseudonymiser(home)("learner", "1"))
    new_db = open_db(paths.database(home))
    with pytest.raises(RestoreError, match="Fractions|packs this box does not have"):
        backup.restore(new_db, home, sealed, backup.read_key(recovery_key))
    assert counts(home) == before
    assert (paths.secret(home).read_bytes(), policy.pseudonymiser(home)("learner", "1")) == keys


def test_no_recovery_key_means_no_backup_and_a_clear_message(box, db, tmp_path):
    with pytest.raises(BackupError, match="no recovery key"):
        backup.make(db, box)
    result = run(box, "backup", str(tmp_path / "x.sbxr"), "--sealed")
    assert result.exit_code != 0 and "recovery-key" in result.output
    assert not (tmp_path / "x.sbxr").exists()


def test_a_recovery_key_file_is_never_overwritten(box, recovery_key):
    first = recovery_key.read_bytes()
    result = run(box, "recovery-key", str(recovery_key))
    assert result.exit_code != 0 and "exists already" in result.output
    assert recovery_key.read_bytes() == first


def test_a_sealed_backup_on_a_stick_restores_without_the_hub(box, recovery_key, fresh, tmp_path):
    stick = tmp_path / "stick" / "school.sbxr"
    result = run(box, "backup", str(stick), "--sealed")
    assert result.exit_code == 0, result.output
    result = run(fresh, "restore", "--recovery-key", str(recovery_key), "--file", str(stick))
    assert result.exit_code == 0, result.output
    assert counts(fresh)["attempts"] == counts(box)["attempts"]
    shutil.rmtree(stick.parent)


def test_the_admin_makes_the_recovery_key_on_the_status_page(app, ids, config, db, tmp_path):
    admin = as_role(app, "admin", ids)
    page = admin.get("/admin/").data.decode()
    assert "the school has no recovery key" in page
    refused = admin.post("/admin/recovery-key", {})  # the admin must say the key is kept safe
    assert refused.status_code == 302 and backup.recovery_key(config.home) is None
    answer = admin.post("/admin/recovery-key", {"confirm": "keep"})
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    fingerprint = backup.recovery_key(config.home).fingerprint()
    assert fingerprint in answer.headers["Content-Disposition"]
    page = admin.get("/admin/").data.decode()
    assert fingerprint in page and "the school has no recovery key" not in page
    key_file = tmp_path / "downloaded.key"
    key_file.write_bytes(answer.data)
    header, files = recovery.open_backup(backup.make(db, config.home), backup.read_key(key_file))
    assert header.recovery == fingerprint and files[recovery.DATABASE][:15] == b"SQLite format 3"
    entries = db.execute("SELECT count(*) FROM audit_log WHERE action = 'recovery_key.create'")
    assert entries.fetchone()[0] == 1
    private = json.loads(answer.data)["x25519"].encode()  # the box keeps no copy of it
    assert not [p for p in config.home.rglob("*") if p.is_file() and private in p.read_bytes()]


def test_the_next_backup_is_due_a_day_after_the_last(box, db, recovery_key, hub_server):
    assert backup.due(box)  # none sent yet
    backup.send(db, box, f"http://127.0.0.1:{hub_server}")
    now = datetime.now(UTC)
    assert not backup.due(box, now + timedelta(hours=23))
    assert backup.due(box, now + timedelta(hours=24, minutes=1))
    assert backup.last_sent(box)["bytes"] > 0
