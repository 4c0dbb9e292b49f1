package fit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/internal/segfixture"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/segad"
)

// TestFeaturizerPerFrameMask: `segad fit` and `segad eval` with segad.mask
// naming a segmentation model (scripts/golden/segmodel.py's fixtures):
// feature rows come from each image's own mask (a part without its
// required wires is refused, naming segmentation_error), the manifest
// records the mask as model:<file> with a hash of its own, and what cannot
// work without a static mask (precomputed maps, synthetic disturbances)
// says so instead of guessing.
func TestFeaturizerPerFrameMask(t *testing.T) {
	root := testenv.RepoRoot(t)
	fixtures := segfixture.Dir(t)
	dir := t.TempDir()
	imgs := segfixture.WritePNGs(t, dir, "part_good", "part_nowires")
	det := filepath.Join(root, "infer", "testdata", "meanstd_blur.onnx")
	yml := "capture: {kind: folder, path: .}\n" +
		"onnxruntime: {library: " + testenv.ORTLib(t) + "}\n" +
		"detectors:\n  - {name: ms, model: " + det + "}\n" +
		"segad:\n  bundle: bundle\n  mask:\n    model: " + filepath.Join(fixtures, "seg_scores.onnx") + "\n" +
		"    labels: [background, rubber, wires, solder]\n    required: [wires]\n"
	p := filepath.Join(dir, "segad.yaml")
	if err := os.WriteFile(p, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFeaturizer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := maskSource(f.MaskSource); got != "model:seg_scores.onnx" {
		t.Errorf("manifest mask source %q, want model:seg_scores.onnx (no machine path)", got)
	}
	static := segad.VADTemplate(256, 256, segad.DefaultVADGeometry())
	if len(f.MaskHash) != 64 || f.MaskHash == static.Hash() {
		t.Errorf("mask hash %q", f.MaskHash)
	}
	d, err := f.ImageDataset([]Sample{{Path: imgs[0]}, {Path: imgs[0], Bad: true, Type: "x"}}, ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 || d.NCols != 4*4+1 || d.Features[8] != "wires.ms.q995" {
		t.Fatalf("dataset: %d rows of %d features %v", d.Len(), d.NCols, d.Features)
	}
	if _, err := f.ImageDataset([]Sample{{Path: imgs[1]}}, ImageOptions{}); err == nil || !strings.Contains(err.Error(), "segmentation_error") || !strings.Contains(err.Error(), `"wires" is missing`) {
		t.Fatalf("a part without its required wires: %v", err)
	}
	if _, err := f.imageMask(256, 256); err == nil || !strings.Contains(err.Error(), "synthetic disturbances need a static mask") {
		t.Fatalf("synthetic disturbances: %v", err)
	}
	if _, _, err := MapsDataset(nil, []string{"ms"}, cfg.SegAD, nil, nil); err == nil || !strings.Contains(err.Error(), "segad.mask.model") {
		t.Fatalf("precomputed maps: %v", err)
	}
}
