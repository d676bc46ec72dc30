"""The image's systemd units: commands that exist, options the CLI accepts, units systemd
itself accepts, a dedicated user each, and a sandbox that systemd rates safe or OK."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance import provisioning
from appliance.cli import main

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / "image" / "rootfs"
UNIT_DIR = TREE / "usr" / "lib" / "systemd" / "system"
SERVICES = sorted(UNIT_DIR.glob("*.service"))
# The box's own programs, each as its own user; the rest are root's small helpers.
BOX_UNITS = [u for u in SERVICES if "/opt/schoolbox/" in u.read_text()]
MARK_GOOD = UNIT_DIR / "schoolbox-mark-good.service"
FALL_BACK = UNIT_DIR / "schoolbox-fall-back.service"
DATA_ENCRYPT = UNIT_DIR / "schoolbox-data-encrypt.service"
UPDATE_INSTALL = UNIT_DIR / "schoolbox-update-install.service"
DISTRICT_UNITS = sorted((ROOT / "image" / "district").glob("*.service"))
VENV_SCHOOLBOX = "/opt/schoolbox/.venv/bin/schoolbox"
LONG_RUNNING = {"schoolbox-web", "schoolbox-tutor", "schoolbox-jobs", "schoolbox-federated"}
NO_NETWORK = {"schoolbox-tutor", "schoolbox-jobs", "schoolbox-firstboot"}
SYSTEMD = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD is None, reason="systemd-analyze is not installed")


def service(unit: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    return parser["Service"]


def settings(unit: Path, name: str) -> list[str]:
    """Every value of a setting that may repeat (configparser keeps the last only)."""
    return re.findall(rf"^{name}=(.*)$", unit.read_text(), re.MULTILINE)


def test_the_box_has_a_unit_for_each_service():
    names = {u.stem for u in BOX_UNITS}
    assert names >= LONG_RUNNING | {"schoolbox-sync", "schoolbox-firstboot"}
    assert (UNIT_DIR / "schoolbox-sync.timer").is_file()
    os_units = {"schoolbox-ssh", "schoolbox-wifi-join", "schoolbox-wifi-ap", "schoolbox-wifi-dhcp"}
    expected = {MARK_GOOD, FALL_BACK, DATA_ENCRYPT} | {
        UNIT_DIR / f"{name}.service" for name in os_units
    }
    assert set(SERVICES) - set(BOX_UNITS) == expected


def test_a_slot_is_marked_good_only_once_the_web_app_serves():
    unit = MARK_GOOD.read_text()
    assert "Requires=schoolbox-web.service" in unit and "After=schoolbox-web.service" in unit
    # Good: this slot; the one it came from is not started by itself again.
    assert settings(MARK_GOOD, "ExecStart") == [
        "/usr/bin/rauc status mark-good", "/usr/bin/rauc status mark-bad other"]  # fmt: skip


def test_a_trial_boot_that_cannot_serve_restarts_into_the_previous_slot():
    web = (UNIT_DIR / "schoolbox-web.service").read_text()
    assert "OnFailure=schoolbox-fall-back.service" in web and "StartLimitBurst=3" in web
    timer = (UNIT_DIR / "schoolbox-fall-back.timer").read_text()
    for unit in (FALL_BACK.read_text(), timer):
        assert "ConditionKernelCommandLine=schoolbox.trial=1" in unit  # never an ordinary boot
    assert "Unit=schoolbox-fall-back.service" in timer
    assert settings(FALL_BACK, "ExecStart")[-1] == "/usr/bin/systemctl --no-block reboot"
    grub = (ROOT / "image" / "recipe" / "grub.cfg").read_text()
    assert grub.count('set trial="schoolbox.trial=1"') == 2 and "$trial" in grub


def test_updates_are_installed_only_from_a_good_slot_and_settled_before_the_database_opens():
    unit = UPDATE_INSTALL.read_text()
    assert "Wants=schoolbox-mark-good.service" in unit and "Requires=" not in unit
    assert service(UPDATE_INSTALL)["ExecCondition"] == (
        "/usr/bin/systemctl -q is-active schoolbox-mark-good.service")  # fmt: skip
    assert settings(UPDATE_INSTALL, "ExecStart") == [
        f"{VENV_SCHOOLBOX} os-update settle --good",
        f"{VENV_SCHOOLBOX} os-update install --stick /run/schoolbox/os-update-stick --downloaded",
    ]
    # A bundle from the hub waits for the night (or a restart), never a lesson.
    timer = (UNIT_DIR / "schoolbox-update-install.timer").read_text()
    assert "OnCalendar=*-*-* 02:30" in timer
    assert "schoolbox-update-install.timer" in (UNIT_DIR / "schoolbox.target").read_text()
    assert service(UPDATE_INSTALL)["CapabilityBoundingSet"] == ""  # root, with no privilege
    firstboot = UNIT_DIR / "schoolbox-firstboot.service"
    assert "schoolbox provision" in service(firstboot)["ExecStart"]  # which settles first
    before = service(firstboot).parser["Unit"]["Before"].split()  # type: ignore[union-attr]
    assert {f"{name}.service" for name in LONG_RUNNING} <= set(before)
    rauc = (ROOT / "image" / "recipe" / "rauc-system.conf").read_text()
    assert "path=/etc/rauc/keyring.pem" in rauc and "bundle-formats=-plain" in rauc


@pytest.mark.parametrize("unit", BOX_UNITS + DISTRICT_UNITS, ids=lambda u: u.name)
def test_a_unit_starts_a_schoolbox_command_that_accepts_its_options(unit):
    command = shlex.split(service(unit)["ExecStart"])
    assert command[0] == VENV_SCHOOLBOX
    # --help after the unit's own arguments: click parses them all, then prints help.
    result = CliRunner().invoke(main, [*command[1:], "--help"], env={"SCHOOLBOX_HUB_HOME": "/x"})
    assert result.exit_code == 0, result.output


def test_each_box_service_runs_as_its_own_user_in_the_shared_group():
    users = [service(unit)["User"] for unit in BOX_UNITS]
    assert len(set(users)) == len(users), users
    assert {service(unit)["Group"] for unit in BOX_UNITS} == {"schoolbox"}
    assert all(service(unit)["UMask"] == "0007" for unit in BOX_UNITS)


@pytest.mark.parametrize("unit", BOX_UNITS, ids=lambda u: u.name)
def test_a_box_service_is_sandboxed_and_capped(unit):
    section = service(unit)
    for name, value in [("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                        ("PrivateTmp", "yes"), ("ProtectHome", "yes")]:  # fmt: skip
        assert section.get(name) == value, f"{unit.name}: {name}"
    assert "~@privileged" in settings(unit, "SystemCallFilter")
    if unit.stem != "schoolbox-firstboot":
        assert section.get("MemoryMax"), f"{unit.name} has no memory cap"
    if unit.stem in LONG_RUNNING:
        assert section["Type"] == "notify" and section.get("WatchdogSec"), unit.name
        assert section["Restart"] == "on-failure"
    if unit.stem in NO_NETWORK:
        assert (
            section["PrivateNetwork"] == "yes" and section["RestrictAddressFamilies"] == "AF_UNIX"
        )


def test_the_web_app_answers_only_the_schools_own_networks():
    unit = UNIT_DIR / "schoolbox-web.service"
    assert settings(unit, "IPAddressDeny") == ["any"]
    allowed = " ".join(settings(unit, "IPAddressAllow")).split()
    assert "localhost" in allowed and "192.168.0.0/16" in allowed and "0.0.0.0/0" not in allowed


def test_the_tutor_cannot_read_the_boxs_keys_nor_write_but_its_socket():
    unit = UNIT_DIR / "schoolbox-tutor.service"
    assert settings(unit, "ReadWritePaths") == ["/var/lib/schoolbox/run"]
    hidden = " ".join(settings(unit, "InaccessiblePaths"))
    assert "/var/lib/schoolbox/keys" in hidden and "/var/lib/schoolbox/secret.key" in hidden


@pytest.fixture(scope="module")
def checkable_units(tmp_path_factory) -> list[Path]:
    """The units with their commands pointed at this checkout's, which exist here."""
    folder = tmp_path_factory.mktemp("units")
    real = {VENV_SCHOOLBOX: str(ROOT / ".venv" / "bin" / "schoolbox"),
            "/usr/libexec/schoolbox/": str(TREE / "usr" / "libexec" / "schoolbox") + "/"}  # fmt: skip
    # The Wi-Fi programs are in the image (packages-common.txt), not always on this machine.
    for program in ("/usr/sbin/hostapd", "/usr/sbin/dnsmasq", "/usr/sbin/wpa_supplicant"):
        if not Path(program).exists():
            real[program] = "/usr/bin/true"
    for unit in [*UNIT_DIR.iterdir(), *DISTRICT_UNITS]:
        if unit.is_dir():  # drop-ins for Debian's units (systemd-cryptsetup@.service.d)
            continue
        text = unit.read_text()
        for image_path, here in real.items():
            text = text.replace(image_path, here)
        (folder / unit.name).write_text(text)
    return sorted(folder.iterdir())


