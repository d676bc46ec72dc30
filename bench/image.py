"""The OS image's figures (issue 16): its size compressed and installed, how long it took
to build, power-on to serving under qemu without KVM, and the memory of the box's
services when idle.

    python bench/image.py [--runs 3] [--arch x86_64|aarch64] [--image IMG]

Needs a built image (`make image`, or `make image-test`'s uncompressed one: then the
bench compresses a copy itself, as `make image` does). Each run boots a fresh copy of
the image with a signed site file: the first boot (which provisions the box) and, after
a power cut, a second one, each timed from power-on to /healthz answering; the baseline
in the same run is power-on to the OS's own login prompt on the serial console, so the
ratio says what the box's services add. Memory is each service's cgroup figures on
Admin > Status, read a minute after the first admin claimed the box: in use (the working
set: memory.current less the inactive file cache, which the kernel drops first; the
target's figure) and with the file cache (memory.current), both in the JSON. Then a USB stick
with the build's update bundle is plugged in and the box powered on: the update's figure
is from power-on to the box serving from the other slot with the update recorded (a
boot, the install, a restart, the trial boot); its download is the bundle's size.

Targets: compressed image < 1.5 GB with the default models; power-on to serving < 60 s
under qemu TCG; idle memory of our services < 300 MB without the tutor model.
The arm64 (Raspberry Pi) image boots on qemu's virt machine with a Cortex-A72, the Pi 4's
core, emulated on this x86-64 host: its times say how the image behaves, not how fast a
Pi is. Prints a table; JSON to bench/results/image.json (image-aarch64.json for arm64).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spread import as_text, over_runs  # noqa: E402 - bench/spread.py, beside this file

from appliance.cli import main as schoolbox  # noqa: E402
from image import qemu  # noqa: E402
from tests.over_http import post_form  # noqa: E402

RESULTS = {"x86_64": REPO / "bench" / "results" / "image.json",
           "aarch64": REPO / "bench" / "results" / "image-aarch64.json"}  # fmt: skip
TARGETS = {"compressed_mb": 1536, "first_boot_s": 60, "boot_s": 60, "idle_services_mb": 300}
ADMIN = ("head", "kiboko-ndogo-juu-7")
SETTLE_S = 60  # after the claim, before memory is read: the first page loads are over


def compressed(image: Path) -> Path:
    """The image as district IT downloads it: `make image`'s .xz, or one made now."""
    packed = image.with_name(image.name + ".xz")
    if not packed.exists() or packed.stat().st_mtime < image.stat().st_mtime:
        subprocess.run(["xz", "--threads=0", "-6", "--keep", "--force", str(image)], check=True)
    return packed


def site_file(hub_home: Path, folder: Path) -> Path:
    out = folder / "schoolbox-site.json"
    result = CliRunner().invoke(schoolbox, [
        "image", "site-file", "--hub-home", str(hub_home), "--school-id", "bench",
        "--site-name", "Bench School", "--wifi-mode", "join", "--ssid", "Bench",
        "--passphrase", "tembo-kubwa-42", "--country", "KE", "--consent", "tutor",
        "--out", str(out)])  # fmt: skip
    if result.exit_code != 0:
        raise SystemExit(result.output)
    return out


def login_prompt_s(machine: qemu.Machine, deadline_s: float = 900) -> float | None:
    """Seconds from power-on to the OS's login prompt on the serial console."""
    while time.monotonic() - machine.started_at < deadline_s:
        if machine.serial_log.exists() and b"login:" in machine.serial_log.read_bytes():
            return time.monotonic() - machine.started_at
        time.sleep(0.5)
    return None


def service_memory(base: str) -> dict[str, tuple[int, int]]:
    """Each service's bytes in use and with its file cache, from Admin > Status, signed in
    as the first admin."""
    admin = requests.Session()
    post_form(admin, base, "/signin/staff", "/signin/staff",
              {"username": ADMIN[0], "password": ADMIN[1]})  # fmt: skip
    page = admin.get(base + "/admin/", timeout=60).text
    rows = re.findall(
        r'<th scope="row">([\w-]+)</th><td data-bytes="(\d+)">[^<]*</td>'
        r'<td data-bytes-total="(\d+)">', page
    )  # fmt: skip
    return {name: (int(used), int(total)) for name, used, total in rows}


def update_s(machine: qemu.Machine, bundle: Path, deadline_s: float = 2400) -> float:
    """Power-on with a USB stick holding `bundle` until the box serves from the other
    slot with the update recorded (Admin > Status): boot, install, restart, trial boot."""
    machine.stop()
    machine.stick = qemu.stick([bundle], machine.work / "stick.img")
    machine.start()
    machine.wait_for("/healthz", 900)
    admin = requests.Session()
    post_form(admin, machine.base, "/signin/staff", "/signin/staff",
              {"username": ADMIN[0], "password": ADMIN[1]})  # fmt: skip
    while time.monotonic() - machine.started_at < deadline_s:
        try:
            page = admin.get(machine.base + "/admin/", timeout=30).text
        except requests.RequestException:
            page = ""
        if 'data-outcome="installed"' in page:
            return time.monotonic() - machine.started_at
        time.sleep(5)
    raise TimeoutError(f"the update was not installed in {deadline_s} s:\n{machine.tail()}")


