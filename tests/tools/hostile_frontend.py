#!/usr/bin/env python3
"""A hostile vhost-user frontend.

Messages: connects to a backend's socket and sends malformed messages (wrong sizes,
unknown requests, missing or bogus file descriptors, memory tables that do not cover the
rings, rings of absurd size, truncated and garbage data).

    hostile_frontend.py SOCKET [--pid PID]

Prints one line per case; exits 1 if the backend process (PID) died during a case.

Rings: a complete, well-formed session on HOSTILE (guest memory in a memfd, split
rings of 256), whose transmit ring then carries hostile descriptor chains between valid
frames (indices out of range, loops, addresses outside memory or wrapping, indirect
tables that break the rules, the WRITE flag on the wrong side, short headers, too many
buffers, a header split over descriptors, zero-length buffers, virtio-net headers that
ask for what was not negotiated or do not fit their frame...), and a second, well-behaved session on
RECEIVER (a cross-connect's other end) that posts receive buffers, part of them hostile
too, and collects what arrives. It checks that every chain came back (the used index
caught up: no hang, no leak), that exactly the valid frames arrived, intact and in
order, and nothing else; last, the available index jumps by more than the ring size
(the backend must stop serving that ring).

    hostile_frontend.py rings HOSTILE RECEIVER --ctl SOCK [--pid PID] [--lib] [--no-rx-cases]

Prints one line per case and a summary line "rings: ..." with the counts a caller
checks against the backend's counters; exits 1 on any failed check.

Storm: a session on SOCKET (port NAME) that sends SET_VRING_CALL COUNT times as fast as
the socket takes them; the device must be served before and after.

    hostile_frontend.py storm SOCKET NAME --ctl SOCK --count COUNT [--pid PID]

Rxwalk: HOSTILE sends 9000-byte frames to RECEIVER (a cross-connect's other end, port
names h and r), whose receive ring offers 63 chains of 64 one-byte buffers (mergeable):
never enough, expensive to walk, for SECS seconds.

    hostile_frontend.py rxwalk HOSTILE RECEIVER --ctl SOCK --secs SECS [--pid PID]

Truncate: a session on SOCKET whose guest memory (a memfd) is truncated to nothing
while the backend serves it; then a fresh session that must be served.

    hostile_frontend.py truncate SOCKET NAME --ctl SOCK [--pid PID]
Message layout: QEMU docs/interop/vhost-user.rst, "Message Specification"; rings:
virtio 1.1 §2.6.
"""
import json
import mmap
import os
import socket
import struct
import sys
import time

# Front-end message types (vhost-user.rst, "Front-end message types").
GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_LOG_BASE, SET_LOG_FD, SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE = 6, 7, 8, 9, 10
GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL = 11, 12, 13
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE = 15, 16, 17, 18
VERSION = 0x1
NEED_REPLY = 1 << 3
NOFD = 1 << 8  # in the u64 of SET_VRING_KICK/CALL: "no file descriptor"


def msg(req, payload=b"", flags=VERSION, size=None):
    return struct.pack("<III", req, flags, len(payload) if size is None else size) + payload


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(path)
    return s


def send(s, data, fds=()):
    try:
        if fds:
            s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i" * len(fds), *fds))])
        else:
            s.sendall(data)
    except OSError:
        pass  # the backend closed on us: that is a fine answer


def drain(s):
    try:
        s.recv(4096)
    except OSError:
        pass


def memfd(size):
    fd = os.memfd_create("hostile")
    os.ftruncate(fd, size)
    return fd


def region(gpa, size, uva, off):
    return struct.pack("<QQQQ", gpa, size, uva, off)


def vring_addr(index, desc, used, avail, flags=0, log=0):
    return struct.pack("<IIQQQQ", index, flags, desc, used, avail, log)


def handshake(s):
    send(s, msg(GET_FEATURES))
    drain(s)
    send(s, msg(SET_OWNER))
    send(s, msg(SET_FEATURES, u64(1 << 32 | 1 << 15)))  # VERSION_1 | MRG_RXBUF


CASES = []


def case(f):
    CASES.append(f)
    return f


@case
def garbage(path):
    s = connect(path)
    send(s, os.urandom(256))
    s.close()


@case
def truncated_header(path):
    s = connect(path)
    send(s, struct.pack("<I", GET_FEATURES))
    s.close()


@case
def huge_size_field(path):
    s = connect(path)
    send(s, msg(SET_FEATURES, u64(0), size=0xFFFFFFFF))
    s.close()


@case
def payload_shorter_than_size(path):
    s = connect(path)
    send(s, msg(SET_VRING_NUM, b"\x00" * 4, size=8))
    s.close()


@case
def unknown_requests(path):
    s = connect(path)
    for req in (0, 99, 9999, 0xFFFFFFFF):
        send(s, msg(req, b"\x00" * 8))
    s.close()


@case
def wrong_version_flags(path):
    s = connect(path)
    send(s, msg(GET_FEATURES, flags=0x7))
    s.close()


