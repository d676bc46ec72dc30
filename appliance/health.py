"""What keeps the box from serving a school: a full disk, a lost secret key, a damaged
database, a missing model file. /readyz and the admin's status page both ask here."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config, ConfigError, read_secret
from models.registry import installed as store
from sync.box import os_download, os_update


@dataclass(frozen=True)
class Disk:
    free: int
    total: int
    low: bool  # below disk_warn_mb: the admin is warned
    full: bool  # below disk_full_mb: the box is not ready


def disk(config: Config) -> Disk:
    """Free space where the box keeps its data."""
    usage = shutil.disk_usage(config.home)
    return Disk(
        free=usage.free,
        total=usage.total,
        low=usage.free < config.disk_warn_mb << 20,
        full=usage.free < config.disk_full_mb << 20,
    )


def secret_problem(config: Config) -> str | None:
    """Why secret.key cannot sign sign-ins (empty, unreadable), or None."""
    try:
        read_secret(config)
    except ConfigError:
        return "secret.key is empty or cannot be read"
    return None


def model_problems(config: Config) -> list[str]:
    """Active models whose file is missing or cut short: the box would serve without them."""
    problems = []
    for kind in store.KINDS:
        try:
            manifest = store.active(config.home, kind)
        except (OSError, ValueError):
            return ["the model store's list of active models is damaged"]
        if manifest is None:
            continue
        path = store.file_path(config.home, manifest)
        if not path.is_file() or path.stat().st_size != manifest.size:
            problems.append(f"the active {kind} model's file is missing: import it again")
    return problems


# Where systemd keeps each service's figures (cgroup v2); the image runs one per part.
SERVICES_CGROUP = Path("/sys/fs/cgroup/system.slice")


@dataclass(frozen=True)
class ServiceMemory:
    """One service's memory: `total` is systemd's memory.current, page cache included;
    `working_set` leaves out the cache the kernel drops first when memory runs short
    (inactive file pages), as the kubelet and `docker stats` count it."""

    total: int
    working_set: int


def service_memory(cgroups: Path | None = None) -> dict[str, ServiceMemory]:
    """The memory each of the box's services uses now, on the image, where each runs as a
    unit of its own; empty elsewhere."""
    found = {}
    for folder in sorted((cgroups or SERVICES_CGROUP).glob("schoolbox-*.service")):
        try:
            total = int((folder / "memory.current").read_text())
            stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
            dropped_first = int(stat.get("inactive_file", 0))
        except (OSError, ValueError):  # stopped between the listing and the read
            continue
        found[folder.name.removesuffix(".service")] = ServiceMemory(
            total, max(0, total - dropped_first)
        )
    return found


RELEASE_FILE = Path("/etc/schoolbox-release")  # written by image/build.py
CMDLINE = Path("/proc/cmdline")  # GRUB's rauc.slot=A or B, on the image
# Block devices as sysfs lists them, which every sandbox sees (a private /dev has no
# /dev/mapper): the data partition's LUKS2 volume is the device-mapper device named in
# the image's /etc/crypttab, absent on a box without a TPM2, whose partition is plain.
SYS_BLOCK = Path("/sys/block")
DATA_VOLUME_NAME = "schoolbox-data"


def data_encrypted() -> bool:
    """Whether the data partition is open as the LUKS2 volume (a box with a TPM2)."""
    for name in SYS_BLOCK.glob("dm-*/dm/name"):
        try:
            if name.read_text().strip() == DATA_VOLUME_NAME:
                return True
        except OSError:
            continue
    return False


def system(home: Path) -> dict | None:
    """The OS image's version, the slot this boot came from, whether the data partition is
    encrypted, recent OS updates (installed, rolled back, refused) and the one being
    downloaded from the hub; None off the image."""
    slot = os_update.booted_slot(CMDLINE)
    if slot is None:
        return None
    return {
        "release": os_update.release(RELEASE_FILE),
        "slot": slot,
        "data_encrypted": data_encrypted(),
        "updates": os_update.history(home)[:5],
        "download": os_download.state(home),
    }


def problems(config: Config, database_fault: str | None) -> list[str]:
    """Everything that stops the box from serving a school now; empty when it is ready.
    `database_fault` is SQLite's quick check of the database when the process started."""
    found = []
    if database_fault:
        found.append(f"the database failed its integrity check at start: {database_fault}")
    if problem := secret_problem(config):
        found.append(problem)
    found.extend(model_problems(config))
    if disk(config).full:
        found.append("the disk is full")
    return found
