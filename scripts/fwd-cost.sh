#!/bin/bash
# The switching path's own cost, without vhost and without a generator: pmdswitch
# forwards from a net_pcap port replaying a file in a loop (infinite_rx) to a net_null
# port, CPU-bound, so every burst is full and the worker's cycles per packet measure
# rx copy + switching + tx free. Cross-connect vs bridge with 1 flow and with N flows
# (N source stations learned on port a, N static destinations on port b), interleaved
# rounds, medians. The vhost loop (`pmdswitch bench`) is what users see; this isolates
# what pmdswitch's own code adds, with a fraction of the loop's noise.
#
#   scripts/fwd-cost.sh [ROUNDS] [SECS] [FLOWS]      (defaults 5 2 1024)
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-2}
FLOWS=${3:-1024}
BIN=${PMDSWITCH:-$(dirname "$0")/../target/release/pmdswitch}
[ -x "$BIN" ] || { echo "fwd-cost: $BIN not built: run cargo build --release" >&2; exit 2; }
WORK=$(mktemp -d /tmp/pmds-fwdcost.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# Frames: flow i goes from 02:00:00:<2i> to 02:00:00:<2i+1>, IPv4/UDP, 64 bytes with FCS.
python3 - "$WORK" "$FLOWS" <<'PY'
import struct, sys
work, flows = sys.argv[1], int(sys.argv[2])
def mac(i): return bytes([2, 0, 0, (i >> 16) & 255, (i >> 8) & 255, i & 255])
def smac(i): return ":".join("%02x" % b for b in mac(i))
for n, name in ((1, "f1"), (flows, "fn")):
    with open(f"{work}/{name}.pcap", "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for k in range(max(n, 1024)):
            i = k % n
            ip = bytes([0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, (i >> 8) & 255, i & 255, 10, 1, 0, 1])
            udp = struct.pack(">HHHH", 1024 + (i & 1023), 5001, 26, 0) + bytes(18)
            p = mac(2 * i + 1) + mac(2 * i) + b"\x08\x00" + ip + udp
            f.write(struct.pack("<IIII", 0, 0, len(p), len(p)) + p)
    with open(f"{work}/{name}.toml", "w") as f:
        f.write("static-mac = [%s]\n" % ", ".join('"b=%s"' % smac(2 * i + 1) for i in range(n)))
PY

run() { # MODE PCAP-NAME -> cycles per packet
    local mode=$1 name=$2 rule tag=$$-$RANDOM
    if [ "$mode" = xc ]; then rule=(--xconnect a,b); else rule=(--bridge br0=a,b --config "$WORK/$name.toml"); fi
    "$BIN" run --port "a=vdev:net_pcap0,rx_pcap=$WORK/$name.pcap,infinite_rx=1,tx_pcap=/dev/null" \
        --port b=vdev:net_null1,no-rx=1 "${rule[@]}" --cores 1 --duration "$SECS" \
        --stats-json "$WORK/s.json" -- -l 0 "--file-prefix=pmds-fwdcost-$tag" > "$WORK/log" 2>&1 \
        || { cat "$WORK/log" >&2; exit 1; }
    python3 -c "import json; print(json.load(open('$WORK/s.json'))['workers'][0]['cycles_per_packet'])"
}

declare -a XC B1 BN
echo "round   xconnect  bridge-1  bridge-$FLOWS   (worker cycles/packet)"
for r in $(seq "$ROUNDS"); do
    XC+=("$(run xc f1)"); B1+=("$(run br f1)"); BN+=("$(run br fn)")
    printf "%5d %10.1f %9.1f %9.1f\n" "$r" "${XC[-1]}" "${B1[-1]}" "${BN[-1]}"
done
python3 - "${XC[*]}" "${B1[*]}" "${BN[*]}" "$FLOWS" <<'PY'
import statistics as st, sys
xc, b1, bn = ([float(v) for v in a.split()] for a in sys.argv[1:4])
m = st.median
print(f"median {m(xc):8.1f} {m(b1):9.1f} {m(bn):9.1f}")
print(f"bridge adds {m(b1) - m(xc):.1f} cycles/packet with 1 flow, {m(bn) - m(xc):.1f} with {sys.argv[4]} flows "
      f"(medians; per-round ratios xconnect/bridge: 1 flow {m(x / b for x, b in zip(xc, b1)):.3f}, "
      f"{sys.argv[4]} flows {m(x / b for x, b in zip(xc, bn)):.3f})")
PY
