package main

import (
	"encoding/json"

	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"

	"github.com/segad-edge/segad-edge/internal/segfixture"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

// TestConfigCheckSegmentationModel: with segad.mask naming a segmentation
// model (scripts/golden/segmodel.py's fixtures), `segad config check`
// builds it like the daemon does: a model with the right output passes
// (and `segad inspect` judges parts with it), and one with a wrong output
// shape is refused by `config check` and by `segad run` at start, with the
// model's outputs listed.
func TestConfigCheckSegmentationModel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	fixtures := segfixture.Dir(t)
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
			mask := fmt.Sprintf("mask: {model: %q, labels: [background, rubber, wires, solder], required: [rubber, wires]}", filepath.Join(fixtures, tc.file))
			text = strings.Replace(text, "mask: builtin:vad", mask, 1)
			text = strings.Replace(text, "mqtt:\n", "mqtt:\n  publish_features: true\n", 1)
			cfg := filepath.Join(dir, "segad.yaml")
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if r := runBinary(t, 60*time.Second, "config", "check", cfg); r.err != nil || !strings.Contains(r.out, "segad.yaml: ok") {
					t.Fatalf("config check: %v\n%s", r.err, clipOut(r.out))
				}
				inspectPerFrame(t, cfg)
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

// inspectPerFrame: `segad inspect` (the daemon on image files) judges a
// part with its own mask and fails a part whose required segment is
// missing with segmentation_error, naming the segment.
func inspectPerFrame(t *testing.T, cfg string) {
	t.Helper()
	imgs := segfixture.WritePNGs(t, filepath.Dir(cfg), "part_good", "part_nowires")
	r := runBinary(t, 60*time.Second, append([]string{"inspect", "--config", cfg}, imgs...)...)
	var res []result.Result
	for _, line := range strings.Split(r.out, "\n") {
		if strings.HasPrefix(line, "{") {
			var x result.Result
			if err := json.Unmarshal([]byte(line), &x); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			res = append(res, x)
		}
	}
	if len(res) != 2 {
		t.Fatalf("%d results for 2 images (err %v):\n%s", len(res), r.err, clipOut(r.out))
	}
	if res[0].Verdict == result.VerdictError || len(res[0].Features) != 4*4+1 || res[0].Features[8].Name != "wires.ms.q995" {
		t.Errorf("good part: %s %q, %d features", res[0].Verdict, res[0].Reason, len(res[0].Features))
	}
	if res[1].ReasonCode != result.ReasonSegmentation || !strings.Contains(res[1].Reason, `"wires" is missing`) {
		t.Errorf("part without wires: %s %q (%s)", res[1].Verdict, res[1].ReasonCode, res[1].Reason)
	}
}
