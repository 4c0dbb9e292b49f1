// Package segfixture gives tests the per-frame segmentation fixtures that
// scripts/golden/segmodel.py writes under model/testdata/segmodel: the
// folder, and its part images as PNG files a daemon or `segad fit` reads.
package segfixture

import (
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/npy"
)

// Dir is the fixtures' folder.
func Dir(t testing.TB) string {
	return filepath.Join(testenv.RepoRoot(t), "model", "testdata", "segmodel")
}

// WritePNGs writes the named part images (part_good, part_nowires, ...:
// <name>.npy, HxWx3 uint8 BGR) as <dir>/<name>.png and returns the paths.
func WritePNGs(t testing.TB, dir string, names ...string) []string {
	t.Helper()
	var out []string
	for _, name := range names {
		a, err := npy.Read(filepath.Join(Dir(t), name+".npy"))
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
		ok := gocv.IMWrite(p, mat)
		mat.Close()
		if !ok {
			t.Fatalf("write %s", p)
		}
		out = append(out, p)
	}
	return out
}
