"""The box as the school's Wi-Fi access point, on a simulated radio: the guest's kernel
module mac80211_hwsim makes two radios that hear each other. The box's units bring up
hostapd and dnsmasq on the first (wlan0) as the site file asked; the second, moved into a
network namespace of its own, is a learner's phone. With the site file's passphrase it
joins (WPA2/WPA3, never open) and opens the box's page at 10.42.0.1; with a wrong one it
does not get on at all.

Needs an image (`make image-test`); one boot under qemu, a few minutes without KVM.
"""

from __future__ import annotations

import pytest

from tests.image.machines import (
    WIFI_PASSPHRASE,
    box_with_radios,
    second_radio_into,
    ssh,
    ssh_until,
)

pytestmark = [pytest.mark.image, pytest.mark.slow]


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
    with box_with_radios(tmp_path_factory.mktemp("wifi"), "access-point") as machine:
        yield machine


def _until(box, command: str, expected: str) -> str:
    return ssh_until(box, box.admin_key, command, expected)


def test_the_radio_appearing_starts_the_access_point_with_wpa2_and_wpa3_only(box):
    _until(box, "systemctl is-active schoolbox-wifi-ap schoolbox-wifi-dhcp", "active\nactive")
    assert "type AP" in _until(box, "iw dev wlan0 info", "type AP")
    assert "10.42.0.1/24" in _until(box, "ip -4 addr show wlan0", "10.42.0.1/24")


def test_a_learners_phone_with_the_passphrase_joins_and_opens_the_box(box):
    _until(box, "systemctl is-active schoolbox-wifi-ap", "active")
    moved = ssh(box, box.admin_key, second_radio_into("phone"))
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
