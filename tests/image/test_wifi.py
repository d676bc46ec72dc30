"""The box as the school's Wi-Fi access point, on a simulated radio: the guest's kernel
module mac80211_hwsim makes two radios that hear each other. The box's units bring up
hostapd and dnsmasq on the first (wlan0) as the site file asked; the second, moved into a
network namespace of its own, is a learner's phone. With the site file's passphrase it
joins (WPA2/WPA3, never open) and opens the box's page at 10.42.0.1; with a wrong one it
does not get on at all.

Needs an image (`make image-test`); one boot under qemu, a few minutes without KVM.
"""

from __future__ import annotations

import time

import pytest

from tests.image.machines import (
    BOOT_TIMEOUT_S,
    WIFI_PASSPHRASE,
    boot,
    site_file,
    ssh,
    ssh_key,
    ssh_when_up,
)

pytestmark = [pytest.mark.image, pytest.mark.slow]

# The learner's phone: the second radio in a namespace of its own, so that its traffic
# goes over the air to the box and not through the box's own loopback.
PHONE = """
set -e
phy=$(basename $(readlink /sys/class/net/wlan1/phy80211))
ip netns add phone 2>/dev/null || true
iw phy "$phy" set netns name phone
ip netns exec phone ip link set lo up
ip netns exec phone ip link set wlan1 up
"""


def _join(passphrase: str) -> str:
    return f"""
set -e
cat > /run/phone.conf <<END
network={{
    ssid="Hill Staff"
    psk="{passphrase}"
    key_mgmt=WPA-PSK SAE
    ieee80211w=1
}}
END
[ -f /run/phone.pid ] && kill "$(cat /run/phone.pid)" && sleep 2 || true
ip netns exec phone wpa_supplicant -B -i wlan1 -c /run/phone.conf -P /run/phone.pid
for i in $(seq 30); do
  ip netns exec phone iw dev wlan1 link | grep -q Connected && break
  sleep 1
done
ip netns exec phone iw dev wlan1 link
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    work = tmp_path_factory.mktemp("wifi")
    key = ssh_key(work)
    site = site_file(work, admin_ssh_key=key.with_suffix(".pub"), wifi_mode="access-point")
    machine = boot(work, site)
    machine.admin_key = key  # type: ignore[attr-defined]
    try:
        machine.wait_for("/healthz", BOOT_TIMEOUT_S)
        ssh_when_up(machine, key, "modprobe mac80211_hwsim radios=2")
        yield machine
    finally:
        machine.stop()


def _until(box, command: str, expected: str, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while expected not in (found := ssh(box, box.admin_key, command)).stdout:
        assert time.monotonic() < deadline, f"{command}: {found.stdout}{found.stderr}"
        time.sleep(3)
    return found.stdout


def test_the_radio_appearing_starts_the_access_point_with_wpa2_and_wpa3_only(box):
    _until(box, "systemctl is-active schoolbox-wifi-ap schoolbox-wifi-dhcp", "active\nactive")
    assert "type AP" in _until(box, "iw dev wlan0 info", "type AP")
    assert "10.42.0.1/24" in _until(box, "ip -4 addr show wlan0", "10.42.0.1/24")


def test_a_learners_phone_with_the_passphrase_joins_and_opens_the_box(box):
    _until(box, "systemctl is-active schoolbox-wifi-ap", "active")
    moved = ssh(box, box.admin_key, PHONE)
    assert moved.returncode == 0, moved.stderr
    joined = ssh(box, box.admin_key, _join(WIFI_PASSPHRASE))
    assert "Connected to" in joined.stdout and "SSID: Hill Staff" in joined.stdout, joined
    page = ssh(box, box.admin_key,
               "ip netns exec phone ip addr add 10.42.0.77/24 dev wlan1; "
               "ip netns exec phone python3 -c \"import urllib.request as u; "
               "print(u.urlopen('http://10.42.0.1/healthz', timeout=30).status)\"")  # fmt: skip
    assert page.stdout.strip() == "200", page.stderr


def test_a_phone_with_a_wrong_passphrase_does_not_get_on(box):
    joined = ssh(box, box.admin_key, _join("tembo-kubwa-43"))
    assert "Not connected" in joined.stdout, joined.stdout
