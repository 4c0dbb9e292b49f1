"""Golden what-if figures for metrics/whatif.go.

Writes metrics/testdata/whatif.json: a fixed set of scored parts (some
labelled bad or good, some unlabelled, a few unscored) and, for several
thresholds, what numpy and scipy say a threshold does to them: parts
rejected (score >= threshold, or no finite score: result.Decide fails
those closed), recall and false-reject rate on the labelled parts with
scipy.stats.binomtest(k, n).proportion_ci(conf, "exact") intervals; and
numpy.histogram of the finite scores for several bin counts. The reference
for metrics.ComputeWhatIf and metrics.Histogram.

Usage: /usr/bin/python3 scripts/golden/whatif.py [OUT_DIR]
"""
import json
import sys

import numpy as np
import scipy
from scipy.stats import binomtest

out_dir = sys.argv[1] if len(sys.argv) > 1 else "metrics/testdata"
rng = np.random.default_rng(20261204)
n_good, n_bad, n_unl = 140, 23, 200
scores = np.concatenate([
    rng.normal(-3.0, 1.2, n_good),
    rng.normal(1.5, 1.5, n_bad),
    rng.normal(-2.5, 1.8, n_unl),
])
labels = ["good"] * n_good + ["bad"] * n_bad + [""] * n_unl
# Ties exactly at a threshold (>= rejects) and parts the line could not score.
scores[0] = -1.0
scores[n_good] = -1.0
scores = list(map(float, np.round(scores, 6)))
scores += [float("nan"), float("nan")]
labels += ["bad", ""]
order = rng.permutation(len(scores))
scores = [scores[i] for i in order]
labels = [labels[i] for i in order]

s = np.array(scores)
lab = np.array(labels)
finite = np.isfinite(s)
cases = []
for thr in (-4.0, -1.0, 0.0, 0.73, 2.5, 10.0):
    for conf in (0.95, 0.9):
        rej = ~finite | (np.where(finite, s, 0) >= thr)
        c = {"threshold": thr, "confidence": conf, "n": len(s), "rejected": int(rej.sum()),
             "unscored": int((~finite).sum())}
        for cls, key in (("bad", "recall"), ("good", "false_reject")):
            m = lab == cls
            k, n = int((rej & m).sum()), int(m.sum())
            ci = binomtest(k, n).proportion_ci(confidence_level=conf, method="exact")
            c[cls] = n
            c[key] = [k / n, float(ci.low), float(ci.high)]
        cases.append(c)
hist = []
for bins in (1, 7, 20, 50):
    counts, edges = np.histogram(s[finite], bins=bins)
    hist.append({"bins": bins, "edges": list(map(float, edges)), "counts": list(map(int, counts))})
with open(f"{out_dir}/whatif.json", "w") as f:
    json.dump({"numpy": np.__version__, "scipy": scipy.__version__,
               "scores": [x if np.isfinite(x) else None for x in scores], "labels": labels,
               "cases": cases, "histograms": hist}, f, indent=1)
    f.write("\n")
print(f"{len(cases)} what-if cases, {len(hist)} histograms -> {out_dir}/whatif.json")
