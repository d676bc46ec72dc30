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
from models.registry import default
from models.registry import installed as store
from sync import enrolment, keys, updates
from sync import stick as stick_layout
from sync.box import transport
from sync.box import updates as box_updates
from sync.hub import home as hub_store
from sync.hub import receive
from sync.updates import UpdateError
from tests.conftest import DEMO_PACK, kt_graph


@pytest.fixture
def district(config, tmp_path):
    hub_home = tmp_path / "hub"
    keys_ = hub_store.init(hub_home)
    enrolment.pin_district(config.home, keys_.public().to_json())
    return keys_


def _pack_v2(tmp_path) -> tuple:
    """The demo pack as version 1.2.0 with a new lesson title, zipped."""
    folder = tmp_path / "pack"
    shutil.copytree(DEMO_PACK, folder)
    meta = yaml.safe_load((folder / "pack.yaml").read_text())
    meta["version"] = "1.2.0"
    (folder / "pack.yaml").write_text(yaml.safe_dump(meta))
    first = sorted((folder / "lessons").glob("*.md"))[0]
    text = first.read_text()
    first.write_text(text.replace("title:", "title: Updated -", 1))
    archive = tmp_path / "pack-1.2.0.zip"
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
    folder = updates.sign(district, archive, "content-pack", pack_id, "1.2.0", tmp_path / "u1")
    tampered = tmp_path / "u2"
    shutil.copytree(folder, tampered)
    data = bytearray((tampered / archive.name).read_bytes())
    data[len(data) // 2] ^= 1
    (tampered / archive.name).write_bytes(bytes(data))
    with pytest.raises(UpdateError, match="does not match its signature"):
        box_updates.apply(db, config.home, tampered)
    assert _version(db, pack_id) == "1.1.0"
    assert box_updates.apply(db, config.home, folder) == "applied"
    assert _version(db, pack_id) == "1.2.0"
    assert box_updates.apply(db, config.home, folder) == "unchanged"
    assert db.conn.execute("SELECT count(*) FROM sync_updates").fetchone()[0] == 1


def test_foreign_and_unsigned_updates_are_refused_while_signatures_are_required(
    config, db, district, tmp_path
):
    archive, pack_id = _pack_v2(tmp_path)
    foreign = updates.sign(keys.generate("district"), archive, "content-pack", pack_id, "1.2.0",
                           tmp_path / "foreign")  # fmt: skip
    with pytest.raises(UpdateError, match="not the district's"):
        box_updates.apply(db, config.home, foreign)
    unsigned = tmp_path / "unsigned"
    shutil.copytree(foreign, unsigned)
    envelope = json.loads((unsigned / "update.json").read_text())
    del envelope["signature"]
    (unsigned / "update.json").write_text(json.dumps(envelope))
    with pytest.raises(UpdateError, match="not signed"):
        box_updates.apply(db, config.home, unsigned)
    assert _version(db, pack_id) == "1.1.0"
    assert box_updates.apply(db, config.home, unsigned, require_signature=False) == "applied"


def test_a_model_update_activates_and_one_that_cannot_run_is_not(config, db, district, tmp_path):
    default.install_knowledge_tracing(config.home)
    good = tmp_path / "kt-district.onnx"
    shutil.copy(default.KT_FILE, good)
    folder = updates.sign(district, good, "model", "kt-district-2", "2", tmp_path / "m1")
    assert box_updates.apply(db, config.home, folder) == "applied"
    assert store.active(config.home, "knowledge-tracing").name == "kt-district-2"
    broken = kt_graph(tmp_path / "kt-broken.onnx", nan=True)  # imports, but gives NaN
    folder = updates.sign(district, broken, "model", "kt-broken", "3", tmp_path / "m2")
    with pytest.raises(UpdateError, match="could not be run, so it was not activated"):
        box_updates.apply(db, config.home, folder)
    assert store.active(config.home, "knowledge-tracing").name == "kt-district-2"


def test_updates_travel_on_the_usb_stick_with_the_acknowledgements(config, db, district, tmp_path):
    from appliance.store import audit, site, transaction

    hub_home = tmp_path / "hub"
    archive, pack_id = _pack_v2(tmp_path)
    hub = CliRunner().invoke(main, ["hub", "--hub-home", str(hub_home), "sign", str(archive),
                                    "--kind", "content-pack"])  # fmt: skip
    assert hub.exit_code == 0, hub.output
    stick = tmp_path / "stick"
    (stick / stick_layout.USB_FOLDER).mkdir(parents=True)
    receive.import_from_stick(hub_home, stick)
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, "sync", True)
    box = CliRunner().invoke(main, ["--home", str(config.home), "sync", "import", str(stick)])
    assert box.exit_code == 0, box.output
    assert f"Update content-pack-{pack_id}-1.2.0: applied" in box.output
    assert _version(db, pack_id) == "1.2.0"


