#!/usr/bin/env bash
# The measurements docs/results.md's "Own vhost data path" and "Router" sections quote, one
# after the other (never two at once on a 2-core machine), into bench-out/$1 (default
# results): about 35 minutes.
#   scripts/results.sh [DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-out/${1:-results}
rounds=${2:-5}
b=target/release/pmdswitch
mkdir -p "$out"
run() { echo "== $*"; "$@"; }
# Own path, issue 15: cross-connect against testpmd and the library path; 1518 B; the
# bridge against OVS NORMAL and the library path; vhost <-> ethdev; guest TCP.
run $b bench --compare testpmd,pmdswitch-lib --frames 64 --flows 1 --modes max --rounds "$rounds" --out "$out/xc64" | tee "$out/xc64.txt"
run $b bench --compare pmdswitch-lib --frames 1518 --flows 1 --modes max --rounds "$rounds" --out "$out/xc1518" | tee "$out/xc1518.txt"
run $b bench --dut pmdswitch-bridge --compare ovs-normal,pmdswitch-bridge-lib --frames 64 --flows 1,1024 --modes max --rounds "$rounds" --out "$out/bridge64" | tee "$out/bridge64.txt"
{ DIR=out ROUNDS=$rounds scripts/null-ab.sh own lib; DIR=in ROUNDS=$rounds scripts/null-ab.sh own lib; } | tee "$out/vhost_null.txt"
run cargo bench --bench guest_tcp -- --rounds 3 | tee "$out/guest_tcp.txt"
# Router, issue 16.
run $b bench --dut pmdswitch-router --compare pmdswitch,l3fwd,ovs-l3 --routes 1,1000000 --flows 1024 --frames 64 --modes max --rounds 3 --out "$out/router" | tee "$out/router.txt"