@case
def all_feature_bits(path):
    s = connect(path)
    send(s, msg(SET_OWNER))
    send(s, msg(SET_FEATURES, u64(0xFFFFFFFFFFFFFFFF)))
    send(s, msg(SET_PROTOCOL_FEATURES, u64(0xFFFFFFFFFFFFFFFF)))
    s.close()


@case
def mem_table_too_many_regions_no_fds(path):
    s = connect(path)
    handshake(s)
    body = struct.pack("<II", 200, 0) + region(0, 4096, 0, 0) * 8
    send(s, msg(SET_MEM_TABLE, body))
    s.close()


@case
def mem_table_missing_fd(path):
    s = connect(path)
    handshake(s)
    body = struct.pack("<II", 1, 0) + region(0, 1 << 20, 0x7F0000000000, 0)
    send(s, msg(SET_MEM_TABLE, body))
    s.close()


@case
def mem_table_region_larger_than_fd(path):
    s = connect(path)
    handshake(s)
    fd = memfd(4096)
    body = struct.pack("<II", 1, 0) + region(0, 1 << 30, 0x7F0000000000, 1 << 40)
    send(s, msg(SET_MEM_TABLE, body), [fd])
    os.close(fd)
    s.close()


@case
def rings_outside_memory_and_absurd_size(path):
    s = connect(path)
    handshake(s)
    fd = memfd(1 << 20)
    body = struct.pack("<II", 1, 0) + region(0, 1 << 20, 0x7F0000000000, 0)
    send(s, msg(SET_MEM_TABLE, body), [fd])
    os.close(fd)
    for q in (0, 1, 7, 255):
        send(s, msg(SET_VRING_NUM, struct.pack("<II", q, 0xFFFFFFFF)))
        send(s, msg(SET_VRING_NUM, struct.pack("<II", q, 32768 * 2)))
        send(s, msg(SET_VRING_BASE, struct.pack("<II", q, 0xFFFF)))
        # Addresses far outside the single 1 MiB region.
        send(s, msg(SET_VRING_ADDR, vring_addr(q, 0xDEAD0000000, 0xBEEF0000000, 0xFEED0000000)))
        kick = memfd(8)
        send(s, msg(SET_VRING_KICK, u64(q)), [kick])
        os.close(kick)
        send(s, msg(SET_VRING_CALL, u64(q | NOFD)))
        send(s, msg(SET_VRING_ENABLE, struct.pack("<II", q, 1)))
    time.sleep(0.2)
    send(s, msg(GET_VRING_BASE, struct.pack("<II", 0, 0), flags=VERSION | NEED_REPLY))
    drain(s)
    s.close()


@case
def kick_without_fd(path):
    s = connect(path)
    handshake(s)
    send(s, msg(SET_VRING_NUM, struct.pack("<II", 0, 256)))
    send(s, msg(SET_VRING_KICK, u64(0)))  # says an fd follows; none does
    send(s, msg(SET_VRING_CALL, u64(5)))
    send(s, msg(SET_LOG_BASE, u64(0) * 2))
    send(s, msg(SET_LOG_FD))
    s.close()


@case
def bogus_fds_attached_everywhere(path):
    s = connect(path)
    fds = [memfd(4096) for _ in range(8)]
    for req in (GET_FEATURES, SET_OWNER, GET_QUEUE_NUM, SET_VRING_ENABLE):
        send(s, msg(req, b"\x00" * 8), fds)
    for fd in fds:
        os.close(fd)
    s.close()


@case
def reset_and_reconnect_storm(path):
    for _ in range(30):
        try:
            s = connect(path)
        except OSError:
            continue
        send(s, msg(RESET_OWNER))
        s.close()


def alive(pid):
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


# ---- Ring-level cases ----------------------------------------------------------------

F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4
F_VERSION_1, F_INDIRECT_DESC, F_IN_ORDER = 1 << 32, 1 << 28, 1 << 35
# virtio-net offloads (virtio 1.1 §5.1.3): what the hostile sender and the receiver ask for.
F_CSUM, F_GUEST_CSUM, F_GUEST_TSO4, F_GUEST_TSO6 = 1 << 0, 1 << 1, 1 << 7, 1 << 8
F_HOST_TSO4, F_HOST_TSO6, F_MRG_RXBUF = 1 << 11, 1 << 12, 1 << 15
BASE = F_VERSION_1 | F_INDIRECT_DESC | F_IN_ORDER
NEEDS_CSUM, DATA_VALID = 1, 2
GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_ECN = 1, 3, 4, 0x80
QSIZE = 256
MEM = 4 << 20
UVA = 0x7F0000000000  # the frontend's address of guest memory (gpa 0), as rings are given
HDR = 12  # virtio-net header with VERSION_1 (virtio 1.1 §5.1.6)


def recv_reply(s):
    hdr = s.recv(12)
    if len(hdr) < 12:
        raise OSError(0, "backend closed")
    _, _, size = struct.unpack("<III", hdr)
    return s.recv(size) if size else b""


