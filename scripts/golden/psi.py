"""Golden drift references, PSI values and binomial tails for assurance/drift.

Writes assurance/drift/testdata/psi.json. For each case, from seeded numpy
draws: the reference distribution of the training values (inner edges at
numpy's linear quantiles k/bins, ties merged with np.unique; per-bin shares
counted with np.searchsorted(edges, v, side="left"); the NaN share), and
the population stability index of a window of values against it:
sum((a - e) * ln(a / e)) over the finite bins and the NaN bin, each share
clipped below at EPS. Also binomial upper tails P(X >= k) from
scipy.stats.binom.sf(k - 1, n, p), the reference for drift.BinomialTail.
The Go implementation (drift.Distribution, drift.PSI, drift.BinomialTail)
is held against these numbers by assurance/drift/psi_test.go.

Usage: /usr/bin/python3 scripts/golden/psi.py [OUT_DIR]
"""
import json
import sys

import numpy as np
import scipy
from scipy.stats import binom

EPS = 1e-4

out_dir = sys.argv[1] if len(sys.argv) > 1 else "assurance/drift/testdata"
rng = np.random.default_rng(18)


def distribution(values, bins):
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    n = len(values)
    nan = float(np.isnan(values).sum()) / n
    if len(finite) == 0:
        return [], [0.0], nan
    qs = np.quantile(finite, [k / bins for k in range(1, bins)])  # linear
    edges = np.unique(qs)
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=len(edges) + 1)
    return edges.tolist(), (counts / n).tolist(), nan


def psi(edges, shares, nan, window):
    window = np.asarray(window, dtype=np.float64)
    finite = window[~np.isnan(window)]
    counts = np.bincount(np.searchsorted(np.asarray(edges), finite, side="left"), minlength=len(shares))
    a = np.append(counts, np.isnan(window).sum()) / len(window)
    e = np.append(np.asarray(shares), nan)
    a, e = np.maximum(a, EPS), np.maximum(e, EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def with_nan(x, share):
    x = x.copy()
    x[rng.random(len(x)) < share] = np.nan
    return x


cases = []


def short(x):
    # Six significant digits keep the fixture small; the values are then
    # exactly what both sides read.
    return np.array([float(f"{v:.6g}") for v in x])


def case(name, train, window, bins=10):
    train, window = short(train), short(window)
    edges, shares, nan = distribution(train, bins)
    cases.append({
        "name": name, "bins": bins,
        "train": [None if np.isnan(v) else v for v in train.tolist()],
        "window": [None if np.isnan(v) else v for v in window.tolist()],
        "edges": edges, "shares": shares, "nan": nan,
        "psi": psi(edges, shares, nan, window),
    })


normal = rng.normal(0.3, 0.05, 300)
case("normal, same distribution", normal, rng.normal(0.3, 0.05, 500))
case("normal, mean shifted by half a sigma", normal, rng.normal(0.325, 0.05, 500))
case("normal, mean shifted by two sigma", normal, rng.normal(0.4, 0.05, 500))
case("normal, spread doubled", normal, rng.normal(0.3, 0.1, 500))
case("window all in the top bin (empty bins)", normal, np.full(250, 10.0))
lognorm = rng.lognormal(-3, 1, 200)
case("lognormal, scaled by 1.3 (gain)", lognorm, 1.3 * rng.lognormal(-3, 1, 400))
ties = np.where(rng.random(300) < 0.45, 0.0, rng.exponential(0.01, 300))
case("45% exact zeros (empty segment): tied edges merged", ties, np.where(rng.random(500) < 0.2, 0.0, rng.exponential(0.01, 500)))
case("integers 0..3: few distinct values", rng.integers(0, 4, 100).astype(float), rng.integers(0, 4, 300).astype(float))
case("skewness with 10% NaN (constant segments)", with_nan(rng.normal(1.0, 0.5, 300), 0.1), with_nan(rng.normal(1.0, 0.5, 500), 0.3))
case("NaN in the window only", rng.normal(0, 1, 100), with_nan(rng.normal(0, 1, 400), 0.05))
case("constant training values", np.full(50, 0.25), rng.normal(0.25, 0.01, 100))
case("seven training values, five bins", rng.normal(0, 1, 7), rng.normal(0, 1, 60), bins=5)
case("all NaN in training", np.full(20, np.nan), with_nan(rng.normal(0, 1, 30), 0.5))

tails = []
for n, p in ((500, 0.02), (500, 0.05), (250, 0.0037), (1000, 0.001), (50, 0.3)):
    for k in sorted({0, 1, int(n * p), int(n * p) + 1, int(2 * n * p) + 3, int(4 * n * p) + 5, n // 2, n}):
        tails.append({"k": k, "n": n, "p": p, "tail": float(binom.sf(k - 1, n, p))})

with open(f"{out_dir}/psi.json", "w") as f:
    json.dump({"numpy": np.__version__, "scipy": scipy.__version__, "eps": EPS, "cases": cases, "tails": tails}, f)
    f.write("\n")
print(f"{len(cases)} PSI cases, {len(tails)} binomial tails -> {out_dir}/psi.json")
