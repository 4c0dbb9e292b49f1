package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/internal/testenv"
)

// TestConfigCheckSegmentationModel: with segad.mask naming a segmentation
// model (scripts/golden/segmodel.py's fixtures), `segad config check`
// builds it like the daemon does: a model with the right output passes,
// and one with a wrong output shape is refused by `config check` and by
// `segad run` at start, with the model's outputs listed.
func TestConfigCheckSegmentationModel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	fixtures := filepath.Join(testenv.RepoRoot(t), "model", "testdata", "segmodel")
	for _, tc := range []struct {
		file string
		want []string // empty: accepted
	}{
		{"seg_scores.onnx", nil},
		{"seg_wrong_classes.onnx", []string{"segad.mask.model", `outputs [#0 "scores"`, "[1 5 128 128]", "5 channels but segad.mask.labels names 4 labels", "want class scores float32 [1,4,H,W]"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dir, text := hostileDir(t)
			testenv.TrainForest(t, filepath.Join(dir, "brf.json"), 4*4+1)
			mask := fmt.Sprintf("mask: {model: %q, labels: [background, rubber, wires, solder], required: [rubber]}", filepath.Join(fixtures, tc.file))
			text = strings.Replace(text, "mask: builtin:vad", mask, 1)
			cfg := filepath.Join(dir, "segad.yaml")
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if r := runBinary(t, 60*time.Second, "config", "check", cfg); r.err != nil || !strings.Contains(r.out, "segad.yaml: ok") {
					t.Fatalf("config check: %v\n%s", r.err, clipOut(r.out))
				}
				return
			}
			for _, args := range [][]string{{"config", "check", cfg}, {"run", "--config", cfg}} {
				r := runBinary(t, 60*time.Second, args...)
				if r.err == nil {
					t.Fatalf("segad %s accepted it:\n%s", args[0], clipOut(r.out))
				}
				for _, w := range tc.want {
					if !strings.Contains(r.out, w) {
						t.Errorf("segad %s: output does not say %q:\n%s", args[0], w, clipOut(r.out))
					}
				}
				if strings.Contains(r.out, "ready: inspecting") {
					t.Errorf("segad run started the line:\n%s", clipOut(r.out))
				}
			}
		})
	}
}
