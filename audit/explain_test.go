package audit

import (
	"encoding/json"
	"image"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/result"
	"github.com/segad-edge/segad-edge/segad"
)

// yellowPixels lists the pixels painted in the highlight colour.
func yellowPixels(m gocv.Mat) []image.Point {
	var out []image.Point
	for y := 0; y < m.Rows(); y++ {
		for x := 0; x < m.Cols(); x++ {
			v := m.GetVecbAt(y, x)
			if v[0] < 60 && v[1] > 200 && v[2] > 200 {
				out = append(out, image.Pt(x, y))
			}
		}
	}
	return out
}

// TestOverlayNamesTopSegment: the audit overlay outlines the segment that
// pushed the score furthest toward "bad" thicker, in yellow, and writes
// its name and contribution next to it; the audit JSON keeps the whole
// explanation (every segment, detector and feature).
func TestOverlayNamesTopSegment(t *testing.T) {
	mask := segad.VADTemplate(64, 64, segad.DefaultVADGeometry())
	top := mask.Names[2]
	x := &result.Explanation{Method: "path", Bias: -2,
		Segments: []result.Contribution{{Name: mask.Names[0], Value: -2.5}, {Name: top, Value: 1.94}, {Name: "(whole map)", Value: 0.5},
			{Name: mask.Names[1], Value: 0.1}, {Name: mask.Names[3], Value: 0}, {Name: mask.Names[4], Value: 0}, {Name: mask.Names[5], Value: 0}, {Name: mask.Names[6], Value: 0}},
		Detectors: []result.Contribution{{Name: "ms", Value: 0.04}},
		Features:  []result.Contribution{{Name: top + ".ms.q995", Value: 1.94}, {Name: mask.Names[0] + ".ms.mean", Value: -2.5}},
	}
	if c := TopSegment(x); c == nil || c.Name != top || c.Value != 1.94 {
		t.Fatalf("TopSegment: %+v, want %s (the first that pushes toward bad)", c, top)
	}
	if c := TopSegment(&result.Explanation{Segments: []result.Contribution{{Name: "a", Value: -1}, {Name: "b", Value: -0.5}}}); c == nil || c.Name != "a" {
		t.Fatalf("TopSegment without a positive entry: %+v", c)
	}
	if TopSegment(nil) != nil {
		t.Fatal("TopSegment(nil) is not nil")
	}

	img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(60, 60, 60, 0), 256, 256, gocv.MatTypeCV8UC3)
	defer img.Close()
	plain := Overlay(img, nil, 0, 0, mask)
	defer plain.Close()
	if n := len(yellowPixels(plain)); n != 0 {
		t.Fatalf("overlay without an explanation has %d yellow pixels", n)
	}
	ov := OverlayExplained(img, nil, 0, 0, mask, TopSegment(x))
	defer ov.Close()
	ys := yellowPixels(ov)
	// Every yellow pixel is on the top segment's border (within the
	// thickness) or in its label's box, which sits at the segment's
	// bounding box; the border is thicker than the 1-pixel white outline.
	box, ok := labelBox(mask, 2, 256, 256)
	if !ok {
		t.Fatal("no box for the top segment")
	}
	label := func(x, y int) uint8 { return mask.Labels[(y*64/256)*64+x*64/256] }
	near := func(p image.Point, r int) bool {
		for y := max(p.Y-r, 0); y <= min(p.Y+r, 255); y++ {
			for x := max(p.X-r, 0); x <= min(p.X+r, 255); x++ {
				if label(x, y) == 2 {
					return true
				}
			}
		}
		return false
	}
	text := image.Rect(0, box.Min.Y, 256, box.Min.Y+30) // moved left when it would not fit
	onBorder, inText := 0, 0
	for _, p := range ys {
		switch {
		case near(p, 2):
			onBorder++
		case p.In(text):
			inText++
		default:
			t.Errorf("yellow pixel %v is neither on %s's border nor in its label %v", p, top, text)
		}
	}
	if onBorder < 300 || inText < 30 {
		t.Fatalf("%d yellow border pixels and %d of text: the top segment is not outlined and named", onBorder, inText)
	}
	// A top entry that is no mask segment is written in the corner.
	whole := OverlayExplained(img, nil, 0, 0, mask, &result.Contribution{Name: "(whole map)", Value: 0.8})
	defer whole.Close()
	for _, p := range yellowPixels(whole) {
		if p.Y < 30 || p.Y > 60 { // under the "max" line
			t.Fatalf("whole-map label pixel %v is not in the corner", p)
		}
	}

	// The audit JSON is the whole result, explanation in full.
	dir := t.TempDir()
	a, err := Open(dir, 0, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r := &result.Result{ID: "rx", DecidedAt: now, Verdict: result.VerdictFail, Explain: x}
	if err := a.Save(r, img, nil, 0, 0, mask); err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, now.UTC().Format("2006-01-02"), "rx.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back result.Result
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if back.Explain == nil || len(back.Explain.Segments) != 8 || len(back.Explain.Features) != 2 || back.Explain.Segments[1].Name != top {
		t.Fatalf("audit JSON explanation: %+v", back.Explain)
	}
	if os.Getenv("SEGAD_AUDIT_PNG") != "" { // look at it: SEGAD_AUDIT_PNG=/tmp/x.png
		gocv.IMWrite(os.Getenv("SEGAD_AUDIT_PNG"), ov)
	}
}
