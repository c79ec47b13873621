#!/usr/bin/env bash
# Context switches of a running agent per thread name over a window (BENCHMARKS.md, "Issue 13,
# second session"): voluntary and involuntary, from /proc/PID/task/*/status, summed by thread
# name (the worker running in the main thread is named after the program, the others "worker").
# Usage: bash docs/bench/thread-switches.sh PID [SECONDS]   (default 4 s), during a bench run,
# e.g. beside `pam-totp-bench agent --profiles 100000 --clients 1 --duration 10`.
set -euo pipefail
pid=$1
seconds=${2:-4}
snapshot() {
    for task in /proc/"$pid"/task/*; do
        awk -v name="$(cat "$task/comm")" -v tid="${task##*/}" '
            /^voluntary_ctxt_switches/ { v = $2 }
            /^nonvoluntary_ctxt_switches/ { n = $2 }
            END { print tid, name, v, n }' "$task/status"
    done
}
before=$(snapshot)
sleep "$seconds"
after=$(snapshot)
# Threads present in both snapshots, summed by name.
join <(sort <<<"$before") <(sort <<<"$after") | awk '
    # tid, name, voluntary, involuntary before; name, voluntary, involuntary after.
    { voluntary[$2] += $6 - $3; involuntary[$2] += $7 - $4; if ($6 + $7 > $3 + $4) active[$2]++ }
    END { for (name in voluntary)
              printf "%-16s voluntary %8d  involuntary %8d  threads that ran %d\n",
                     name, voluntary[name], involuntary[name], active[name] }'