@needs_systemd
def test_systemd_accepts_every_unit(checkable_units):
    result = subprocess.run([SYSTEMD, "verify", *map(str, checkable_units)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@needs_systemd
def test_systemd_rates_every_box_service_safe_or_ok(checkable_units):
    """`systemd-analyze security` scores exposure from 0 (locked down) to 10; the plain
    unit this replaced scored 8.6 (EXPOSED)."""
    for unit in checkable_units:
        if unit.suffix != ".service" or unit.stem == "schoolbox-superlink":
            continue  # the district's, on its server
        result = subprocess.run([SYSTEMD, "security", "--offline=yes", str(unit)],
                                capture_output=True, text=True)  # fmt: skip
        score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)[1])
        # The Wi-Fi units drive the radio (NET_ADMIN, NET_RAW), as a user of their own.
        limit = 3.0 if unit.stem.startswith("schoolbox-wifi-") else 2.0
        assert score <= limit, f"{unit.name}: {score}\n{result.stdout}"


@needs_systemd
def test_first_boot_creates_the_users_and_a_data_folder_only_they_share(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "var" / "lib").mkdir(parents=True)
    # Ours, and systemd's own journal group (the image has it from Debian's systemd).
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", "/usr/lib/sysusers.d/systemd-journal.conf",
                    str(TREE / "usr/lib/sysusers.d/schoolbox.conf")], check=True,
                   capture_output=True)  # fmt: skip
    passwd = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()}  # fmt: skip
    group = {line.split(":")[0]: line.split(":")[2] for line in (tmp_path / "etc/group").read_text().splitlines()}  # fmt: skip
    for unit in BOX_UNITS:
        if service(unit)["User"] == "root":
            continue  # the update installer: root without privileges, in the group
        user = passwd[service(unit)["User"]]
        assert user[3] == group["schoolbox"] and user[6] == "/usr/sbin/nologin"
    subprocess.run(["systemd-tmpfiles", f"--root={tmp_path}", "--create",
                    str(TREE / "usr/lib/tmpfiles.d/schoolbox.conf")], check=True,
                   capture_output=True)  # fmt: skip
    data = (tmp_path / "var/lib/schoolbox").stat()
    assert oct(data.st_mode & 0o7777) == "0o2770"
    assert (data.st_uid, data.st_gid) == (int(passwd["schoolbox"][2]), int(group["schoolbox"]))
    assert os.stat(tmp_path / "var/lib/schoolbox/run").st_mode & 0o7777 == 0o2770


