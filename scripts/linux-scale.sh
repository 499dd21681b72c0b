#!/usr/bin/env bash
# The Linux mirror at BGP scale: N routes (default 1 000 000, BGP-like lengths, mostly
# /24) added to the main table of a namespace with `ip -batch` while pmdswitch mirrors it
# (--linux-routes main); prints how long the kernel took, how long until the router held
# them all, the memory it took (RSS and FIB bytes), the mirror's counters, then the same
# for removing them all. Usage: N=1000000 scripts/linux-scale.sh
set -eu
B=${PMDSWITCH:-$(cd "$(dirname "$0")/.." && pwd)/target/release/pmdswitch}
N=${N:-1000000}
T=$(mktemp -d /tmp/lxscaleXXXX)
NS=pmds-scale$$
cleanup() { kill "$P" 2>/dev/null; wait "$P" 2>/dev/null; ip netns del $NS 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
ip netns add $NS; ip -n $NS link set lo up
python3 - "$N" > "$T/add.batch" <<'PY'
import random, sys
n = int(sys.argv[1]); r = random.Random(7); seen = set()
lens = [24] * 60 + list(range(8, 24)) * 2 + list(range(25, 33))
while len(seen) < n:
    l = r.choice(lens); a = (r.randrange(1, 224) << 24) | r.getrandbits(24)
    a &= (0xffffffff << (32 - l)) & 0xffffffff
    if (a >> 17) == (0xc612 >> 1) or a >> 24 in (127, 0):
        continue
    if (a, l) in seen:
        continue
    seen.add((a, l))
    print("route add %d.%d.%d.%d/%d via 198.18.2.1 dev b" % (a >> 24, a >> 16 & 255, a >> 8 & 255, a & 255, l))
PY
ip netns exec $NS "$B" run --port a=vhost-server:$T/a.sock --port b=vhost-server:$T/b.sock --ip a=198.18.1.254/24 --ip b=198.18.2.254/24 \
  --linux-routes main --cores 1 --ctl $T/ctl -- --file-prefix=lxscale$$ > $T/run.log 2>&1 &
P=$!
for i in $(seq 100); do [ -S $T/ctl ] && break; sleep 0.1; done
j() { "$B" ctl --socket $T/ctl show router --json; }
v4() { j | python3 -c "import json,sys; print(json.load(sys.stdin)['routes']['v4'])"; }
rss() { awk '/VmRSS/ {print int($2/1024)}' /proc/$P/status; }
base=$(v4); rss0=$(rss)
echo "routes before: $base, RSS ${rss0} MiB"
t0=$(date +%s.%N)
(ip -n $NS -batch $T/add.batch; date +%s.%N > $T/kdone) &
K=$!
for k in $(seq 1500); do [ "$(v4)" -ge $((base + N)) ] && break; sleep 0.2; done; echo "v4 now $(v4)"
t1=$(date +%s.%N); wait $K
tk=$(cat $T/kdone)
rss1=$(rss)
python3 - "$t0" "$tk" "$t1" "$N" "$rss0" "$rss1" <<'PY'
import sys; t0, tk, t1 = map(float, sys.argv[1:4]); n = int(sys.argv[4]); r0, r1 = int(sys.argv[5]), int(sys.argv[6])
print(f"add {n} routes: kernel (ip -batch) {tk - t0:.1f} s, mirrored in the router after {t1 - t0:.1f} s; RSS {r1} MiB (+{r1 - r0} MiB)")
PY
j | python3 -c "import json,sys; d=json.load(sys.stdin); print('fib_bytes %.0f MiB' % (d['fib_bytes']/2**20)); print('mirror', d['linux'])"
t0=$(date +%s.%N)
ip -n $NS route flush proto boot &
K=$!
for k in $(seq 1500); do [ "$(v4)" -le "$base" ] && break; sleep 0.2; done
t1=$(date +%s.%N); wait $K
python3 -c "print('remove all: router back to its own routes after %.1f s' % ($t1 - $t0))"
j | python3 -c "import json,sys; d=json.load(sys.stdin); print('mirror', d['linux'])"
