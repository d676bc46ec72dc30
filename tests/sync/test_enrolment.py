"""Keys and enrolment through the `schoolbox` command: a box enrols at the hub and pins
the district's keys; both sides rotate their keys without trusting anything new blindly."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner

from appliance.cli import main
from sync import enrolment, keys
from sync.hub import home as hub_store


@pytest.fixture
def cli(tmp_path):
    box_home, hub_home = tmp_path / "box", tmp_path / "hub"

    def box(*args):
        result = CliRunner().invoke(main, ["--home", str(box_home), *args])
        return result

    def hub(*args):
        return CliRunner().invoke(main, ["hub", "--hub-home", str(hub_home), *args])

    assert box("init", "--site-name", "Hill School", "--generate-password").exit_code == 0
    assert hub("init").exit_code == 0
    box.home, hub.home, box.tmp = box_home, hub_home, tmp_path
    return box, hub


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_box_enrols_at_the_hub_and_pins_the_district_keys(cli):
    box, hub = cli
    assert _mode(enrolment.box_key_path(box.home)) == 0o600
    assert _mode(hub_store.key_path(hub.home)) == 0o600
    request = box.tmp / "request.json"
    made = box("sync", "enrol", "--out", str(request))
    assert made.exit_code == 0, made.output
    fingerprint = made.output.split("Fingerprint (read it to the district): ")[1].strip()
    enrolled = hub("enrol", str(request))
    assert enrolled.exit_code == 0 and "enrolled" in enrolled.output
    assert fingerprint in enrolled.output  # the same code on both sides
    assert "unchanged" in hub("enrol", str(request)).output
    trusted = box("sync", "trust", str(hub.home / "district.json"))
    assert trusted.exit_code == 0, trusted.output
    db = hub_store.open_hub(hub.home)
    document = json.loads(request.read_text())
    assert hub_store.keys_of(db, document["box_id"]).to_json() == document["keys"]
    actions = [r[0] for r in db.execute("SELECT action FROM hub_audit")]
    assert actions == ["box.enrolled", "box.unchanged"]


def test_a_rotated_box_moves_only_with_its_old_keys_signature(cli):
    box, hub = cli
    first = box.tmp / "first.json"
    box("sync", "enrol", "--out", str(first))
    hub("enrol", str(first))
    rotated = box.tmp / "rotated.json"
    assert box("sync", "rotate-keys", "--out", str(rotated)).exit_code == 0
    assert "rotated" in hub("enrol", str(rotated)).output
    # A request for the same box with keys nobody endorsed (a stolen box id) is refused...
    impostor = enrolment.request(keys.generate(json.loads(first.read_text())["box_id"]), "Hill")
    forged = box.tmp / "forged.json"
    forged.write_text(json.dumps(impostor))
    refused = hub("enrol", str(forged))
    assert refused.exit_code != 0 and "signed by its old key" in refused.output
    db = hub_store.open_hub(hub.home)
    box_id = impostor["box_id"]
    assert hub_store.keys_of(db, box_id).to_json() == json.loads(rotated.read_text())["keys"]
    # ...unless the operator checked the fingerprint with the school.
    assert "rotated" in hub("enrol", str(forged), "--replace").output


def test_the_district_rotates_its_keys_and_boxes_follow_only_a_signed_rotation(cli):
    box, hub = cli
    box("sync", "trust", str(hub.home / "district.json"))
    rotation = box.tmp / "rotation.json"
    assert hub("rotate-keys", "--out", str(rotation)).exit_code == 0
    assert box("sync", "trust", str(rotation)).exit_code == 0
    pinned = enrolment.district_keys(box.home)
    assert pinned.to_json() == hub_store.district_keys(hub.home).public().to_json()
    assert len(hub_store.every_district_key(hub.home)) == 2  # old bundles still open
    # A rotation signed by anyone else, or a plain new key, is refused.
    stranger = enrolment.district_rotation(keys.generate("x"), keys.generate("district"))
    forged = box.tmp / "forged.json"
    forged.write_text(json.dumps(stranger))
    refused = box("sync", "trust", str(forged))
    assert refused.exit_code != 0 and "not signed by the district key" in refused.output
    other = box.tmp / "other.json"
    other.write_text(json.dumps(keys.generate("district").public().to_json()))
    refused = box("sync", "trust", str(other))
    assert refused.exit_code != 0 and "--replace" in refused.output
    assert enrolment.district_keys(box.home).to_json() == pinned.to_json()


def test_a_damaged_request_is_refused_with_a_clear_message(cli):
    box, hub = cli
    bad = box.tmp / "bad.json"
    bad.write_text('{"format": "schoolbox-enrolment/1", "box_id": "x", "keys": {}}')
    refused = hub("enrol", str(bad))
    assert refused.exit_code != 0 and "not usable public keys" in refused.output
    bad.write_text("not json")
    assert "not a readable JSON file" in hub("enrol", str(bad)).output


def test_a_box_does_not_rotate_its_keys_while_bundles_signed_with_them_wait(cli):
    from appliance.store import audit, open_db, site, transaction
    from sync.box import outbox

    box, hub = cli
    box("sync", "trust", str(hub.home / "district.json"))
    db = open_db(box.home / "schoolbox.db")
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, "sync", True)
        db.conn.execute("INSERT INTO tombstones (public_id, erased_at) VALUES ('p', 'now')")
    assert outbox.seal_pending(db, box.home) == [1]
    refused = box("sync", "rotate-keys", "--out", str(box.tmp / "r.json"))
    assert refused.exit_code != 0 and "still wait for the district" in refused.output
    assert not list(box.home.glob("keys/box.key.retired-*"))