def test_first_boot_is_skipped_only_when_it_has_nothing_to_do(tmp_path):
    """find-site-file --needed, its unit's ExecCondition: 0 runs first boot, 1 skips it."""
    home, esp = tmp_path / "data", tmp_path / "esp"
    home.mkdir()
    esp.mkdir()
    env = {**os.environ, "SCHOOLBOX_HOME": str(home), "SCHOOLBOX_SITE_PLACES": str(esp)}

    def needed() -> bool:
        script = TREE / "usr/libexec/schoolbox/find-site-file"
        result = subprocess.run([str(script), "--needed"], env=env, capture_output=True)
        assert result.returncode in (0, 1), result.stderr
        return result.returncode == 0

    site = esp / "schoolbox-site.json"
    site.write_text('{"format": "schoolbox-site-file/1"}\n')
    assert needed()  # a new box
    provisioning.record_status(home, fingerprint="ABCD", site_file=site)  # as first boot does
    assert not needed()  # set up from this very file
    site.unlink()
    assert not needed()  # set up, and the stick taken away
    site.write_text('{"format": "schoolbox-site-file/1", "changed": true}\n')
    assert needed()  # a new site file
    site.unlink()
    (home / "os-update").mkdir()
    (home / "os-update" / "pending.json").write_text("{}")
    assert needed()  # an OS update to finish or roll back
    (home / "os-update" / "pending.json").unlink()
    (home / "provisioning.json").write_text(
        json.dumps({"state": "refused", "site_file_sha256": ""}, indent=2)
    )
    assert needed()  # refused last time: try again