def test_a_box_fetches_signed_updates_from_the_hub_over_http(
    config, db, hub_home, box, hub_server, tmp_path
):
    archive, pack_id = _pack_v2(tmp_path)
    updates.sign(hub_store.district_keys(hub_home), archive, "content-pack", pack_id, "1.2.0",
                 hub_store.updates_folder(hub_home) / "pack-1.2.0")  # fmt: skip
    result = CliRunner().invoke(
        main, ["--home", str(config.home), "sync", "now", "--url", f"http://127.0.0.1:{hub_server}"]
    )
    assert result.exit_code == 0, result.output
    assert "Update pack-1.2.0: applied" in result.output
    assert _version(db, pack_id) == "1.2.0"
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


def test_a_model_and_its_signed_card_are_fetched_over_http_and_activated(
    config, db, hub_home, box, hub_server, tmp_path
):
    model = tmp_path / "kt-next.int8.onnx"
    shutil.copy(default.KT_FILE, model)
    shutil.copy(default.KT_FILE.with_suffix(".card.json"), model.with_suffix(".card.json"))
    updates.sign(hub_store.district_keys(hub_home), model, "model", "kt-next", "2",
                 hub_store.updates_folder(hub_home) / "model-kt-next-2", "knowledge-tracing")  # fmt: skip
    url = f"http://127.0.0.1:{hub_server}"
    result = CliRunner().invoke(main, ["--home", str(config.home), "sync", "now", "--url", url])
    assert result.exit_code == 0, result.output
    assert "Update model-kt-next-2: applied" in result.output, result.output
    assert store.active(config.home, "knowledge-tracing").name == "kt-next"
    assert store.card(config.home, store.get(config.home, "kt-next"))  # the card came too


def test_a_download_cut_short_is_fetched_again(config, db, hub_home, box, hub_server, tmp_path):
    model = tmp_path / "kt-next.int8.onnx"
    shutil.copy(default.KT_FILE, model)
    shutil.copy(default.KT_FILE.with_suffix(".card.json"), model.with_suffix(".card.json"))
    updates.sign(hub_store.district_keys(hub_home), model, "model", "kt-next", "2",
                 hub_store.updates_folder(hub_home) / "m", "knowledge-tracing")  # fmt: skip
    into = config.home / "updates-incoming"
    url = f"http://127.0.0.1:{hub_server}"
    assert transport.fetch_updates(url, into) == 1
    (into / "m" / "kt-next.int8.card.json").unlink()  # as an older box left it
    assert transport.fetch_updates(url, into) == 1
    assert transport.fetch_updates(url, into) == 0
    assert box_updates.apply(db, config.home, into / "m") == "applied"


def test_a_refused_update_is_logged_once_and_shown_to_the_admin(config, db, district, tmp_path):
    from appliance.web.app import create_app
    from tests.conftest import as_role

    default.install_knowledge_tracing(config.home)
    model = tmp_path / "kt-next.int8.onnx"
    shutil.copy(default.KT_FILE, model)
    shutil.copy(default.KT_FILE.with_suffix(".card.json"), model.with_suffix(".card.json"))
    root = tmp_path / "incoming"
    folder = updates.sign(district, model, "model", "kt-next", "2", root / "m",
                          "knowledge-tracing")  # fmt: skip
    card = folder / "kt-next.int8.card.json"
    card.rename(tmp_path / "card.json")  # the card did not arrive
    for _ in range(2):  # the box tries again at every sync; it logs the refusal once
        result = box_updates.apply_all(db, config.home, root)
        assert result == {"m": "refused: The update's model card is missing or cut short."}
    rows = [tuple(r) for r in db.conn.execute("SELECT name, version, outcome FROM sync_updates")]
    assert rows == [("kt-next", "2", "refused: The update's model card is missing or cut short.")]
    audited = db.conn.execute(
        "SELECT target_id, detail FROM audit_log WHERE action = 'sync.update_refused'"
    ).fetchall()
    assert len(audited) == 1 and audited[0][0] == "kt-next"
    assert "model card is missing" in audited[0][1]
    page = as_role(create_app(config), "admin", {}).get("/admin/")
    assert "model card is missing or cut short" in page.text
    (tmp_path / "card.json").rename(card)  # it arrives at the next sync
    assert box_updates.apply_all(db, config.home, root) == {"m": "applied"}
    (outcome,) = [r[0] for r in db.conn.execute("SELECT outcome FROM sync_updates")]
    assert outcome.startswith("activated"), outcome  # the refusal's row now says what happened
    assert store.active(config.home, "knowledge-tracing").name == "kt-next"


def test_a_forged_refusal_never_replaces_an_applied_update(config, db, district, tmp_path):
    archive, pack_id = _pack_v2(tmp_path)
    folder = updates.sign(district, archive, "content-pack", pack_id, "1.2.0", tmp_path / "u1")
    assert box_updates.apply(db, config.home, folder) == "applied"
    forged = updates.sign(keys.generate("district"), archive, "content-pack", pack_id, "1.2.0",
                          tmp_path / "forged")  # fmt: skip
    with pytest.raises(UpdateError, match="not the district's"):
        box_updates.apply(db, config.home, forged)
    (outcome,) = [r[0] for r in db.conn.execute("SELECT outcome FROM sync_updates")]
    assert not outcome.startswith("refused"), outcome
    assert box_updates.apply(db, config.home, folder) == "unchanged"
