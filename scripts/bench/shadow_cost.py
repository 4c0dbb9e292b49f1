#!/usr/bin/python3
"""Runs BenchmarkShadowCost (cmd/segad/shadow_bench_test.go) in interleaved
rounds and prints, per configuration, the median wall and CPU time per
frame and the median of its per-round ratios to the daemon without a
shadow runner ("main"): every round runs every configuration once, in the
same order, so load from elsewhere on the machine hits a round's
configurations alike, and a ratio is taken within one round.

    go test -c -o /tmp/segad.test ./cmd/segad
    /usr/bin/python3 scripts/bench/shadow_cost.py /tmp/segad.test [--rounds 6] [--frames 300]

It reports the acceptance rule: "off" within noise of "main", and own-0.25
adding at most 0.25 x (own-alone's cost) + 5% of main's.
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

wall, cpu = {}, {}
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
            wall.setdefault(name, []).append(float(m.group(1)) / 1e6)
            c = re.search(r"\s(\d+(?:\.\d+)?) cpu-ms/frame", line)
            cpu.setdefault(name, []).append(float(c.group(1)) if c else float("nan"))
            name = None


def ratio(series, k):
    return statistics.median([x / b for x, b in zip(series[k], series["main"])])


print("%-10s %9s %8s %9s %8s" % ("config", "wall ms", "ratio", "cpu ms", "ratio"))
for k in wall:
    print("%-10s %9.3f %8.3f %9.3f %8.3f" % (k, statistics.median(wall[k]), ratio(wall, k),
                                             statistics.median(cpu[k]), ratio(cpu, k)))
for label, s in (("wall", wall), ("cpu", cpu)):
    if "own-0.25" in s and "own-alone" in s:
        added, allowed = ratio(s, "own-0.25") - 1, 0.25 * ratio(s, "own-alone") + 0.05
        print("%s: own-0.25 adds %.3f x main; allowed 0.25 x own-alone + 5%% = %.3f x main (%s)" %
              (label, added, allowed, "within" if added <= allowed else "OVER"))
