#!/usr/bin/env python3
"""Golden fixture for fit's training parity test (fit/parity_test.go).

Makes a small seeded feature matrix shaped like SegAD rows (29 columns:
7 segments x 4 statistics + 1 map maximum, with NaN skew/kurtosis where a
segment is flat), trains python3-xgboost 1.7.4 with the paper's BRF
parameters, and writes the rows and the Python model's held-out scores and
AUROC. The Go test trains with libxgboost through brf/xgboost on the same
rows and parameters and must land within 0.5 AUROC points.

Run with Debian's python (numpy, xgboost): /usr/bin/python3 fit_parity.py OUTDIR
"""
import json
import os
import sys

import numpy as np
import xgboost as xgb

out = sys.argv[1] if len(sys.argv) > 1 else "fit/testdata"
rng = np.random.default_rng(20240611)
n_train, n_test, cols = 300, 200, 29


def rows(n):
    y = (rng.random(n) < 0.3).astype(np.float32)
    x = np.round(rng.normal(size=(n, cols)), 4).astype(np.float32)
    # Defects raise q995 and mean of one random segment and the map max.
    for i in np.where(y == 1)[0]:
        j = rng.integers(7)
        x[i, 4 * j] += rng.gamma(2.0, 1.2)
        x[i, 4 * j + 3] += rng.gamma(1.5, 0.4)
        x[i, 28] += rng.gamma(2.0, 0.7)
    # Flat segments: NaN skew and kurtosis (XGBoost's missing values).
    flat = rng.random((n, 7)) < 0.05
    for j in range(7):
        x[flat[:, j], 4 * j + 1] = np.nan
        x[flat[:, j], 4 * j + 2] = np.nan
    return x, y


xtr, ytr = rows(n_train)
xte, yte = rows(n_test)
params = {
    "booster": "gbtree", "num_parallel_tree": 200, "eta": 0.3, "max_depth": 5,
    "subsample": 0.6, "colsample_bytree": 0.6, "colsample_bynode": 0.6,
    "reg_alpha": 1.0, "objective": "binary:logitraw", "tree_method": "hist",
    "scale_pos_weight": float((ytr == 0).sum() / (ytr == 1).sum()), "seed": 7,
    "verbosity": 0,
}
rounds = 10
bst = xgb.train(params, xgb.DMatrix(xtr, label=ytr, missing=np.nan), num_boost_round=rounds)
scores = bst.predict(xgb.DMatrix(xte, missing=np.nan), output_margin=True)


def auroc(s, y):  # sklearn roc_auc_score semantics: mid-ranks for ties
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ss = s[order]
    i = 0
    while i < len(ss):
        j = i
        while j < len(ss) and ss[j] == ss[i]:
            j += 1
        ranks[order[i:j]] = (i + j + 1) / 2.0
        i = j
    nb = (y == 1).sum()
    ng = len(y) - nb
    return float((ranks[y == 1].sum() - nb * (nb + 1) / 2) / (nb * ng))


os.makedirs(out, exist_ok=True)


def dump(x):
    return [[None if np.isnan(v) else round(float(v), 5) for v in r] for r in x]


with open(os.path.join(out, "parity_rows.json"), "w") as f:
    json.dump({"cols": cols, "train": dump(xtr), "train_labels": ytr.tolist(),
               "test": dump(xte), "test_labels": yte.tolist()}, f)
with open(os.path.join(out, "parity_golden.json"), "w") as f:
    json.dump({"xgboost_version": xgb.__version__, "params": params, "rounds": rounds,
               "test_scores": [float(v) for v in scores], "auroc": auroc(scores, yte)}, f, indent=1)
print("fit parity: python auroc %.4f on %d held-out rows" % (auroc(scores, yte), n_test))
