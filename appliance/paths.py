"""Every path under the box's data folder (SCHOOLBOX_HOME), in one place.

    schoolbox.toml            settings (appliance/config.py)
    schoolbox.db              the one SQLite file (appliance/store)
    provisioning.json         what first boot made of the site file (appliance/provisioning)
    secret.key                signs sessions; learners' PINs are keyed from it (private_mode)
    media/                    content packs' media files
    models/                   verified model files and which is active (models/registry)
    outbox/                   sealed sync bundles waiting for the district (sync/box)
    updates-incoming/         the district's updates, fetched, before they are applied
    keys/                     the box's own keys and what it pinned (sync, federated), and the
                              public half of the school's recovery key (sync/box/backup.py)
    backups/                  when the hub last took the school's sealed backup
    run/                      sockets and per-process metrics; safe to empty when stopped
    flwr/                     the Flower SuperNode's own state
    os-update/                an OS update in progress and past ones (sync/box/os_update.py)

The OS image puts this folder on the data partition; nothing else is written.
"""

from __future__ import annotations

import stat
from pathlib import Path


def settings_file(home: Path) -> Path:
    return home / "schoolbox.toml"


def database(home: Path) -> Path:
    return home / "schoolbox.db"


def secret(home: Path) -> Path:
    return home / "secret.key"


def media(home: Path) -> Path:
    return home / "media"


def models(home: Path) -> Path:
    return home / "models"


def outbox(home: Path) -> Path:
    return home / "outbox"


def updates_incoming(home: Path) -> Path:
    return home / "updates-incoming"


def tutor_socket(home: Path) -> Path:
    return home / "run" / "tutor.sock"


def metrics(home: Path) -> Path:
    return home / "run" / "metrics"


def box_key(home: Path) -> Path:
    """The box's private sync keys (signing and HPKE), 0600."""
    return home / "keys" / "box.key"


def district_keys(home: Path) -> Path:
    """The district's public keys, pinned at enrolment."""
    return home / "keys" / "district.json"


def pseudonym_key(home: Path) -> Path:
    """The key learners' pseudonymous ids upstream are made with; it leaves the box only
    inside the backup sealed to the school's recovery key (sync/recovery.py)."""
    return home / "keys" / "pseudonym.key"


def provisioning_status(home: Path) -> Path:
    """What first boot made of the site file: provisioned, or refused and why."""
    return home / "provisioning.json"


def setup_code(home: Path) -> Path:
    """The hash of the one-time code that lets the first admin claim a provisioned box."""
    return home / "keys" / "setup-code"


def federation_node_key(home: Path) -> Path:
    """The Flower SuperNode's private key, 0600."""
    return home / "keys" / "federation-node.key"


def federation_invitation(home: Path) -> Path:
    """The district's invitation to federated training, checked and pinned."""
    return home / "keys" / "federation.json"


def federation_ca(home: Path) -> Path:
    """The CA the district's SuperLink certificate must chain to."""
    return home / "keys" / "federation-ca.pem"


def flower(home: Path) -> Path:
    return home / "flwr"


def os_update(home: Path) -> Path:
    return home / "os-update"


def shared_with_group(folder: Path) -> bool:
    """True where `folder` is set-group-ID: on the box image the data folder is shared by
    the services' group (each service its own user: the image's sysusers.d), and Linux
    gives every folder made inside it the same bit."""
    try:
        return bool(folder.stat().st_mode & stat.S_ISGID)
    except OSError:
        return False


def private_mode(folder: Path) -> int:
    """The mode of a secret in `folder`: its owner's alone (0600), or readable by the
    services' group too (0640) where the folder is shared with one; never by others."""
    return 0o640 if shared_with_group(folder) else 0o600