def test_ssh_is_keys_only_and_on_only_with_an_admins_key():
    config = (TREE / "etc/ssh/sshd_config.d/schoolbox.conf").read_text()
    for line in ("PasswordAuthentication no", "KbdInteractiveAuthentication no",
                 "PermitRootLogin prohibit-password", "AllowTcpForwarding no"):  # fmt: skip
        assert f"\n{line}\n" in config, line
    # Host keys and the admin's key on the data partition, root's alone: none in the image.
    assert all(line.split()[1].startswith("/var/lib/schoolbox-ssh/")
               for line in config.splitlines() if line.startswith(("HostKey", "AuthorizedKeysFile")))  # fmt: skip
    unit = UNIT_DIR / "schoolbox-ssh.service"
    assert "ConditionPathExists=/var/lib/schoolbox-os/authorized_keys" in unit.read_text()
    assert settings(unit, "ExecStart")[-1] == "/usr/bin/systemctl --no-block start ssh.service"
    tmpfiles = (TREE / "usr/lib/tmpfiles.d/schoolbox.conf").read_text()
    assert re.search(r"^d /var/lib/schoolbox-ssh\s+0700 root\s+root", tmpfiles, re.MULTILINE)
    recipe = (ROOT / "image/recipe/customize.sh").read_text()
    assert "systemctl disable ssh.service" in recipe and "ssh_host_*" in recipe


def test_the_schools_wifi_is_joined_or_served_as_first_boot_wrote_it_never_open():
    join, ap, dhcp = (
        UNIT_DIR / f"schoolbox-wifi-{name}.service" for name in ("join", "ap", "dhcp")
    )
    assert "ConditionPathExists=/var/lib/schoolbox-os/wpa_supplicant.conf" in join.read_text()
    for unit in (ap, dhcp):  # only where the site file made the box the access point
        assert "ConditionPathExists=/var/lib/schoolbox-os/hostapd.conf" in unit.read_text()
    assert service(ap)["ExecStart"] == "/usr/sbin/hostapd /var/lib/schoolbox-os/hostapd.conf"
    assert all(service(unit)["DynamicUser"] == "yes" for unit in (join, ap, dhcp))
    command = service(dhcp)["ExecStart"]
    assert "--no-resolv" in command and "--address=/schoolbox.local/10.42.0.1" in command
    ap_network = (TREE / "usr/share/schoolbox/network/25-schoolbox-ap.network").read_text()
    assert "Address=10.42.0.1/24" in ap_network


@pytest.mark.parametrize(
    "name", ["schoolbox-web", "schoolbox-firstboot", "schoolbox-update-install"]
)
def test_the_units_that_need_the_booted_slot_can_read_the_kernel_command_line(name):
    """rauc.slot= on /proc/cmdline: Admin > Status shows it, and settling an update needs it
    (ProcSubset=pid would hide the file, and the rollback with it)."""
    assert "ProcSubset" not in service(UNIT_DIR / f"{name}.service")


def test_only_avahi_speaks_on_the_local_network():
    """systemd-resolved's LLMNR probes were the one packet the image's audit flagged."""
    resolved = (TREE / "etc/systemd/resolved.conf.d/schoolbox.conf").read_text()
    assert "\nLLMNR=no\n" in resolved and "\nMulticastDNS=no\n" in resolved


def test_a_box_with_a_tpm2_gets_the_same_data_partition_inside_luks2_opened_by_it_alone():
    plain = TREE / "usr/lib/repart.d/50-schoolbox-data.conf"
    sealed = TREE / "usr/lib/schoolbox/repart-tpm2" / plain.name  # same name: it overrides
    definition = [line for line in plain.read_text().splitlines() if not line.startswith("#")]
    assert [line for line in sealed.read_text().splitlines() if not line.startswith("#")] == [
        *definition[:4], "Encrypt=tpm2", *definition[4:]]  # fmt: skip
    unit = DATA_ENCRYPT.read_text()
    assert "ConditionSecurity=tpm2" in unit and "Before=systemd-repart.service" in unit
    assert f"{sealed.relative_to(TREE).as_posix()} /run/repart.d/" in unit
    crypttab = [line.split() for line in (TREE / "etc/crypttab").read_text().splitlines()
                if line and not line.startswith("#")]  # fmt: skip
    assert crypttab == [["schoolbox-data", "PARTLABEL=schoolbox-data", "-",
                         "tpm2-device=auto,headless=true,x-systemd.device-timeout=2min"]]  # fmt: skip
    # A plain partition (no TPM2) is not opened, and /var is its file system either way.
    drop_in = UNIT_DIR / "systemd-cryptsetup@.service.d" / "schoolbox-luks-only.conf"
    assert "ExecCondition=/sbin/cryptsetup isLuks /dev/disk/by-partlabel/%I" in drop_in.read_text()
    assert re.search(r"^/dev/disk/schoolbox-var\s+/var\s+ext4", (TREE / "etc/fstab").read_text(),
                     re.MULTILINE)  # fmt: skip
    rules = (TREE / "usr/lib/udev/rules.d/90-schoolbox-data.rules").read_text()
    assert 'ENV{ID_PART_ENTRY_NAME}=="schoolbox-data"' in rules
    assert 'ENV{DM_NAME}=="schoolbox-data"' in rules  # not repart's luks-repart-... volume


