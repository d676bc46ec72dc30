"""The network audit of a booted image (image/netaudit.py): built pcap files in, the
packets a box must not send out. The booted image itself is audited in test_boot.py."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

from image import netaudit

GUEST, HOST = netaudit.GUEST_MAC, bytes.fromhex("525400123502")


def ipv4(destination: str, protocol: int, payload: bytes, source_mac: bytes = GUEST) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, protocol, 0,
                         ipaddress.IPv4Address("10.0.2.15").packed,
                         ipaddress.IPv4Address(destination).packed)  # fmt: skip
    return HOST + source_mac + struct.pack("!H", netaudit.ETH_IPV4) + header + payload


def ipv6(destination: str, protocol: int, payload: bytes) -> bytes:
    header = struct.pack("!IHBB16s16s", 6 << 28, len(payload), protocol, 255,
                         ipaddress.IPv6Address("fe80::5054:ff:fe12:3456").packed,
                         ipaddress.IPv6Address(destination).packed)  # fmt: skip
    return HOST + GUEST + struct.pack("!H", netaudit.ETH_IPV6) + header + payload


def tcp(source: int, port: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", source, port, 0, 0, 0x50, flags, 1024, 0, 0)


def udp(source: int, port: int) -> bytes:
    return struct.pack("!HHHH", source, port, 8, 0)


def pcap(path: Path, frames: list[bytes]) -> Path:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for frame in frames:
        out += struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame
    path.write_bytes(out)
    return path


def test_only_what_the_box_opens_itself_is_reported(tmp_path):
    capture = pcap(tmp_path / "box.pcap", [
        ipv4("10.0.2.2", netaudit.TCP, tcp(80, 40000, 0x12)),  # SYN-ACK: answering a page
        ipv4("10.0.2.2", netaudit.TCP, tcp(22, 40001, 0x04)),  # RST: SSH is off
        ipv4("255.255.255.255", netaudit.UDP, udp(68, 67)),  # DHCP
        ipv4("224.0.0.251", netaudit.UDP, udp(5353, 5353)),  # mDNS: schoolbox.local
        ipv6("ff02::2", netaudit.ICMPV6, b"\x85\x00\x00\x00"),  # router solicitation
        # An MLD report: a hop-by-hop header (router alert), then ICMPv6.
        ipv6("ff02::16", 0, bytes([netaudit.ICMPV6, 0, 5, 2, 0, 0, 1, 0]) + b"\x8f\x00\x00\x00"),
        ipv4("10.0.2.3", netaudit.UDP, udp(41000, 53)),  # a DNS lookup
        ipv4("151.101.2.132", netaudit.TCP, tcp(41001, 443, 0x02)),  # opening a connection
        ipv4("10.0.2.3", netaudit.UDP, udp(41000, 53), source_mac=HOST),  # not the box's
    ])  # fmt: skip
    found = netaudit.unexpected(netaudit.sent_by_guest(capture))
    assert [str(p) for p in found] == [
        "udp to 10.0.2.3:53 (from :41000)", "tcp to 151.101.2.132:443 (from :41001)"]  # fmt: skip


def test_the_district_hub_it_was_told_about_is_allowed(tmp_path):
    capture = pcap(
        tmp_path / "sync.pcap", [ipv4("192.168.1.20", netaudit.TCP, tcp(41002, 8090, 0x02))]
    )
    sent = netaudit.sent_by_guest(capture)
    assert netaudit.unexpected(sent, hub="192.168.1.20") == []
    assert len(netaudit.unexpected(sent)) == 1
