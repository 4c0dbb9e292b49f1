// Package brf scores SegAD feature rows with a boosted random forest (BRF).
//
// XGBoost JSON models (what XGBoost >= 1.0 writes with save_model("m.json")) are
// evaluated natively in Go from flat arrays, so the daemon needs no libxgboost at
// run time; LightGBM text models are served through github.com/dmitryikh/leaves
// after this package has validated them. XGBoost's binary formats are recognised
// by their header and refused with a request to re-save the model as JSON.
//
// The score SegAD uses is the raw margin (a logit): base margin + sum of leaves.
package brf

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
)

// Model scores one feature row. Implementations are immutable after loading, so
// Margin may be called from many goroutines at once.
type Model interface {
	// NumFeatures is the row length the model was trained on; rows must be at
	// least this long. Compare it with the configured features with CheckFeatures.
	NumFeatures() int
	// NumTrees is the number of trees evaluated per row (all parallel trees of
	// all rounds).
	NumTrees() int
	// Margin returns the raw score (logit) of row: base margin plus the sum of
	// the leaves reached. NaN features are missing values and follow each
	// split's default branch. A row shorter than NumFeatures yields NaN, never
	// a panic, so a caller's verdict fails closed.
	Margin(row []float32) float64
	// Kind names the model format and objective, for logs and reports,
	// e.g. "xgboost-json gbtree binary:logitraw".
	Kind() string
}

// maxModelBytes bounds what Load reads: the paper's 2000-tree model is about
// 4 MB of JSON, so 1 GiB means a wrong file, not a model.
const maxModelBytes = 1 << 30

// ErrXGBoostBinary is wrapped by the error for XGBoost's binary and UBJSON model
// formats, which are not read: re-save the model as JSON.
var ErrXGBoostBinary = errors.New("XGBoost binary model format is not supported; re-save it as JSON: booster.save_model(\"model.json\") in Python, or xgb.save(booster, \"model.json\") in R")

// Load reads a model file and detects its format from its content (not its
// name): XGBoost JSON or LightGBM text.
func Load(path string) (Model, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load BRF model: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("load BRF model %s: is a directory, want a model file", path)
	}
	if fi.Size() > maxModelBytes {
		return nil, fmt.Errorf("load BRF model %s: %d bytes is larger than any supported model (limit %d)", path, fi.Size(), maxModelBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load BRF model: %w", err)
	}
	m, err := LoadBytes(data)
	if err != nil {
		return nil, fmt.Errorf("load BRF model %s: %w", path, err)
	}
	return m, nil
}

// LoadBytes parses a model held in memory; see Load for the formats.
func LoadBytes(data []byte) (Model, error) {
	switch detect(data) {
	case formatXGBJSON:
		return loadXGBoostJSON(data)
	case formatLightGBM:
		return loadLightGBM(data)
	case formatXGBBinary:
		return nil, fmt.Errorf("%w (found a \"binf\"/\"bs64\" header)", ErrXGBoostBinary)
	case formatUBJSON:
		return nil, fmt.Errorf("%w (found Universal Binary JSON)", ErrXGBoostBinary)
	case formatEmpty:
		return nil, errors.New("model file is empty")
	}
	if looksONNX(data) {
		return nil, errors.New("this is an ONNX model (a detector?), not a boosted random forest: segad.model wants the XGBoost JSON (or LightGBM text) model, e.g. model.json from a segad fit bundle")
	}
	if !isText(data) {
		return nil, fmt.Errorf("unrecognised binary model format (want XGBoost JSON or LightGBM text); %w", ErrXGBoostBinary)
	}
	return nil, errors.New("unrecognised model format: want XGBoost JSON (save_model(\"model.json\")) or a LightGBM text model (save_model(\"model.txt\"))")
}

// CheckFeatures returns an error unless model m was trained on exactly n
// features, the row length the configured detectors and segments produce.
// A mismatch usually means the model belongs to another mask or detector set,
// and scoring with it would silently read the wrong columns.
func CheckFeatures(m Model, n int) error {
	if m == nil {
		return errors.New("check BRF features: no model")
	}
	if got := m.NumFeatures(); got != n {
		return fmt.Errorf("BRF model (%s) expects %d features but the configuration produces %d (segments x detectors x 4 statistics + one max per detector + extra scores); retrain the model or fix the configured mask/detectors", m.Kind(), got, n)
	}
	return nil
}

// Sigmoid turns a margin into a probability, for binary:logistic users who
// want one; SegAD itself thresholds the margin.
func Sigmoid(margin float64) float64 {
	return 1 / (1 + math.Exp(-margin))
}

type format int

const (
	formatUnknown format = iota
	formatEmpty
	formatXGBJSON
	formatUBJSON
	formatXGBBinary
	formatLightGBM
)

// detect looks only at the first bytes, because leaves must never see an
// XGBoost binary file (it dies with an unrecoverable out-of-memory error).
func detect(data []byte) format {
	if len(data) == 0 {
		return formatEmpty
	}
	if bytes.HasPrefix(data, []byte("binf")) || bytes.HasPrefix(data, []byte("bs64")) {
		return formatXGBBinary
	}
	// UBJSON objects start with '{' followed by a type marker of the first
	// key's length; JSON has whitespace, '"' or '}' there.
	if len(data) >= 2 && data[0] == '{' {
		switch data[1] {
		case 'i', 'U', 'I', 'l', 'L', '$', '#':
			return formatUBJSON
		}
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	trimmed = bytes.TrimPrefix(trimmed, []byte("\xef\xbb\xbf"))
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return formatXGBJSON
	}
	if bytes.HasPrefix(trimmed, []byte("tree\n")) || bytes.HasPrefix(trimmed, []byte("tree\r\n")) {
		return formatLightGBM
	}
	return formatUnknown
}

// looksONNX recognises an ONNX ModelProto: it starts with its ir_version
// field (protobuf tag 0x08) and names an ONNX domain or producer early on.
// Only used to word the error for a detector configured as the forest.
func looksONNX(data []byte) bool {
	if len(data) < 2 || data[0] != 0x08 {
		return false
	}
	head := data[:min(len(data), 4096)]
	return bytes.Contains(head, []byte("onnx")) || bytes.Contains(head, []byte("pytorch")) || bytes.Contains(head, []byte("segad"))
}

// isText reports whether the first KiB looks like text, to word the error.
func isText(data []byte) bool {
	if len(data) > 1024 {
		data = data[:1024]
	}
	for _, c := range data {
		if c < 0x09 || (c > 0x0d && c < 0x20) {
			return false
		}
	}
	return true
}
