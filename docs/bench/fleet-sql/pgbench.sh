#!/usr/bin/env bash
# What fewer round trips per login would buy on the fleet store (BENCHMARKS.md, "Fleet store"):
# a throwaway PostgreSQL cluster with the agent's schema (`pam-totp-agent schema`) and 100,000
# profiles, then each login-*.sql script through pgbench over TCP on 127.0.0.1 (prepared
# statements, as the agent uses them), taking turns, ROUNDS times. Prints logins/s, mean
# latency, and the CPU per login of the PostgreSQL server processes and of pgbench.
#
#   bash docs/bench/fleet-sql/pgbench.sh [AGENT_BINARY]   as root; CLIENTS (default "1 8"),
#                                                    SECONDS_EACH (8), ROUNDS (2)
#
# The cluster has the settings of the bench's (testpg): fsync on, synchronous_commit on,
# shared_buffers 16MB, wal_level replica; trust authentication on 127.0.0.1 (connections are
# opened once, so SCRAM would change nothing measured). It is removed at the end.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
agent=${1:-${CARGO_TARGET_DIR:-target}/release/pam-totp-agent}
clients=${CLIENTS:-"1 8"}
seconds=${SECONDS_EACH:-8}
rounds=${ROUNDS:-2}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
port=55432
dir=$(mktemp -d /tmp/pam-totp-pgbench.XXXXXX)
chown postgres "$dir"
chmod 0700 "$dir"
stop() {
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT
runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
cat >> "$dir/data/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = on
wal_level = replica
shared_buffers = '16MB'
EOF
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
psql() { "$bin/psql" -X -q -h "$dir" -p "$port" -U postgres -v ON_ERROR_STOP=1 "$@"; }
psql -c "CREATE DATABASE pamtotp"
"$agent" schema | psql -d pamtotp >/dev/null
psql -d pamtotp -c "INSERT INTO profiles (account, uid, owner, secret, algorithm, digits,
    period, issuer, comment, created_at, changed_at, verified_at, last_used_at, enabled,
    last_step, failed_attempts, locked_until, emergency_codes, skew_window)
  SELECT 'tb' || lpad(i::text, 7, '0'), 100000 + i, 'bench',
    decode(md5(i::text) || md5((i + 1)::text) || md5((i + 2)::text) || substr(md5((i + 3)::text), 1, 24), 'hex'),
    'SHA1', 6, 30, 'bench', NULL, 1764000000, 1764000000, 1764000000, NULL, true, NULL, 0,
    NULL, '', NULL
  FROM generate_series(0, 99999) i"
psql -d pamtotp -c "VACUUM ANALYZE"
postmaster=$(head -1 "$dir/data/postmaster.pid")

# CPU seconds of the postmaster, the children it reaped, and its live children.
server_cpu() {
    python3 - "$postmaster" <<'EOF'
import os, sys
root = sys.argv[1]
def stat(pid):
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
total = sum(int(v) for v in stat(root)[11:15])
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fields = stat(pid)
    except OSError:
        continue
    if fields[1] == root:
        total += int(fields[11]) + int(fields[12])
print(total / os.sysconf("SC_CLK_TCK"))
EOF
}

for round in $(seq 1 "$rounds"); do
    for c in $clients; do
        for script in a9 b6 c5 d4 p3; do
            before=$(server_cpu)
            out=$( { /usr/bin/time -f "%U %S" "$bin/pgbench" -h 127.0.0.1 -p "$port" -U postgres \
                -M prepared -n -c "$c" -j 1 -T "$seconds" -f "$here/login-$script.sql" \
                pamtotp 2>&1; } )
            after=$(server_cpu)
            python3 - "$script" "$c" "$before" "$after" "$out" <<'EOF'
import re, sys
script, clients, before, after, out = sys.argv[1:]
logins = int(re.search(r"actually processed: (\d+)", out).group(1))
tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
latency = float(re.search(r"latency average = ([\d.]+)", out).group(1))
user, system = map(float, out.strip().splitlines()[-1].split())
print(f"{script} clients {clients}: {tps:.0f} logins/s, mean {latency:.2f} ms, "
      f"PostgreSQL {(float(after) - float(before)) * 1e6 / logins:.0f} us/login, "
      f"pgbench {(user + system) * 1e6 / logins:.0f} us/login")
EOF
        done
    done
done
