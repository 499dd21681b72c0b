#!/usr/bin/env bash
# One direction of the own (or lib) vhost path against an ethdev, interleaved rounds;
# prints the worker's cycles/packet per round and the medians.
#   DIR=out: a guest (pmdswitch gen on virtio-user) sends into a vhost-user port
#            cross-connected to net_null (no-rx), which drops what it is given
#            (vhost -> ethdev: guest buffers copied into mbufs).
#   DIR=in:  net_null (size=60) feeds a vhost-user port whose guest is testpmd rxonly
#            on virtio-user (ethdev -> vhost: mbufs copied into guest buffers).
# Usage: DIR=out|in ROUNDS=5 scripts/null-ab.sh own lib
set -u
B=${PMDSWITCH:-$(dirname "$0")/../target/release/pmdswitch}
R=${ROUNDS:-3}
D=${DIR:-out}
declare -A all
for r in $(seq 1 "$R"); do for p in "$@"; do
  T=$(mktemp -d /tmp/nullXXXX); S=$T/v.sock
  if [[ $D == out ]]; then
    $B run --port v=vhost-server:$S --port n=vdev:net_null0,no-rx=1 --xconnect v,n --vhost-datapath "$p" --cores 1 --ctl $T/ctl --duration 7 -- -l 0 >$T/run.log 2>&1 &
    RP=$!
    for i in $(seq 50); do [ -S $S ] && break; sleep 0.1; done
    $B gen -q --port a=vdev:net_virtio_user0,path=$S,queue_size=4096 --core 0 --duration 4 -- -l 0 --file-prefix=nab$$ >$T/gen.log 2>&1 &
  else
    $B run --port v=vhost-server:$S --port n=vdev:net_null0,size=60 --xconnect n,v --vhost-datapath "$p" --cores 1 --ctl $T/ctl --duration 7 -- -l 0 >$T/run.log 2>&1 &
    RP=$!
    for i in $(seq 50); do [ -S $S ] && break; sleep 0.1; done
    sleep 30 | dpdk-testpmd --lcores=0@0,1@0 --no-pci --single-file-segments --in-memory --file-prefix=nab$$ --vdev net_virtio_user0,path=$S,queue_size=4096 -- --forward-mode=rxonly --stats-period 0 -a >$T/tp.log 2>&1 &
  fi
  # Measured while connected: counters cleared after the peer settles.
  sleep 2
  $B ctl --socket $T/ctl clear stats >/dev/null
  sleep 3
  v=$($B ctl --socket $T/ctl show workers --json | python3 -c "import json,sys; w=json.load(sys.stdin)['workers'][0]; print('%.1f' % (w['busy_cycles']/max(1,w['packets'])))")
  pkill -INT -f "file-prefix=nab$$" 2>/dev/null
  wait $RP 2>/dev/null; wait 2>/dev/null
  echo "$r $p cyc/pkt $v"
  all[$p]+="$v "
  rm -rf $T
done; done
for p in "$@"; do
  echo "median $p $(echo ${all[$p]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')"
done
