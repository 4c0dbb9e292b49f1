#!/usr/bin/python3
"""Golden fixtures for brf/: XGBoost models and the margins XGBoost itself predicts.

Run with Debian's python3 (numpy, xgboost 1.7.4 from apt), from the repository root:

    /usr/bin/python3 scripts/golden/brf.py

It writes brf/testdata/:
  xgb_logitraw.json   the paper's BRF recipe (binary:logitraw, hist, subsample/colsample 0.6,
                      reg_alpha 1) scaled down to 20 parallel trees x 10 rounds to keep the
                      committed file small; 29 features like SegAD's (7 segments x 4 stats + max)
  xgb_logistic.json   binary:logistic with base_score 0.3 (margin = logit(base_score) + leaves)
  xgb_dart.json       a small dart booster (leaf values scaled by weight_drop at prediction)
  xgb_binary.model    the same tiny model in XGBoost 1.x's binary format ("binf" header)
  xgb_model.ubj       and as Universal Binary JSON; both must be refused with "re-save as JSON"
  golden_rows.json    held-out rows (NaN written as null) and xgboost's output_margin per model

Everything is seeded: rerunning gives the same files with the same xgboost version.
"""
import json
import os
import sys

import numpy as np
import xgboost as xgb

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "brf", "testdata")
SEGMENTS, STATS = 7, 4
NFEAT = SEGMENTS * STATS + 1


def synthetic_rows(rng, n, bad_share):
    """Feature rows shaped like SegAD's: per segment q995, skew, kurtosis, mean; then max."""
    bad = rng.random(n) < bad_share
    x = np.empty((n, NFEAT), dtype=np.float32)
    for j in range(SEGMENTS):
        base = 0.2 + 0.05 * j
        mean = rng.normal(base, 0.03, n)
        q995 = mean + np.abs(rng.normal(0.15, 0.05, n))
        skew = rng.normal(1.0, 0.5, n)
        kurt = rng.gamma(2.0, 1.5, n)
        # a defect lifts the tail of one random segment
        hit = bad & (rng.integers(0, SEGMENTS, n) == j)
        q995 = np.where(hit, q995 + rng.uniform(0.1, 0.6, n), q995)
        skew = np.where(hit, skew + rng.uniform(0.5, 3.0, n), skew)
        kurt = np.where(hit, kurt * rng.uniform(1.5, 5.0, n), kurt)
        x[:, 4 * j + 0] = q995
        x[:, 4 * j + 1] = skew
        x[:, 4 * j + 2] = kurt
        x[:, 4 * j + 3] = mean
    x[:, NFEAT - 1] = x[:, 0:SEGMENTS * STATS:4].max(axis=1) + rng.normal(0, 0.01, n)
    # near-constant segments give NaN skew/kurtosis (scipy's rule); XGBoost treats NaN as missing
    for j in range(SEGMENTS):
        nan = rng.random(n) < 0.05
        x[nan, 4 * j + 1] = np.nan
        x[nan, 4 * j + 2] = np.nan
    return x, bad.astype(np.float32)


def paper_params(n_good, n_bad, parallel, seed=0):
    return {
        "booster": "gbtree",
        "objective": "binary:logitraw",
        "tree_method": "hist",
        "num_parallel_tree": parallel,
        "learning_rate": 0.3,
        "max_depth": 5,
        "subsample": 0.6,
        "colsample_bytree": 0.6,
        "colsample_bynode": 0.6,
        "reg_alpha": 1.0,
        "scale_pos_weight": n_good / n_bad,
        "seed": seed,
        "nthread": 1,
    }


def threshold_rows(booster, rng, like, n):
    """Rows whose values sit exactly on split thresholds: they catch < versus <= and float64
    comparisons (XGBoost compares in float32)."""
    trees = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    rows = like[:n].copy()
    for r in range(n):
        t = trees[rng.integers(0, len(trees))]
        for node, left in enumerate(t["left_children"]):
            if left != -1:
                rows[r, t["split_indices"][node]] = np.float32(t["split_conditions"][node])
    return rows


def main():
    rng = np.random.default_rng(20240601)
    os.makedirs(OUT, exist_ok=True)
    x_train, y_train = synthetic_rows(rng, 600, 0.3)
    x_test, _ = synthetic_rows(rng, 40, 0.3)
    n_bad = float(y_train.sum())
    n_good = float(len(y_train) - n_bad)
    dtrain = xgb.DMatrix(x_train, label=y_train, missing=np.nan)

    models = {}
    models["xgb_logitraw.json"] = xgb.train(paper_params(n_good, n_bad, 20), dtrain, num_boost_round=10)
    p = paper_params(n_good, n_bad, 5)
    p.update(objective="binary:logistic", base_score=0.3, max_depth=4)
    models["xgb_logistic.json"] = xgb.train(p, dtrain, num_boost_round=4)
    p = paper_params(n_good, n_bad, 1)
    p.update(booster="dart", rate_drop=0.3, skip_drop=0.0, normalize_type="forest", max_depth=3)
    models["xgb_dart.json"] = xgb.train(p, dtrain, num_boost_round=8)

    edge = threshold_rows(models["xgb_logitraw.json"], rng, x_test, 10)
    all_nan = np.full((1, NFEAT), np.nan, dtype=np.float32)
    rows = np.vstack([x_test, edge, all_nan]).astype(np.float32)
    dtest = xgb.DMatrix(rows, missing=np.nan)

    golden = {
        "xgboost_version": xgb.__version__,
        "num_features": NFEAT,
        "rows": [[None if np.isnan(v) else float(v) for v in row] for row in rows],
        "margins": {},
    }
    for name, booster in models.items():
        booster.save_model(os.path.join(OUT, name))
        golden["margins"][name] = [float(v) for v in booster.predict(dtest, output_margin=True)]

    tiny = xgb.train({"max_depth": 2, "objective": "binary:logitraw", "nthread": 1, "seed": 0},
                     xgb.DMatrix(x_train[:100, :5], label=y_train[:100]), num_boost_round=2)
    tiny.save_model(os.path.join(OUT, "xgb_binary.model"))  # non-.json/.ubj name: binary format
    tiny.save_model(os.path.join(OUT, "xgb_model.ubj"))

    with open(os.path.join(OUT, "golden_rows.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
