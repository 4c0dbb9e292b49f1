#!/usr/bin/python3
"""Runs BenchmarkShadowCost (cmd/segad/shadow_bench_test.go) in interleaved
rounds and prints each configuration's median per-frame time and its ratio
to the daemon without a shadow runner ("main"), measured side by side:
every round runs every configuration once, in the same order, so load from
elsewhere on the machine hits all of them alike.

    go test -c -o /tmp/segad.test ./cmd/segad
    /usr/bin/python3 scripts/bench/shadow_cost.py /tmp/segad.test [--rounds 6] [--frames 300]

The acceptance rule it reports: "off" within noise of "main", and own-0.25
adding at most 0.25 x own-alone + 5% of main.
"""
import argparse
import re
import statistics
import subprocess

ap = argparse.ArgumentParser()
ap.add_argument("binary")
ap.add_argument("--rounds", type=int, default=6)
ap.add_argument("--frames", type=int, default=300)
a = ap.parse_args()

times = {}
for r in range(a.rounds):
    out = subprocess.run([a.binary, "-test.run", "^$", "-test.bench", "BenchmarkShadowCost",
                          "-test.benchtime", "%dx" % a.frames], capture_output=True, text=True, check=True).stdout
    name = None
    for line in out.splitlines():
        m = re.match(r"BenchmarkShadowCost/(\S+?)-\d+\s", line)
        if m:
            name = m.group(1)
        m = re.search(r"\s(\d+(?:\.\d+)?) ns/op", line)
        if m and name:
            times.setdefault(name, []).append(float(m.group(1)) / 1e6)
            name = None

med = {k: statistics.median(v) for k, v in times.items()}
base = med["main"]
print("%-10s %10s %8s   %s" % ("config", "ms/frame", "vs main", "rounds (ms/frame)"))
for k, v in med.items():
    print("%-10s %10.3f %8.3f   %s" % (k, v, v / base, " ".join("%.2f" % x for x in times[k])))
if "own-0.25" in med and "own-alone" in med:
    allowed = 0.25 * med["own-alone"] + 0.05 * base
    added = med["own-0.25"] - base
    print("own-0.25 adds %.3f ms/frame; allowed 0.25 x own-alone + 5%% = %.3f ms (%s)" %
          (added, allowed, "within" if added <= allowed else "OVER"))
