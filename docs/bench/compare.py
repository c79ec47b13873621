#!/usr/bin/env python3
"""Before/after table of two agent-layer runs (target/bench/agent.json of each):
python3 docs/bench/compare.py BEFORE/agent.json AFTER/agent.json"""
import json
import sys


def runs(path):
    data = json.load(open(path))
    return {(r["profiles"], r["clients"]): r for s in data["sessions"] for r in s["runs"]}


before, after = runs(sys.argv[1]), runs(sys.argv[2])
print("| profiles | clients | verifications/s before | after | p99 ms before | after "
      "| agent CPU us/verification before | after |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for key in sorted(set(before) & set(after), key=lambda k: (k[1], k[0])):
    b, a = before[key], after[key]
    print(f"| {key[0]} | {key[1]} | {b['verifications_per_s']:.0f} | {a['verifications_per_s']:.0f} "
          f"| {b['latency']['p99_us'] / 1000:.2f} | {a['latency']['p99_us'] / 1000:.2f} "
          f"| {b['agent_cpu_us_per_request']:.0f} | {a['agent_cpu_us_per_request']:.0f} |")
