#!/usr/bin/env bash
# Every check CI runs: formatting, lints, the build, all unit, integration and end-to-end
# tests, and a bounded fuzz run of the wire protocol (scripts/fuzz.sh). Run as root on Debian
# (the end-to-end tests create accounts and PAM services); installs missing packages first.
# `make test` and .ci/run run this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# rustup installs cargo here; a non-login shell may not have it on PATH.
if [ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

bash scripts/install-test-deps.sh
cargo fmt --all -- --check
# fuzz/ is its own workspace (built by scripts/fuzz.sh below): check its formatting too.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests drive the built binaries and the .so: build them first.
cargo build --workspace
# cargo prints one "test result" line per test binary, the last often a doc-test run of 0;
# end with one total line so the outcome reads at a glance (and by CI).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
# Hostile bytes: a bounded fuzz run of the frame decoder and both JSON parsers, 20 s per target
# (FUZZ_SECONDS overrides). Each target counts as one test in the total ("fuzz result" line).
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}" 2>&1 | tee -a "$log" || status=$?
# The Debian package: build, lintian, install, a login through the installed module named as
# bare pam_totp.so, /etc/pam.d untouched, purge leaves nothing (its steps count as tests).
bash scripts/package-test.sh 2>&1 | tee -a "$log" || status=$?
# The same .deb under a real systemd, booted in a container of this machine (overlay on a
# tmpfs): socket activation, every operation under the hardening, restart, the journal,
# pam-auth-update and purge (its steps count as tests).
bash scripts/systemd-test.sh 2>&1 | tee -a "$log" || status=$?
# The benchmarks at tiny sizes: they must keep working (a right code refused, a wrong one
# accepted or a failed login fails the run); no timing is asserted.
bash scripts/bench.sh --smoke 2>&1 | tee -a "$log" || status=$?
awk '/^test result:/ { passed += $4; failed += $6 }
     /^fuzz result:/ { passed += $3; failed += $5 }
     END { printf "total: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
