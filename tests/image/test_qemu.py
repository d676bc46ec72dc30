"""The image tests' look at a box's disk from outside (image/qemu.py), on a small disk."""

from __future__ import annotations

import subprocess

from image import qemu


def _disk_with_data_partition(tmp_path, content_at: dict[int, bytes]):
    disk = tmp_path / "disk.img"
    with disk.open("wb") as out:
        out.truncate(64 << 20)
    layout = "label: gpt\nstart=2048, size=4096, name=esp\nstart=6144, size=100000, name=schoolbox-data\n"
    subprocess.run(["sfdisk", "--quiet", str(disk)], input=layout, text=True, check=True)
    with disk.open("r+b") as out:
        for offset, data in content_at.items():
            out.seek(6144 * 512 + offset)
            out.write(data)
    return disk


def test_a_name_on_the_data_partition_is_found_even_across_a_chunk_boundary(tmp_path):
    disk = _disk_with_data_partition(tmp_path, {(1 << 20) - 5: b"Hill Primary"})
    assert qemu.data_partition(disk) == (6144 * 512, 100000 * 512)
    assert qemu.data_partition_holds(disk, b"Hill Primary", chunk=1 << 20)
    assert not qemu.data_partition_holds(disk, b"Lake Primary", chunk=1 << 20)


def test_a_name_outside_the_data_partition_is_not_counted(tmp_path):
    disk = _disk_with_data_partition(tmp_path, {-4096: b"Hill Primary"})  # on the ESP
    assert not qemu.data_partition_holds(disk, b"Hill Primary")
