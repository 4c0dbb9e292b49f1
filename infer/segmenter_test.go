package infer

import (
	"path/filepath"
	"strings"
	"testing"
)

// segFixture is a segmentation model made by scripts/golden/segmodel.py
// (kept beside the model package's tests, which check its labels and
// features against numpy).
func segFixture(name string) string {
	return filepath.Join("..", "model", "testdata", "segmodel", name)
}

// TestOpenSegmenter: the output's kind, resolution and element type are
// read from the model; an output reference or a label count that does not
// fit is refused with the model's outputs listed.
func TestOpenSegmenter(t *testing.T) {
	setup(t)
	for _, tc := range []struct {
		name    string
		cfg     SegmenterConfig
		kind    SegKind
		classes int
		err     []string
	}{
		{"scores by index", SegmenterConfig{Model: segFixture("seg_scores.onnx"), Classes: 4}, SegScores, 4, nil},
		{"scores by name", SegmenterConfig{Model: segFixture("seg_scores.onnx"), Output: OutputRef{Name: "scores"}, Classes: 4}, SegScores, 4, nil},
		{"int64 labels", SegmenterConfig{Model: segFixture("seg_labels.onnx"), Classes: 4}, SegLabels, 1, nil},
		{"uint8 labels", SegmenterConfig{Model: segFixture("seg_labels_u8.onnx"), Classes: 4}, SegLabels, 1, nil},
		{"labels fit any count", SegmenterConfig{Model: segFixture("seg_labels.onnx"), Classes: 7}, SegLabels, 1, nil},
		{"no such output", SegmenterConfig{Model: segFixture("seg_scores.onnx"), Output: OutputRef{Name: "logits"}, Classes: 4},
			0, 0, []string{`no output "logits"`, `outputs [#0 "scores"`}},
		{"too few labels", SegmenterConfig{Model: segFixture("seg_scores.onnx"), Classes: 3}, 0, 0, []string{"4 channels but segad.mask.labels names 3 labels"}},
		{"no labels", SegmenterConfig{Model: segFixture("seg_scores.onnx")}, 0, 0, []string{"0 labels"}},
		{"wrong input size", SegmenterConfig{Model: segFixture("seg_scores.onnx"), Classes: 4, PreprocessConfig: PreprocessConfig{InputSize: Size{Width: 128, Height: 128}}},
			0, 0, []string{"input_size 128x128"}},
		{"missing file", SegmenterConfig{Model: segFixture("nope.onnx"), Classes: 4}, 0, 0, []string{"nope.onnx", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := OpenSegmenter(tc.cfg)
			if tc.err != nil {
				if err == nil {
					s.Close()
					t.Fatal("accepted")
				}
				for _, w := range append(tc.err, "segad.mask.model") {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q: %v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out, err := s.Run(grayImage(s.InputSize()))
			if err != nil {
				t.Fatal(err)
			}
			if out.Kind != tc.kind || out.Classes != tc.classes || out.Width != 128 || out.Height != 128 {
				t.Fatalf("output %+v", out)
			}
			if _, err := s.Run(grayImage(Size{Width: 64, Height: 64})); err == nil {
				t.Fatal("an image of the wrong size was run")
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second close: %v", err)
			}
			if _, err := s.Run(grayImage(s.InputSize())); err == nil {
				t.Fatal("run after close")
			}
		})
	}
}
