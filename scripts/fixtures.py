#!/usr/bin/env python3
"""Regenerates the generator's test fixtures with scapy, an implementation of the frame
formats independent of pmdswitch's own (so the tests compare two readings of the RFCs,
not the code with itself). Not needed to run the tests: its outputs are checked in.

  pip install scapy && python3 scripts/fixtures.py

tests/fixtures/frames.pcap   one 128-byte frame (FCS included) per shape the generator
                             builds, in the order of frame.rs's fixture test: L4 (udp,
                             tcp-syn, tcp-data) x tags (none, 100, 200+300) x (IPv4, IPv6),
                             TOS 0xb8, hop limit 9, flow 77, sequence 5, TSC 6.
examples/profiles/replay.pcap  a short mixed capture to replay (ARP, IPv4/UDP, IPv6/TCP,
                             tagged frames, 60 to 1514 bytes, 100 us apart).
tests/fixtures/vxlan.bin     one VXLAN frame (RFC 7348: VNI 5001, UDP checksum 0, DF)
                             around a 64-byte inner frame, for wire/vxlan.rs.
"""
import struct
from pathlib import Path

from scapy.all import ARP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, IPv6, Raw, wrpcap
from scapy.layers.vxlan import VXLAN

ROOT = Path(__file__).resolve().parent.parent
MAGIC = 0x9D5C


def sig(flow, seq, tsc):
    return struct.pack("<HHIQ", MAGIC, flow, seq, tsc)


def shape(l4, tags, six, length=124):
    p = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
    if len(tags) == 2:
        p = p / Dot1AD(vlan=tags[0]) / Dot1Q(vlan=tags[1])
    elif len(tags) == 1:
        p = p / Dot1Q(vlan=tags[0])
    if six:
        p = p / IPv6(tc=0xB8, fl=0, hlim=9, src="2001:db8:1::1", dst="2001:db8:2::1")
    else:
        p = p / IP(tos=0xB8, id=0, flags="DF", ttl=9, src="10.0.0.1", dst="10.1.0.1")
    if l4 == "udp":
        p = p / UDP(sport=1024, dport=5000)
    else:
        flags, ack = ("S", 0) if l4 == "tcp-syn" else ("PA", 1)
        p = p / TCP(sport=1024, dport=5000, seq=1, ack=ack, dataofs=5, flags=flags, window=65535)
    body = sig(77, 5, 6)
    pad = length - len(p) - len(body)
    p = p / Raw(body + bytes(pad))
    b = bytes(p)
    assert len(b) == length, (l4, tags, six, len(b))
    return b


def frames():
    out = []
    for l4 in ["udp", "tcp-syn", "tcp-data"]:
        for tags in [[], [100], [200, 300]]:
            for six in [False, True]:
                out.append(Ether(shape(l4, tags, six)))
    return out


def replay():
    e = dict(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
    ps = [
        Ether(dst="ff:ff:ff:ff:ff:ff", src=e["src"]) / ARP(op=1, psrc="198.18.0.1", pdst="198.18.0.2", hwsrc=e["src"]) / Raw(bytes(18)),
        Ether(**e) / IP(src="198.18.0.1", dst="198.19.0.1", ttl=64) / UDP(sport=1000, dport=2000) / Raw(b"A" * 18),
        Ether(**e) / IP(src="198.18.0.1", dst="198.19.0.2", ttl=32) / UDP(sport=1001, dport=53) / Raw(b"B" * 500),
        Ether(**e) / IPv6(src="2001:db8:1::1", dst="2001:db8:2::2") / TCP(sport=443, dport=50000, flags="PA", seq=1000) / Raw(b"C" * 1000),
        Ether(**e) / Dot1Q(vlan=100) / IP(src="198.18.0.3", dst="198.19.0.3") / TCP(sport=80, dport=4000, flags="S") / Raw(b"D" * 10),
        Ether(**e) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IPv6(src="2001:db8:1::5", dst="2001:db8:2::5") / UDP(sport=7, dport=7) / Raw(b"E" * 1400),
        Ether(**e) / IP(src="198.18.0.9", dst="198.19.0.9") / UDP(sport=9, dport=9) / Raw(bytes(range(256)) * 5 + bytes(172)),
    ]
    out = []
    t = 1_700_000_000.0
    for i in range(21):
        p = Ether(bytes(ps[i % len(ps)]))
        p.time = t + i * 0.0001
        out.append(p)
    return out


def vxlan():
    inner = bytearray(64)
    inner[0:6] = bytes([2, 0, 0, 0, 0, 0xB])
    inner[6:12] = bytes([2, 0, 0, 0, 0, 0xA])
    inner[12:14] = b"\x08\x00"
    p = (
        Ether(src="02:00:00:00:01:01", dst="02:00:00:00:02:02")
        / IP(flags="DF", ttl=64, id=0, src="198.18.1.1", dst="198.18.2.2")
        / UDP(sport=0xC123, dport=4789, chksum=0)
        / VXLAN(vni=5001, flags=0x08)
        / Raw(bytes(inner))
    )
    return bytes(p)


if __name__ == "__main__":
    (ROOT / "tests/fixtures").mkdir(parents=True, exist_ok=True)
    wrpcap(str(ROOT / "tests/fixtures/frames.pcap"), frames())
    wrpcap(str(ROOT / "examples/profiles/replay.pcap"), replay())
    (ROOT / "tests/fixtures/vxlan.bin").write_bytes(vxlan())
    print("wrote tests/fixtures/frames.pcap, examples/profiles/replay.pcap, tests/fixtures/vxlan.bin")
