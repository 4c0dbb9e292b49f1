// Package infer runs SegAD's pixel-wise anomaly detectors (and the optional
// supervised classifier) as ONNX models on ONNX Runtime through
// github.com/yalue/onnxruntime_go.
//
// A frame arrives as an 8-bit BGR Image already resized by capture to the
// model's input size. The detector converts it into its preallocated input
// tensor in one table-driven pass (FillNCHW), runs the session it created
// once at Open, and post-processes the map in place: bilinear upsampling to
// 256x256 (half-pixel centres), optional Gaussian blur, optional affine
// (EfficientAD quantile) normalisation. A Set runs K detectors and the
// classifier concurrently on persistent workers without per-frame
// allocation.
//
// Init must be called once per process with the ONNX Runtime library path.
// Execution providers (tensorrt, cuda, cpu) are tried in configured order
// and the log says which one runs. The package imports no other project
// package and no OpenCV: the daemon joins the stages.
package infer
