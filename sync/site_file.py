"""A site file: what the district tells a freshly flashed box about its school, signed.

District IT writes one per school (`schoolbox image site-file`), signs it with the
district's key, and drops it on the image's boot partition or a USB stick. On first boot
the box reads it, checks the signature against the district key baked into the image
(public half only), and provisions itself from it. A file that is unsigned, signed by
another key, changed after signing or malformed is refused whole, with the reason.

    {"format": "schoolbox-site-file/1",
     "site": {"school_id", "site_name", "wifi": {...}, "district": {public keys},
              "hub": url or null, "consent": {...}, "admin_ssh_key": str or null,
              "issued_at": ISO time},
     "signed_by": district key fingerprint, "signature": base64 Ed25519 over the site}

The Wi-Fi passphrase is a secret: the box moves the file off the boot partition once
it has read it (image/firstboot), and nothing here logs it.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature

from sync.files import canonical
from sync.keys import KeyFileError, PrivateKeys, PublicKeys

FORMAT = "schoolbox-site-file/1"
FILE_NAME = "schoolbox-site.json"  # what first boot looks for on the boot partition or a stick
WIFI_MODES = ("join", "access-point")
CONSENTS = ("tutor", "sync", "federated")
MAX_BYTES = 64 * 1024  # a site file is a few kilobytes; refuse anything far larger unread

_SCHOOL_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,38}[a-z0-9]")
_COUNTRY = re.compile(r"[A-Z]{2}")
_SSH_KEY = re.compile(
    r"(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) [A-Za-z0-9+/=]{60,} ?[^\n]{0,100}"
)


class SiteFileError(ValueError):
    """A site file that is refused; the message says what is wrong and what to do."""


def write(
    district: PrivateKeys,
    *,
    school_id: str,
    site_name: str,
    wifi: dict,
    hub: str | None = None,
    consent: dict | None = None,
    admin_ssh_key: str | None = None,
) -> dict:
    """A signed site file for one school; raises SiteFileError on a field that would be
    refused on the box, so district IT hears of it before flashing."""
    site: dict[str, Any] = {
        "school_id": school_id,
        "site_name": site_name,
        "wifi": wifi,
        "district": district.public().to_json(),
        "hub": hub,
        "consent": {name: bool((consent or {}).get(name, False)) for name in CONSENTS},
        "admin_ssh_key": admin_ssh_key.strip() if admin_ssh_key else None,
        "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    check_fields(site)
    signature = base64.b64encode(district.signing.sign(canonical(site))).decode()
    return {
        "format": FORMAT,
        "site": site,
        "signed_by": district.public().fingerprint(),
        "signature": signature,
    }


def read(path: Path, trusted: PublicKeys) -> dict:
    """The site from a signed file, checked against the district key the image trusts."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SiteFileError(f"{path.name} is too large to be a site file.")
        document = json.loads(path.read_bytes())
    except OSError as error:
        raise SiteFileError(f"{path} could not be read: {error.strerror}.") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SiteFileError(f"{path.name} is not a site file (not JSON).") from error
    return verify(document, trusted)


def verify(document: Any, trusted: PublicKeys) -> dict:
    """The site if `document` is a well-formed site file signed by `trusted`."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SiteFileError("This is not a Schoolbox site file (its format is not known).")
    site, signature = document.get("site"), document.get("signature")
    if not isinstance(site, dict):
        raise SiteFileError("The site file holds no site.")
    if not signature:
        raise SiteFileError(
            "The site file is not signed. Ask district IT for one written by "
            "`schoolbox image site-file`."
        )
    try:
        trusted.signing.verify(base64.b64decode(signature, validate=True), canonical(site))
    except (InvalidSignature, ValueError, TypeError) as error:
        raise SiteFileError(
            "The site file's signature does not match the district key this box trusts "
            f"({trusted.fingerprint()}): it was changed after signing, or signed by "
            "another district. Nothing was set up."
        ) from error
    check_fields(site)
    return site


def check_fields(site: Any) -> None:
    """Every field present and sensible; the first problem found is the message."""
    if not isinstance(site, dict):
        raise SiteFileError("The site file holds no site.")
    if not _SCHOOL_ID.fullmatch(str(site.get("school_id", ""))):
        raise SiteFileError(
            "school_id must be 3-40 lower-case letters, digits or dashes (for example "
            "'hill-primary')."
        )
    name = site.get("site_name")
    if not isinstance(name, str) or not name.strip() or len(name) > 120:
        raise SiteFileError("site_name must be the school's name (1-120 characters).")
    _check_wifi(site.get("wifi"))
    district = site.get("district")
    try:
        PublicKeys.from_json(district if isinstance(district, dict) else {})
    except KeyFileError as error:
        raise SiteFileError("The site file's district keys are damaged.") from error
    _check_hub(site.get("hub"))
    consent = site.get("consent")
    if not isinstance(consent, dict) or set(consent) != set(CONSENTS):
        raise SiteFileError(f"consent must say yes or no to each of: {', '.join(CONSENTS)}.")
    if not all(isinstance(v, bool) for v in consent.values()):
        raise SiteFileError("Each consent default must be true or false.")
    key = site.get("admin_ssh_key")
    if key is not None and not (isinstance(key, str) and _SSH_KEY.fullmatch(key)):
        raise SiteFileError(
            "admin_ssh_key must be one SSH public key line (ssh-ed25519 AAAA... name)."
        )


def _check_wifi(wifi: Any) -> None:
    if not isinstance(wifi, dict) or wifi.get("mode") not in WIFI_MODES:
        raise SiteFileError(
            "wifi.mode must be 'join' (the school's network) or 'access-point' (the box "
            "is the network)."
        )
    ssid = wifi.get("ssid")
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        raise SiteFileError("wifi.ssid must be the network's name (1-32 bytes).")
    passphrase = wifi.get("passphrase")
    # Never an open network: WPA2/WPA3 personal needs 8-63 printable ASCII characters.
    if not (
        isinstance(passphrase, str)
        and 8 <= len(passphrase) <= 63
        and all(32 <= ord(c) < 127 for c in passphrase)
    ):
        raise SiteFileError(
            "wifi.passphrase must be 8-63 printable ASCII characters: a school box never "
            "joins or offers an open network."
        )
    if not _COUNTRY.fullmatch(str(wifi.get("country", ""))):
        raise SiteFileError(
            "wifi.country must be the two-letter country code (for example 'KE'): it sets "
            "the radio channels that are legal there."
        )


def _check_hub(hub: Any) -> None:
    if hub is None:
        return  # a box that only ever syncs by USB stick
    parts = urlsplit(hub) if isinstance(hub, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise SiteFileError("hub must be the district hub's address (https://host:port).")
