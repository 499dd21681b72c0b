#!/usr/bin/env bash
# Prepare this machine for building, testing and benchmarking pmdswitch.
# Idempotent: every step checks before it changes anything, and prints what it did.
#
#   scripts/setup.sh [--hugepages N] [--no-hugepages] [--extras]
#
#   --hugepages N   2 MiB hugepages to reserve (default 1024 = 2 GiB)
#   --no-hugepages  skip the reservation (then run pmdswitch with `-- --no-huge -m 512`)
#   --extras        also install OVS-DPDK and build DPDK's l3fwd for side-by-side comparisons
set -euo pipefail

pages=${PMDSWITCH_HUGEPAGES:-1024}
huge=1
extras=0
while (($#)); do
  case $1 in
    --hugepages) pages=${2:?--hugepages needs a number}; shift 2 ;;
    --no-hugepages) huge=0; shift ;;
    --extras) extras=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done

[[ $(id -u) == 0 ]] || { echo "setup.sh: must run as root (it installs packages and reserves hugepages)" >&2; exit 1; }

say() { echo "setup: $*"; }

# Build: DPDK headers and libraries, libclang for bindgen. Tests: dpdk-testpmd (in
# dpdk-dev, not dpdk, on Debian 12) as the virtio-user peer, strace (no-syscall test),
# iproute2 + ping + ethtool (tap ports and veths in namespaces), python3 (hostile frontend), QEMU, busybox
# and cpio/xz (scripts/vm.sh guests), FRR (zebra and staticd in a test's namespace: routes
# from a routing daemon through the Linux mirror).
pkgs=(libdpdk-dev dpdk dpdk-dev clang libclang-dev pkg-config build-essential iproute2 ethtool python3 procps strace iputils-ping
      qemu-system-x86 busybox-static cpio xz-utils frr)
((extras)) && pkgs+=(openvswitch-switch-dpdk dpdk-doc)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No package starts a service here (FRR's would run routing daemons in the machine's
  # own namespace; tests start theirs in namespaces they create).
  prc=/usr/sbin/policy-rc.d
  had_prc=0; [[ -e $prc ]] && had_prc=1
  ((had_prc)) || { printf '#!/bin/sh\nexit 101\n' > $prc; chmod +x $prc; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; }
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ((had_prc)) || rm -f $prc
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl disable --now frr >/dev/null 2>&1 || true
  fi
else
  say "packages already installed"
fi

if ! command -v cargo >/dev/null; then
  echo "setup.sh: cargo not found; install a Rust toolchain (rustup) and re-run" >&2
  exit 1
fi
# The test command gates on rustfmt and clippy.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null; then
    say "adding rustup components rustfmt and clippy"
    rustup component add rustfmt clippy >/dev/null
  else
    echo "setup.sh: cargo fmt / cargo clippy missing and no rustup to add them: install rustfmt and clippy" >&2
    exit 1
  fi
else
  say "rustfmt and clippy present"
fi
# The guest boundary is also checked under Miri and fuzzed (scripts/fuzz.sh): a nightly
# toolchain with miri and rust-src, and cargo-fuzz.
if command -v rustup >/dev/null; then
  if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^miri'; then
    say "installing the nightly toolchain with miri and rust-src"
    rustup toolchain install nightly --profile minimal --component miri,rust-src >/dev/null
  else
    say "nightly with miri present"
  fi
  if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
  else
    say "cargo-fuzz present"
  fi
else
  echo "setup.sh: no rustup: the Miri and fuzzing steps of the test command need nightly Rust with miri, and cargo-fuzz" >&2
  exit 1
fi

if ((huge)); then
  have=$(cat /proc/sys/vm/nr_hugepages)
  if ((have < pages)); then
    echo "$pages" > /proc/sys/vm/nr_hugepages
    got=$(cat /proc/sys/vm/nr_hugepages)
    say "reserved 2 MiB hugepages: $have -> $got"
    ((got >= pages)) || say "warning: asked for $pages hugepages, kernel gave $got (memory fragmented?)"
  else
    say "hugepages already reserved ($have >= $pages)"
  fi
  if ! mount -t hugetlbfs | grep -q ' /dev/hugepages '; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs nodev /dev/hugepages
    say "mounted hugetlbfs on /dev/hugepages"
  else
    say "hugetlbfs already mounted on /dev/hugepages"
  fi
fi
if ((extras)); then
  "$(dirname "$0")/peers.sh" | sed 's/^/setup: /'
fi
say "done"