def test_the_pi_image_names_its_partitions_by_number_and_mounts_var_by_its_own(tmp_path):
    from image import build

    root = tmp_path / "root"
    shutil.copytree(TREE, root, symlinks=True)
    build.mbr_board_files(root)
    fstab = (root / "etc/fstab").read_text()
    assert re.search(r"^PARTUUID=5c4b0a01-01\s+/boot/efi\s+vfat\s", fstab, re.MULTILINE)
    assert re.search(r"^PARTUUID=5c4b0a01-04\s+/var\s+ext4\s", fstab, re.MULTILINE)
    assert not (root / "usr/lib/repart.d/50-schoolbox-data.conf").exists()  # repart is GPT's
    crypttab = (root / "etc/crypttab").read_text().splitlines()
    assert [line for line in crypttab if line and not line.startswith("#")] == []
    for part in ("hooks", "scripts/local-premount"):
        assert os.access(root / "etc/initramfs-tools" / part / "schoolbox-grow-data", os.X_OK)


GROW_DATA = ROOT / "image/recipe/initramfs/scripts/local-premount/schoolbox-grow-data"
needs_loop = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/dev/loop-control").exists() or not shutil.which("sfdisk"),
    reason="needs root, loop devices and sfdisk (the build host's tools)",
)


@needs_loop
def test_the_pi_initramfs_grows_the_data_partition_and_its_file_system_once(tmp_path):
    card = tmp_path / "card.img"
    layout = ("label: dos\nlabel-id: 0x5c4b0a01\nstart=2048, size=8192, type=c\n"
              "start=10240, size=8192, type=83\nstart=18432, size=8192, type=83\n"
              "start=26624, size=65536, type=83\n")  # fmt: skip
    with card.open("wb") as out:
        out.truncate(256 << 20)  # the card: 256 MB, of which the image used 45
    subprocess.run(["sfdisk", "--quiet", str(card)], input=layout, text=True, check=True)
    loop = subprocess.run(["losetup", "--find", "--show", "--partscan", str(card)],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    # Its 4th partition's node, where no udev makes one (a build container): by number.
    partition = tmp_path / f"{Path(loop).name}p4"
    numbers = Path(f"/sys/class/block/{partition.name}/dev")
    if not numbers.exists():
        subprocess.run(["losetup", "--detach", loop], check=False)
        pytest.skip("this machine's loop devices do not scan partitions (max_part=0)")
    major, minor = numbers.read_text().split(":")
    os.mknod(partition, 0o600 | stat.S_IFBLK, os.makedev(int(major), int(minor)))
    try:
        subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", "schoolbox-data", str(partition)],
                       check=True)  # fmt: skip
        env = {**os.environ, "SCHOOLBOX_DATA_PARTITION": str(partition)}
        first = subprocess.run(["sh", str(GROW_DATA)], env=env, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        assert "growing the data partition" in first.stdout
        assert "growing the data file system" in first.stdout
        size = int(Path(f"/sys/class/block/{Path(loop).name}p4/size").read_text())
        assert size * 512 > 200 << 20
        blocks = subprocess.run(["dumpe2fs", "-h", str(partition)], capture_output=True,
                                text=True, check=True).stdout  # fmt: skip
        count = int(re.search(r"^Block count:\s+(\d+)", blocks, re.MULTILINE)[1])
        block = int(re.search(r"^Block size:\s+(\d+)", blocks, re.MULTILINE)[1])
        assert count * block > size * 512 - (1 << 20)
        again = subprocess.run(["sh", str(GROW_DATA)], env=env, capture_output=True, text=True)
        assert again.returncode == 0 and again.stdout == "", again.stdout  # nothing to do
    finally:
        subprocess.run(["losetup", "--detach", loop], check=False)


def test_one_grub_script_serves_the_pcs_gpt_and_the_pis_mbr():
    from image import build

    pc = build.grub_script(build.ARCHES["x86_64"])
    pi = build.grub_script(build.ARCHES["aarch64"])
    for script in (pc, pi):
        assert not re.search(r"@[A-Z_]+@", script)
    assert f"set partuuid={build.SLOT_A_UUID}" in pc and "($disk,gpt$part)/vmlinuz" in pc
    assert "console=ttyS0,115200" in pc
    assert "set partuuid=5c4b0a01-02" in pi and "set partuuid=5c4b0a01-03" in pi
    assert "($disk,msdos$part)/vmlinuz" in pi and "console=ttyAMA0,115200" in pi
