#!/usr/bin/python3
"""Golden fixtures for per-frame segmentation masks (model/testdata/segmodel/).

Builds small ONNX segmentation models with onnx.helper and computes, in numpy,
independently of ONNX Runtime and of the Go code, what each gives on three
synthetic part images, and SegAD's features on two anomaly maps with the
model's own label map as the mask (scripts/golden/features.py's
reference_features: the reference code's formulas, REFERENCE.md section 1).

The models classify every pixel by its colour: a 1x1 convolution scores
label j as -||x - c_j||^2 + ||x||^2 = 2 x.c_j - ||c_j||^2 (x the pixel's RGB
in [0,1], c_j the label's prototype colour), then 2x2 average pooling gives
128x128 scores for a 256x256 input, so the Go side must upsample the labels
with nearest neighbour (OpenCV's rule: source = floor(dst * 128 / 256)).

  part_good.npy / part_nowires.npy / part_big.npy   uint8 [256,256,3] BGR images
  maps.npy                  float32 [2,256,256] anomaly maps (two detectors)
  seg_scores.onnx           class scores float32 [1,4,128,128] (argmax)
  seg_labels.onnx           label map int64 [1,1,128,128] (ArgMax in the graph)
  seg_labels_u8.onnx        label map uint8 [1,1,128,128]
  seg_wrong_classes.onnx    scores [1,5,128,128]: one channel too many (refused)
  seg_rank3.onnx            labels int64 [1,128,128]: rank 3 (refused)
  seg_bool.onnx             labels bool [1,1,128,128]: not numeric (refused)
  seg_nan.onnx              scores that are NaN where the red channel < 0.1 (background)
  segmodel.json             labels per image (areas, at 256x256), the expected
                            label maps' files and the features of part_good

Regenerate with Debian's python3 (numpy, scipy, onnx):
    /usr/bin/python3 scripts/golden/segmodel.py
or `make golden`. Deterministic (fixed seeds); commit the changed files.
"""
import json
import os
import sys
import warnings

import numpy as np
import onnx
import scipy
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from features import reference_features  # noqa: E402  (the same formulas as segad's parity test)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "model", "testdata", "segmodel")
OPSET = 13
SIZE = 256
LABELS = ["background", "rubber", "wires", "solder"]
# Prototype colours (RGB in [0,1]) of the labels, and the BGR bytes the
# images are painted with (close to them, plus noise).
PROTO = np.array([[0.05, 0.05, 0.06], [0.50, 0.50, 0.50], [0.85, 0.15, 0.12], [0.95, 0.93, 0.80]], np.float32)


def save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="segad-edge segmodel.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def score_nodes(n_classes, protos):
    """Conv 1x1 (2c_j, bias -|c_j|^2) then AveragePool 2x2: scores [1,n,128,128]."""
    w = (2 * protos[:n_classes]).reshape(n_classes, 3, 1, 1).astype(np.float32)
    b = -(protos[:n_classes] ** 2).sum(axis=1).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    nodes = [helper.make_node("Conv", ["input", "W", "B"], ["conv"], kernel_shape=[1, 1]),
             helper.make_node("AveragePool", ["conv"], ["scores"], kernel_shape=[2, 2], strides=[2, 2])]
    return nodes, inits


