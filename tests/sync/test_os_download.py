"""OS updates from the hub (sync/hub/os_updates.py, sync/box/os_download.py): the hub
offers only bundles signed with the district's OS update key and streams them with Range;
a box downloads the one for its kind, across syncs, resumes a download cut short, checks
it whole, and hands it to `schoolbox os-update install --downloaded`.

Everything is real: RAUC signs and reads the bundles, the hub is `schoolbox hub serve` on
a loopback port, and the box's sync is `schoolbox sync now`. Installing into a slot is the
image's (tests/image/test_update.py); here `rauc install` is recorded, as in
tests/sync/test_os_update.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from appliance import health, paths
from appliance.cli import main
from image import update
from sync.box import os_download, os_update
from sync.hub import home as hub_store
from sync.hub import os_update_signer, os_updates
from sync.os_bundle import OsUpdateError

pytestmark = pytest.mark.skipif(
    not (shutil.which("rauc") and shutil.which("mksquashfs")),
    reason="RAUC and squashfs-tools are not installed (make image-tools installs them)",
)

COMPATIBLE = "schoolbox-x86_64"


@pytest.fixture
def hub_home(tmp_path) -> Path:
    """A district hub (SQLite; the database plays no part here) with its OS update key."""
    home = tmp_path / "hub"
    hub_store.init(home)
    os_update_signer.ensure(home)
    return home


def make_bundle(hub_home: Path, folder: Path, version: str, compatible: str = COMPATIBLE) -> Path:
    """A bundle of a 3 MiB stand-in root (three download chunks), signed by `hub_home`'s key."""
    folder.mkdir(parents=True, exist_ok=True)
    root = folder / f"root-{version}.ext4"
    root.write_bytes(os.urandom(3 << 20))  # random: squashfs cannot shrink it
    return update.bundle(root, compatible, version, hub_home,
                         folder / f"{compatible}-{version}.raucb")  # fmt: skip


@pytest.fixture
def published(hub_home, tmp_path) -> Path:
    bundle = make_bundle(hub_home, tmp_path / "built", "0.2.0")
    os_updates.publish(hub_home, bundle)
    return bundle


@pytest.fixture
def home(tmp_path) -> Path:
    found = tmp_path / "box"
    found.mkdir()
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_hub_publishes_only_bundles_signed_with_its_os_update_key(hub_home, tmp_path):
    good = make_bundle(hub_home, tmp_path / "built", "0.2.0")
    record = os_updates.publish(hub_home, good)
    assert (record["version"], record["compatible"], record["sha256"], record["size"]) == (
        "0.2.0", COMPATIBLE, sha256(good), good.stat().st_size)  # fmt: skip
    another = tmp_path / "another-district"  # its own OS update key
    forged = make_bundle(another, tmp_path / "forged", "9.9")
    with pytest.raises(OsUpdateError, match="was refused"):
        os_updates.publish(hub_home, forged)
    assert [r["file"] for r in os_updates.listing(hub_home)] == [good.name]
    assert os_updates.bundle_path(hub_home, "../hub.db") is None
    assert os_updates.withdraw(hub_home, good.name) and os_updates.listing(hub_home) == []


def test_the_hub_streams_a_bundle_with_range_requests(published, hub_server):
    base = f"http://127.0.0.1:{hub_server}/v1/os-updates"
    listed = requests.get(base, timeout=10).json()["os_updates"]
    assert [r["file"] for r in listed] == [published.name]
    whole = requests.get(f"{base}/{published.name}", timeout=30)
    assert whole.status_code == 200 and whole.content == published.read_bytes()
    tail = requests.get(f"{base}/{published.name}", headers={"Range": "bytes=1000-"}, timeout=30)
    assert tail.status_code == 206 and tail.content == published.read_bytes()[1000:]
    assert requests.get(f"{base}/..%2Fhub.db", timeout=10).status_code == 404
    assert requests.post(f"{base}/{published.name}", timeout=10).status_code == 405


