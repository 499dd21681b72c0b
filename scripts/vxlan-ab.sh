#!/usr/bin/env bash
# VXLAN encap+decap against a plain bridge, interleaved rounds; prints each switch
# worker's busy cycles per packet and the medians.
#   bridge: one pmdswitch, bridge br0 over two vhost-user ports (the generator's a, b).
#   pair:   two pmdswitch instances joined by the same memif underlay, each a plain bridge
#           of its vhost-user port and the underlay port: the same topology and CPU sharing
#           as the VXLAN pair, without encap and decap. This is the baseline the ratio uses.
#   vxlan:  two pmdswitch instances ("hosts") joined by a memif underlay, each a bridge of
#           one vhost-user port and VNI 5001 to the other; the generator's a on host 1,
#           b on host 2. Every frame is wrapped by one host and unwrapped by the other, so
#           each host's cycles per packet (a packet received on its VM port or its
#           underlay) is that of one encap or one decap plus its bridge.
# Both run the generator at max rate, 64-byte frames, both directions. On a 2-core
# machine the two hosts share CPU 1 and the generator CPU 0 (the single bridge has CPU 1
# to itself): what a host is charged includes the time the other preempted it mid-burst,
# so this errs against VXLAN.
# Usage: ROUNDS=5 scripts/vxlan-ab.sh
set -u
B=${PMDSWITCH:-$(dirname "$0")/../target/release/pmdswitch}
R=${ROUNDS:-3}
cpp() { $B ctl --socket "$1" show workers --json | python3 -c "import json,sys; w=json.load(sys.stdin)['workers'][0]; print('%.1f' % (w['busy_cycles']/max(1,w['packets'])))"; }
wait_sock() { for i in $(seq 100); do [ -S "$1" ] && return; sleep 0.1; done; }
declare -a br pr vx
# pair_run KIND: starts the two hosts (KIND=vxlan or plain), the generator, prints both hosts' cycles/packet.
pair_run() {
  M=$T/memif-$1.sock
  for h in 1 2; do
    role=$([ $h = 1 ] && echo server || echo client)
    if [ "$1" = vxlan ]; then
      extra="--bridge br0=g --ip u=198.18.0.$h/24 --mtu u=1600 --vxlan 5001=br0,local=198.18.0.$h,remote=198.18.0.$((3 - h))"
    else
      extra="--bridge br0=g,u"
    fi
    $B run --port g=vhost-server:$T/g$h.sock --port u=vdev:net_memif$h,role=$role,socket=$M,id=0,rsize=14 $extra \
      --cores 1 --ctl $T/c$h --duration 10 -- -l 0 --file-prefix=vxab$h$$ >$T/h$h-$1.log 2>&1 &
    wait_sock $T/g$h.sock
  done
  $B gen -q --port a=vdev:net_virtio_user0,path=$T/g1.sock,queue_size=4096 --port b=vdev:net_virtio_user1,path=$T/g2.sock,queue_size=4096 --core 0 --warmup 1.5 --duration 5 -- -l 0 --file-prefix=vxabg$$ >$T/g-$1.log 2>&1 &
  sleep 3; $B ctl --socket $T/c1 clear stats >/dev/null; $B ctl --socket $T/c2 clear stats >/dev/null; sleep 3
  local out="$(cpp $T/c1) $(cpp $T/c2)"
  wait
  echo "$out"
}
for r in $(seq 1 "$R"); do
  T=$(mktemp -d /tmp/vxabXXXX)
  # bridge
  $B run --port a=vhost-server:$T/a.sock --port b=vhost-server:$T/b.sock --bridge br0=a,b --cores 1 --ctl $T/c0 --duration 9 -- -l 0 --file-prefix=vxab0$$ >$T/br.log 2>&1 &
  P0=$!
  wait_sock $T/a.sock; wait_sock $T/b.sock
  $B gen -q --port a=vdev:net_virtio_user0,path=$T/a.sock,queue_size=4096 --port b=vdev:net_virtio_user1,path=$T/b.sock,queue_size=4096 --core 0 --warmup 1 --duration 5 -- -l 0 --file-prefix=vxabg$$ >$T/g0.log 2>&1 &
  sleep 2.5; $B ctl --socket $T/c0 clear stats >/dev/null; sleep 3
  b=$(cpp $T/c0)
  wait; 
  read p1 p2 < <(pair_run plain)
  read v1 v2 < <(pair_run vxlan)
  echo "$r bridge cyc/pkt $b  plain pair $p1 $p2  vxlan pair $v1 $v2"
  br+=("$b"); pr+=("$p1" "$p2"); vx+=("$v1" "$v2")
  rm -rf $T
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mb=$(med "${br[@]}"); mp=$(med "${pr[@]}"); mv=$(med "${vx[@]}")
echo "median bridge $mb plain-pair $mp vxlan-pair $mv; vxlan/plain-pair $(python3 -c "print('%.2f' % ($mv/$mp))") vxlan/bridge $(python3 -c "print('%.2f' % ($mv/$mb))")"
