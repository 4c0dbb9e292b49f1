package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/result"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

func writePart(t *testing.T, path string, rng *rand.Rand, defect bool) {
	t.Helper()
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 110, 120, 0), 240, 320, gocv.MatTypeCV8UC3)
	defer m.Close()
	gocv.Circle(&m, image.Pt(160+rng.IntN(4), 120+rng.IntN(4)), 80, color.RGBA{150, 150, 150, 0}, -1)
	if defect {
		gocv.Circle(&m, image.Pt(130+rng.IntN(60), 90+rng.IntN(60)), 14, color.RGBA{255, 255, 255, 0}, -1)
	}
	if !gocv.IMWrite(path, m) {
		t.Fatalf("write %s", path)
	}
}

func execRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(args)
	err := rootCmd.Execute()
	return out.String(), err
}

// TestFitBundleInspect: `segad fit` writes a bundle; a config that names
// the bundle (and no threshold) inspects with the bundle's suggested
// threshold; a config whose detectors differ from the bundle's is refused
// with the difference named.
func TestFitBundleInspect(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(11, 12))
	for _, sub := range []string{"good", "bad/blob"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 12; i++ {
		writePart(t, filepath.Join(dir, "good", fmt.Sprintf("g%02d.png", i)), rng, false)
	}
	for i := 0; i < 8; i++ {
		writePart(t, filepath.Join(dir, "bad", "blob", fmt.Sprintf("b%02d.png", i)), rng, true)
	}
	det := filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx")
	cfg := func(name string) string {
		p := filepath.Join(dir, name+".yaml")
		body := fmt.Sprintf(`onnxruntime: {library: %q}
capture: {kind: folder, path: good}
detectors:
  - name: %s
    model: %q
segad:
  mask: builtin:vad
  bundle: bundle
fit: {trees: 3, rounds: 2, threads: 1}
`, testenv.ORTLib(t), name, det)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	okCfg := cfg("ms")
	bundleDir := filepath.Join(dir, "bundle")
	if out, err := execFit(t, "--config", okCfg, "--good", filepath.Join(dir, "good"), "--bad", filepath.Join(dir, "bad"),
		"-o", bundleDir, "--rounds", "1", "-q"); err != nil {
		t.Fatalf("fit: %v\n%s", err, out)
	}
	b, err := bundle.Load(bundleDir)
	if err != nil {
		t.Fatal(err)
	}
	// The config's fit: section sets the defaults; a flag wins over it.
	if got := b.Manifest.Params["num_parallel_tree"]; got != "3" || b.Manifest.Rounds != 1 {
		t.Errorf("trained with num_parallel_tree %s and %d rounds, want 3 (config) and 1 (flag)", got, b.Manifest.Rounds)
	}
	out, err := execRoot(t, "inspect", "--config", okCfg,
		filepath.Join(dir, "bad", "blob", "b00.png"), filepath.Join(dir, "good", "g00.png"), filepath.Join(dir, "nope.png"))
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	var results []result.Result
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r result.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("inspect line %q: %v", line, err)
		}
		results = append(results, r)
	}
	if len(results) != 3 {
		t.Fatalf("%d results for 3 images:\n%s", len(results), out)
	}
	for i, r := range results[:2] {
		if r.Threshold != b.Threshold || r.Score == nil {
			t.Errorf("result %d: threshold %v (bundle %v), score %v", i, r.Threshold, b.Threshold, r.Score)
		}
	}
	if results[0].PartID != "b00" || results[2].Verdict != result.VerdictError || results[2].ReasonCode != "capture_error" {
		t.Errorf("part ids / missing file: %+v / %+v", results[0], results[2])
	}
	// A config with another detector name is refused, naming the difference.
	_, err = execRoot(t, "inspect", "--config", cfg("other"), filepath.Join(dir, "good", "g00.png"))
	if err == nil || !strings.Contains(err.Error(), "other") || !strings.Contains(err.Error(), "bundle") {
		t.Fatalf("mismatched bundle: %v", err)
	}
}
