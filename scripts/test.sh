#!/usr/bin/env bash
# The test command (README, .ci/run): prepare the machine, check formatting and lints,
# run the unit tests in debug mode (overflow checks, debug assertions), the guest-memory
# and ring tests under Miri, a bounded fuzzing run of the guest boundary, then every test
# in release mode, and once more, on rte_vhost's data path (--vhost-datapath lib)
# instead of the own one, the integration tests whose behaviour differs between the two
# paths (frames through vhost rings: cross-connect, bridge, router, tunnels, guests,
# hostile frontends, idle kicks, ports added and removed, the in-process switch). The
# generator, telemetry, Linux-mirror and bad-input tests exercise no path-specific code
# and run once. Integration tests put their peers on CPU 0 and pmdswitch's worker on
# CPU 1; they use unique sockets and EAL prefixes, and run one at a time on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "test: cargo fmt --check"
cargo fmt --check
echo "test: cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "test: unit tests, debug"
cargo test --lib --bins --quiet
echo "test: guest memory and ring code under Miri (undefined behaviour, on simulated memory)"
MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-permissive-provenance" cargo +nightly miri test --quiet --lib -- guest:: datapath::vring
echo "test: fuzzing the guest boundary, 20 s per target (scripts/fuzz.sh)"
scripts/fuzz.sh 20
echo "test: every test, release (own vhost data path, the default)"
cargo test --release -- --test-threads=1
echo "test: the path-dependent integration tests again on the library's vhost data path"
lib_tests=(xconnect bridge router vxlan vm hostile idle control switch)
PMDSWITCH_TEST_VHOST_DATAPATH=lib cargo test --release "${lib_tests[@]/#/--test=}" -- --test-threads=1
