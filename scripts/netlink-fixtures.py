#!/usr/bin/env python3
# Regenerates tests/fixtures/netlink/*.bin: the rtnetlink events the kernel sends for a few
# ip commands, recorded in a network namespace of their own. Usage (root):
#   ip netns add nlfx && ip netns exec nlfx python3 scripts/netlink-fixtures.py tests/fixtures/netlink; ip netns del nlfx
import socket, subprocess, sys, time, os
# Runs inside a fresh network namespace: records the rtnetlink events of a few ip commands.
groups = (1<<0)|(1<<2)|(1<<4)|(1<<6)|(1<<8)|(1<<10)  # LINK NEIGH IPV4_IFADDR IPV4_ROUTE IPV6_IFADDR IPV6_ROUTE (bit = group-1)
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, groups))
s.setsockopt(270, 1, 32)  # NETLINK_ADD_MEMBERSHIP NEXTHOP
def sh(c): subprocess.run(c, shell=True, check=True)
sh("ip link add t0 type veth peer name p0; ip link add t1 type veth peer name p1; ip link set t0 up; ip link set t1 up; ip link set p0 up; ip link set p1 up")
sh("ip addr add 198.18.1.254/24 dev t0; ip addr add 198.18.2.254/24 dev t1; ip -6 addr add 2001:db8:1::fe/64 dev t0 nodad")
time.sleep(0.2)
s.setblocking(False)
try:
    while True: s.recv(65536)
except BlockingIOError: pass
out = sys.argv[1]
def cap(name, cmd):
    sh(cmd); time.sleep(0.2)
    data = b''
    try:
        while True: data += s.recv(65536)
    except BlockingIOError: pass
    open(f"{out}/{name}.bin", "wb").write(data)
    print(name, len(data))
cap("route-via", "ip route add 198.19.77.0/24 via 198.18.2.1 dev t1")
cap("route-multipath", "ip route add 198.19.78.0/24 nexthop via 198.18.1.1 dev t0 nexthop via 198.18.2.1 dev t1")
cap("route-blackhole", "ip route add blackhole 198.19.79.0/24")
cap("route-v6", "ip -6 route add 2001:db8:77::/48 via 2001:db8:1::1 dev t0")
cap("route-del", "ip route del 198.19.77.0/24")
cap("neigh-permanent", "ip neigh add 198.18.2.7 lladdr 02:00:00:00:00:07 dev t1 nud permanent")
cap("nexthop", "ip nexthop add id 7 via 198.18.2.1 dev t1")
cap("route-nhid", "ip route add 198.19.80.0/24 nhid 7")
