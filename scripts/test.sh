#!/usr/bin/env bash
# Every check CI runs: formatting, lints, the build, and all unit, integration and end-to-end
# tests. Run as root on Debian (the end-to-end tests create accounts and PAM services);
# installs missing packages first. `make test` and .ci/run run this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# rustup installs cargo here; a non-login shell may not have it on PATH.
if [ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

bash scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests drive the built binaries and the .so: build them first.
cargo build --workspace
cargo test --workspace
