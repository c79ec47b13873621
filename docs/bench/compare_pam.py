#!/usr/bin/env python3
"""Before/after table of two PAM-layer runs' one-thread passes (target/bench/pam.json of each):
python3 docs/bench/compare_pam.py BEFORE/pam.json AFTER/pam.json
Cost = latency p50 minus pam_permit's, in the pass with modules kept loaded ("warm") and in the
pass where libpam loads them at every pam_start ("loaded per login")."""
import json
import sys


def costs(path):
    data = json.load(open(path))
    table = {}
    for pass_name, key in (("warm", "results"), ("loaded per login", "load_per_login")):
        for row in data.get(key) or []:
            if row["threads"] == 1:
                table[(pass_name, row["accounts"], row["module"])] = row["cost_p50_us"]
    return table


before, after = costs(sys.argv[1]), costs(sys.argv[2])
print("| pass | accounts | pam_totp before | google before | ratio | pam_totp after "
      "| google after | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for pass_name in ("warm", "loaded per login"):
    for accounts in sorted({k[1] for k in after if k[0] == pass_name}):
        cells = []
        for table in (before, after):
            ours = table.get((pass_name, accounts, "pam_totp"))
            google = table.get((pass_name, accounts, "pam_google_authenticator"))
            if ours is None or google is None:
                cells += ["-", "-", "-"]
            else:
                cells += [f"{ours:.0f}", f"{google:.0f}", f"{ours / google:.2f}x"]
        print(f"| {pass_name} | {accounts} | " + " | ".join(cells) + " |")