def test_a_box_fetches_the_bundle_for_its_kind_and_it_is_ready_to_install(
    published, hub_home, hub_server, home, tmp_path
):
    url = f"http://127.0.0.1:{hub_server}"
    # Another kind of box's bundle, published later, is not this box's.
    os_updates.publish(
        hub_home, make_bundle(hub_home, tmp_path / "pi", "0.3.0", "schoolbox-aarch64")
    )
    got = os_download.fetch(url, home, COMPATIBLE, "0.1.0")
    assert got is not None and got.read_bytes() == published.read_bytes()
    assert os_download.ready(home) == [got]
    assert os_download.state(home) == {"version": "0.2.0", "size": got.stat().st_size,
                                       "have": got.stat().st_size, "complete": True,
                                       "problem": None}  # fmt: skip
    certificate = os_update_signer.certificate_path(hub_home)
    assert os_update.inspect(got, certificate).version == "0.2.0"  # RAUC's own check passes
    assert os_download.fetch(url, home, COMPATIBLE, "0.1.0") == got  # once is enough
    assert os_download.fetch(url, home, COMPATIBLE, "0.2.0") is None  # running it already
    assert os_download.ready(home) == []  # and the download is gone


def test_a_download_cut_short_goes_on_from_where_it_stopped(published, hub_server, home):
    url = f"http://127.0.0.1:{hub_server}"
    # No time at all: one chunk, then the sync's budget is spent.
    assert os_download.fetch(url, home, COMPATIBLE, "0.1.0", budget_s=0) is None
    part = os_download.incoming(home) / (published.name + os_download.PART)
    assert part.stat().st_size == os_download.CHUNK
    progress = os_download.state(home)
    assert progress["complete"] is False and 0 < progress["have"] < progress["size"]
    # The next sync asks for the rest only: were it sent from the start again, the byte
    # changed here would be overwritten and the bundle would come out whole.
    with part.open("r+b") as damaged:
        damaged.write(b"\0" if published.read_bytes()[:1] != b"\0" else b"\1")
    with pytest.raises(OsUpdateError, match="did not match its record"):
        os_download.fetch(url, home, COMPATIBLE, "0.1.0")
    assert not part.exists()  # thrown away; the sync after that starts afresh
    got = os_download.fetch(url, home, COMPATIBLE, "0.1.0")
    assert got is not None and sha256(got) == sha256(published)


def test_a_bundle_refused_here_is_not_fetched_again(published, hub_server, home):
    url = f"http://127.0.0.1:{hub_server}"
    os_update.note_refused(home, published.name, "refused on purpose", sha256(published))
    assert os_download.fetch(url, home, COMPATIBLE, "0.1.0") is None
    assert not any(os_download.incoming(home).iterdir())


def test_a_download_waits_while_the_data_partition_lacks_room(published, hub_server, home,
                                                               monkeypatch):  # fmt: skip
    free = shutil.disk_usage(home).free
    monkeypatch.setattr(os_download, "RESERVE_BYTES", free)  # the school's data first
    with pytest.raises(OsUpdateError, match=r"needs \d+ MB more on the data partition"):
        os_download.fetch(f"http://127.0.0.1:{hub_server}", home, COMPATIBLE, "0.1.0")
    assert not (os_download.incoming(home) / (published.name + os_download.PART)).exists()
    assert "needs" in os_download.state(home)["problem"]  # for Admin > Status
    monkeypatch.setattr(os_download, "RESERVE_BYTES", 0)  # room made: the next sync goes on
    assert os_download.fetch(f"http://127.0.0.1:{hub_server}", home, COMPATIBLE, "0.1.0")
    assert os_download.state(home)["problem"] is None


def test_off_the_image_a_box_fetches_no_os_update(published, hub_server, home, tmp_path):
    assert os_update.compatible(tmp_path / "no-system.conf") is None
    assert (
        os_download.fetch(f"http://127.0.0.1:{hub_server}", home) is None
    )  # this host: no RAUC system
    conf = tmp_path / "system.conf"
    conf.write_text("[system]\ncompatible=schoolbox-aarch64\nbootloader=grub\n")
    assert os_update.compatible(conf) == "schoolbox-aarch64"


