#!/usr/bin/python3
"""Golden contributions for brf/explain*.go: what XGBoost itself says each feature added.

Run with Debian's python3 (numpy, xgboost 1.7.4 from apt), from the repository root, after
scripts/golden/brf.py (it reads the models and rows that script commits):

    /usr/bin/python3 scripts/golden/explain.py

For every committed model in brf/testdata (xgb_logitraw.json, xgb_logistic.json,
xgb_dart.json) and a subset of the committed golden rows (rows with NaN, clean rows, rows on
split thresholds and the all-NaN row), it writes xgboost's

    pred_contribs=True    exact TreeSHAP, per feature plus the bias (last column)
    approx_contribs=True  (with pred_contribs=True) path attribution (Saabas), same layout

to brf/testdata/explain_golden.json.

The paper's full 2000-tree BRF is too large to commit (about 4 MB of JSON), so it is rebuilt
instead: paper_rows() below is a tiny integer hash generator that Go reproduces bit for bit
(brf/explain_paper_test.go), the forest is trained with the paper's parameters and nthread=1
through the same libxgboost, and the fixture records its margins (the Go test first checks
that its own training gave the same forest) and both contributions on the golden row subset.

Everything is seeded: rerunning gives the same file with the same xgboost version.
"""
import json
import os
import sys

import numpy as np
import xgboost as xgb

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "brf", "testdata")
MODELS = ["xgb_logitraw.json", "xgb_logistic.json", "xgb_dart.json"]
SEGMENTS = 7
NFEAT = SEGMENTS * 4 + 1
M64 = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def k24(i, k):
    """24 random bits for row i, draw k."""
    return splitmix64((i << 16) | k) >> 40


def u(i, k):
    """Uniform in [0, 1), exactly representable in float32."""
    return np.float32(k24(i, k)) * np.float32(1.0 / (1 << 24))


def paper_rows(n):
    """SegAD-like rows from an integer hash; every float step is one float32 IEEE operation,
    so Go's paperRows gives the same bits. A bad row lifts one segment's statistics; 5% of
    the segments have NaN skew and kurtosis (scipy's near-constant rule)."""
    f = np.float32
    x = np.empty((n, NFEAT), dtype=np.float32)
    y = np.zeros(n, dtype=np.float32)
    for i in range(n):
        bad = k24(i, 0) < 5033165  # 0.3 * 2^24
        hit = (k24(i, 1) * SEGMENTS) >> 24
        mx = f(-1)
        for j in range(SEGMENTS):
            q = u(i, 2 + 8 * j) * f(0.25) + f(0.25)
            sk = u(i, 3 + 8 * j) * f(2)
            ku = u(i, 4 + 8 * j) * f(4)
            mean = u(i, 5 + 8 * j) * f(0.25) + f(0.1)
            if bad and j == hit:
                q = q + (u(i, 6 + 8 * j) * f(0.5) + f(0.25))
                sk = sk + u(i, 7 + 8 * j) * f(2)
                ku = ku * (u(i, 8 + 8 * j) + f(1.5))
            if k24(i, 9 + 8 * j) < 838861:  # 0.05 * 2^24
                sk, ku = f(np.nan), f(np.nan)
            x[i, 4 * j:4 * j + 4] = [q, sk, ku, mean]
            mx = max(mx, q)
        x[i, NFEAT - 1] = mx
        y[i] = 1 if bad else 0
    return x, y


def paper_model(n_rows):
    x, y = paper_rows(n_rows)
    n_bad = float(y.sum())
    n_good = float(len(y) - n_bad)
    # The parameters and order brf/xgboost.Params.pairs() sets, so the Go test's training
    # through the C API builds the same forest.
    params = [
        ("booster", "gbtree"), ("num_parallel_tree", "200"), ("eta", "0.3"), ("max_depth", "5"),
        ("subsample", "0.6"), ("colsample_bytree", "0.6"), ("colsample_bynode", "0.6"),
        ("reg_alpha", "1"), ("objective", "binary:logitraw"), ("tree_method", "hist"),
        ("seed", "0"), ("verbosity", "0"), ("scale_pos_weight", "%g" % (n_good / n_bad)),
        ("nthread", "1"),
    ]
    return xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=10)


def pick_rows(rows):
    """Rows with NaN, clean rows, threshold rows (brf.py puts 10 after the 40 held-out
    rows) and the all-NaN row (last)."""
    n = len(rows)
    nan = [i for i in range(40) if np.isnan(rows[i]).any()][:8]
    clean = [i for i in range(40) if not np.isnan(rows[i]).any()][:6]
    edge = list(range(40, 45))
    return nan + clean + edge + [n - 1]


def f32(v):
    """A float32 as the shortest decimal that reads back to the same float32."""
    return float(repr(np.float32(v)))


def contribs(booster, d):
    exact = booster.predict(d, pred_contribs=True)
    approx = booster.predict(d, pred_contribs=True, approx_contribs=True)
    return ([[f32(v) for v in r] for r in exact], [[f32(v) for v in r] for r in approx])


def main():
    with open(os.path.join(TESTDATA, "golden_rows.json")) as f:
        g = json.load(f)
    rows = np.array([[np.nan if v is None else v for v in r] for r in g["rows"]], dtype=np.float32)
    idx = pick_rows(rows)
    d = xgb.DMatrix(rows[idx], missing=np.nan)
    out = {"xgboost_version": xgb.__version__, "row_indices": idx, "models": {}}
    for name in MODELS:
        b = xgb.Booster(model_file=os.path.join(TESTDATA, name))
        exact, approx = contribs(b, d)
        out["models"][name] = {"exact": exact, "approx": approx}

    n_rows = 600
    b = paper_model(n_rows)
    exact, approx = contribs(b, d)
    out["paper"] = {
        "train_rows": n_rows,
        "num_trees": len(b.get_dump()),
        "margins": [f32(v) for v in b.predict(d, output_margin=True)],
        "exact": exact,
        "approx": approx,
    }
    path = os.path.join(TESTDATA, "explain_golden.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, file=sys.stderr)


if __name__ == "__main__":
    main()
