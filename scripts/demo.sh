#!/usr/bin/env bash
# The main job on an embedded default: set the machine up, build, then run pmdswitch with
# two vhost-user ports cross-connected while a virtio-user peer (dpdk-testpmd, standing
# where a VM would) pushes traffic through it for about 15 s, with live stats.
#
#   scripts/demo.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}

scripts/setup.sh
cargo build --release --quiet

dir=$(mktemp -d /tmp/pmdswitch-demo.XXXXXX)
gen_prefix="pmds-demo-gen-$$"
pm=""; gen=""
cleanup() {
  [[ -n $gen ]] && kill "$gen" 2>/dev/null || true
  [[ -n $pm ]] && kill "$pm" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir" "/var/run/dpdk/$gen_prefix"
}
trap cleanup EXIT INT TERM

echo "demo: pmdswitch cross-connects a <-> b on core 1; the peer runs on core 0"
target/release/pmdswitch run \
  --port "a=vhost-server:$dir/a.sock" --port "b=vhost-server:$dir/b.sock" \
  --xconnect a,b --cores 1 --stats-interval 3 --duration "$secs" \
  --stats-json "$dir/stats.json" &
pm=$!
for _ in $(seq 100); do [[ -S $dir/a.sock && -S $dir/b.sock ]] && break; sleep 0.1; done

# The peer: two virtio-user ports in io forwarding, seeded with 4 bursts (DPDK DTS's
# virtio-user loopback plan), pinned to CPU 0 with its EAL control threads (unpinned,
# those would take the worker's core). It quits when pmdswitch closes the sockets.
{ sleep 1; echo "start tx_first 4"; sleep $((secs + 5)); echo quit; } | \
  taskset -c 0 dpdk-testpmd --lcores=0@0,1@0 --no-pci --in-memory --single-file-segments \
    --file-prefix="$gen_prefix" --log-level=notice \
    --vdev="net_virtio_user0,path=$dir/a.sock" --vdev="net_virtio_user1,path=$dir/b.sock" \
    -- -i --nb-cores=1 --forward-mode=io >"$dir/peer.log" 2>&1 &
gen=$!

wait "$pm"; pm=""
python3 - "$dir/stats.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
p, w = j["ports"], j["workers"][0]
secs = j["duration_s"]
moved = p["a"]["rx_packets"] + p["b"]["rx_packets"]
print(f"demo: {moved} packets forwarded in {secs:.1f} s ({moved / secs / 1e6:.2f} Mpps average, "
      f"{w['cycles_per_packet']:.0f} cycles/packet while busy); "
      f"drops a={sum(p['a']['drops'].values())} b={sum(p['b']['drops'].values())}; "
      f"mempool in use {j['mempool']['in_use_end']} (baseline {j['mempool']['in_use_baseline']})")
PY
