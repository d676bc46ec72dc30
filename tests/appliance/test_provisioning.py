"""First boot from a signed site file (appliance/provisioning.py, `schoolbox provision`,
`schoolbox image site-file`) and the first admin claiming the box at /setup."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner
from markupsafe import escape

from appliance import paths, provisioning, setup_code
from appliance.cli import main
from appliance.config import Config
from appliance.store import open_db, site
from appliance.web.app import create_app
from models.registry import default
from models.registry import installed as model_store
from sync import enrolment
from sync.hub import home as hub_store
from tests.conftest import Browser

PASSPHRASE = "tembo-kubwa-42"
ADMIN_PASSWORD = "kiboko-ndogo-juu-7"  # noqa: S105 - a test's own
SSH_KEY = "ssh-ed25519 " + "A" * 68 + " it@district"


def cli(*args, input=None, env=None):
    return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)


@pytest.fixture
def district(tmp_path):
    """A district hub home with its keys, and the public half an image would carry."""
    hub_home = tmp_path / "hub"
    hub_store.init(hub_home)
    return hub_home


def site_file_of(district, tmp_path, name="site.json", ssid="Hill Primary"):
    key = tmp_path / "admin.pub"
    key.write_text(SSH_KEY + "\n")
    out = tmp_path / name
    result = cli(
        "image", "site-file", "--hub-home", str(district), "--school-id", "hill-primary",
        "--site-name", "Hill Primary", "--wifi-mode", "access-point", "--ssid", ssid,
        "--passphrase", PASSPHRASE, "--country", "KE", "--hub-url", "http://127.0.0.1:8090",
        "--consent", "tutor", "--admin-ssh-key", str(key), "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def provision(tmp_path, district, site_path, model_cache=None):
    """`schoolbox provision` as the image runs it; `model_cache` stands for the image's
    /usr/share/schoolbox/models (default: an image without the tutor model)."""
    home, report = tmp_path / "box", tmp_path / "report.json"
    result = cli(
        "--home", str(home), "provision", "--site-file", str(tmp_path / "not-here.json"),
        "--site-file", str(site_path), "--trusted", str(district / "district.json"),
        "--os-dir", str(tmp_path / "os"), "--report", str(report),
        env={"SCHOOLBOX_MODEL_CACHE": str(model_cache or tmp_path / "image-models")},
    )  # fmt: skip
    return result, home, report


def test_the_tutor_model_the_image_carries_is_installed_and_active(tmp_path, district,
                                                                   default_gguf):  # fmt: skip
    result, home, _ = provision(tmp_path, district, site_file_of(district, tmp_path),
                                model_cache=default_gguf.parent)  # fmt: skip
    assert result.exit_code == 0, result.output
    active = model_store.active(home, "tutor-llm")
    assert active is not None and active.sha256 == default.GGUF_SHA256


def test_an_image_without_a_tutor_model_is_set_up_without_one(tmp_path, district):
    result, home, _ = provision(tmp_path, district, site_file_of(district, tmp_path))
    assert result.exit_code == 0, result.output
    assert model_store.active(home, "tutor-llm") is None
    assert model_store.active(home, "knowledge-tracing") is not None


def test_a_provisioned_box_boots_without_its_site_file(tmp_path, district):
    """After the stick is taken away, first boot says it is done, not refused."""
    site_path = site_file_of(district, tmp_path)
    provision(tmp_path, district, site_path)
    site_path.unlink()
    result, home, _ = provision(tmp_path, district, site_path)
    assert result.exit_code == 0, result.output
    assert provisioning.last_status(home)["state"] == "provisioned"


def test_a_box_sets_itself_up_from_a_signed_site_file(tmp_path, district):
    site_path = site_file_of(district, tmp_path)
    assert stat.S_IMODE(site_path.stat().st_mode) == 0o600  # it holds the Wi-Fi passphrase
    result, home, report = provision(tmp_path, district, site_path)
    assert result.exit_code == 0, result.output
    done = json.loads(report.read_text())
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    # The code goes to the screen and the stick through the report, never to the log.
    assert done["admin_setup_code"] not in result.output
    assert done["fingerprint"] in result.output and PASSPHRASE not in result.output
    db = open_db(home / "schoolbox.db")
    assert site.get(db)["name"] == "Hill Primary"
    assert site.is_consented(db, "tutor") and not site.is_consented(db, "sync")
    assert not setup_code.has_admin(db)  # no default password: the first admin claims it
    db.conn.close()
    box_keys = enrolment.ensure_box_keys(home, done["box_id"])
    assert box_keys.public().fingerprint() == done["fingerprint"]
    assert enrolment.district_keys(home).to_json() == json.loads(
        (district / "district.json").read_text()
    )
    assert paths.federation_node_key(home).exists()
    assert 'sync_url = "http://127.0.0.1:8090"' in paths.settings_file(home).read_text()
    assert json.loads(paths.provisioning_status(home).read_text())["state"] == "provisioned"
    os_dir = tmp_path / "os"
    hostapd = (os_dir / "hostapd.conf").read_text()
    assert "wpa=2" in hostapd and "SAE" in hostapd and f"wpa_passphrase={PASSPHRASE}" in hostapd
    assert f"ssid2={b'Hill Primary'.hex()}" in hostapd
    assert (os_dir / "authorized_keys").read_text().strip() == SSH_KEY
    assert not (os_dir / "wpa_supplicant.conf").exists()
    for secret in (os_dir / "hostapd.conf", os_dir / "authorized_keys"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_every_later_boot_with_the_same_site_file_changes_nothing(tmp_path, district):
    """The code on the stick stays the one that works until the admin uses it."""
    site_path = site_file_of(district, tmp_path)
    _, home, report = provision(tmp_path, district, site_path)
    first = json.loads(report.read_text())
    result, _, _ = provision(tmp_path, district, site_path)
    assert result.exit_code == 0 and "already set up" in result.output
    assert json.loads(report.read_text()) == first
    assert setup_code.matches(home, first["admin_setup_code"])


def test_a_new_site_file_keeps_the_keys_and_voids_the_old_code(tmp_path, district):
    _, home, report = provision(tmp_path, district, site_file_of(district, tmp_path))
    first = json.loads(report.read_text())
    newer = site_file_of(district, tmp_path, name="newer.json", ssid="Hill Primary 2")
    result, _, report = provision(tmp_path, district, newer)
    assert result.exit_code == 0, result.output
    second = json.loads(report.read_text())
    assert (second["box_id"], second["fingerprint"]) == (first["box_id"], first["fingerprint"])
    assert not setup_code.matches(home, first["admin_setup_code"])
    assert setup_code.matches(home, second["admin_setup_code"])


def test_first_boot_cut_short_runs_again_whole(tmp_path, district):
    site_path = site_file_of(district, tmp_path)
    _, home, report = provision(tmp_path, district, site_path)
    paths.provisioning_status(home).unlink()  # the power went before the last step
    result, _, _ = provision(tmp_path, district, site_path)
    assert result.exit_code == 0 and "already set up" not in result.output
    assert provisioning.last_status(home)["state"] == "provisioned"


@pytest.mark.parametrize("fault", ["tampered", "other district", "unsigned", "missing"])
def test_a_site_file_not_to_be_trusted_sets_nothing_up_and_says_why(tmp_path, district, fault):
    site_path = site_file_of(district, tmp_path)
    document = json.loads(site_path.read_text())
    if fault == "tampered":
        document["site"]["wifi"]["passphrase"] = "the-neighbours-net"
    elif fault == "other district":
        other = tmp_path / "other-hub"
        hub_store.init(other)
        document = json.loads(site_file_of(other, tmp_path, "other.json").read_text())
    elif fault == "unsigned":
        del document["signature"]
    site_path.unlink()
    if fault != "missing":
        site_path.write_text(json.dumps(document))
    result, home, report = provision(tmp_path, district, site_path)
    assert result.exit_code != 0 and "Not set up" in result.output
    assert not report.exists() and not (tmp_path / "os").exists()
    assert not (home / "schoolbox.db").exists() and not paths.box_key(home).exists()
    status = json.loads(paths.provisioning_status(home).read_text())
    assert status["state"] == "refused"
    # The box says so on its page to whoever opens it.
    page = Browser(create_app(Config(home=home, testing=True))).get("/")
    assert page.status_code == 503
    assert b"did not set itself up" in page.data
    assert str(escape(status["message"])).encode() in page.data


def test_a_box_set_up_for_one_school_refuses_another_schools_file(tmp_path, district):
    provision(tmp_path, district, site_file_of(district, tmp_path))
    other_path = tmp_path / "other-school.json"
    result = cli(
        "image", "site-file", "--hub-home", str(district), "--school-id", "lake-school",
        "--site-name", "Lake School", "--wifi-mode", "join", "--ssid", "Lake",
        "--passphrase", PASSPHRASE, "--country", "KE", "--out", str(other_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result, _, _ = provision(tmp_path, district, other_path)
    assert result.exit_code != 0 and "already set up for 'Hill Primary'" in result.output


def test_district_it_cannot_write_an_open_network_or_overwrite_a_file(tmp_path, district):
    out = site_file_of(district, tmp_path)
    again = cli(
        "image", "site-file", "--hub-home", str(district), "--school-id", "hill-primary",
        "--site-name", "Hill", "--wifi-mode", "join", "--ssid", "Hill", "--passphrase", "",
        "--country", "KE", "--out", str(tmp_path / "open.json"),
    )  # fmt: skip
    assert again.exit_code != 0 and "open network" in again.output
    assert not (tmp_path / "open.json").exists()
    twice = cli(
        "image", "site-file", "--hub-home", str(district), "--school-id", "hill-primary",
        "--site-name", "Hill", "--wifi-mode", "join", "--ssid", "Hill",
        "--passphrase", PASSPHRASE, "--country", "KE", "--out", str(out),
    )  # fmt: skip
    assert twice.exit_code != 0 and "exists already" in twice.output


# --- the first admin claims the box ----------------------------------------------------


@pytest.fixture
def provisioned(tmp_path, district):
    _, home, report = provision(tmp_path, district, site_file_of(district, tmp_path))
    app = create_app(Config(home=home, testing=True))
    return app, home, json.loads(report.read_text())["admin_setup_code"]


def claim(browser: Browser, code: str, password: str = ADMIN_PASSWORD):
    return browser.post("/setup", {
        "code": code, "display_name": "Amina Otieno", "username": "amina",
        "password": password, "password_again": password,
    })  # fmt: skip


def test_the_first_admin_claims_the_box_with_the_code_once(provisioned):
    app, home, code = provisioned
    browser = Browser(app)
    assert browser.get("/").headers["Location"].endswith("/setup")
    assert b"Setup code" in browser.get("/setup").data
    typed = code.lower().replace("-", " ")  # as read off a screen
    response = claim(browser, typed)
    assert response.status_code == 302, response.data[:400]
    assert browser.get(response.headers["Location"]).status_code == 200  # signed in, admin
    assert not paths.setup_code(home).exists()
    again = Browser(app)
    assert again.get("/setup").status_code == 302  # nothing left to claim
    assert claim(again, code).status_code == 302 and again.get("/").headers["Location"].endswith(
        "/signin"
    )
    assert again.signin_staff("amina", ADMIN_PASSWORD).status_code == 302


def test_a_wrong_code_creates_nobody_and_guessing_is_throttled(provisioned):
    app, home, code = provisioned
    browser = Browser(app)
    wrong = [claim(browser, "AAAA-BBBB-CCCC") for _ in range(6)]
    assert [r.status_code for r in wrong[:5]] == [401] * 5
    assert wrong[5].status_code == 429 and wrong[5].headers.get("Retry-After")
    db = open_db(home / "schoolbox.db")
    assert not setup_code.has_admin(db)
    db.conn.close()
    # A guessing device does not lock the real admin out on another device.
    other = Browser(app)
    other.client.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert claim(other, code).status_code == 302


def test_a_weak_password_or_a_typo_keeps_the_code_for_another_try(provisioned):
    app, home, code = provisioned
    browser = Browser(app)
    weak = claim(browser, code, password="password")
    assert weak.status_code == 400 and paths.setup_code(home).exists()
    typo = browser.post("/setup", {
        "code": code, "display_name": "Amina", "username": "amina",
        "password": ADMIN_PASSWORD, "password_again": "kiboko-ndogo-juu-8",
    })  # fmt: skip
    assert typo.status_code == 400 and b"not the same" in typo.data
    assert claim(browser, code).status_code == 302


def test_a_box_set_up_with_init_has_no_setup_page(app):
    browser = Browser(app)
    assert browser.get("/setup").status_code == 302
    assert claim(browser, "ABCD-EFGH-JKLM").status_code == 302


def test_a_full_data_partition_is_reported_in_one_line(tmp_path, district, monkeypatch):
    # A full disk cannot be made here (tests run as root); the fault is raised where
    # the real one would be, inside the setup.
    def full(*_args):
        raise OSError(28, "No space left on device", "/var/lib/schoolbox/schoolbox.db")

    monkeypatch.setattr(provisioning, "provision", full)
    result, home, report = provision(tmp_path, district, site_file_of(district, tmp_path))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "No space left on device" in result.output and not report.exists()
    assert json.loads(paths.provisioning_status(home).read_text())["state"] == "refused"
