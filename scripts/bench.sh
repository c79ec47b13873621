#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md (issue 5): the agent layer (release agent, C concurrent
# protocol clients, P profiles), the fleet layer (the same workload through the PostgreSQL
# fleet store, one and two agents, beside SQLite; issue 12) and the PAM layer (real libpam in
# process: pam_permit, pam_totp, pam_google_authenticator, pam_oath on the same accounts),
# then SVG charts.
#
#   bash scripts/bench.sh           full sizes; results in target/bench/, charts copied to
#                                   docs/bench/ (`make bench`)
#   bash scripts/bench.sh --smoke   tiny sizes on the debug build, results in
#                                   target/bench/smoke/ (`make bench-smoke`, CI): checks that
#                                   everything builds and works; fails on any functional
#                                   error, asserts no timing
#
# Sizes can be overridden: BENCH_PROFILES, BENCH_CLIENTS, BENCH_DURATION, BENCH_MAX_REQUESTS,
# BENCH_FLEET_PROFILES, BENCH_FLEET_CLIENTS, BENCH_FLEET_MAX_REQUESTS, BENCH_ACCOUNTS,
# BENCH_THREADS (comma-separated lists where plural). BENCH_WORK_DIR sets where the temporary
# databases and PostgreSQL clusters go (default /tmp: the disk matters, every acknowledged
# verification waits for its fsync). The binaries are taken from $CARGO_TARGET_DIR (default
# target), where cargo builds them. Run as root on Debian; installs what it needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=full
case "${1:-}" in
    "") ;;
    --smoke) mode=smoke ;;
    *) echo "usage: $0 [--smoke]" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    echo "bench: must run as root (installs packages, writes /etc/pam.d service files and" >&2
    echo "bench: removes them). Re-run as root, e.g. 'sudo make bench'." >&2
    exit 1
fi

# rustup installs cargo here; a non-login shell may not have it on PATH.
if [ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

# Debian packages, and why:
#   libpam-google-authenticator libpam-oath   the incumbents, measured beside pam_totp
#   libpam0g-dev                              link the PAM module and the bench's libpam driver
#   oathtool                                  cross-check of the bench's TOTP codes below
#   gcc libc6-dev                             link Rust binaries, compile the bundled SQLite
#   postgresql                                throwaway clusters for the fleet layer (testpg/)
#   libssl-dev pkg-config                     build postgres-openssl (the agent's TLS)
packages=(libpam-google-authenticator libpam-oath libpam0g-dev oathtool gcc libc6-dev
    postgresql libssl-dev pkg-config)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bench: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting services (the postgresql package's own cluster):
    # the bench starts its own servers, and an idle one would still share the cores.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        trap 'rm -f "$policy"' EXIT
        remove_policy=$policy
    fi
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
    if [ -n "${remove_policy:-}" ]; then
        rm -f "$remove_policy"
        trap - EXIT
    fi
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "bench: cargo not found: install Rust with rustup first (https://rustup.rs)" >&2
    exit 1
fi

# The bench's codes must be the codes every module computes: check one against oathtool
# (RFC 6238) before measuring anything.
secret_hex=$(printf 'pam-totp-bench secret %s' 0 | sha256sum | cut -c1-40)
now=$(date +%s)
want=$(oathtool --totp -d 6 --now "@$now" "$secret_hex")

# Full runs measure the release build. The smoke run checks that everything works, not how
# fast: it uses the debug build, which `cargo build --workspace` (make build, CI) has made
# already, so it adds seconds, not a release build, to CI. Cargo builds into
# $CARGO_TARGET_DIR when it is set (a relative one is relative to this directory).
target_dir=${CARGO_TARGET_DIR:-target}
if [ "$mode" = smoke ]; then
    cargo build --workspace
    bench=$target_dir/debug/pam-totp-bench
else
    cargo build --release --workspace
    bench=$target_dir/release/pam-totp-bench
fi
got=$("$bench" code --account 0 --at "$now")
if [ "$got" != "$want" ]; then
    echo "bench: the bench computes $got for account 0 at $now, oathtool says $want" >&2
    exit 1
fi

if [ "$mode" = smoke ]; then
    out=target/bench/smoke
    profiles=${BENCH_PROFILES:-200}
    clients=${BENCH_CLIENTS:-1,8}
    duration=${BENCH_DURATION:-2}
    max_requests=${BENCH_MAX_REQUESTS:-80}
    # The two PostgreSQL setups share their profiles: 4 runs of 50 fit 400 accounts in one
    # time step, so the smoke run never waits for the next one.
    fleet_profiles=${BENCH_FLEET_PROFILES:-400}
    fleet_clients=${BENCH_FLEET_CLIENTS:-1,8}
    fleet_max_requests=${BENCH_FLEET_MAX_REQUESTS:-50}
    accounts=${BENCH_ACCOUNTS:-50}
    threads=${BENCH_THREADS:-1,4}
else
    out=target/bench
    profiles=${BENCH_PROFILES:-1000,100000,1000000}
    clients=${BENCH_CLIENTS:-1,8,64,256}
    duration=${BENCH_DURATION:-10}
    max_requests=${BENCH_MAX_REQUESTS:-50000}
    fleet_profiles=${BENCH_FLEET_PROFILES:-1000,100000}
    fleet_clients=${BENCH_FLEET_CLIENTS:-1,8,64}
    fleet_max_requests=${BENCH_FLEET_MAX_REQUESTS:-50000}
    accounts=${BENCH_ACCOUNTS:-100,500,2000}
    threads=${BENCH_THREADS:-1,4}
fi
work_dir=${BENCH_WORK_DIR:-/tmp}
mkdir -p "$out"

# Leftovers of a bench that was killed outright (its own cleanup runs on SIGINT/SIGTERM).
cleanup() {
    local file pid
    for file in /etc/pam.d/pam-totp-bench-*; do
        [ -e "$file" ] || continue
        pid=${file#/etc/pam.d/pam-totp-bench-}
        pid=${pid%%-*}
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$file"
        fi
    done
}
trap cleanup EXIT

echo "bench: $mode run on $(nproc) CPUs, $(uname -r); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bench" agent --profiles "$profiles" --clients "$clients" --duration "$duration" \
    --max-requests "$max_requests" --out "$out" --work-dir "$work_dir"
"$bench" fleet --profiles "$fleet_profiles" --clients "$fleet_clients" --duration "$duration" \
    --max-requests "$fleet_max_requests" --out "$out" --work-dir "$work_dir"
"$bench" pam --accounts "$accounts" --threads "$threads" --out "$out" --work-dir "$work_dir"
if [ "$mode" = full ]; then
    "$bench" charts --out "$out" --copy-to docs/bench
else
    "$bench" charts --out "$out"
fi
"$bench" report --out "$out" >/dev/null
if [ "$mode" = smoke ]; then
    # The floor program of BENCHMARKS.md ("Issue 13, third session") still builds and runs.
    gcc -O2 -Wall -Werror -o "$out/floor" docs/bench/floor.c
    "$out/floor" "$work_dir" 4 200
    "$out/floor" "$work_dir" 4 200 interleave
fi
echo "bench: load after: $(cut -d' ' -f1-3 /proc/loadavg); results in $out/"
