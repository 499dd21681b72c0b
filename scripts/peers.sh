#!/usr/bin/env bash
# Builds the side-by-side peers `pmdswitch bench` compares with that Debian does not ship
# as programs: DPDK's l3fwd example (LPM mode) from the sources in dpdk-doc, into
# /var/cache/pmdswitch-peers/l3fwd. Idempotent (rebuilt only when missing). Called by
# scripts/setup.sh --extras.
#
# Two changes to the stock example, both needed to forward on net_vhost ports (DPDK
# 22.11): its Rx checksum offload request (0xe) is masked with what the port offers
# (net_vhost offers 0xd; unmasked, `Cannot configure device: err=-22`), at the port and
# at the queue; and its LPM main loop counts the TSC cycles of iterations that received
# packets and prints them with the packet count every 100 ms ("l3fwd-cycles busy=B
# packets=P"), so the bench reads its cost per packet as it reads testpmd's
# (--record-core-cycles) and pmdswitch's (busy cycles).
set -euo pipefail
src=/usr/share/dpdk/examples
dst=/var/cache/pmdswitch-peers
bin=$dst/l3fwd/build/l3fwd
if [[ -x $bin ]]; then
  echo "peers: l3fwd already built ($bin)"
  exit 0
fi
[[ -d $src/l3fwd ]] || { echo "peers: $src/l3fwd missing: install dpdk-doc" >&2; exit 1; }
rm -rf "$dst/l3fwd" "$dst/common"
mkdir -p "$dst"
cp -r "$src/l3fwd" "$src/common" "$dst/"
cd "$dst/l3fwd"
python3 - <<'PY'
import re
m = open("main.c").read()
a = "ret = config_port_max_pkt_len(&local_port_conf, &dev_info);"
assert m.count(a) == 1
m = m.replace(a, "local_port_conf.rxmode.offloads &= dev_info.rx_offload_capa; /* pmdswitch: net_vhost */\n\t\t" + a)
b = "rxq_conf.offloads = port_conf.rxmode.offloads;"
assert m.count(b) == 1
m = m.replace(b, "rxq_conf.offloads = port_conf.rxmode.offloads & dev_info.rx_offload_capa; /* pmdswitch: net_vhost */")
open("main.c", "w").write(m)
l = open("l3fwd_lpm.c").read()
c = "\tcur_tsc = rte_rdtsc();\n\tprev_tsc = cur_tsc;\n\n\twhile (!force_quit) {\n"
assert l.count(c) == 1
l = l.replace(c, "\tcur_tsc = rte_rdtsc();\n\tprev_tsc = cur_tsc;\n\tuint64_t pm_busy = 0, pm_pkts = 0, pm_next = cur_tsc; /* pmdswitch: cycles */\n\n\twhile (!force_quit) {\n\t\tuint64_t pm_t0 = rte_rdtsc(); int pm_got = 0;\n")
d = "\t\t\tif (nb_rx == 0)\n\t\t\t\tcontinue;\n\n#if defined RTE_ARCH_X86 || defined __ARM_NEON \\\n\t\t\t || defined RTE_ARCH_PPC_64\n\t\t\tl3fwd_lpm_send_packets("
assert l.count(d) == 1, "rx loop"
l = l.replace(d, "\t\t\tif (nb_rx == 0)\n\t\t\t\tcontinue;\n\t\t\tpm_got += nb_rx;\n\n#if defined RTE_ARCH_X86 || defined __ARM_NEON \\\n\t\t\t || defined RTE_ARCH_PPC_64\n\t\t\tl3fwd_lpm_send_packets(")
e = "\t\tcur_tsc = rte_rdtsc();\n\t}\n\n\treturn 0;\n}"
assert l.count(e) >= 1, "loop end"
l = l.replace(e, "\t\tcur_tsc = rte_rdtsc();\n\t\tif (pm_got) { pm_busy += cur_tsc - pm_t0; pm_pkts += pm_got; }\n\t\tif (cur_tsc > pm_next) { printf(\"l3fwd-cycles busy=%\" PRIu64 \" packets=%\" PRIu64 \"\\n\", pm_busy, pm_pkts); fflush(stdout); pm_next = cur_tsc + rte_get_tsc_hz() / 10; }\n\t}\n\n\treturn 0;\n}", 1)
open("l3fwd_lpm.c", "w").write(l)
PY
make -s >/dev/null
echo "peers: built $bin"
