"""Site files (sync/site_file.py): signed by the district, refused whole when not to be trusted."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from sync import site_file
from sync.files import canonical
from sync.keys import generate
from sync.site_file import SiteFileError

SSH_KEY = "ssh-ed25519 " + "A" * 68 + " amina@district"
WIFI = {"mode": "access-point", "ssid": "Hill Primary", "passphrase": "tembo-kubwa-42",
        "country": "KE"}  # fmt: skip


@pytest.fixture(scope="module")
def district():
    return generate("district")


def written(district, **changes) -> dict:
    fields = {
        "school_id": "hill-primary",
        "site_name": "Hill Primary",
        "wifi": WIFI,
        "hub": "https://hub.district.example:8090",
        "consent": {"tutor": True},
        "admin_ssh_key": SSH_KEY,
        **changes,
    }
    return site_file.write(district, **fields)


def test_a_signed_site_file_reads_back_as_written(district, tmp_path):
    path = tmp_path / site_file.FILE_NAME
    path.write_text(json.dumps(written(district)))
    site = site_file.read(path, district.public())
    assert site["school_id"] == "hill-primary" and site["wifi"] == WIFI
    assert site["consent"] == {"tutor": True, "sync": False, "federated": False}
    assert site["district"] == district.public().to_json()
    assert site["admin_ssh_key"] == SSH_KEY


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d["site"].update(site_name="Other School"), "changed after signing"),
        (lambda d: d["site"]["wifi"].update(passphrase="open-sesame"), "changed after signing"),
        (lambda d: d.pop("signature"), "not signed"),
        (lambda d: d.update(signature=""), "not signed"),
        (lambda d: d.update(signature="not base64!"), "changed after signing"),
        (lambda d: d.update(format="something-else/1"), "not a Schoolbox site file"),
    ],
)
def test_a_changed_or_unsigned_site_file_is_refused_with_the_reason(district, change, says):
    document = copy.deepcopy(written(district))
    change(document)
    with pytest.raises(SiteFileError, match=says):
        site_file.verify(document, district.public())


def test_a_site_file_signed_by_another_district_is_refused(district):
    other = generate("district")
    with pytest.raises(SiteFileError, match="another district"):
        site_file.verify(written(other), district.public())


def test_a_file_that_is_not_json_or_is_huge_is_refused_unread(district, tmp_path):
    path = tmp_path / "site.json"
    path.write_bytes(b"\x00\xff not json")
    with pytest.raises(SiteFileError, match="not JSON"):
        site_file.read(path, district.public())
    path.write_bytes(b" " * (site_file.MAX_BYTES + 1))
    with pytest.raises(SiteFileError, match="too large"):
        site_file.read(path, district.public())
    with pytest.raises(SiteFileError, match="could not be read"):
        site_file.read(tmp_path / "missing.json", district.public())


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"school_id": "Hill Primary"}, "school_id"),
        ({"site_name": " "}, "site_name"),
        ({"wifi": {**WIFI, "passphrase": ""}}, "never"),  # an open network
        ({"wifi": {**WIFI, "passphrase": "short"}}, "8-63"),
        ({"wifi": {**WIFI, "passphrase": "tembo\nkubwa42"}}, "printable"),
        ({"wifi": {**WIFI, "mode": "open"}}, "wifi.mode"),
        ({"wifi": {**WIFI, "ssid": "x" * 33}}, "wifi.ssid"),
        ({"wifi": {**WIFI, "country": "Kenya"}}, "country"),
        ({"hub": "hub.district.example"}, "hub"),
        ({"admin_ssh_key": "ssh-ed25519 AAAA\nssh-rsa BBBB"}, "admin_ssh_key"),
    ],
)
def test_district_it_hears_of_a_bad_field_when_writing_not_on_the_box(district, changes, says):
    with pytest.raises(SiteFileError, match=says):
        written(district, **changes)


def test_a_signed_file_with_a_bad_field_is_still_refused_on_the_box(district):
    # A district tool of another version may sign what this box cannot use.
    document = written(district)
    document["site"]["wifi"]["passphrase"] = ""
    signature = district.signing.sign(canonical(document["site"]))
    document["signature"] = base64.b64encode(signature).decode()
    with pytest.raises(SiteFileError, match="open network"):
        site_file.verify(document, district.public())