class Guest:
    """One frontend with its own guest memory and the two vrings of queue pair 0."""

    def __init__(self, path, features=BASE):
        self.s = connect(path)
        self.fd = memfd(MEM)
        self.m = mmap.mmap(self.fd, MEM)
        self.kick = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]
        self.call = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]
        self.avail = [0, 0]  # next available index we publish
        self.next_desc = [0, 0]
        send(self.s, msg(GET_FEATURES))
        offered = struct.unpack("<Q", recv_reply(self.s)[:8])[0]
        send(self.s, msg(SET_OWNER))
        send(self.s, msg(SET_FEATURES, u64(features & offered)))
        self.in_order = bool(features & offered & F_IN_ORDER)
        body = struct.pack("<II", 1, 0) + region(0, MEM, UVA, 0)
        send(self.s, msg(SET_MEM_TABLE, body), [self.fd])
        for q in (0, 1):
            d, a, u = self.ring(q)
            send(self.s, msg(SET_VRING_NUM, struct.pack("<II", q, QSIZE)))
            send(self.s, msg(SET_VRING_BASE, struct.pack("<II", q, 0)))
            send(self.s, msg(SET_VRING_ADDR, vring_addr(q, UVA + d, UVA + u, UVA + a)))
            send(self.s, msg(SET_VRING_CALL, u64(q)), [self.call[q]])
            send(self.s, msg(SET_VRING_KICK, u64(q)), [self.kick[q]])

    @staticmethod
    def ring(q):
        base = 0x10000 * (q + 1)
        return base, base + 0x1000, base + 0x2000  # desc, avail, used

    def put_desc(self, q, i, addr, length, flags=0, nxt=0, table=None):
        """Descriptor i of vring q (or of an indirect table at gpa `table`)."""
        at = (table if table is not None else self.ring(q)[0]) + 16 * i
        self.m[at:at + 16] = struct.pack("<QIHH", addr & 0xFFFFFFFFFFFFFFFF, length & 0xFFFFFFFF, flags, nxt)

    def write(self, gpa, data):
        self.m[gpa:gpa + len(data)] = data

    def read(self, gpa, n):
        return bytes(self.m[gpa:gpa + n])

    def alloc(self, q, n):
        """n descriptor indices of vring q, reused round the ring."""
        first = self.next_desc[q]
        self.next_desc[q] = (first + n) % QSIZE
        return [(first + k) % QSIZE for k in range(n)]

    def publish(self, q, head, kick=True, idx=None):
        _, a, _ = self.ring(q)
        pos = self.avail[q] % QSIZE
        self.m[a + 4 + 2 * pos:a + 6 + 2 * pos] = struct.pack("<H", head & 0xFFFF)
        self.avail[q] = (self.avail[q] + 1) & 0xFFFF if idx is None else idx
        self.m[a + 2:a + 4] = struct.pack("<H", self.avail[q])
        if kick:
            os.eventfd_write(self.kick[q], 1)

    def used_idx(self, q):
        _, _, u = self.ring(q)
        return struct.unpack("<H", self.m[u + 2:u + 4])[0]

    def used_elem(self, q, pos):
        _, _, u = self.ring(q)
        at = u + 4 + 8 * (pos % QSIZE)
        return struct.unpack("<II", self.m[at:at + 8])

    def wait_used(self, q, want, secs=2.0):
        t = time.time() + secs
        while time.time() < t:
            if self.used_idx(q) == want & 0xFFFF:
                return True
            time.sleep(0.002)
        return False

    def close(self):
        self.s.close()
        self.m.close()
        for fd in self.kick + self.call + [self.fd]:
            os.close(fd)


TX_BUF = 0x100000  # transmit buffers: 2 KiB each from here
RX_BUF = 0x200000  # receive buffers of the receiver: 2 KiB each
TABLES = 0x380000  # indirect tables


def frame(tag):
    """A 64-byte Ethernet frame naming its case: broadcast, so any switch passes it."""
    body = tag.encode()[:40].ljust(40, b".")
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + body + bytes(64 - 14 - 40)


