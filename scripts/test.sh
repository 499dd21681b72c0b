#!/usr/bin/env bash
# The test command (README, .ci/run): prepare the machine, check formatting and lints,
# run the unit tests in debug mode (overflow checks, debug assertions), then every test
# in release mode, and the integration tests once more with the switches on rte_vhost's
# data path (--vhost-datapath lib) instead of the own one. Integration tests put their peers on CPU 0 and pmdswitch's worker on
# CPU 1; they use unique sockets and EAL prefixes and may run in parallel, but on a
# 2-core machine one at a time keeps the timing assertions (exit within 2 s) meaningful.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "test: cargo fmt --check"
cargo fmt --check
echo "test: cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "test: unit tests, debug"
cargo test --lib --bins --quiet
echo "test: every test, release (own vhost data path, the default)"
cargo test --release -- --test-threads=1
echo "test: the integration tests again on the library's vhost data path"
PMDSWITCH_TEST_VHOST_DATAPATH=lib cargo test --release --tests -- --test-threads=1
