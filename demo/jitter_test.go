package demo

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/result"
)

// TestJitterFolderAndFixturing: part images are moved (and registered back
// within the jitter bounds by fixturing), masks are left alone, the same seed
// jitters the same way; the summary counts located and not-located parts.
func TestJitterFolderAndFixturing(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	g := NewPartGen(5, 256)
	part, _, err := g.Render(PartGood)
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	for _, d := range dirs {
		if err := capture.WriteImage(filepath.Join(d, "0000.png"), part); err != nil {
			t.Fatal(err)
		}
		if err := PartMask(256).WritePNG(filepath.Join(d, "mask.png")); err != nil {
			t.Fatal(err)
		}
	}
	ref := filepath.Join(dirs[0], "ref.png")
	if err := capture.WriteImage(ref, part); err != nil {
		t.Fatal(err)
	}
	mask0, _ := os.ReadFile(filepath.Join(dirs[0], "mask.png"))
	orig, _ := os.ReadFile(filepath.Join(dirs[0], "0000.png"))
	if err := os.Remove(ref); err != nil { // only the part and the mask
		t.Fatal(err)
	}
	for _, d := range dirs {
		if err := JitterFolder(d, 9); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := os.ReadFile(filepath.Join(dirs[0], "0000.png"))
	b, _ := os.ReadFile(filepath.Join(dirs[1], "0000.png"))
	if bytes.Equal(a, orig) || !bytes.Equal(a, b) {
		t.Fatalf("jitter: moved %v, same for the same seed %v", !bytes.Equal(a, orig), bytes.Equal(a, b))
	}
	if m, _ := os.ReadFile(filepath.Join(dirs[0], "mask.png")); !bytes.Equal(m, mask0) {
		t.Fatal("the mask was jittered")
	}
	// Register the jittered part to an unmoved copy.
	clean := filepath.Join(t.TempDir(), "clean.png")
	if err := capture.WriteImage(clean, part); err != nil {
		t.Fatal(err)
	}
	pc := capture.PreprocessConfig{Width: 256, Height: 256, Align: capture.AlignConfig{Reference: clean}}
	f := capture.ReadFrame(filepath.Join(dirs[0], "0000.png"), pc)
	defer f.Close()
	if f.Err != nil || !f.Align.Located() {
		t.Fatalf("jittered part not located: %v %+v", f.Err, f.Align)
	}
	if math.Abs(f.Align.DX) > JitterShift*256+0.5 || math.Abs(f.Align.DY) > JitterShift*256+0.5 || math.Abs(f.Align.Angle) > JitterAngle+0.2 {
		t.Fatalf("pose %+v outside the jitter bounds", f.Align)
	}

	fx := fixturingOf(map[string]result.Result{
		"a": {Pose: &result.Pose{DX: 3, DY: 4, Angle: -2, Score: 0.9}},
		"b": {Pose: &result.Pose{DX: 0, DY: 1, Angle: 1, Score: 0.95}},
		"c": {Pose: &result.Pose{Score: 0.2}, ReasonCode: result.ReasonNotLocated},
		"d": {},
	})
	if fx == nil || fx.Located != 2 || fx.NotLocated != 1 || fx.MaxShift != 5 || fx.MeanShift != 3 || fx.MeanAngle != 1.5 || fx.MaxAngle != 2 {
		t.Fatalf("fixturing summary %+v", fx)
	}
	if fixturingOf(map[string]result.Result{"d": {}}) != nil {
		t.Fatal("a summary without fixturing")
	}
}
