"""Image release signatures (sync/release.py, `schoolbox image verify`): district IT flashes
only files the district signed, unchanged and complete."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from appliance.cli import main
from sync import release
from sync.hub import home as hub_store
from sync.keys import generate
from sync.release import ReleaseError


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hub")
    hub_store.init(home)
    return home


@pytest.fixture
def published(hub_home, tmp_path):
    """A tiny release as image/build.py writes one: an image, its package list, signed."""
    image = tmp_path / "schoolbox-x86_64.img.xz"
    image.write_bytes(b"\xfd7zXZ\x00" + bytes(range(256)) * 64)
    sbom = tmp_path / "schoolbox-x86_64.packages.json"
    sbom.write_text(json.dumps([{"type": "deb", "name": "systemd", "version": "252"}]))
    signature = tmp_path / ("schoolbox-x86_64.img" + release.SUFFIX)
    release.sign(hub_store.district_keys(hub_home), [image, sbom], signature)
    return signature


def trusted(hub_home):
    return hub_store.district_keys(hub_home).public()


def test_a_signed_release_verifies_every_file_it_names(hub_home, published):
    checked = release.verify(published, trusted(hub_home))
    assert sorted(checked) == ["schoolbox-x86_64.img.xz", "schoolbox-x86_64.packages.json"]


def test_a_damaged_download_is_refused(hub_home, published):
    image = published.parent / "schoolbox-x86_64.img.xz"
    image.write_bytes(image.read_bytes()[:-100])  # a download cut short
    with pytest.raises(ReleaseError, match="not the file the district signed"):
        release.verify(published, trusted(hub_home))


def test_a_missing_file_is_refused(hub_home, published):
    (published.parent / "schoolbox-x86_64.packages.json").unlink()
    with pytest.raises(ReleaseError, match="not beside it"):
        release.verify(published, trusted(hub_home))


def test_another_districts_signature_is_refused(published):
    with pytest.raises(ReleaseError, match="does not match the district key"):
        release.verify(published, generate("district").public())


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d["files"].update({"extra.img": "0" * 64}), "does not match"),
        (lambda d: d.update(signature="not base64!"), "does not match"),
        (lambda d: d.pop("signature"), "does not match"),
        (lambda d: d.update(format="something-else/1"), "not a Schoolbox image signature"),
        (lambda d: d.update(files={}), "names no files"),
        (lambda d: d.update(files={"../../etc/passwd": "0" * 64}), "not allowed"),
    ],
)
def test_a_changed_signature_file_is_refused(hub_home, published, change, reason):
    document = json.loads(published.read_text())
    change(document)
    published.write_text(json.dumps(document))
    with pytest.raises(ReleaseError, match=reason):
        release.verify(published, trusted(hub_home))


def test_a_file_that_is_not_json_is_refused(hub_home, tmp_path):
    bogus = tmp_path / "x.sig.json"
    bogus.write_bytes(b"\x00garbage")
    with pytest.raises(ReleaseError, match="not JSON"):
        release.verify(bogus, trusted(hub_home))


def test_the_command_says_safe_to_flash_or_do_not_flash(hub_home, published):
    keys = str(hub_store.public_keys_path(hub_home))
    ok = CliRunner().invoke(main, ["image", "verify", str(published), "--district-keys", keys])
    assert ok.exit_code == 0 and "safe to flash" in ok.output, ok.output
    assert "schoolbox-x86_64.img.xz" in ok.output

    (published.parent / "schoolbox-x86_64.img.xz").write_bytes(b"changed")
    bad = CliRunner().invoke(main, ["image", "verify", str(published), "--hub-home", str(hub_home)])
    assert bad.exit_code == 1 and "Do not flash" in bad.output and "Traceback" not in bad.output


def test_the_command_asks_whose_key_to_trust(published):
    result = CliRunner().invoke(
        main, ["image", "verify", str(published)], env={"SCHOOLBOX_HUB_HOME": ""}
    )
    assert result.exit_code == 2 and "--district-keys" in result.output