def vnet(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0, num_buffers=0):
    """A virtio-net header with num_buffers (virtio 1.1 §5.1.6)."""
    return struct.pack("<BBHHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers)


def tcp_frame(tag, n, proto=6):
    """Ethernet (broadcast) / IPv4 / TCP (or another protocol number) with n payload bytes."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + n, 1, 0, 64, proto, 0, bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]))
    tcp = struct.pack("!HHIIBBHHH", 40000, 5001, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + tcp + tag.encode().ljust(n, b".")[:n]


def ctl(path, words):
    """One request on pmdswitch's control socket (one line out, the reply until EOF)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall((" ".join(words) + "\n").encode())
    out = b""
    while True:
        x = s.recv(65536)
        if not x:
            break
        out += x
    s.close()
    return json.loads(out)


def wait_for(what, look, secs=20.0):
    """Looks every 10 ms until look() is true; False after secs."""
    t = time.time() + secs
    while time.time() < t:
        if look():
            return True
        time.sleep(0.01)
    print(f"waited {secs} s for {what}")
    return False


class Rings:
    def __init__(self, hostile, receiver, ctl_path, lib):
        self.ctl = ctl_path
        self.lib = lib
        # The sender may ask for checksums and TSO in its headers (so they are read, and
        # checked); the receiver takes them (so a header reaches it, the one we wrote).
        self.h = Guest(hostile, BASE | F_CSUM | F_HOST_TSO4 | F_HOST_TSO6)
        self.r = Guest(receiver, BASE | F_GUEST_CSUM | F_GUEST_TSO4 | F_GUEST_TSO6)
        self.hdrs = {}  # index in expected -> the virtio-net header the receiver must get
        self.in_order = self.h.in_order  # the backend promised in-order use
        self.expected = []  # frames that must arrive, in order
        self.posted = 0  # chains on the hostile TX ring
        self.rx_seen = 0  # used entries read on the receiver's RX ring
        self.rx_posted = 0
        self.got = []
        self.got_hdrs = []
        self.buf = 0
        self.failures = []
        self.bad = {"chain": 0, "addr": 0, "oversize": 0, "hdr": 0}
        self.rx_bad = {"chain": 0, "addr": 0, "oversize": 0}
        # Both devices up and every worker serving them (a frame from h to an r not yet
        # served would be dropped as port_down, not by its own cause).
        def ready():
            p = ctl(self.ctl, ["show", "ports", "--json"])["ports"]
            w = ctl(self.ctl, ["show", "workers", "--json"])["workers"]
            return p["h"].get("connected") and p["r"].get("connected") and not any(x["reload_pending"] for x in w)
        if not wait_for("both devices served", ready):
            self.failures.append("the devices were not served within 20 s")

    def tx_buf(self, data):
        gpa = TX_BUF + 2048 * (self.buf % 512)
        self.buf += 1
        self.h.write(gpa, data)
        return gpa

    def stock_rx(self, n):
        """The receiver posts n good receive buffers (one 2 KiB buffer each)."""
        for _ in range(n):
            (i,) = self.r.alloc(0, 1)
            self.r.put_desc(0, i, RX_BUF + 2048 * i, 2048, F_WRITE)
            self.r.publish(0, i)
            self.rx_posted += 1

    def collect(self):
        while self.rx_seen != self.r.used_idx(0):
            head, length = self.r.used_elem(0, self.rx_seen)
            self.rx_seen = (self.rx_seen + 1) & 0xFFFF
            if length == 0:
                continue  # a buffer handed back unused
            data = self.r.read(RX_BUF + 2048 * head, length)
            self.got.append(data[HDR:])
            self.got_hdrs.append(data[:HDR])

    def send_chain(self, name, descs, valid, cause=None):
        """Posts one chain on the hostile TX ring; descs = [(addr, len, flags, next)] at
        consecutive indices, `next` relative (None: the following one)."""
        idx = self.h.alloc(1, len(descs))
        for k, (addr, length, flags, nxt) in enumerate(descs):
            n = idx[(k + 1) % len(idx)] if nxt is None else nxt
            self.h.put_desc(1, idx[k], addr, length, flags, n)
        self.post(name, idx[0], valid, cause)

    def post(self, name, head, valid, cause, expect=None):
        self.h.publish(1, head)
        self.posted += 1
        if valid:
            self.expected.append(expect)
        elif cause:
            self.bad[cause] += 1
        # Once a backend has stopped returning chains, do not wait long for each.
        back = self.h.wait_used(1, self.posted, 0.2 if self.failures else 2.0)
        self.collect()
        print(f"ring case {name}: {'chain returned' if back else 'CHAIN NOT RETURNED'}")
        if not back:
            self.failures.append(f"{name}: chain not returned (used {self.h.used_idx(1)}, posted {self.posted})")

    def valid(self, name):
        f = frame(name)
        gpa = self.tx_buf(bytes(HDR) + f)
        (i,) = self.h.alloc(1, 1)
        self.h.put_desc(1, i, gpa, HDR + len(f))
        self.post(name, i, True, None, f)

    def run_tx_cases(self):
        good = lambda tag: self.tx_buf(bytes(HDR) + frame(tag))  # noqa: E731
        L = HDR + 64
        self.valid("valid-first")
        # A head outside the ring (the avail entry itself).
        self.post("head-out-of-range", QSIZE + 7, False, "chain")
        self.valid("valid-after-head")
        self.send_chain("next-out-of-range", [(good("x"), 6, F_NEXT, 999)], False, "chain")
        # A descriptor whose next is itself, and a two-descriptor loop.
        (i,) = self.h.alloc(1, 1)
        self.h.put_desc(1, i, good("x"), 6, F_NEXT, i)
        self.post("self-loop", i, False, "chain")
        a, b = self.h.alloc(1, 2)
        self.h.put_desc(1, a, good("x"), 6, F_NEXT, b)
        self.h.put_desc(1, b, good("x"), 6, F_NEXT, a)
        self.post("two-loop", a, False, "chain")
        self.valid("valid-after-loops")
        self.send_chain("addr-outside-memory", [(MEM + 0x1000, L, 0, 0)], False, "addr")
        self.send_chain("addr-end-outside-memory", [(MEM - 16, L, 0, 0)], False, "addr")
        self.send_chain("addr-wraps", [(0xFFFFFFFFFFFFF000, 0x2000, 0, 0)], False, "addr")
        self.send_chain("write-flag-on-tx", [(good("x"), L, F_WRITE, 0)], False, "chain")
        self.send_chain("header-too-short", [(good("x"), 8, 0, 0)], False, "chain")
        self.send_chain("too-long", [(TX_BUF, 3 << 20, 0, 0)], False, "oversize")
        self.send_chain("too-many-buffers", [(good("x"), 1, F_NEXT, None)] * 99 + [(good("x"), L, 0, 0)], False, "chain")
        self.valid("valid-after-addresses")
        # A header split over descriptors, then the frame: valid, arrives whole.
        f = frame("split-header")
        g = self.tx_buf(bytes(HDR) + f)
        self.send_chain("split-header", [(g, 5, F_NEXT, None), (g + 5, 7, F_NEXT, None), (g + 12, 64, 0, 0)], True)
        self.expected[-1] = f
        # A zero-length descriptor inside a chain: refused (as QEMU and libvhost-user do).
        f = frame("zero-lengths")
        g = self.tx_buf(bytes(HDR) + f)
        self.send_chain("zero-lengths", [(g, HDR, F_NEXT, None), (0, 0, F_NEXT, None), (g + HDR, 64, 0, 0)], False, "chain")
        # Indirect: a valid table of two; then tables that break a rule.
        f = frame("indirect")
        g = self.tx_buf(bytes(HDR) + f)
        t = TABLES
        self.h.put_desc(1, 0, g, HDR, F_NEXT, 1, table=t)
        self.h.put_desc(1, 1, g + HDR, 64, 0, 0, table=t)
        self.send_chain("indirect", [(t, 32, F_INDIRECT, 0)], True)
        self.expected[-1] = f
        self.send_chain("indirect-len-not-16", [(t, 31, F_INDIRECT, 0)], False, "chain")
        self.send_chain("indirect-with-next", [(t, 32, F_INDIRECT | F_NEXT, None), (g, L, 0, 0)], False, "chain")
        t2 = TABLES + 0x1000
        self.h.put_desc(1, 0, t, 32, F_INDIRECT, 0, table=t2)
        self.send_chain("indirect-nested", [(t2, 16, F_INDIRECT, 0)], False, "chain")
        self.send_chain("indirect-outside-memory", [(MEM - 16, 64, F_INDIRECT, 0)], False, "addr")
        self.h.put_desc(1, 0, g, L, 0, 0, table=t2)
        self.send_chain("indirect-table-huge", [(t2, 16 * 4096, F_INDIRECT, 0)], False, "chain")
        t3 = TABLES + 0x2000
        self.h.put_desc(1, 0, g, HDR, F_NEXT, 5, table=t3)
        self.send_chain("indirect-next-out-of-table", [(t3, 16, F_INDIRECT, 0)], False, "chain")
        self.valid("valid-last")

    def hdr_case(self, name, hdr, f, want=None):
        """A frame sent with virtio-net header `hdr`: refused (bad_vnet_hdr) when `want` is
        None, else it arrives and the receiver's header is `want` (the one pmdswitch
        rebuilt: never the sender's)."""
        gpa = self.tx_buf(hdr + f)
        (i,) = self.h.alloc(1, 1)
        self.h.put_desc(1, i, gpa, HDR + len(f))
        if want is not None:
            self.hdrs[len(self.expected)] = want
        self.post(name, i, want is not None, None if want is not None else "hdr", f)

    def run_hdr_cases(self):
        """Headers that ask for what was not negotiated or does not fit the frame, and
        good ones with junk in the fields they do not use."""
        tcp = tcp_frame("hdr-tcp", 1000)
        small = frame("hdr-small")
        self.hdr_case("hdr-unknown-flag", vnet(0x80), small)
        self.hdr_case("hdr-rsc-info", vnet(4), small)
        self.hdr_case("hdr-csum-past-end", vnet(NEEDS_CSUM, csum_start=50, csum_offset=16), small)
        self.hdr_case("hdr-csum-overflow", vnet(NEEDS_CSUM, csum_start=0xFFFF, csum_offset=0xFFFF), small)
        self.hdr_case("hdr-gso-size-1", vnet(NEEDS_CSUM, GSO_TCPV4, 54, 1, 34, 16), tcp)
        self.hdr_case("hdr-gso-ecn", vnet(NEEDS_CSUM, GSO_TCPV4 | GSO_ECN, 54, 536, 34, 16), tcp)
        self.hdr_case("hdr-gso-udp-kind", vnet(NEEDS_CSUM, GSO_UDP, 54, 536, 34, 16), tcp)
        self.hdr_case("hdr-gso-v6-on-v4", vnet(NEEDS_CSUM, GSO_TCPV6, 54, 536, 34, 16), tcp)
        self.hdr_case("hdr-gso-without-csum", vnet(0, GSO_TCPV4, 54, 536, 34, 16), tcp)
        self.hdr_case("hdr-gso-csum-elsewhere", vnet(NEEDS_CSUM, GSO_TCPV4, 54, 536, 30, 16), tcp)
        self.hdr_case("hdr-gso-on-udp", vnet(NEEDS_CSUM, GSO_TCPV4, 54, 536, 34, 16), tcp_frame("hdr-udp", 1000, proto=17))
        self.hdr_case("hdr-hdr-len-past-end", vnet(NEEDS_CSUM, GSO_TCPV4, 0xFFFF, 536, 34, 16), tcp)
        # Good ones: DATA_VALID from a sender is dropped from the header (a driver must not
        # set it); unused fields come back zero; a TSO frame passes whole with hdr_len
        # ours (54), num_buffers 1.
        self.hdr_case("hdr-data-valid", vnet(DATA_VALID, 0, 77, 77, 77, 77), small, vnet(num_buffers=1))
        self.hdr_case("hdr-needs-csum", vnet(NEEDS_CSUM | DATA_VALID, 0, 999, 7, 34, 16), tcp,
                      vnet(NEEDS_CSUM, 0, 0, 0, 34, 16, 1))
        self.hdr_case("hdr-tso", vnet(NEEDS_CSUM, GSO_TCPV4, 5, 536, 34, 16), tcp,
                      vnet(NEEDS_CSUM, GSO_TCPV4, 54, 536, 34, 16, 1))

    def run_rx_cases(self):
        """Before any good receive buffer: the receiver's only buffer is hostile, so a
        frame meant for it is refused and counted (on its port), the buffer handed back
        unused, and the frame never arrives."""
        cases = [
            ("rx-without-write-flag", RX_BUF, 2048, 0, "chain"),
            ("rx-outside-memory", MEM + 4096, 2048, F_WRITE, "addr"),
            ("rx-too-small", RX_BUF, 4, F_WRITE, "oversize"),
            ("rx-zero-length", RX_BUF, 0, F_WRITE, "chain"),
        ]
        for name, addr, length, flags, cause in cases:
            (i,) = self.r.alloc(0, 1)
            self.r.put_desc(0, i, addr, length, flags)
            self.r.publish(0, i)
            self.rx_posted += 1
            f = frame(name)
            gpa = self.tx_buf(bytes(HDR) + f)
            (j,) = self.h.alloc(1, 1)
            self.h.put_desc(1, j, gpa, HDR + len(f))
            self.h.publish(1, j)
            self.posted += 1
            self.rx_bad[cause] += 1
            ok = self.r.wait_used(0, self.rx_posted) and self.h.wait_used(1, self.posted)
            self.collect()
            print(f"ring case {name}: {'buffer returned' if ok else 'BUFFER NOT RETURNED'}")
            if not ok:
                self.failures.append(f"{name}: receive buffer or transmit chain not returned")

    def burst_in_order(self):
        """Valid and broken chains made available at once, one kick: every chain comes back
        at the used position matching its available one (virtio 1.1 §2.6.9, in-order use,
        which the own path offers), refused ones included."""
        start, heads = self.h.used_idx(1), []
        for k in range(8):
            (i,) = self.h.alloc(1, 1)
            f = frame(f"burst-{k}")
            if k % 3 == 1:
                self.h.put_desc(1, i, self.tx_buf(bytes(HDR) + f), 8)  # header too short
                self.bad["chain"] += 1
            else:
                self.h.put_desc(1, i, self.tx_buf(bytes(HDR) + f), HDR + len(f))
                self.expected.append(f)
            heads.append(i)
            self.h.publish(1, i, kick=False)
            self.posted += 1
        os.eventfd_write(self.h.kick[1], 1)
        back = self.h.wait_used(1, self.posted)
        got = [self.h.used_elem(1, (start + k) & 0xFFFF)[0] for k in range(len(heads))]
        print(f"ring case burst-in-order: {'in order' if back and got == heads else f'used ids {got} for heads {heads}'}")
        if not back:
            self.failures.append(f"burst-in-order: chains not returned (used {self.h.used_idx(1)}, posted {self.posted})")
        elif got != heads and self.in_order:
            self.failures.append(f"burst-in-order: used ids {got}, made available {heads}")
        self.collect()

    def check(self):
        deadline = time.time() + 2
        while len(self.got) < len(self.expected) and time.time() < deadline:
            time.sleep(0.01)
            self.collect()
        if self.got != self.expected:
            missing = [e[14:30] for e in self.expected if e not in self.got]
            extra = [g[14:30] for g in self.got if g not in self.expected]
            self.failures.append(f"arrived {len(self.got)} frames, expected {len(self.expected)}: missing {missing}, unexpected {extra}")
        elif not self.lib:
            for k, want in self.hdrs.items():
                if self.got_hdrs[k] != want:
                    self.failures.append(f"frame {k}: the receiver got header {self.got_hdrs[k].hex()}, not {want.hex()}")

    def break_ring(self):
        """The available index jumps by more than the ring size: the ring is broken."""
        before = self.h.used_idx(1)
        self.h.avail[1] = (self.h.avail[1] + QSIZE + 10) & 0xFFFF
        _, a, _ = self.h.ring(1)
        self.h.m[a + 2:a + 4] = struct.pack("<H", self.h.avail[1])
        os.eventfd_write(self.h.kick[1], 1)
        # The backend saw the index (it counts the ring broken); then the used ring must
        # not have moved. (rte_vhost's path counts nothing: no wait there.)
        self.lib or wait_for("the ring counted broken", lambda: ctl(self.ctl, ["show", "ports", "--json"])["ports"]["h"]["rings_broken"] >= 1)
        moved = self.h.used_idx(1) != before
        print(f"ring case avail-index-jump: {'USED RING MOVED' if moved else 'ring no longer served'}")
        if moved:
            self.failures.append("the backend kept serving a ring whose available index jumped past its size")


def served(g, ctl_path, name):
    """One valid frame on g's transmit ring comes back (the device is served)."""
    posted = g.avail[1]
    f = frame(f"served-{posted}")
    gpa = TX_BUF + 2048 * (posted % 512)
    g.write(gpa, bytes(HDR) + f)
    (i,) = g.alloc(1, 1)
    g.put_desc(1, i, gpa, HDR + len(f))
    g.publish(1, i)
    return g.wait_used(1, g.avail[1], 10.0)


def is_served(ctl_path, name, want=True):
    """pmdswitch says the device is (or is not) served, and every worker is up to date."""
    p = ctl(ctl_path, ["show", "ports", "--json"])["ports"][name]
    w = ctl(ctl_path, ["show", "workers", "--json"])["workers"]
    return bool(p.get("served")) == want and not any(x["reload_pending"] for x in w)


def wait_served(path, ctl_path, name):
    """A fresh session on `path`, once pmdswitch serves it."""
    g = Guest(path)
    wait_for("the device served", lambda: is_served(ctl_path, name))
    return g


def storm_main(path, ctl_path, name, count, pid):
    """A frontend that loops SET_VRING_CALL (a message that changes what a worker
    uses, so the backend quiesces the device for it) `count` times as fast as the socket
    takes them, then stops: the device must be served again afterwards."""
    g = wait_served(path, ctl_path, name)
    ok = served(g, ctl_path, name)
    one = msg(SET_VRING_CALL, u64(0 | NOFD))
    sent = 0
    while sent < count:
        n = min(1000, count - sent)
        g.s.sendall(one * n)
        sent += n
    # The last one with an eventfd again (a well-behaved end state), and a reply asked
    # for, so that every message before it has been handled when it comes.
    send(g.s, msg(GET_FEATURES))
    recv_reply(g.s)
    wait_for("the device served again", lambda: is_served(ctl_path, name))
    back = served(g, ctl_path, name)
    print(f"storm: sent {sent} served before {'yes' if ok else 'NO'} served after {'yes' if back else 'NO'}")
    alive_now = alive(pid)
    g.close()
    return 0 if ok and back and alive_now else 1


def rxwalk_main(hostile, receiver, ctl_path, secs, pid):
    """An expensive receiver: with mergeable buffers it offers 63 chains of 64 one-byte
    buffers (each an indirect table: 65 descriptors to walk) — 4 KiB in all — while its
    sender keeps 9000-byte frames coming for `secs` seconds: every frame needs more than
    the receiver has, so every burst would walk all 4 095 descriptors again and again.
    The backend must bound that work (and the caller checks that the other tenants keep
    their rate)."""
    h = Guest(hostile)
    r = Guest(receiver, BASE | F_MRG_RXBUF)
    wait_for("both devices served", lambda: is_served(ctl_path, "h") and is_served(ctl_path, "r"))
    for k in range(63):
        table = TABLES + 0x400 * k
        for j in range(64):
            r.put_desc(0, j, RX_BUF + 64 * k + j, 1, F_WRITE | (F_NEXT if j < 63 else 0), j + 1, table=table)
        (i,) = r.alloc(0, 1)
        r.put_desc(0, i, table, 64 * 16, F_INDIRECT)
        r.publish(0, i, kick=False)
    f = frame("rxwalk").ljust(9000, b".")
    big = 0x300000
    h.write(big, bytes(HDR) + f)
    end = time.time() + secs
    posted = 0
    while time.time() < end and alive(pid):
        while (posted - h.used_idx(1)) & 0xFFFF < 32:
            (i,) = h.alloc(1, 1)
            h.put_desc(1, i, big, HDR + len(f))
            h.publish(1, i, kick=False)
            posted += 1
        time.sleep(0.001)  # the tool's own pace: it must not take a CPU from the switch
    ok = alive(pid)
    print(f"rxwalk: {posted} frames of 9000 bytes towards a receiver of 63 × 64 one-byte buffers; backend {'alive' if ok else 'DIED'}")
    h.close()
    r.close()
    return 0 if ok else 1


def truncate_main(path, ctl_path, name, pid):
    """A frontend that truncates its guest memory (the memfd it gave the backend) while
    the backend serves it, then comes back with a fresh session that must be served."""
    g = wait_served(path, ctl_path, name)
    ok = served(g, ctl_path, name)
    os.ftruncate(g.fd, 0)
    # The backend polls this ring: its next look faults. Withdrawn within its 250 ms
    # upkeep; said in its log (the caller checks).
    withdrawn = wait_for("the device withdrawn", lambda: not alive(pid) or is_served(ctl_path, name, False))
    g.s.close()
    for fd in g.kick + g.call + [g.fd]:
        os.close(fd)
    # The backend has seen the first session go (one frontend per socket).
    wait_for("the session gone", lambda: not alive(pid) or not ctl(ctl_path, ["show", "ports", "--json"])["ports"][name].get("connected"))
    if not alive(pid):
        print("truncate: BACKEND DIED")
        return 1
    g2 = wait_served(path, ctl_path, name)
    back = served(g2, ctl_path, name)
    print(f"truncate: served before {'yes' if ok else 'NO'} withdrawn {'yes' if withdrawn else 'NO'} "
          f"served after reconnecting {'yes' if back else 'NO'}")
    g2.close()
    return 0 if ok and withdrawn and back and alive(pid) else 1


def rings_main(hostile, receiver, pid, ctl_path, lib, rx_cases=True):
    t = Rings(hostile, receiver, ctl_path, lib)
    if rx_cases:
        t.run_rx_cases()
    t.stock_rx(200)
    t.run_tx_cases()
    t.run_hdr_cases()
    t.burst_in_order()
    t.check()
    if not alive(pid):
        print("rings: BACKEND DIED")
        return 1
    t.break_ring()
    if not alive(pid):
        print("rings: BACKEND DIED")
        return 1
    b, rb = t.bad, t.rx_bad
    print(f"rings: valid {len(t.expected)} arrived {len(t.got)} posted {t.posted} "
          f"bad_chain {b['chain']} bad_addr {b['addr']} oversize {b['oversize']} bad_hdr {b['hdr']} "
          f"rx_bad_chain {rb['chain']} rx_bad_addr {rb['addr']} rx_oversize {rb['oversize']}")
    for f in t.failures:
        print(f"rings: FAILED {f}")
    t.h.close()
    t.r.close()
    return 1 if t.failures else 0


def main():
    pid = int(sys.argv[sys.argv.index("--pid") + 1]) if "--pid" in sys.argv else None
    if len(sys.argv) > 1 and sys.argv[1] == "storm":
        ctl_path = sys.argv[sys.argv.index("--ctl") + 1]
        count = int(sys.argv[sys.argv.index("--count") + 1])
        return storm_main(sys.argv[2], ctl_path, sys.argv[3], count, pid)
    if len(sys.argv) > 1 and sys.argv[1] == "rxwalk":
        ctl_path = sys.argv[sys.argv.index("--ctl") + 1]
        secs = float(sys.argv[sys.argv.index("--secs") + 1])
        return rxwalk_main(sys.argv[2], sys.argv[3], ctl_path, secs, pid)
    if len(sys.argv) > 1 and sys.argv[1] == "truncate":
        ctl_path = sys.argv[sys.argv.index("--ctl") + 1]
        return truncate_main(sys.argv[2], ctl_path, sys.argv[3], pid)
    if len(sys.argv) > 1 and sys.argv[1] == "rings":
        pid = int(sys.argv[sys.argv.index("--pid") + 1]) if "--pid" in sys.argv else None
        ctl_path = sys.argv[sys.argv.index("--ctl") + 1]
        return rings_main(sys.argv[2], sys.argv[3], pid, ctl_path, "--lib" in sys.argv, "--no-rx-cases" not in sys.argv)
    path = sys.argv[1]
    pid = int(sys.argv[sys.argv.index("--pid") + 1]) if "--pid" in sys.argv else None
    for c in CASES:
        try:
            c(path)
        except OSError as e:
            print(f"case {c.__name__}: backend refused ({e.strerror})")
        time.sleep(0.1)
        if not alive(pid):
            print(f"case {c.__name__}: BACKEND DIED")
            return 1
        print(f"case {c.__name__}: backend alive")
    return 0


if __name__ == "__main__":
    sys.exit(main())
