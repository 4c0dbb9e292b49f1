#!/usr/bin/env python3
"""Generates the ONNX detector fixtures of package infer and their reference outputs.

Run with Debian's python3 (python3-onnx 1.12, python3-numpy):

    /usr/bin/python3 scripts/golden/onnx_fixtures.py [outdir]

outdir defaults to infer/testdata beside this script's repository. Every model is
built with onnx.helper; every expected output is computed here in numpy from the
same uint8 BGR input image, independently of ONNX Runtime and of the Go code, so
the Go tests compare two separate implementations:

  image.npy            uint8 [256,256,3] BGR test image (OpenCV layout)
  meanstd_blur.onnx    per-pixel mean/std difference, 7x7 Gaussian conv inside the graph
  meanstd_blur.npy     expected 256x256 map
  small_map.onnx       64x64 map named "output" (anomalib 1.x style)
  small_map_post.npy   expected map after Go post-processing: bilinear upsample to 256
                       (half-pixel centres), Gaussian blur sigma 2, quantile norm qa=0.2 qb=0.9
  two_output.onnx      outputs pred_score [1] then anomaly_map [1,1,256,256] (anomalib 2.x order)
  two_output_map.npy / two_output_score.npy
  classifier.onnx      one logit [1,1]; classifier_logit.npy
  clamped.onnx         map clipped to [0,1] (anomalib 2.x post-processor left on)
  nan_map.onnx         Log of a value that is negative for dark pixels: NaN in the map
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
RNG = np.random.default_rng(20240611)


def save_model(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="segad-edge onnx_fixtures.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_image():
    """A deterministic 256x256 BGR image: gradients, a bright defect patch, noise."""
    h = w = 256
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    b = 60 + 120 * xx / (w - 1)
    g = 40 + 150 * yy / (h - 1)
    r = 128 + 90 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    img = np.stack([b, g, r], axis=-1)
    img[100:140, 150:200, :] = [30, 240, 250]   # a "defect"
    img += RNG.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def to_nchw_rgb(img):
    """Reference preprocessing: BGR uint8 -> RGB float32 NCHW scaled by 1/255."""
    x = img[:, :, ::-1].astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def gauss1d(sigma, radius):
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


def conv2d_zero(m, k2):
    """2-D correlation with zero padding, same size (ONNX Conv semantics)."""
    r = k2.shape[0] // 2
    p = np.pad(m.astype(np.float64), r)
    out = np.zeros(m.shape, np.float64)
    for dy in range(k2.shape[0]):
        for dx in range(k2.shape[1]):
            out += k2[dy, dx] * p[dy:dy + m.shape[0], dx:dx + m.shape[1]]
    return out


def bilinear_half_pixel(m, oh, ow):
    """Bilinear resize with half-pixel centres: cv2.resize INTER_LINEAR and
    torch interpolate(mode="bilinear", align_corners=False) (no antialias).
    src = (dst + 0.5) * in/out - 0.5, clamped to the edge."""
    ih, iw = m.shape
    def coords(o, i):
        s = (np.arange(o, dtype=np.float64) + 0.5) * (i / o) - 0.5
        s = np.clip(s, 0, i - 1)
        i0 = np.floor(s).astype(np.int64)
        i1 = np.minimum(i0 + 1, i - 1)
        return i0, i1, s - i0
    y0, y1, fy = coords(oh, ih)
    x0, x1, fx = coords(ow, iw)
    m = m.astype(np.float64)
    top = m[y0][:, x0] * (1 - fx) + m[y0][:, x1] * fx
    bot = m[y1][:, x0] * (1 - fx) + m[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bot * fy[:, None]


def gaussian_blur_reflect101(m, sigma):
    """cv2.GaussianBlur(m, (0, 0), sigma) for float32 maps: ksize = round(8*sigma+1)|1,
    separable, BORDER_REFLECT_101."""
    ksize = int(np.floor(sigma * 8 + 1 + 0.5)) | 1
    r = ksize // 2
    k = gauss1d(sigma, r)
    m = m.astype(np.float64)
    p = np.pad(m, ((0, 0), (r, r)), mode="reflect")
    t = sum(k[i] * p[:, i:i + m.shape[1]] for i in range(ksize))
    p = np.pad(t, ((r, r), (0, 0)), mode="reflect")
    return sum(k[i] * p[i:i + m.shape[0], :] for i in range(ksize))


def img_input(name="input", batch="N", size=256):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, 3, size, size])


def meanstd_blur(out, img):
    mu = np.array([0.45, 0.5, 0.55], np.float32).reshape(1, 3, 1, 1)
    sd = np.array([0.2, 0.25, 0.3], np.float32).reshape(1, 3, 1, 1)
    k = np.outer(gauss1d(1.5, 3), gauss1d(1.5, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Sub", ["input", "mu"], ["c"]),
        helper.make_node("Div", ["c", "sd"], ["z"]),
        helper.make_node("Mul", ["z", "z"], ["z2"]),
        helper.make_node("ReduceMean", ["z2"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Conv", ["m", "k"], ["anomaly_map"], pads=[3, 3, 3, 3]),
    ]
    inits = [numpy_helper.from_array(mu, "mu"), numpy_helper.from_array(sd, "sd"),
             numpy_helper.from_array(k.reshape(1, 1, 7, 7), "k")]
    g = helper.make_graph(nodes, "meanstd_blur", [img_input()],
                          [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 1, 256, 256])],
                          inits)
    save_model(g, os.path.join(out, "meanstd_blur.onnx"))
    x = to_nchw_rgb(img).astype(np.float64)
    z = (x - mu) / sd
    m = (z * z).mean(axis=1)[0]
    np.save(os.path.join(out, "meanstd_blur.npy"), conv2d_zero(m, k.astype(np.float64)).astype(np.float32))


def small_map(out, img):
    nodes = [
        helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("ReduceMean", ["p"], ["g"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["g", "half"], ["d"]),
        helper.make_node("Abs", ["d"], ["a"]),
        helper.make_node("Mul", ["a", "four"], ["output"]),
    ]
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(np.array(4.0, np.float32), "four")]
    g = helper.make_graph(nodes, "small_map", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 256, 256])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 64, 64])], inits)
    save_model(g, os.path.join(out, "small_map.onnx"))
    x = to_nchw_rgb(img)[0].astype(np.float64)
    p = x.reshape(3, 64, 4, 64, 4).mean(axis=(2, 4))
    m = np.abs(p.mean(axis=0) - 0.5) * 4
    up = bilinear_half_pixel(m, 256, 256)
    bl = gaussian_blur_reflect101(up, 2.0)
    qa, qb = 0.2, 0.9
    np.save(os.path.join(out, "small_map_post.npy"), np.ascontiguousarray(0.1 * (bl - qa) / (qb - qa), dtype=np.float32))
    np.save(os.path.join(out, "small_map_raw.npy"), m.astype(np.float32))


def two_output(out, img):
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["g"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["g", "g"], ["anomaly_map"]),
        helper.make_node("ReduceMax", ["anomaly_map"], ["mx"], keepdims=0),
        helper.make_node("Reshape", ["mx", "shape1"], ["pred_score"]),
    ]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "shape1")]
    g = helper.make_graph(nodes, "two_output", [img_input(batch=1)],
                          [helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, [1]),
                           helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, 256, 256])], inits)
    save_model(g, os.path.join(out, "two_output.onnx"))
    x = to_nchw_rgb(img)[0].astype(np.float64)
    m = x.mean(axis=0) ** 2
    np.save(os.path.join(out, "two_output_map.npy"), m.astype(np.float32))
    np.save(os.path.join(out, "two_output_score.npy"), np.array([m.max()], np.float32))


def classifier(out, img):
    w = np.array([[2.0], [-1.5], [0.5]], np.float32)
    b = np.array([0.25], np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w", "b"], ["logit"]),
    ]
    g = helper.make_graph(nodes, "classifier", [img_input(batch=1)],
                          [helper.make_tensor_value_info("logit", TensorProto.FLOAT, [1, 1])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    save_model(g, os.path.join(out, "classifier.onnx"))
    x = to_nchw_rgb(img)[0].astype(np.float64)
    f = x.mean(axis=(1, 2))
    np.save(os.path.join(out, "classifier_logit.npy"), np.array([f @ w[:, 0] + b[0]], np.float32))


def clamped(out):
    # (mean_c(x) - 0.3) * 10 clipped to [0,1]: a mid-gray warm-up frame saturates at 1,
    # like anomalib 2.x's min-max normalisation + clamp.
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["g"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["g", "c"], ["d"]),
        helper.make_node("Mul", ["d", "ten"], ["s"]),
        helper.make_node("Clip", ["s", "lo", "hi"], ["anomaly_map"]),
    ]
    inits = [numpy_helper.from_array(np.array(v, np.float32), n)
             for n, v in [("c", 0.3), ("ten", 10.0), ("lo", 0.0), ("hi", 1.0)]]
    g = helper.make_graph(nodes, "clamped", [img_input(batch=1)],
                          [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, 256, 256])], inits)
    save_model(g, os.path.join(out, "clamped.onnx"))


def nan_map(out):
    # Log(mean_c(x) - 0.5): NaN wherever the pixel is darker than mid-gray.
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["g"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["g", "c"], ["d"]),
        helper.make_node("Log", ["d"], ["anomaly_map"]),
    ]
    g = helper.make_graph(nodes, "nan_map", [img_input(batch=1)],
                          [helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, 256, 256])],
                          [numpy_helper.from_array(np.array(0.5, np.float32), "c")])
    save_model(g, os.path.join(out, "nan_map.onnx"))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "infer", "testdata")
    os.makedirs(out, exist_ok=True)
    img = test_image()
    np.save(os.path.join(out, "image.npy"), img)
    meanstd_blur(out, img)
    small_map(out, img)
    two_output(out, img)
    classifier(out, img)
    clamped(out)
    nan_map(out)
    print("wrote fixtures to", os.path.normpath(out))


if __name__ == "__main__":
    main()
