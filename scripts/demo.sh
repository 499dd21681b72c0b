#!/usr/bin/env bash
# The main job on an embedded default: set the machine up, build, then run a short
# `pmdswitch bench` (about 30 s): pmdswitch forwards between two vhost-user sockets on
# CPU 1 while `pmdswitch gen` stands where two VMs would (virtio-user ports, CPU 0);
# frame sizes 64/512/1518 x 1 and 1024 flows at full speed, an RFC 2544 NDR search at
# 64 bytes; a table, results.json and two SVG pictures in bench-out/demo/.
#
#   scripts/demo.sh [extra pmdswitch bench options, e.g. --compare testpmd]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
exec target/release/pmdswitch bench --quick --out bench-out/demo "$@"
