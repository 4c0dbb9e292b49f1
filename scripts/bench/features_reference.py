#!/usr/bin/python3
"""Times the reference SegAD feature code (numpy/scipy) for K=1 detector,
L=7 segments and a 256x256 float32 map: the baseline of segad's
BenchmarkExtract, measured side by side on the same machine.

The timed function is the reference code's per-image work
(github.com/abc-125/segad, SegAD.get_features / get_features_from_part):
for each segment, anomaly_map[mask == j] then np.quantile(.., 0.995),
scipy.stats.skew, scipy.stats.kurtosis and .mean(); plus np.max of the map.
Its pandas row bookkeeping is left out, which only flatters the baseline.

    /usr/bin/python3 scripts/bench/features_reference.py [--repeat 200]
    go test -run '^$' -bench 'Extract$' -cpu 1 -benchmem ./segad

Both use a 256x256 VAD-like 7-segment mask (this script: the golden vad256
fixture; Go: segad.VADTemplate), whose segment sizes are alike.
"""
import argparse
import os
import time
import warnings

import numpy as np
from scipy.stats import kurtosis, skew

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "segad", "testdata", "golden")


def features(mask, amap, num_segments):
    row = []
    for j in range(num_segments):
        sel = amap[mask == j]
        if len(sel):
            row += [np.quantile(sel, 0.995), skew(sel), kurtosis(sel), sel.mean()]
        else:
            row += [0.0, 0.0, 0.0, 0.0]
    row.append(np.max(amap))
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=200, help="timed images")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    mask = np.load(os.path.join(GOLDEN, "vad256.mask.npy"))
    rng = np.random.default_rng(3)
    amap = rng.exponential(1.0, mask.shape).astype(np.float32)
    for _ in range(10):
        features(mask, amap, 7)  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        features(mask, amap, 7)
        times.append(time.perf_counter() - t0)
    times = np.array(times)
    print(f"reference numpy/scipy features, K=1 L=7 256x256: "
          f"median {np.median(times) * 1e6:.0f} us/image, min {times.min() * 1e6:.0f} us "
          f"({args.repeat} images, numpy {np.__version__})")


if __name__ == "__main__":
    main()
