#!/usr/bin/env bash
# Measures `pam-totp import oath` on a host with many accounts: N synthetic accounts are added
# to a copy of /etc/passwd that is bind-mounted in a private mount namespace (the real file is
# never touched), an agent on a temporary socket and database imports a usersfile of N TOTP
# lines, and the rate is printed. Usage: sudo bash scripts/import-rate.sh [N] (default 10000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
count=${1:-10000}
[ "$(id -u)" -eq 0 ] || { echo "import-rate: run as root (mount namespace)" >&2; exit 1; }
cargo build --quiet --release -p pam-totp-agent -p pam-totp-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cp /etc/passwd "$work/passwd"
for ((i = 0; i < count; i++)); do
    printf 'imprate%d:x:%d:%d::/nonexistent:/usr/sbin/nologin\n' "$i" $((200000 + i)) $((200000 + i))
done >> "$work/passwd"
for ((i = 0; i < count; i++)); do
    printf 'HOTP/T30 imprate%d - %s\n' "$i" "$(printf '%040x' "$i")"
done > "$work/users.oath"
bin=$PWD/target/release
unshare --mount --propagation private bash -euo pipefail -c '
    work=$1 bin=$2 count=$3
    mount --bind "$work/passwd" /etc/passwd
    mkdir -m 700 "$work/db"
    "$bin/pam-totp-agent" --socket "$work/agent.sock" --db "$work/db/p.sqlite3" 2>"$work/agent.log" &
    agent=$!
    trap "kill $agent 2>/dev/null; wait $agent 2>/dev/null || true" EXIT
    for _ in $(seq 50); do [ -S "$work/agent.sock" ] && break; sleep 0.1; done
    start=$(date +%s%N)
    "$bin/pam-totp" --socket "$work/agent.sock" import oath "$work/users.oath" | tail -n 1
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    echo "import-rate: $count profiles with $count extra accounts in /etc/passwd: ${ms} ms, $(( count * 1000 / (ms > 0 ? ms : 1) )) profiles/s"
' _ "$work" "$bin" "$count"
