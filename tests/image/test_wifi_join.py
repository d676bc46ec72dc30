"""The box joining the school's Wi-Fi (site file "join"), on a simulated radio: the guest's
mac80211_hwsim makes two radios that hear each other. The second, moved into a network
namespace of its own, is the school's access point (hostapd, WPA2/WPA3 personal, with a
DHCP server) and a teacher's laptop behind it. The box's first radio appearing starts
wpa_supplicant with the settings first boot wrote; the box joins, takes an address by
DHCP, and the laptop opens its page over the air. With another passphrase on the school's
network, the box does not get on; with the right one back, it is on again by itself.

Needs an image (`make image-test`); one boot under qemu, a few minutes without KVM.
"""

from __future__ import annotations

import time

import pytest

from tests.image.machines import (
    WIFI_PASSPHRASE,
    box_with_radios,
    second_radio_into,
    ssh,
    ssh_until,
)

pytestmark = [pytest.mark.image, pytest.mark.slow]

SCHOOL_AP = "192.168.77.1"


def school_network(passphrase: str) -> str:
    """The school's access point on the second radio, in the namespace `school`, with DHCP
    for the box (started afresh each time: an earlier one is stopped first)."""
    return f"""
{second_radio_into("school")}
for pid in /run/school-hostapd.pid /run/school-dnsmasq.pid; do
  [ -f $pid ] && kill "$(cat $pid)" 2>/dev/null && rm -f $pid && sleep 2 || true
done
cat > /run/school-ap.conf <<END
interface=wlan1
ssid=Hill Staff
country_code=KE
hw_mode=g
channel=1
wpa=2
wpa_key_mgmt=WPA-PSK SAE
rsn_pairwise=CCMP
ieee80211w=1
wpa_passphrase={passphrase}
sae_password={passphrase}
END
ip netns exec school ip addr flush dev wlan1
ip netns exec school ip addr add {SCHOOL_AP}/24 dev wlan1
ip netns exec school hostapd -B -P /run/school-hostapd.pid /run/school-ap.conf
ip netns exec school dnsmasq --interface=wlan1 --bind-interfaces --port=0 \\
  --dhcp-range=192.168.77.50,192.168.77.99,12h --pid-file=/run/school-dnsmasq.pid \\
  --dhcp-leasefile=/run/school-dnsmasq.leases
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """The box, and the school's network up on the other radio with the site file's
    passphrase, as when a box is switched on in a school whose Wi-Fi is up."""
    with box_with_radios(tmp_path_factory.mktemp("wifi-join"), "join") as machine:
        started = ssh(machine, machine.admin_key, school_network(WIFI_PASSPHRASE))
        assert started.returncode == 0, started.stderr
        yield machine


def _until(box, command: str, expected: str, timeout_s: float = 180) -> str:
    return ssh_until(box, box.admin_key, command, expected, timeout_s)


def laptop_opens(box, box_ip: str) -> str:
    """What the school's laptop gets for the box's /healthz over the air ("200", or why not)."""
    return ssh(box, box.admin_key,
               "ip netns exec school python3 -c \"import urllib.request as u; "
               f"print(u.urlopen('http://{box_ip}/healthz', timeout=10).status)\"").stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def box_ip(box) -> str:
    _until(box, "systemctl is-active schoolbox-wifi-join", "active")
    address = _until(box, "ip -4 -o addr show wlan0", "192.168.77.")
    return address.split("inet ")[1].split("/")[0]


def test_the_box_joins_the_schools_network_and_a_laptop_there_opens_its_page(box, box_ip):
    assert "inactive" in ssh(box, box.admin_key, "systemctl is-active schoolbox-wifi-ap").stdout
    link = _until(box, "iw dev wlan0 link", "Connected to")
    assert "SSID: Hill Staff" in link, link
    assert laptop_opens(box, box_ip) == "200"


def test_with_another_passphrase_on_the_schools_network_the_box_does_not_get_on(box, box_ip):
    changed = ssh(box, box.admin_key, school_network("a-different-passphrase"))
    assert changed.returncode == 0, changed.stderr
    time.sleep(20)  # the box tries again with what the site file gave it, and fails
    for _ in range(3):  # its old address may linger, but no frame gets through
        assert laptop_opens(box, box_ip) != "200"
        time.sleep(5)
    # The school's passphrase back (the site file's): the box is on again by itself.
    assert ssh(box, box.admin_key, school_network(WIFI_PASSPHRASE)).returncode == 0
    _until(box, "iw dev wlan0 link", "Connected to")
    deadline = time.monotonic() + 120
    while (opened := laptop_opens(box, box_ip)) != "200" and time.monotonic() < deadline:
        time.sleep(5)
    assert opened == "200"
