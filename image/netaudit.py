"""What a booted image tried to reach: every packet the guest sent, read from the pcap
file qemu's filter-dump wrote (image/qemu.py, Machine.capture). The image tests assert
that the box only ever answers (from its ports 80 and 22) and uses the local network's
own plumbing (DHCP, neighbour discovery, mDNS for schoolbox.local), and opens nothing
else: no DNS lookup, no time server, no telemetry, no update check.

Reads classic pcap (libpcap's format, Ethernet frames) with the standard library alone.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

GUEST_MAC = bytes.fromhex("525400123456")  # qemu's default for the first NIC
ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
TCP, UDP, ICMP, ICMPV6, IGMP = 6, 17, 1, 58, 2
DHCP_CLIENT, DHCPV6_CLIENT, MDNS = 68, 546, 5353


@dataclass(frozen=True)
class Sent:
    """One packet the box sent: protocol, where to, from which of its ports."""

    protocol: str
    destination: str
    port: int | None
    source_port: int | None
    syn: bool = False  # a TCP SYN without ACK: the box opening a connection

    def __str__(self) -> str:
        return f"{self.protocol} to {self.destination}:{self.port} (from :{self.source_port})"


def frames(pcap: Path) -> Iterator[bytes]:
    data = pcap.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack(endian + "IIII", data[offset : offset + 16])
        yield data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured


def sent_by_guest(pcap: Path) -> list[Sent]:
    """Every IP packet the guest sent (ARP left out: it names no one outside)."""
    found = []
    for frame in frames(pcap):
        if len(frame) < 14 or frame[6:12] != GUEST_MAC:
            continue
        kind = struct.unpack("!H", frame[12:14])[0]
        if kind == ETH_IPV4 and len(frame) >= 34:
            header = (frame[14] & 0x0F) * 4
            found.append(_transport(frame[23], str(ipaddress.IPv4Address(frame[30:34])),
                                    frame[14 + header :]))  # fmt: skip
        elif kind == ETH_IPV6 and len(frame) >= 54:
            protocol, payload = _past_extension_headers(frame[20], frame[54:])
            found.append(_transport(protocol, str(ipaddress.IPv6Address(frame[38:54])), payload))
    return found


def _past_extension_headers(protocol: int, payload: bytes) -> tuple[int, bytes]:
    """IPv6's hop-by-hop, routing and destination options headers skipped (an MLD report
    carries a hop-by-hop router alert before its ICMPv6)."""
    while protocol in (0, 43, 60) and len(payload) >= 2:
        protocol, payload = payload[0], payload[(payload[1] + 1) * 8 :]
    return protocol, payload


def _transport(protocol: int, destination: str, payload: bytes) -> Sent:
    if protocol in (TCP, UDP) and len(payload) >= 4:
        source, port = struct.unpack("!HH", payload[:4])
        syn = protocol == TCP and len(payload) >= 14 and payload[13] & 0x12 == 0x02
        return Sent("tcp" if protocol == TCP else "udp", destination, port, source, syn)
    names = {ICMP: "icmp", ICMPV6: "icmpv6", IGMP: "igmp"}
    return Sent(names.get(protocol, f"ip-{protocol}"), destination, None, None)


def unexpected(sent: list[Sent], answering: tuple[int, ...] = (80, 22),
               hub: str | None = None) -> list[Sent]:  # fmt: skip
    """The packets that are neither an answer from the box's own ports, nor the local
    network's plumbing, nor to the district hub (`hub`, an address) where it has one."""
    bad = []
    for packet in sent:
        if packet.protocol == "tcp" and packet.source_port in answering and not packet.syn:
            continue  # the web app or sshd answering a connection made to it
        if packet.destination == hub:
            continue
        if packet.protocol == "udp" and packet.source_port in (DHCP_CLIENT, DHCPV6_CLIENT):
            continue  # asking for an address
        if packet.protocol == "udp" and packet.port == MDNS and _multicast(packet.destination):
            continue  # schoolbox.local (avahi), on the school's network only
        if packet.protocol in ("icmpv6", "igmp") and _link_local(packet.destination):
            continue  # neighbour and router discovery, multicast group joins
        bad.append(packet)
    return bad


def _multicast(address: str) -> bool:
    return ipaddress.ip_address(address).is_multicast


def _link_local(address: str) -> bool:
    found = ipaddress.ip_address(address)
    return found.is_multicast or found.is_link_local
