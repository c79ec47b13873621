#!/usr/bin/env bash
# Where a pam_totp login's time goes inside the PAM bench (BENCHMARKS.md, "Issue 13, third
# session"): uprobes on pam_totp.so (pam_sm_authenticate, the NSS lookup, the agent call) and
# on google-authenticator's pam_sm_authenticate, plus the agent's syscalls (accept, recv, the
# first WAL write, fdatasync, send) and google-authenticator's fsync, recorded with `perf`
# during one `pam-totp-bench pam` run; prints the p50 and mean of each segment. The probes and
# the tracepoints add a few microseconds each, so the segments are for proportions; the
# bench's own figures are the ones without them.
# Usage, as root, after `cargo build --release --workspace`:
#   bash docs/bench/login-timeline.sh [ACCOUNTS]      (default 500)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
accounts=${1:-500}
module=$PWD/target/release/libpam_totp.so
google=/lib/x86_64-linux-gnu/security/pam_google_authenticator.so
work=$(mktemp -d)
cleanup() {
    perf probe -q -d 'probe_libpam_totp:*' -d 'probe_pam_google_authenticator:*' 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The Rust functions by address: their mangled names change with every build.
symbol() {
    local address
    address=$(nm "$module" | awk -v pattern="$1" '$0 ~ pattern && !/closure/ { print $1; exit }')
    [ -n "$address" ] || { echo "login-timeline: no symbol matching $1 in $module" >&2; exit 1; }
    # perf probe takes a file offset: the text segment is mapped 0x1000 above it.
    printf '0x%x' $((0x$address - 0x1000))
}
call=$(symbol '6Client4call17h')
nss=$(symbol 'pam_totp_nss7account17h')
perf probe -q -x "$module" -a auth=pam_sm_authenticate -a auth_ret=pam_sm_authenticate%return
perf probe -q -x "$module" -a "call=$call" -a "call_ret=$call%return"
perf probe -q -x "$module" -a "nss=$nss" -a "nss_ret=$nss%return"
perf probe -q -x "$google" -a gauth=pam_sm_authenticate -a gauth_ret=pam_sm_authenticate%return

perf record -q -o "$work/perf.data" \
    -e 'probe_libpam_totp:*' -e 'probe_pam_google_authenticator:*' \
    -e syscalls:sys_exit_accept4 -e syscalls:sys_enter_recvfrom -e syscalls:sys_enter_pwrite64 \
    -e syscalls:sys_enter_fdatasync -e syscalls:sys_exit_fdatasync \
    -e syscalls:sys_enter_fsync -e syscalls:sys_exit_fsync -e syscalls:sys_enter_sendto \
    -- target/release/pam-totp-bench pam --accounts "$accounts" --threads 1 \
    --out "$work/out" --work-dir /tmp >"$work/bench.log"
grep -A1 'cost p50 us above' "$work/bench.log"
perf script -i "$work/perf.data" -F comm,tid,time,event 2>/dev/null >"$work/events"

python3 - "$work/events" <<'EOF'
import statistics, sys

events = []
for line in open(sys.argv[1]):
    comm, tid, time, event = line.split()[:4]
    events.append((comm, tid, float(time.rstrip(":")) * 1e6, event.rstrip(":").split(":")[1]))

AGENT = ("pam-totp-agent", "worker")
segments = {}
def add(name, value):
    segments.setdefault(name, []).append(value)

def p50(values):
    return statistics.median(values) if values else float("nan")

# One login: the probes' events (any thread of the bench) and the agent's syscalls, from
# pam_sm_authenticate to its return.
ORDER = [("auth", "pam_sm_authenticate starts"), ("nss", "NSS lookup starts"),
         ("nss_ret__return", "NSS lookup returns"), ("call", "agent call starts"),
         ("sys_exit_accept4", "agent accepted"), ("sys_enter_recvfrom", "agent reads"),
         ("pwrite", "agent writes the WAL"), ("sys_enter_fdatasync", "agent syncs"),
         ("sys_exit_fdatasync", "sync done"), ("sys_enter_sendto", "agent replies"),
         ("call_ret__return", "agent call returns"),
         ("auth_ret__return", "pam_sm_authenticate returns")]
marks, sync_at = {}, {}
for comm, tid, at, name in events:
    if name.startswith("sys_") and comm not in AGENT and "gauth" not in marks:
        continue
    if name in ("auth", "gauth"):
        marks = {}
    if name in ("sys_enter_fsync", "sys_enter_fdatasync"):
        sync_at[tid] = at
    if name in ("sys_exit_fsync", "sys_exit_fdatasync") and tid in sync_at:
        took = at - sync_at.pop(tid)
        if "gauth" in marks and comm == "pam-totp-bench":
            add("google: its fsync", took)
        elif "auth" in marks and comm in AGENT:
            add("pam_totp: the agent's fdatasync", took)
    marks.setdefault("pwrite" if name == "sys_enter_pwrite64" else name, at)
    if name == "gauth_ret__return" and "gauth" in marks:
        add("google: pam_sm_authenticate", at - marks["gauth"])
        marks = {}
    if name == "auth_ret__return" and all(k in marks for k, _ in ORDER):
        for (a, la), (b, lb) in zip(ORDER, ORDER[1:]):
            add(f"pam_totp: {la} -> {lb}", marks[b] - marks[a])
        add("pam_totp: pam_sm_authenticate", marks["auth_ret__return"] - marks["auth"])

print(f"{'p50 us':>70} {'warm':>6} {'loaded':>7}")
for name, values in segments.items():
    half = len(values) // 2
    print(f"{name:64} n={len(values):5} {p50(values[:half]):6.0f} {p50(values[half:]):7.0f}")
EOF
