"""A system update from the district hub, on the built image under qemu: district IT
publishes a signed bundle on the hub; the box's sync downloads it (Admin > Status says how
far), the install service installs it at the next restart, and the box comes back on the
other slot with its data. Every packet the box sent went to the hub or answered a page.

The hub is `schoolbox hub serve` on the host's loopback, which the box reaches at
qemu.HUB_ADDRESS (slirp's guestfwd, relayed by socat). Needs the image and root partition
that `make image-test` builds (build/image/x86_64/).
"""

from __future__ import annotations

import re
import time

import pytest
import requests

from image import qemu
from sync.hub import os_updates
from tests.image.machines import (
    ADMIN,
    BOOT_TIMEOUT_S,
    boot,
    claim,
    no_connection_of_its_own,
    site_file,
)
from tests.image.test_update import (
    ROOT_PARTITION,
    answers_now,
    built_release,
    bundle_of,
    signed_in,
    system_status,
    wait_for_outcome,
)
from tests.over_http import practise, set_up_a_class

pytestmark = [pytest.mark.image, pytest.mark.slow]

DOWNLOAD_TIMEOUT_S = 1800  # the first sync 2 minutes after boot, then 800 MB under TCG


def wait_for_download(box: qemu.Machine, admin: requests.Session) -> str:
    """Admin > Status's System section once the hub's bundle is downloaded whole."""
    deadline = time.monotonic() + DOWNLOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        section = system_status(box, admin)
        if 'data-complete="yes"' in section:
            return section
        if box.process is not None and box.process.poll() is not None:
            raise RuntimeError(f"qemu stopped:\n{box.tail()}")
        time.sleep(15)
    raise TimeoutError(f"no download after {DOWNLOAD_TIMEOUT_S} s:\n{box.tail(120)}")


def test_an_update_published_on_the_hub_is_downloaded_and_installed_at_restart(hub, tmp_path):
    if not ROOT_PARTITION.is_file():
        pytest.fail(f"No root partition at {ROOT_PARTITION}: run `make image-test`.")
    hub_home, port = hub
    version = built_release() + ".from-hub"
    bundle = bundle_of(
        tmp_path, version, {"/etc/schoolbox-release": f"VERSION={version}\n".encode()}
    )
    os_updates.publish(hub_home, bundle)
    bundle.unlink()  # the hub has its copy; each is most of a gigabyte
    site = site_file(tmp_path, hub_url=f"http://{qemu.HUB_ADDRESS}")
    box = boot(tmp_path, site, hub_port=port)
    try:
        box.wait_for("/healthz", BOOT_TIMEOUT_S)
        admin = claim(box)
        room = set_up_a_class(box.base, admin)
        practise(box.base, room.learner, 2)
        section = wait_for_download(box, admin)
        assert f"System update {version} is downloaded from the district hub" in section
        # The next restart installs it (so does the night), and the box comes back on B.
        box.stop()
        box.start()
        box.wait_for("/healthz", BOOT_TIMEOUT_S)
        section = wait_for_outcome(box, signed_in(box, ADMIN), "installed", 1)
        assert version in section and re.search(r"Started from slot</dt><dd>B<", section)
        assert "os-download" not in section  # the downloaded file is gone
        assert answers_now(box, room) == 2
    finally:
        box.stop()
    no_connection_of_its_own(tmp_path, hub=qemu.HUB_ADDRESS)
