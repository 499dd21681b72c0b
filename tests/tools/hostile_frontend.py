#!/usr/bin/env python3
"""A hostile vhost-user frontend: connects to a backend's socket and sends malformed
messages (wrong sizes, unknown requests, missing or bogus file descriptors, memory
tables that do not cover the rings, rings of absurd size, truncated and garbage data).

Usage: hostile_frontend.py SOCKET [--pid PID]
Prints one line per case; exits 1 if the backend process (PID) died during a case.
Message layout: QEMU docs/interop/vhost-user.rst, "Message Specification".
"""
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


def main():
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
