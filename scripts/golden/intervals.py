"""Golden binomial confidence intervals for fit/calibrate.go.

Writes fit/testdata/intervals.json: for each (k, n, confidence) the
Clopper-Pearson ("exact") and Wilson (no continuity correction) intervals
from scipy.stats.binomtest(k, n).proportion_ci, the reference for
fit.ClopperPearson and fit.Wilson.

Usage: /usr/bin/python3 scripts/golden/intervals.py [OUT_DIR]
"""
import json
import sys

import scipy
from scipy.stats import binomtest

out_dir = sys.argv[1] if len(sys.argv) > 1 else "fit/testdata"
cases = []
for n in (1, 2, 5, 10, 29, 43, 87, 200, 1000):
    ks = sorted({0, 1, n // 2, n - 1, n, (95 * n) // 100})
    for k in ks:
        if k < 0 or k > n:
            continue
        for conf in (0.95, 0.9, 0.99):
            r = binomtest(k, n)
            cp = r.proportion_ci(confidence_level=conf, method="exact")
            w = r.proportion_ci(confidence_level=conf, method="wilson")
            cases.append({
                "k": k, "n": n, "confidence": conf,
                "clopper_pearson": [float(cp.low), float(cp.high)],
                "wilson": [float(w.low), float(w.high)],
            })
with open(f"{out_dir}/intervals.json", "w") as f:
    json.dump({"scipy": scipy.__version__, "cases": cases}, f, indent=1)
    f.write("\n")
print(f"{len(cases)} interval cases -> {out_dir}/intervals.json")