def graph(name, nodes, inits, out_name, out_type, out_shape):
    return helper.make_graph(nodes, name,
                             [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
                             [helper.make_tensor_value_info(out_name, out_type, out_shape)], inits)


def reference_scores(img, protos):
    """numpy, float32 as ONNX Runtime computes it: the same graph by hand."""
    x = img[:, :, ::-1].astype(np.float32) / np.float32(255.0)       # BGR -> RGB, scale 1/255
    w = (2 * protos).astype(np.float32)
    b = -(protos ** 2).sum(axis=1).astype(np.float32)
    conv = np.einsum("hwc,jc->jhw", x, w).astype(np.float32) + b[:, None, None]
    h2 = SIZE // 2
    pooled = conv.reshape(len(protos), h2, 2, h2, 2).mean(axis=(2, 4), dtype=np.float64).astype(np.float32)
    return pooled


def nearest(labels, size):
    """OpenCV INTER_NEAREST / segad.Mask.Resize: source = floor(dst * src / dst_size)."""
    h, w = labels.shape
    ys = np.minimum(np.arange(size) * h // size, h - 1)
    xs = np.minimum(np.arange(size) * w // size, w - 1)
    return labels[ys][:, xs]


def paint(rng, wires=True, disc_r=80):
    """A part: dark background, a gray rubber disc, two red wires, a solder dot."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    lab = np.zeros((SIZE, SIZE), np.uint8)
    lab[(yy - 128) ** 2 + (xx - 128) ** 2 <= disc_r ** 2] = 1
    if wires:
        lab[(np.abs(xx - 100) < 4) & (yy > 60) & (yy < 230)] = 2
        lab[(np.abs(yy - 0.5 * xx - 90) < 3) & (xx > 30) & (xx < 220)] = 2
    lab[(yy - 110) ** 2 + (xx - 160) ** 2 <= 12 ** 2] = 3
    rgb = PROTO[lab] * 255.0 + rng.normal(0, 10, (SIZE, SIZE, 3))
    return np.clip(np.rint(rgb[:, :, ::-1]), 0, 255).astype(np.uint8)   # BGR


def margin(scores):
    s = np.sort(scores, axis=0)
    return float((s[-1] - s[-2]).min())


def main():
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    os.makedirs(OUT, exist_ok=True)
    L = len(LABELS)
    # Argmax parity between numpy and ONNX Runtime needs no near-ties:
    # draw the images until every model pixel's best score leads by 1e-5 (ONNX Runtime and numpy differ by about 1e-7).
    seed = 20261204
    while True:
        rng = np.random.default_rng(seed)
        images = {"part_good": paint(rng), "part_nowires": paint(rng, wires=False), "part_big": paint(rng, disc_r=125)}
        if min(margin(reference_scores(im, PROTO)) for im in images.values()) > 1e-5:
            break
        seed += 1
    maps = np.stack([rng.gamma(2.0, 0.5, (SIZE, SIZE)), rng.normal(0.0, 1.0, (SIZE, SIZE))]).astype(np.float32)
    np.save(os.path.join(OUT, "maps.npy"), maps)

    nodes, inits = score_nodes(L, PROTO)
    h2 = SIZE // 2
    save(graph("seg_scores", nodes, inits, "scores", TensorProto.FLOAT, [1, L, h2, h2]), os.path.join(OUT, "seg_scores.onnx"))
    am = nodes + [helper.make_node("ArgMax", ["scores"], ["labels"], axis=1, keepdims=1)]
    save(graph("seg_labels", am, inits, "labels", TensorProto.INT64, [1, 1, h2, h2]), os.path.join(OUT, "seg_labels.onnx"))
    u8 = am + [helper.make_node("Cast", ["labels"], ["labels_u8"], to=TensorProto.UINT8)]
    save(graph("seg_labels_u8", u8, inits, "labels_u8", TensorProto.UINT8, [1, 1, h2, h2]), os.path.join(OUT, "seg_labels_u8.onnx"))
    protos5 = np.vstack([PROTO, [[0.2, 0.8, 0.2]]]).astype(np.float32)
    n5, i5 = score_nodes(5, protos5)
    save(graph("seg_wrong_classes", n5, i5, "scores", TensorProto.FLOAT, [1, 5, h2, h2]), os.path.join(OUT, "seg_wrong_classes.onnx"))
    r3 = nodes + [helper.make_node("ArgMax", ["scores"], ["labels"], axis=1, keepdims=0)]
    save(graph("seg_rank3", r3, inits, "labels", TensorProto.INT64, [1, h2, h2]), os.path.join(OUT, "seg_rank3.onnx"))
    bo = am + [helper.make_node("Cast", ["labels"], ["mask"], to=TensorProto.BOOL)]
    save(graph("seg_bool", bo, inits, "mask", TensorProto.BOOL, [1, 1, h2, h2]), os.path.join(OUT, "seg_bool.onnx"))
    # NaN where red < 0.1: sqrt(R - 0.1) * 0 added to every score.
    nan_inits = inits + [numpy_helper.from_array(np.array([0.1], np.float32), "T"),
                         numpy_helper.from_array(np.array([0.0], np.float32), "Z"),
                         numpy_helper.from_array(np.array([0], np.int64), "I0"),
                         numpy_helper.from_array(np.array([1], np.int64), "I1")]
    nn = [nodes[0],
          helper.make_node("Slice", ["input", "I0", "I1", "I1"], ["red"]),   # channel 0 = R
          helper.make_node("Sub", ["red", "T"], ["rt"]),
          helper.make_node("Sqrt", ["rt"], ["sq"]),
          helper.make_node("Mul", ["sq", "Z"], ["zero_or_nan"]),
          helper.make_node("Add", ["conv", "zero_or_nan"], ["conv_nan"]),
          helper.make_node("AveragePool", ["conv_nan"], ["scores"], kernel_shape=[2, 2], strides=[2, 2])]
    save(graph("seg_nan", nn, nan_inits, "scores", TensorProto.FLOAT, [1, L, h2, h2]), os.path.join(OUT, "seg_nan.onnx"))

    cases = {}
    for name, img in images.items():
        np.save(os.path.join(OUT, f"{name}.npy"), img)
        lab = nearest(np.argmax(reference_scores(img, PROTO), axis=0).astype(np.uint8), SIZE)
        np.save(os.path.join(OUT, f"{name}.labels.npy"), lab)
        counts = np.bincount(lab.ravel(), minlength=L)
        cases[name] = {"image": f"{name}.npy", "labels": f"{name}.labels.npy",
                       "area": {LABELS[j]: float(counts[j]) / lab.size for j in range(L)}}
    good = np.load(os.path.join(OUT, "part_good.labels.npy"))
    feats = reference_features(good, list(maps), L)
    doc = {
        "generator": "scripts/golden/segmodel.py",
        "numpy": np.__version__, "scipy": scipy.__version__, "onnx": onnx.__version__,
        "labels": LABELS, "detectors": ["d0", "d1"], "maps": "maps.npy", "seed": seed,
        "cases": cases,
        # Features of part_good's own label map; NaN is written as null.
        "features": [None if np.isnan(v) else v for v in feats],
    }
    with open(os.path.join(OUT, "segmodel.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"segmodel.py: wrote {len(cases)} images and 7 models to {os.path.relpath(OUT, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