def test_sync_now_downloads_it_and_the_install_service_installs_it(
    published, hub_home, hub_server, config, db, tmp_path, monkeypatch
):
    """`schoolbox sync now` (the sync service), then `os-update install --downloaded` (the
    install service at night): the bundle goes to the other slot and the download goes."""
    from tests.sync.conftest import make_box

    make_box(config.home, hub_home, db)
    conf, release = tmp_path / "system.conf", tmp_path / "schoolbox-release"
    conf.write_text(f"[system]\ncompatible={COMPATIBLE}\n")
    release.write_text("VERSION=0.1.0\n")
    monkeypatch.setattr(os_update, "SYSTEM_CONF", conf)
    monkeypatch.setattr(os_update, "RELEASE_FILE", release)
    url = f"http://127.0.0.1:{hub_server}"
    runner = CliRunner()
    result = runner.invoke(main, ["--home", str(config.home), "sync", "now", "--url", url])
    assert result.exit_code == 0 and f"OS update {published.name} downloaded" in result.output
    # The install service, with `rauc install` recorded and the slot as GRUB would say.
    log, script = tmp_path / "rauc-install.log", tmp_path / "rauc"
    script.write_text(f'#!/bin/sh\nif [ "$1" = install ]; then echo "$@" >> {log}; exit 0; fi\n'
                      f'exec {shutil.which("rauc")} "$@"\n')  # fmt: skip
    script.chmod(0o755)
    monkeypatch.setattr(os_update, "RAUC", str(script))
    monkeypatch.setattr(os_update, "KEYRING", os_update_signer.certificate_path(hub_home))
    monkeypatch.setattr(os_update, "booted_slot", lambda *_: "A")
    # A stick left in from an earlier update, installed already: passed over, not the end.
    older = make_bundle(hub_home, tmp_path / "stick", "0.1.5")
    os_update.install(config.home, older, "B", [])
    assert os_update.settle(config.home, "A", good=True) == "updated to 0.1.5"
    result = runner.invoke(main, ["--home", str(config.home), "os-update", "install",
                                  "--stick", str(older.parent), "--downloaded", "--no-reboot"])  # fmt: skip
    assert "0.1.5" in result.output and "installed already" in result.output, result.output
    assert result.exit_code == 0 and "Installed version 0.2.0" in result.output, result.output
    assert log.read_text().split()[0] == "install" and published.name in log.read_text()
    assert json.loads((paths.os_update(config.home) / "pending.json").read_text())["to_slot"] == "B"
    assert os_download.ready(config.home) == [] and os_download.state(config.home) is None


def test_the_admin_sees_a_download_under_way(published, hub_server, app, ids, config, tmp_path,
                                             monkeypatch):  # fmt: skip
    from tests.conftest import as_role

    cmdline = tmp_path / "cmdline"
    cmdline.write_text("ro rauc.slot=A quiet\n")
    monkeypatch.setattr(health, "CMDLINE", cmdline)
    url = f"http://127.0.0.1:{hub_server}"
    monkeypatch.setattr(os_download, "RESERVE_BYTES", shutil.disk_usage(config.home).free)
    with pytest.raises(OsUpdateError):
        os_download.fetch(url, config.home, COMPATIBLE, "0.1.0")
    page = as_role(app, "admin", ids).get("/admin/").data.decode()
    assert "System update 0.2.0 cannot be downloaded from the district hub now" in page
    assert "MB more on the data partition" in page
    monkeypatch.setattr(os_download, "RESERVE_BYTES", 0)
    os_download.fetch(url, config.home, COMPATIBLE, "0.1.0", budget_s=0)
    page = as_role(app, "admin", ids).get("/admin/").data.decode()
    assert "System update 0.2.0 is being downloaded from the district hub" in page
    os_download.fetch(url, config.home, COMPATIBLE, "0.1.0")
    page = as_role(app, "admin", ids).get("/admin/").data.decode()
    assert 'data-complete="yes"' in page and "installed tonight at 02:30" in page


def test_a_hub_sending_more_than_its_record_says_cannot_fill_the_disk(published, hub_home,
                                                                      hub_server, home):  # fmt: skip
    record_path = os_updates.folder(hub_home) / (published.name + ".json")
    record = json.loads(record_path.read_text())
    first = published.read_bytes()[: os_download.CHUNK]  # the record now names only this
    record.update(size=len(first), sha256=hashlib.sha256(first).hexdigest())
    record_path.write_text(json.dumps(record))
    got = os_download.fetch(f"http://127.0.0.1:{hub_server}", home, COMPATIBLE, "0.1.0")
    assert got is not None and got.read_bytes() == first  # and not a byte more was kept
