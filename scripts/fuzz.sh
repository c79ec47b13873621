#!/usr/bin/env bash
# Bounded fuzz run of the wire protocol (issue 4, "Hostile bytes"): builds the cargo-fuzz
# targets in fuzz/ and runs each for SECONDS (default 20) under libFuzzer with AddressSanitizer
# and a 512 MB memory cap. One summary line per target, then `fuzz result: N passed, N failed`
# (scripts/test.sh adds that to its total). Exits non-zero if any target fails to build, crashes,
# hangs or exceeds the memory cap; the input is saved under fuzz/artifacts/<target>/.
#
#   bash scripts/fuzz.sh [SECONDS]
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>   # reproduce
#
# Needs no root. Installs cargo-fuzz when missing (`ensure_cargo_fuzz`, which
# scripts/install-test-deps.sh sources from here too). The toolchain is stable: cargo-fuzz's
# nightly flags (-Zsanitizer) are allowed with RUSTC_BOOTSTRAP=1. libFuzzer itself is C++,
# built by libfuzzer-sys, so a C++ compiler (g++) is needed.
#
# Seeds: fuzz/corpus/<target>/ (committed, read only). What a run discovers goes to
# fuzz/work/corpus/<target>/ and the full libFuzzer output to fuzz/work/<target>.log (both
# ignored by git; kept between local runs).

# Installs cargo-fuzz with cargo when `cargo fuzz` does not run.
ensure_cargo_fuzz() {
    if cargo fuzz --version >/dev/null 2>&1; then
        return 0
    fi
    echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
    cargo fuzz --version >/dev/null
}

fuzz_main() {
    set -euo pipefail
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    local seconds=${1:-20}
    if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
        echo "usage: scripts/fuzz.sh [SECONDS]  (a positive whole number, default 20)" >&2
        return 2
    fi
    if [ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "fuzz: cargo not found: install Rust with rustup first (https://rustup.rs)" >&2
        return 1
    fi
    if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
        echo "fuzz: no C++ compiler for libFuzzer: install g++ (scripts/install-test-deps.sh)" >&2
        return 1
    fi
    ensure_cargo_fuzz

    export RUSTC_BOOTSTRAP=1
    # AddressSanitizer's default 256 MB quarantine of freed memory would take half the memory
    # cap; the targets are safe Rust, so a smaller one loses nothing.
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=32"
    local targets=(frame_decoder request_parser client_reply)
    local root=$PWD
    local work=$root/fuzz/work
    mkdir -p "$work"

    local started=$SECONDS
    if ! cargo fuzz build >"$work/build.log" 2>&1; then
        tail -n 40 "$work/build.log" >&2
        echo "fuzz: build failed (log: fuzz/work/build.log)"
        echo "fuzz result: 0 passed, ${#targets[@]} failed"
        return 1
    fi
    echo "fuzz: built ${#targets[@]} targets in $((SECONDS - started)) s"

    local passed=0 failed=0 target
    for target in "${targets[@]}"; do
        local log=$work/$target.log
        local corpus=$work/corpus/$target
        mkdir -p "$corpus"
        local args=(
            -max_total_time="$seconds"
            -rss_limit_mb=512
            -timeout=10
            -print_final_stats=1
        )
        if [ "$target" != frame_decoder ]; then
            args+=(-dict="$root/fuzz/protocol.dict")
        fi
        # The first corpus directory receives new inputs; the committed seeds stay untouched.
        local rc=0
        cargo fuzz run "$target" "$corpus" "fuzz/corpus/$target" -- "${args[@]}" \
            >"$log" 2>&1 || rc=$?
        local runs cov corp
        runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -n 1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
        corp=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 || true)
        if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
            passed=$((passed + 1))
            echo "fuzz: $target: ok, ${runs}, ${cov:-cov: ?}, ${corp:-corp: ?} inputs"
        else
            failed=$((failed + 1))
            local artifact
            artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
            # The panic message or sanitizer report, and the input (CI may not keep files).
            { grep -A 1 "panicked at" "$log" | head -n 6
              grep -E "^==[0-9]+== ?ERROR|^SUMMARY:|^Base64:" "$log" | head -n 6
            } | sed 's/^/fuzz:   /' || true
            artifact=${artifact#"$root/"}
            echo "fuzz: $target: FAILED (exit $rc, input: ${artifact:-none saved}, log: ${log#"$root/"})"
            if [ -n "$artifact" ]; then
                echo "fuzz:   reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $target $artifact"
            fi
        fi
    done
    echo "fuzz result: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

# Sourced (by install-test-deps.sh) only for ensure_cargo_fuzz.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    fuzz_main "$@"
fi
