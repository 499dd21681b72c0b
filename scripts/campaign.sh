#!/bin/sh
# The measurement campaign behind docs/results.md: every figure there comes
# from one of these commands, run back to back (never two at once: 2 cores). About 20
# minutes. Output: bench-out/campaign-DATE/ (JSON, SVG, logs) and a log on stdout.
# SKIP_GEN=1 skips the generator's own bench (the first step).
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-bench-out/campaign-$(date +%Y%m%d-%H%M)}
mkdir -p "$OUT"
cargo build --release --quiet
B=target/release/pmdswitch
step() { echo "=== $*"; }

if [ -z "${SKIP_GEN:-}" ]; then
  step "generator tx-only vs testpmd txonly, NDR repeatability"
  cargo bench --quiet --bench gen -- --rounds 5 --secs 3 --trial-secs 2 --json "$OUT/gen.json"
fi

step "xconnect loop, max rate: pmdswitch vs testpmd vs OVS-DPDK (port-to-port flows)"
$B bench --compare testpmd,ovs --frames 64,512,1518 --flows 1,1024 --modes max --rounds 3 --secs 2 --out "$OUT/compare-max"

step "NDR (RFC 2544, 0 loss), 64 B: pmdswitch vs testpmd"
$B bench --compare testpmd --frames 64 --flows 1 --modes ndr --rounds 3 --secs 2 --out "$OUT/compare-ndr"

step "bridge vs xconnect vs OVS NORMAL, 4096 MACs per port"
$B bench --dut pmdswitch-bridge --compare pmdswitch,ovs-normal --frames 64 --flows 1,1024,4096 --macs 4096 --modes max --rounds 3 --secs 2 --out "$OUT/bridge"

step "adaptive idle under load"
$B bench --compare pmdswitch-adaptive --frames 64 --flows 1 --modes max --rounds 5 --secs 2 --out "$OUT/adaptive-load"

step "adaptive idle wake-up: 1 kpps per port, every packet finds the worker asleep"
$B bench --compare pmdswitch-adaptive --rate 1kpps --frames 64 --flows 1 --modes max --rounds 5 --secs 3 --out "$OUT/adaptive-wakeup"
echo "campaign done: $OUT"
