#!/usr/bin/env bash
# A/B of two pmdswitch builds on this machine, interleaved (A B, then B A) so that the
# host's speed changes hit both: the switching path's own cost (scripts/fwd-cost.sh:
# pcap -> null, cross-connect and bridge with 1 and FLOWS flows) and the vhost loop
# (`pmdswitch bench`, 64 B, 1 flow, max rate, cross-connect, bridge and router). Prints each
# round, then medians and B/A ratios of the worker's cycles per packet (below 1: B
# cheaper).
#
#   scripts/ab.sh BIN_A BIN_B [ROUNDS] [FLOWS]        (defaults 6 1024)
set -euo pipefail
A=${1:?usage: scripts/ab.sh BIN_A BIN_B [ROUNDS] [FLOWS]}
B=${2:?usage: scripts/ab.sh BIN_A BIN_B [ROUNDS] [FLOWS]}
ROUNDS=${3:-6}
FLOWS=${4:-1024}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/pmds-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

fwd() { # BIN -> "xc b1 bn" cycles/packet
    PMDSWITCH=$1 "$HERE/fwd-cost.sh" 1 2 "$FLOWS" | awk '/^median/ {print $2, $3, $4}'
}
loop() { # BIN DUT -> cycles/packet
    "$1" bench --dut "$2" --frames 64 --flows 1 --modes max --rounds 1 --secs 3 --out "$WORK/b" > "$WORK/log" 2>&1 \
        || { cat "$WORK/log" >&2; exit 1; }
    python3 -c "import json; c=json.load(open('$WORK/b/results.json'))['cells'][0]; print(c['dut_cycles_per_packet'])"
}
one() { # BIN -> one line of figures
    echo "$(fwd "$1") $(loop "$1" pmdswitch) $(loop "$1" pmdswitch-bridge) $(loop "$1" pmdswitch-router)"
}
echo "round build   fwd-xc  fwd-br1 fwd-br$FLOWS  loop-xc loop-br loop-rt   (worker cycles/packet)"
for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then order="A B"; else order="B A"; fi
    for w in $order; do
        bin=$A; [ "$w" = B ] && bin=$B
        line=$(one "$bin")
        echo "$line" >> "$WORK/$w"
        printf "%5d %-5s %s\n" "$r" "$w" "$line"
    done
done
python3 - "$WORK/A" "$WORK/B" <<'PY'
import statistics as st, sys
a = [[float(x) for x in l.split()] for l in open(sys.argv[1])]
b = [[float(x) for x in l.split()] for l in open(sys.argv[2])]
names = ["fwd-xc", "fwd-br1", "fwd-brN", "loop-xc", "loop-br", "loop-rt"]
print("median A " + " ".join(f"{st.median(c):8.1f}" for c in zip(*a)))
print("median B " + " ".join(f"{st.median(c):8.1f}" for c in zip(*b)))
# Ratio per round (each round has one A and one B run next to each other), then the median.
print("B/A      " + " ".join(f"{st.median(y / x for x, y in zip(ca, cb)):8.3f}" for ca, cb in zip(zip(*a), zip(*b))))
print("(" + ", ".join(names) + ")")
PY
