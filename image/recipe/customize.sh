#!/bin/sh
# mmdebstrap's customize hook (image/build.py): make a plain Debian root a Schoolbox root.
#   $1                  the root being built
#   SCHOOLBOX_TREE      image/rootfs: units, users, fstab, as they land on the image
#   SCHOOLBOX_WHEELS    the wheelhouse: schoolbox and every package it needs, built offline
#   SCHOOLBOX_DISTRICT  the district's public keys (district.json), which site files and
#                       updates are checked against
#   SCHOOLBOX_MODEL     the default tutor model to carry (its GGUF; first boot installs it)
#   SCHOOLBOX_UPDATE_CERT  the district's OS update certificate: RAUC's keyring
#   SCHOOLBOX_RELEASE   this build's version, for /etc/schoolbox-release and the status page
set -eu
root=$1
# Inside the root, nothing of the build machine's environment (its pip settings above all).
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

# The box's own files, as they lie in image/rootfs.
cp -a "$SCHOOLBOX_TREE"/. "$root"/
install -D -m 0644 "$SCHOOLBOX_DISTRICT" "$root/usr/share/schoolbox/district.json"
install -D -m 0644 "$SCHOOLBOX_UPDATE_CERT" "$root/etc/rauc/keyring.pem"
printf 'VERSION=%s\n' "$SCHOOLBOX_RELEASE" > "$root/etc/schoolbox-release"
install -d "$root/usr/share/schoolbox/models"
install -m 0644 "$SCHOOLBOX_MODEL" "$root/usr/share/schoolbox/models/"

# The box's Python packages, from the wheelhouse only (no index): what was tested is
# what is installed. pip compiles every module, so the read-only root needs no cache.
# SCHOOLBOX_REFRESH=1 (build.py --refresh): an earlier build's root, where only
# schoolbox itself is reinstalled, for a quick rebuild while working on the image.
mkdir -p "$root/tmp/wheels"
cp "$SCHOOLBOX_WHEELS"/*.whl "$root/tmp/wheels/"
if [ "${SCHOOLBOX_REFRESH:-0}" = 1 ]; then
    wheel=$(cd "$root/tmp/wheels" && ls schoolbox-*.whl)
    in_root /opt/schoolbox/.venv/bin/pip install --quiet --no-index --no-deps --force-reinstall \
        "/tmp/wheels/$wheel"
else
    in_root python3 -m venv /opt/schoolbox/.venv
    in_root /opt/schoolbox/.venv/bin/pip install --quiet --no-index --find-links /tmp/wheels \
        "schoolbox[federated]"
fi
rm -rf "$root/tmp/wheels" "$root/root/.cache"

# The root filesystem is read-only on the box: its users are made now (sysusers.d, ours
# and Debian's), and the mount points it needs exist now.
in_root systemd-sysusers
mkdir -p "$root/boot/efi"

# Services: the box's, the network, schoolbox.local; SSH off (first boot turns it on only
# for a site file with an admin's key).
in_root systemctl enable schoolbox.target schoolbox-mark-good.service systemd-networkd \
    systemd-resolved avahi-daemon schoolbox-data-encrypt.service
in_root systemctl disable ssh.service ssh.socket hostapd.service wpa_supplicant.service 2>/dev/null || true
# The box never runs apt (its root is read-only; system updates are RAUC bundles): apt's
# daily timers would only wake it to look for mirrors it must not reach.
in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer

# No secrets and no identity in the image: every box makes its own at first boot.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
in_root usermod --lock root
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

# What only building needed.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
