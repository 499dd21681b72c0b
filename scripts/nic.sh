#!/usr/bin/env bash
# Hand a NIC to DPDK (vfio-pci) and give it back, without cutting the machine off.
#
#   scripts/nic.sh status [PCI]
#   scripts/nic.sh bind PCI [--force] [--dry-run]
#   scripts/nic.sh restore PCI [--dry-run]
#
# bind refuses an interface that carries the default route or has an address (the
# machine's lifeline) unless --force; it remembers the previous driver so that restore
# can rebind it. --dry-run prints every command it would run and changes nothing.
set -euo pipefail

state_dir=${PMDSWITCH_NIC_STATE:-/var/lib/pmdswitch/nic}
dry=0; force=0; args=()
for a in "$@"; do
  case $a in
    --dry-run) dry=1 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "nic.sh: unknown option '$a' (try --help)" >&2; exit 2 ;;
    *) args+=("$a") ;;
  esac
done
cmd=${args[0]:-status}
pci=${args[1]:-}

die() { echo "nic.sh: $1" >&2; exit "${2:-1}"; }
run() { if ((dry)); then echo "would run: $*"; else echo "running: $*"; "$@"; fi; }

norm_pci() {
  local p=$1
  [[ $p =~ ^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] || die "'$p' is not a PCI address: write DDDD:BB:DD.F (see: nic.sh status)" 2
  [[ $p == ????:* ]] || p="0000:$p"
  echo "${p,,}"
}
dev_dir() { echo "/sys/bus/pci/devices/$1"; }
driver_of() { local d; d=$(readlink "$(dev_dir "$1")/driver" 2>/dev/null) && basename "$d" || echo none; }
# Network interfaces of the device (directly, or under a virtio child device).
ifaces_of() { ls -d "$(dev_dir "$1")"/net/* "$(dev_dir "$1")"/virtio*/net/* 2>/dev/null | xargs -r -n1 basename; }

case $cmd in
  status)
    if [[ -z $pci ]]; then
      for d in /sys/bus/pci/devices/*; do
        [[ $(cat "$d/class" 2>/dev/null) == 0x02* ]] || continue   # network controllers
        p=$(basename "$d")
        echo "$p driver=$(driver_of "$p") ifaces=$(ifaces_of "$p" | tr '\n' ' ')"
      done
    else
      pci=$(norm_pci "$pci")
      [[ -d $(dev_dir "$pci") ]] || die "no PCI device $pci" 2
      echo "$pci driver=$(driver_of "$pci") ifaces=$(ifaces_of "$pci" | tr '\n' ' ')saved=$(cat "$state_dir/$pci" 2>/dev/null || echo none)"
    fi
    ;;
  bind)
    [[ -n $pci ]] || die "bind needs a PCI address (see: nic.sh status)" 2
    pci=$(norm_pci "$pci")
    [[ -d $(dev_dir "$pci") ]] || die "no PCI device $pci: check the address with nic.sh status" 2
    drv=$(driver_of "$pci")
    [[ $drv == vfio-pci ]] && { echo "nic.sh: $pci is already bound to vfio-pci"; exit 0; }
    for ifc in $(ifaces_of "$pci"); do
      if ip route show default | grep -qw "dev $ifc"; then
        ((force)) || die "$pci is $ifc, which carries the default route: binding it would cut this machine off (use --force if you really mean it)"
      fi
      if [[ -n $(ip -o addr show dev "$ifc" scope global 2>/dev/null) ]]; then
        ((force)) || die "$pci is $ifc, which has an address: binding it would break that network (remove the address or use --force)"
      fi
    done
    ((dry)) || mkdir -p "$state_dir"
    if ((dry)); then echo "would save: previous driver '$drv' in $state_dir/$pci"; else echo "$drv" > "$state_dir/$pci"; fi
    [[ -d /sys/bus/pci/drivers/vfio-pci ]] || run modprobe vfio-pci
    run dpdk-devbind.py -b vfio-pci "$pci"
    ;;
  restore)
    [[ -n $pci ]] || die "restore needs a PCI address" 2
    pci=$(norm_pci "$pci")
    [[ -f $state_dir/$pci ]] || die "no saved driver for $pci (was it bound with nic.sh bind?)"
    drv=$(cat "$state_dir/$pci")
    if [[ $drv == none ]]; then run dpdk-devbind.py -u "$pci"; else run dpdk-devbind.py -b "$drv" "$pci"; fi
    if ((dry)); then echo "would remove: $state_dir/$pci"; else rm -f "$state_dir/$pci"; fi
    ;;
  *) die "unknown command '$cmd': use status, bind or restore" 2 ;;
esac
