#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on Debian (12+), as root, when missing.
# Idempotent: with everything present it changes nothing and needs no network.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: must run as root (installs packages; the end-to-end tests create" >&2
    echo "install-test-deps: users and /etc/pam.d files). Re-run as root, e.g. 'sudo make test'." >&2
    exit 1
fi

# Debian packages, and why:
#   gcc libc6-dev     link Rust binaries, compile the bundled SQLite; gcc also builds the
#                     LD_PRELOAD shim of the module's panic test
#   binutils          nm: agent/tests/sqlite_sync.rs reads the agent's imported symbols
#   g++               compile libFuzzer (libfuzzer-sys) for scripts/fuzz.sh
#   libpam0g-dev      link the PAM module against libpam
#   pamtester         drive real libpam in the end-to-end tests and the demo
#   oathtool          independent TOTP codes (RFC 6238)
#   sqlite3           inspect the agent's database in tests
#   passwd            useradd/userdel for test accounts
#   util-linux        runuser, unshare, losetup: other uids, a private /dev/log, loop disks
#   mount e2fsprogs   tmpfs and ext4 images for the full-disk and read-only-disk tests
#   expect procps     terminal-driven tests, process inspection
#   openssh-server sudo   PAM stacks of real services (sshd and sudo end-to-end tests)
#   libpam-google-authenticator   its `google-authenticator` tool writes the files we import
#   make              the top-level Makefile
#   fail2ban          fail2ban-regex checks the shipped filter against the agent's lines
#   python3-prometheus-client   a real parser for `pam-totp metrics`
#   postgresql        throwaway real clusters for the PostgreSQL store tests (testpg/: initdb,
#                     pg_ctl, pg_basebackup, pg_dump, psql; run as the `postgres` user it creates)
#   libssl-dev pkg-config   build postgres-openssl (the agent's TLS to PostgreSQL)
#   openssl           the CLI: a throwaway CA and server certificate for the TLS tests
#   systemd-container systemd-nspawn: scripts/systemd-test.sh boots a container of this machine
packages=(
    gcc g++ libc6-dev make binutils
    libpam0g-dev pamtester oathtool sqlite3
    passwd util-linux mount e2fsprogs expect procps
    openssh-server sudo libpam-google-authenticator fail2ban
    python3-prometheus-client
    postgresql libssl-dev pkg-config openssl
    systemd-container
)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-test-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting services (sshd) on this machine: the tests start
    # their own daemons on private sockets and ports.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "install-test-deps: system packages present"
fi

# Rust components used by `make test`.
if [ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "install-test-deps: cargo not found: install Rust with rustup first (https://rustup.rs)" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if [ "$component" = rustfmt ]; then probe=(cargo fmt --version); else probe=(cargo clippy --version); fi
    if ! "${probe[@]}" >/dev/null 2>&1; then
        if ! command -v rustup >/dev/null 2>&1; then
            echo "install-test-deps: '${probe[*]}' fails and rustup is not available to add $component" >&2
            exit 1
        fi
        echo "install-test-deps: adding Rust component $component"
        rustup component add "$component"
    fi
done
# cargo-fuzz for scripts/fuzz.sh (built from crates.io when missing); the same function the
# fuzz script uses on its own.
# shellcheck source=scripts/fuzz.sh
source "$(dirname "${BASH_SOURCE[0]}")/fuzz.sh"
ensure_cargo_fuzz
echo "install-test-deps: done"
