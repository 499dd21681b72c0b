#!/usr/bin/env bash
# Fuzzes the guest boundary with cargo-fuzz (libFuzzer, AddressSanitizer, nightly Rust):
# the descriptor chain walk and receive reservation (chain_walk), the virtio-net header
# check (vnet_hdr) and TCP segmentation (tso_segment), SECONDS each (default 20: the
# bounded run of the test command; a campaign is e.g. `scripts/fuzz.sh 3600`). A crash
# leaves its input in fuzz/artifacts/TARGET/ and exits non-zero; corpora grow in
# fuzz/corpus/TARGET/ (not committed).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-20}
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "fuzz.sh: SECONDS must be a whole number above 0 (got '$secs')" >&2; exit 2; }
shift || true
targets=("$@")
((${#targets[@]})) || targets=(chain_walk vnet_hdr tso_segment)
for t in "${targets[@]}"; do
  echo "fuzz: $t for ${secs}s"
  mkdir -p "corpus/$t"
  log=$(mktemp)
  rc=0
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|thread .* panicked|Test unit written|error)' "$log" || true
  if ((rc)); then
    tail -40 "$log" >&2
    rm -f "$log"
    echo "fuzz: $t FAILED (exit $rc; a crashing input is in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  rm -f "$log"
done
