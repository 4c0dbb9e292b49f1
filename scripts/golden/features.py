#!/usr/bin/python3
"""Golden fixtures for segad's feature extractor (segad/testdata/golden/).

Computes SegAD's per-segment features exactly as the reference code does
(github.com/abc-125/segad, SegAD.get_features_from_part): for each segment j,
selection = anomaly_map[mask == j]; np.quantile(selection, 0.995),
scipy.stats.skew(selection), scipy.stats.kurtosis(selection),
selection.mean(), all four 0.0 for an empty selection; order segment-major,
then detector; then np.max(anomaly_map) per detector; then the optional extra
score. Maps are float32, as the reference loads them.

Regenerate (Debian's python3 has numpy and scipy; a pyenv python3 may not):
    /usr/bin/python3 scripts/golden/features.py
or `make golden`, which runs every script listed in scripts/golden/generate.sh.
The output is deterministic (fixed seeds); commit the changed files.
"""
import json
import os
import sys

import warnings

import numpy as np
import scipy
from scipy.stats import kurtosis, skew

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "segad", "testdata", "golden")


def reference_features(mask, maps, num_segments, extra=None):
    """The reference code's feature row, as Python floats (NaN kept)."""
    row = []
    for j in range(num_segments):
        for amap in maps:
            sel = amap[mask == j]
            if len(sel):
                row += [float(np.quantile(sel, 0.995)), float(skew(sel)),
                        float(kurtosis(sel)), float(sel.mean())]
            else:
                row += [0.0, 0.0, 0.0, 0.0]
    for amap in maps:
        row.append(float(np.max(amap)))
    if extra is not None:
        row.append(float(np.float32(extra)))
    return row


def disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= r * r


def case_random(rng):
    """64x64, 4 blocky segments, some ignored pixels, two detectors."""
    h = w = 64
    mask = np.repeat(np.repeat(rng.integers(0, 4, (8, 8)), 8, 0), 8, 1).astype(np.uint8)
    mask[rng.random((h, w)) < 0.05] = 255
    maps = [rng.gamma(2.0, 0.5, (h, w)).astype(np.float32),
            rng.normal(0.0, 1.0, (h, w)).astype(np.float32)]
    return mask, maps, ["seg_a", "seg_b", "seg_c", "seg_d"], ["padim", "patchcore"], None


def case_adversarial(rng):
    """64x64, one detector: every edge case of the statistics in one mask."""
    h = w = 64
    names = ["constant", "empty", "ties", "heavy_tail", "one_pixel",
             "near_constant", "zeros", "normal", "two_pixels"]
    mask = np.full((h, w), 255, np.uint8)
    amap = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    mask[0:8, :] = 0
    amap[0:8, :] = 0.5                                    # constant: skew/kurt NaN
    # segment 1 ("empty") gets no pixels: all four features 0.0
    mask[8:16, :] = 2
    amap[8:16, :] = rng.integers(0, 3, (8, w)).astype(np.float32)  # ties
    mask[16:32, :] = 3
    amap[16:32, :] = (rng.pareto(1.5, (16, w)) * 0.1).astype(np.float32)  # heavy tail, finite
    mask[32, 5] = 4
    amap[32, 5] = 3.25                                     # n = 1
    mask[33:41, :] = 5
    amap[33:41, :] = (100.0 + rng.normal(0, 1e-5, (8, w))).astype(np.float32)  # scipy NaN rule
    mask[41:45, :] = 6
    amap[41:45, :] = 0.0                                   # constant zero: mean 0, NaN rule
    mask[45:60, :] = 7
    amap[45:60, :] = rng.normal(2.0, 0.7, (15, w)).astype(np.float32)
    mask[60, 0:2] = 8
    amap[60, 0:2] = [1.0, 2.0]                             # n = 2, interpolation to the top
    amap[63, 63] = 500.0                                   # global max in an ignored pixel
    return mask, [amap], names, ["efficientad"], 0.625


def case_vad(rng):
    """256x256 VAD-like mask (7 segments), one detector with blobs and noise."""
    h = w = 256
    mask = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    half = disc(h, w, 128, 128, 110) & (yy < 128)
    mask[half] = 1
    mask[disc(h, w, 128, 128, 80)] = 2
    mask[disc(h, w, 128, 128, 70)] = 6
    mask[disc(h, w, 150, 100, 9) | disc(h, w, 150, 156, 9)] = 3
    mask[(np.abs(xx - 100) < 3) & (yy > 158) & (yy < 230)] = 4
    mask[(np.abs(xx - 156) < 3) & (yy > 158) & (yy < 230)] = 4
    mask[(yy >= 230) & (yy < 250) & ((np.abs(xx - 100) < 8) | (np.abs(xx - 156) < 8))] = 5
    amap = rng.gamma(1.5, 0.2, (h, w))
    for _ in range(3):
        cy, cx, s = rng.uniform(40, 216), rng.uniform(40, 216), rng.uniform(4, 12)
        amap += 3.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    names = ["background", "outer_half_circle", "piezo_border", "solder_dots",
             "wires", "pins", "piezo_middle"]
    return mask, [amap.astype(np.float32)], names, ["efficientad"], None


def main():
    # scipy warns on the near-constant cases on purpose: they test its NaN rule.
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240607)
    cases = []
    for name, fn in [("random64", case_random), ("adversarial64", case_adversarial), ("vad256", case_vad)]:
        mask, maps, segs, dets, extra = fn(rng)
        np.save(os.path.join(OUT, f"{name}.mask.npy"), mask)
        for d, m in zip(dets, maps):
            np.save(os.path.join(OUT, f"{name}.{d}.npy"), m)
        feats = reference_features(mask, maps, len(segs), extra)
        cases.append({
            "name": name,
            "mask": f"{name}.mask.npy",
            "segments": segs,
            "detectors": dets,
            "maps": [f"{name}.{d}.npy" for d in dets],
            "extra": extra,
            # NaN is written as null: JSON has no NaN.
            "features": [None if np.isnan(v) else v for v in feats],
        })
    doc = {
        "generator": "scripts/golden/features.py",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cases": cases,
    }
    with open(os.path.join(OUT, "features.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"features.py: wrote {len(cases)} cases to {os.path.relpath(OUT, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
