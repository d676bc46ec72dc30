"""First boot: a flashed box sets itself up from the district's signed site file.

`provision()` is what the image's one-shot unit runs (`schoolbox provision`). It checks
the site file against the district key baked into the image, then, in this order and
each step safe to repeat if the power fails halfway: the database and the box's secret,
the site, the consent defaults, the shipped knowledge-tracing model, the box's own keys
(sync signing and HPKE, the Flower node key), the district's keys pinned, the hub's
address, and a one-time setup code for the first admin. The OS settings the site file
carries (Wi-Fi, an admin's SSH key) are written to `os_dir` for the image's units.

What it returns (the box's key fingerprint and the setup code) is shown on the admin's
screen and written to the stick the site file came from, never logged.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from appliance import config as config_module
from appliance import paths, setup_code
from appliance.store import audit, open_db, site, transaction
from appliance.store.migrations import migrate
from federated import identity
from models.registry import default
from sync import enrolment, site_file
from sync.files import write_durably
from sync.keys import PublicKeys

SITE_FILE_ACTOR = audit.SYSTEM  # consent defaults are the district's, recorded as set by it


@dataclass(frozen=True)
class Provisioned:
    school_id: str
    site_name: str
    box_id: str
    fingerprint: str  # the box's sync keys, read to the district over the phone
    admin_setup_code: str | None  # None once the box has its first admin

    def to_json(self) -> dict:
        return asdict(self)


class ProvisioningError(Exception):
    """The box could not set itself up; the message is for the status page."""


def provision(home: Path, site_path: Path, trusted_path: Path, os_dir: Path) -> Provisioned:
    """Set up the box in `home` from the site file at `site_path`, signed by the district
    key in `trusted_path`; SiteFileError (nothing changed) if it is not to be trusted."""
    try:
        trusted = PublicKeys.from_json(json.loads(trusted_path.read_text()))
    except (OSError, ValueError) as error:
        raise ProvisioningError(
            f"The image carries no usable district key ({trusted_path}): rebuild the "
            "image with the district's public keys."
        ) from error
    school = site_file.read(site_path, trusted)
    home.mkdir(parents=True, exist_ok=True)
    config = config_module.load(home=home)
    config_module.ensure_secret(config)
    db = open_db(config.db_path)
    try:
        migrate(db)
        box_id = _site(db, school)
        default.install_knowledge_tracing(home)
        _install_shipped_tutor(config)
        box_keys = enrolment.ensure_box_keys(home, box_id)
        identity.ensure_node_key(paths.federation_node_key(home))
        enrolment.pin_district(home, school["district"], replace=False)
        if school["hub"]:
            _set_hub(home, school["hub"])
        write_os_settings(os_dir, school)
        code = setup_code.issue(home, db)  # last: a code is shown only for a whole setup
    finally:
        db.conn.close()
    return Provisioned(
        school_id=school["school_id"],
        site_name=school["site_name"],
        box_id=box_id,
        fingerprint=box_keys.public().fingerprint(),
        admin_setup_code=code,
    )


def _install_shipped_tutor(config: config_module.Config) -> None:
    """The default tutor model the image carries (its model cache, /usr/share/schoolbox/
    models), never downloaded here: without it the box serves lessons without the tutor
    until an admin imports a model."""
    if (config.model_cache_dir / default.GGUF_FILE).is_file():
        default.install(config.home, config.model_cache_dir)


def record_status(home: Path, *, refused: str | None = None, fingerprint: str = "",
                  site_file: Path | None = None) -> None:  # fmt: skip
    """What first boot did, for the status page and the not-set-up page: the reason a
    site file was refused, or the box's key fingerprint and which site file set it up
    (its sha256). Never the setup code."""
    status = {
        "state": "refused" if refused else "provisioned",
        "message": refused or "",
        "fingerprint": fingerprint,
        "site_file_sha256": _sha256(site_file) if site_file else "",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_durably(paths.provisioning_status(home), json.dumps(status, indent=2).encode())


def already_applied(home: Path, site_file: Path | None) -> bool:
    """True when the box was set up and `site_file` is the one it was set up from (or there
    is none now): every later boot then ends at once, and a setup code not yet used stays
    the one on the stick. A new site file (new Wi-Fi, say) is applied."""
    status = last_status(home) or {}
    if status.get("state") != "provisioned":
        return False
    return site_file is None or status.get("site_file_sha256") == _sha256(site_file)


def _sha256(path: Path) -> str:
    with path.open("rb") as source:  # a site file is at most 64 KB; a bigger one is refused
        return hashlib.sha256(source.read(site_file.MAX_BYTES + 1)).hexdigest()


def last_status(home: Path) -> dict | None:
    """What `record_status` kept, or None on a box never provisioned from a site file."""
    try:
        return json.loads(paths.provisioning_status(home).read_text())
    except (OSError, ValueError):
        return None


def _site(db, school: dict) -> str:
    """The site row (created once) and the consent defaults; the box id."""
    found = site.get(db)
    if found is not None:
        if found["name"] != school["site_name"]:
            raise ProvisioningError(
                f"This box is already set up for {found['name']!r}; a site file for "
                f"{school['site_name']!r} cannot take it over. Reflash it to start again."
            )
        return found["box_id"]
    with transaction(db):
        created = site.create(db, school["site_name"])
        for feature, granted in school["consent"].items():
            site.set_consent(db, SITE_FILE_ACTOR, feature, granted)
        audit.record(db, SITE_FILE_ACTOR, "site.provision", "site", 1)
    return created["box_id"]


def _set_hub(home: Path, hub: str) -> None:
    """`sync_url` in schoolbox.toml, unless an admin already set one there."""
    settings = paths.settings_file(home)
    text = settings.read_text(encoding="utf-8") if settings.exists() else ""
    if "sync_url" in text:
        return
    if "[schoolbox]" not in text:
        text += ("\n" if text else "") + "[schoolbox]\n"
    # A JSON string is a valid TOML basic string (the same escapes).
    write_durably(settings, (text + f"sync_url = {json.dumps(hub)}\n").encode())


# --- what the image's units read ---------------------------------------------------------


def write_os_settings(os_dir: Path, school: dict) -> None:
    """Wi-Fi (join: wpa_supplicant; access point: hostapd), the hostname, and an admin's
    SSH key; 0600, on the data partition, since the root filesystem is read-only."""
    os_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    wifi = school["wifi"]
    if wifi["mode"] == "access-point":
        write_durably(os_dir / "hostapd.conf", hostapd_conf(wifi))
        (os_dir / "wpa_supplicant.conf").unlink(missing_ok=True)
    else:
        write_durably(os_dir / "wpa_supplicant.conf", wpa_supplicant_conf(wifi))
        (os_dir / "hostapd.conf").unlink(missing_ok=True)
    write_durably(os_dir / "hostname", b"schoolbox\n")
    if school["admin_ssh_key"]:
        write_durably(os_dir / "authorized_keys", school["admin_ssh_key"].encode() + b"\n")
    else:
        (os_dir / "authorized_keys").unlink(missing_ok=True)  # SSH stays off


def hostapd_conf(wifi: dict) -> bytes:
    """The box as the school's access point: WPA2 and WPA3 (SAE) personal, never open."""
    return _lines(
        "interface=wlan0",
        f"ssid2={_hex(wifi['ssid'])}",
        f"country_code={wifi['country']}",
        "ieee80211d=1",
        "hw_mode=g",
        "channel=6",
        "wpa=2",
        "wpa_key_mgmt=WPA-PSK SAE",
        "rsn_pairwise=CCMP",
        "ieee80211w=1",  # management frame protection: optional for WPA2, required by SAE
        f"wpa_passphrase={wifi['passphrase']}",
        f"sae_password={wifi['passphrase']}",
        "ap_isolate=1",  # learners' devices talk to the box, not to each other
    )


def wpa_supplicant_conf(wifi: dict) -> bytes:
    """The box joins the school's network (WPA2 or WPA3 personal)."""
    return _lines(
        f"country={wifi['country']}",
        "network={",
        f"    ssid={_hex(wifi['ssid'])}",
        # wpa_supplicant takes what lies between the first and the last quote, unescaped;
        # the site file allows printable ASCII only, so no line break can get in.
        f'    psk="{wifi["passphrase"]}"',
        "    key_mgmt=WPA-PSK SAE",
        "    ieee80211w=1",
        "}",
    )


def _hex(ssid: str) -> str:
    return ssid.encode().hex()  # any bytes in an SSID, with no quoting to get wrong


def _lines(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()
