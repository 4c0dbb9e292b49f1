package fit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/npy"
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
	fixtures := filepath.Join(root, "model", "testdata", "segmodel")
	dir := t.TempDir()
	var imgs []string
	for _, name := range []string{"part_good", "part_nowires"} {
		a, err := npy.Read(filepath.Join(fixtures, name+".npy"))
		if err != nil {
			t.Fatal(err)
		}
		pix := make([]byte, len(a.Int))
		for i, v := range a.Int {
			pix[i] = byte(v)
		}
		mat, err := gocv.NewMatFromBytes(a.Shape[0], a.Shape[1], gocv.MatTypeCV8UC3, pix)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".png")
		if !gocv.IMWrite(p, mat) {
			t.Fatalf("write %s", p)
		}
		mat.Close()
		imgs = append(imgs, p)
	}
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