def one_run(image: Path, hub_home: Path, work: Path, bundle: Path | None,
            arch: str = "x86_64") -> dict:  # fmt: skip
    disk = qemu.prepare_disk(image, work, site_file(hub_home, work))
    machine = qemu.Machine(disk, work, arch=arch).start()
    try:
        os_up = login_prompt_s(machine)
        first = machine.wait_for("/healthz", 900)
        report = json.loads(qemu.read_esp_file(disk, "schoolbox-setup.txt") or b"{}")
        admin = requests.Session()
        post_form(admin, machine.base, "/setup", "/setup", {
            "code": report["admin_setup_code"], "display_name": "Head", "username": ADMIN[0],
            "password": ADMIN[1], "password_again": ADMIN[1]})  # fmt: skip
        time.sleep(SETTLE_S)
        memory = service_memory(machine.base)
        machine.stop()
        (work / "serial.log").unlink()
        machine.start()
        os_up_again = login_prompt_s(machine)
        again = machine.wait_for("/healthz", 900)
        updated = update_s(machine, bundle) if bundle is not None else None
    finally:
        machine.stop()
    mb = {name: used / 1e6 for name, (used, _) in memory.items()}
    total_mb = {name: total / 1e6 for name, (_, total) in memory.items()}
    idle_without_tutor = sum(v for k, v in mb.items() if k != "schoolbox-tutor")
    return {
        "os_up_s": os_up, "first_boot_s": first, "os_up_again_s": os_up_again, "boot_s": again,
        "first_boot_vs_os": first / os_up if os_up else None,
        "boot_vs_os": again / os_up_again if os_up_again else None,
        "idle_services_mb": idle_without_tutor, "tutor_service_mb": mb.get("schoolbox-tutor"),
        "idle_all_mb": sum(mb.values()), "update_s": updated,
        "idle_services_with_cache_mb":
            sum(v for k, v in total_mb.items() if k != "schoolbox-tutor"),
        **{f"{name}_mb": value for name, value in mb.items()},
        **{f"{name}_with_cache_mb": value for name, value in total_mb.items()},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(RESULTS), default="x86_64")
    parser.add_argument("--image", type=Path,
                        help="default: build/image/ARCH/schoolbox-ARCH.img")  # fmt: skip
    parser.add_argument("--hub-home", type=Path, default=REPO / "build/test-district",
                        help="The district the image trusts (make image's HUB_HOME).")  # fmt: skip
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--update-runs", type=int, default=None,
                        help="How many of the runs also install the update (default: all; "
                             "each adds about 10 minutes under TCG).")  # fmt: skip
    args = parser.parse_args(argv)
    args.image = args.image or REPO / "build/image" / args.arch / f"schoolbox-{args.arch}.img"
    if not args.image.is_file():
        raise SystemExit(f"No image at {args.image}: run `make image` first.")
    build = json.loads((args.image.parent / "build.json").read_text())
    started = time.monotonic()
    packed = compressed(args.image)
    sizes = {
        "compressed_mb": packed.stat().st_size / 1e6,
        "raw_mb": args.image.stat().st_size / 1e6,
        "installed_root_mb": build["installed_root_mb"],
        "update_bundle_mb": Path(build["bundle"]).stat().st_size / 1e6,
        "compress_s": time.monotonic() - started,
    }
    runs = []
    for number in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-image-") as work:
            updating = args.update_runs is None or number < args.update_runs
            bundle = Path(build["bundle"]) if updating else None
            runs.append(one_run(args.image, args.hub_home, Path(work), bundle, args.arch))
        print(f"run {number + 1}: {json.dumps(runs[-1])}", flush=True)
    figures = over_runs(runs)
    result = {"image": str(args.image), "sizes": sizes, "build_seconds": build["seconds"],
              "runs": runs, "over_runs": figures, "targets": TARGETS,
              "update_measured_in_runs": sum(run["update_s"] is not None for run in runs),
              "arch": args.arch, "machine": qemu.MACHINE[args.arch],
              "accelerator": "qemu TCG (no KVM), 2 vCPUs, 2 GB"}  # fmt: skip
    results = RESULTS[args.arch]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'figure':<36} {'median (range)':<26} target")
    for name, value in sizes.items():
        print(f"{name:<36} {value:<26.1f} {TARGETS.get(name, '')}")
    print(f"{'build, total s':<36} {sum(build['seconds'].values()):<26.1f}")
    for name, figure in figures.items():
        print(f"{name:<36} {as_text(figure):<26} {TARGETS.get(name, '')}")
    print(f"(update_s over {result['update_measured_in_runs']} of {len(runs)} runs)")
    print(f"\nJSON: {results.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
