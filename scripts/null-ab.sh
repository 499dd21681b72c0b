#!/usr/bin/env bash
# One direction of the own (or lib) vhost path in isolation: a guest (virtio-user,
# pmdswitch gen) sends into a vhost-user port cross-connected to net_null, which drops
# what it is given; prints the worker's cycles/packet per round. Usage:
#   NULLARGS=",no-rx=1" ROUNDS=5 scripts/null-ab.sh own lib
B=${PMDSWITCH:-$(dirname "$0")/../target/release/pmdswitch}
R=${ROUNDS:-3}
for r in $(seq 1 $R); do for p in "$@"; do
  T=$(mktemp -d /tmp/nullXXXX); S=$T/v.sock
  $B run --port v=vhost-server:$S --port n=vdev:net_null0${NULLARGS} --xconnect v,n --vhost-datapath $p --cores 1 --ctl $T/ctl --duration 7 --stats-json $T/s.json -- -l 0 >$T/run.log 2>&1 &
  RP=$!
  for i in $(seq 50); do [ -S $S ] && break; sleep 0.1; done
  $B gen -q --port a=vdev:net_virtio_user0,path=$S --core 0 --duration 3 -- -l 0 >$T/gen.log 2>&1
  wait $RP
  python3 - $T/s.json $p $r <<'PY'
import json,sys
j=json.load(open(sys.argv[1]))
w=j.get("workers") or j.get("worker")
def find(o):
  if isinstance(o,dict):
    if "busy_cycles" in o: yield o
    for v in o.values(): yield from find(v)
  elif isinstance(o,list):
    for v in o: yield from find(v)
for w in j["workers"]:
  pk=w.get("packets",0)
  print(sys.argv[3], sys.argv[2], "cyc/pkt %.1f"%(w["busy_cycles"]/pk if pk else 0), "pkts", pk)
PY
  rm -rf $T
done; done
