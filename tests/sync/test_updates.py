"""Updates downstream: a signed content pack or model applies whole; a tampered, foreign
or unsigned one is refused and changes nothing; a model that cannot run is rolled back."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import yaml
from click.testing import CliRunner

from appliance.cli import main
from models import default, store
from sync import enrolment, hub_store, keys, transport, updates
from sync.updates import UpdateError
from tests.conftest import DEMO_PACK, kt_graph


@pytest.fixture
def district(config, tmp_path):
    hub_home = tmp_path / "hub"
    keys_ = hub_store.init(hub_home)
    enrolment.pin_district(config.home, keys_.public().to_json())
    return keys_


def _pack_v2(tmp_path) -> tuple:
    """The demo pack as version 1.1.0 with a new lesson title, zipped."""
    folder = tmp_path / "pack"
    shutil.copytree(DEMO_PACK, folder)
    meta = yaml.safe_load((folder / "pack.yaml").read_text())
    meta["version"] = "1.1.0"
    (folder / "pack.yaml").write_text(yaml.safe_dump(meta))
    first = sorted((folder / "lessons").glob("*.md"))[0]
    text = first.read_text()
    first.write_text(text.replace("title:", "title: Updated -", 1))
    archive = tmp_path / "pack-1.1.0.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in folder.rglob("*"):
            out.write(path, path.relative_to(folder))
    return archive, meta["id"]


def _version(db, pack_id: str) -> str:
    return db.conn.execute("SELECT version FROM packs WHERE id = ?", (pack_id,)).fetchone()[0]


def test_a_signed_pack_applies_once_and_a_tampered_one_changes_nothing(
    config, db, district, tmp_path
):
    archive, pack_id = _pack_v2(tmp_path)
    folder = updates.sign(district, archive, "content-pack", pack_id, "1.1.0", tmp_path / "u1")
    tampered = tmp_path / "u2"
    shutil.copytree(folder, tampered)
    data = bytearray((tampered / archive.name).read_bytes())
    data[len(data) // 2] ^= 1
    (tampered / archive.name).write_bytes(bytes(data))
    with pytest.raises(UpdateError, match="does not match its signature"):
        updates.apply(db, config.home, tampered)
    assert _version(db, pack_id) == "1.0.0"
    assert updates.apply(db, config.home, folder) == "applied"
    assert _version(db, pack_id) == "1.1.0"
    assert updates.apply(db, config.home, folder) == "unchanged"
    assert db.conn.execute("SELECT count(*) FROM sync_updates").fetchone()[0] == 1


def test_foreign_and_unsigned_updates_are_refused_while_signatures_are_required(
    config, db, district, tmp_path
):
    archive, pack_id = _pack_v2(tmp_path)
    foreign = updates.sign(keys.generate("district"), archive, "content-pack", pack_id, "1.1.0",
                           tmp_path / "foreign")  # fmt: skip
    with pytest.raises(UpdateError, match="not the district's"):
        updates.apply(db, config.home, foreign)
    unsigned = tmp_path / "unsigned"
    shutil.copytree(foreign, unsigned)
    envelope = json.loads((unsigned / "update.json").read_text())
    del envelope["signature"]
    (unsigned / "update.json").write_text(json.dumps(envelope))
    with pytest.raises(UpdateError, match="not signed"):
        updates.apply(db, config.home, unsigned)
    assert _version(db, pack_id) == "1.0.0"
    assert updates.apply(db, config.home, unsigned, require_signature=False) == "applied"


def test_a_model_update_activates_and_one_that_cannot_run_is_not(config, db, district, tmp_path):
    default.install_knowledge_tracing(config.home)
    good = tmp_path / "kt-district.onnx"
    shutil.copy(default.KT_FILE, good)
    folder = updates.sign(district, good, "model", "kt-district-2", "2", tmp_path / "m1")
    assert updates.apply(db, config.home, folder) == "applied"
    assert store.active(config.home, "knowledge-tracing").name == "kt-district-2"
    broken = kt_graph(tmp_path / "kt-broken.onnx", nan=True)  # imports, but gives NaN
    folder = updates.sign(district, broken, "model", "kt-broken", "3", tmp_path / "m2")
    with pytest.raises(UpdateError, match="could not be run, so it was not activated"):
        updates.apply(db, config.home, folder)
    assert store.active(config.home, "knowledge-tracing").name == "kt-district-2"


def test_updates_travel_on_the_usb_stick_with_the_acknowledgements(config, db, district, tmp_path):
    from appliance.store import audit, site, transaction

    hub_home = tmp_path / "hub"
    archive, pack_id = _pack_v2(tmp_path)
    hub = CliRunner().invoke(main, ["hub", "--hub-home", str(hub_home), "sign", str(archive),
                                    "--kind", "content-pack"])  # fmt: skip
    assert hub.exit_code == 0, hub.output
    stick = tmp_path / "stick"
    (stick / transport.USB_FOLDER).mkdir(parents=True)
    transport.hub_import_from(hub_home, stick)
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, "sync", True)
    box = CliRunner().invoke(main, ["--home", str(config.home), "sync", "import", str(stick)])
    assert box.exit_code == 0, box.output
    assert f"Update content-pack-{pack_id}-1.1.0: applied" in box.output
    assert _version(db, pack_id) == "1.1.0"


def test_a_box_fetches_signed_updates_from_the_hub_over_http(
    config, db, hub_home, box, hub_server, tmp_path
):
    archive, pack_id = _pack_v2(tmp_path)
    updates.sign(hub_store.district_keys(hub_home), archive, "content-pack", pack_id, "1.1.0",
                 updates.hub_folder(hub_home) / "pack-1.1.0")  # fmt: skip
    result = CliRunner().invoke(
        main, ["--home", str(config.home), "sync", "now", "--url", f"http://127.0.0.1:{hub_server}"]
    )
    assert result.exit_code == 0, result.output
    assert "Update pack-1.1.0: applied" in result.output
    assert _version(db, pack_id) == "1.1.0"
    escape = transport.hub_url(f"http://127.0.0.1:{hub_server}", "/v1/updates/..%2F..%2Fhub.db/x")
    import requests

    assert requests.get(escape, timeout=5).status_code == 404  # nothing outside the updates


def test_a_hub_cannot_name_a_path_outside_the_updates_folder(tmp_path, monkeypatch):
    """Unit test with a fake hub reply (the real hub is in the test above)."""
    import io

    listing = {"updates": {"..": {"file": "schoolbox.toml"}, "ok": {"file": "../secret.key"}}}
    monkeypatch.setattr(transport.urllib.request, "urlopen",
                        lambda *a, **k: io.BytesIO(json.dumps(listing).encode()))  # fmt: skip
    into = tmp_path / "home" / "updates-incoming"
    assert transport.fetch_updates("http://127.0.0.1:1", into) == 0
    assert not (tmp_path / "home" / "schoolbox.toml").exists()
    assert not list(tmp_path.rglob("secret.key"))
