#!/usr/bin/env python3
"""Golden fixtures of package detector, computed with numpy/scipy (Debian's python3).

    /usr/bin/python3 scripts/golden/detector.py [outdir]   # default detector/testdata

Writes detector_golden.json with three independent references for the Go code:
  auroc:  random scores with many ties and labels; AUROC = Mann-Whitney U / (n1*n0)
          from scipy.stats.mannwhitneyu (ties count half, as sklearn's roc_auc_score).
  robust: a uint8 stack [n, p] (n images, p values, even and odd n); numpy median and
          the spread max(1.4826 * median(|x - median|), floor) in [0,1] units.
  blur:   a random 24x20 map blurred with scipy.ndimage.gaussian_filter (sigma 2,
          truncate 4 -> radius int(4*sigma+0.5), mode "mirror" = reflect without
          repeating the edge, which is ONNX Pad "reflect" and kornia "reflect").
"""
import json
import os
import sys

import numpy as np
from scipy import ndimage, stats


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "detector", "testdata")
    rng = np.random.default_rng(5)
    cases = []
    for n, levels in [(30, 5), (57, 1000), (12, 2)]:
        scores = rng.integers(0, levels, n).astype(float) / levels
        labels = rng.random(n) < 0.4
        labels[0], labels[1] = True, False
        u = stats.mannwhitneyu(scores[labels], scores[~labels], alternative="two-sided").statistic
        cases.append({"scores": scores.tolist(), "bad": labels.tolist(),
                      "auroc": float(u) / (labels.sum() * (~labels).sum())})
    robust = []
    for n in (9, 10):
        stack = rng.integers(0, 256, (n, 64)).astype(np.uint8)
        stack[:, :8] = 17  # constant pixels: MAD 0, spread hits the floor
        stack[:, 8:16] = rng.integers(100, 103, (n, 8))  # ties and half-integer medians
        x = stack.astype(np.float64)
        med = np.median(x, axis=0)
        mad = np.median(np.abs(x - med), axis=0)
        floor = 0.02
        robust.append({"stack": stack.tolist(), "min_spread": floor,
                       "median": (med / 255).tolist(),
                       "spread": np.maximum(1.4826 * mad / 255, floor).tolist()})
    m = rng.random((24, 20)).astype(np.float32)
    m[5:9, 3:7] += 4
    blurred = ndimage.gaussian_filter(m.astype(np.float64), sigma=2, mode="mirror", truncate=4.0)
    doc = {"auroc": cases, "robust": robust,
           "blur": {"h": 24, "w": 20, "sigma": 2.0, "map": m.ravel().tolist(), "blurred": blurred.ravel().tolist()}}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "detector_golden.json"), "w") as f:
        json.dump(doc, f)


if __name__ == "__main__":
    main()
