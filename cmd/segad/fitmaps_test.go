package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/npy"
)

// TestFitFromMapsCSV: `segad fit --maps` trains on precomputed float32 .npy
// maps in the reference repository's CSV layout (filepath, an_map_path,
// label, defect_type), so results can be compared with the reference; the
// bundle records the counts per class and type.
func TestFitFromMapsCSV(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(21, 22))
	var csv strings.Builder
	csv.WriteString("filepath,an_map_path,label,defect_type\n")
	for i := 0; i < 24; i++ {
		bad := i%2 == 1
		m := make([]float32, 256*256)
		for j := range m {
			m[j] = float32(rng.Float64() * 0.1)
		}
		if bad { // a hot blob near the centre
			for y := 110; y < 140; y++ {
				for x := 110; x < 140; x++ {
					m[y*256+x] += 1
				}
			}
		}
		name := fmt.Sprintf("m%02d.npy", i)
		if err := npy.WriteFloat32(filepath.Join(dir, name), []int{256, 256}, m); err != nil {
			t.Fatal(err)
		}
		label, typ := 0, ""
		if bad {
			label, typ = 1, "blob"
		}
		fmt.Fprintf(&csv, "img%02d.png,%s,%d,%s\n", i, name, label, typ)
	}
	csvPath := filepath.Join(dir, "maps.csv")
	if err := os.WriteFile(csvPath, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "segad.yaml")
	body := fmt.Sprintf(`onnxruntime: {library: %q}
capture: {kind: folder, path: .}
detectors:
  - name: ms
    model: %q
segad: {mask: builtin:vad, bundle: bundle}
`, testenv.ORTLib(t), filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx"))
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := execFit(t, "--config", cfg, "--maps", csvPath, "-o", filepath.Join(dir, "bundle"),
		"--trees", "4", "--rounds", "2", "--threads", "1", "-q")
	if err != nil {
		t.Fatalf("fit --maps: %v\n%s", err, out)
	}
	b, err := bundle.Load(filepath.Join(dir, "bundle"))
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Data.Good != 12 || b.Manifest.Data.Bad != 12 || b.Manifest.Data.BadTypes["blob"] != 12 {
		t.Errorf("bundle counts %+v, want 12 good, 12 bad of type blob", b.Manifest.Data)
	}
	if len(b.Manifest.Features) != 29 {
		t.Errorf("%d features, want 29 (7 segments x 4 + 1 max)", len(b.Manifest.Features))
	}
	// A CSV without the label column is refused, naming what it has.
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("filepath,an_map_path\nx.png,m00.npy\n"), 0o644)
	if _, err := execFit(t, "--config", cfg, "--maps", bad, "-o", filepath.Join(dir, "b2"), "-q"); err == nil || !strings.Contains(err.Error(), "label") {
		t.Fatalf("CSV without labels: %v", err)
	}
}
