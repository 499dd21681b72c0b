#!/usr/bin/env bash
# Soak: forward traffic for a while (default 10 min) while the virtio-user peer is cycled
# (quit or SIGKILL, then started again), then check that every packet is accounted for,
# that no mbuf leaked and that pmdswitch's memory stayed flat. Prints a verdict.
#
#   scripts/soak.sh [--minutes M] [--cycle SECS] [--rss-slack-kib K]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=10; cycle=20; slack=2048
while (($#)); do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --cycle) cycle=$2; shift 2 ;;
    --rss-slack-kib) slack=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done

cargo build --release --quiet
dir=$(mktemp -d /tmp/pmdswitch-soak.XXXXXX)
pm=""; gen=""; gp=""
cleanup() {
  [[ -n $gen ]] && kill -9 "$gen" 2>/dev/null || true
  [[ -n $pm ]] && kill "$pm" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir" /var/run/dpdk/pmds-soak-gen-$$-*
}
trap cleanup EXIT INT TERM

target/release/pmdswitch run --port "a=vhost-server:$dir/a.sock" --port "b=vhost-server:$dir/b.sock" \
  --xconnect a,b --cores 1 --stats-json "$dir/stats.json" >"$dir/pmdswitch.log" 2>&1 &
pm=$!
for _ in $(seq 100); do [[ -S $dir/b.sock ]] && break; sleep 0.1; done

rss() { awk '/VmRSS/ {print $2}' "/proc/$pm/status"; }
end=$((SECONDS + minutes * 60)); n=0; rss_first=""; rss_max=0
while ((SECONDS < end)); do
  n=$((n + 1))
  gp="pmds-soak-gen-$$-$n"
  { sleep 1; echo "start tx_first 4"; sleep "$cycle"; echo quit; } | \
    taskset -c 0 dpdk-testpmd --lcores=0@0,1@0 --no-pci --in-memory --single-file-segments --file-prefix="$gp" \
      --log-level=notice --vdev="net_virtio_user0,path=$dir/a.sock" --vdev="net_virtio_user1,path=$dir/b.sock" \
      -- -i --nb-cores=1 --forward-mode=io >/dev/null 2>&1 &
  gen=$!
  sleep $((cycle / 2 + 1))
  if ((n % 2 == 0)); then kill -9 "$gen" 2>/dev/null || true; how=SIGKILL; else wait "$gen" || true; how=quit; fi
  wait "$gen" 2>/dev/null || true; gen=""
  rm -rf "/var/run/dpdk/$gp"
  kill -0 "$pm" 2>/dev/null || { echo "soak: FAIL: pmdswitch died in cycle $n"; tail -5 "$dir/pmdswitch.log"; exit 1; }
  r=$(rss); [[ -z $rss_first ]] && rss_first=$r; ((r > rss_max)) && rss_max=$r
  echo "soak: cycle $n (peer $how) rss ${r} KiB"
done
rss_last=$(rss)
kill "$pm"; wait "$pm" || true; pm=""

python3 - "$dir/stats.json" "$rss_first" "$rss_last" "$rss_max" "$slack" "$n" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
first, last, peak, slack, cycles = map(int, sys.argv[2:])
p = j["ports"]
fails = []
for a, b in (("a", "b"), ("b", "a")):
    rx, tx, dr = p[a]["rx_packets"], p[b]["tx_packets"], sum(p[b]["drops"].values())
    ok = rx == tx + dr
    print(f"soak: {a}->{b}: rx {rx} = tx {tx} + drops {dr}: {'ok' if ok else 'MISMATCH'}")
    ok or fails.append(f"{a}->{b} conservation")
m = j["mempool"]
print(f"soak: mempool in use {m['in_use_end']} (baseline {m['in_use_baseline']})")
m["in_use_end"] == m["in_use_baseline"] or fails.append("mbuf leak")
print(f"soak: RSS after cycle 1 {first} KiB, at end {last} KiB, peak {peak} KiB (slack {slack} KiB)")
last - first <= slack or fails.append("RSS grew")
moved = p["a"]["rx_packets"] + p["b"]["rx_packets"]
print(f"soak: {cycles} peer cycles, {moved} packets forwarded in {j['duration_s']:.0f} s")
print("soak: verdict: " + ("PASS" if not fails else "FAIL (" + ", ".join(fails) + ")"))
sys.exit(1 if fails else 0)
PY
