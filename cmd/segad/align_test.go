package main

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/demo"
)

// TestAlignCheckAndMaskPreview: `segad align check` prints the pose of a
// demo part moved by a known shift and turn, and not_located for a blank
// frame (exit error); `segad mask preview --config` draws the mask over the
// registered frame, which matches the reference where the part is.
func TestAlignCheckAndMaskPreview(t *testing.T) {
	dir := t.TempDir()
	ref, _, err := demo.NewPartGen(3, 256).Render(demo.PartGood)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	write := func(name string, m gocv.Mat) string {
		p := filepath.Join(dir, name)
		if err := capture.WriteImage(p, m); err != nil {
			t.Fatal(err)
		}
		return p
	}
	refPath := write("ref.png", ref)
	rot := gocv.GetRotationMatrix2D(image.Pt(128, 128), 3, 1)
	rot.SetDoubleAt(0, 2, rot.GetDoubleAt(0, 2)+8)
	rot.SetDoubleAt(1, 2, rot.GetDoubleAt(1, 2)-5)
	moved := gocv.NewMat()
	gocv.WarpAffineWithParams(ref, &moved, rot, image.Pt(256, 256), gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
	rot.Close()
	movedPath := write("moved.png", moved)
	moved.Close()
	blank := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(60, 60, 60, 0), 256, 256, gocv.MatTypeCV8UC3)
	blankPath := write("blank.png", blank)
	blank.Close()
	maskPath := filepath.Join(dir, "mask.png")
	if err := demo.PartMask(256).WritePNG(maskPath); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "segad.yaml")
	yml := fmt.Sprintf(`capture:
  kind: folder
  path: .
  preprocess: {width: 256, height: 256}
  align: {reference: %q}
detectors:
  - {name: v, model: v.onnx}
segad: {mask: builtin:vad, model: brf.json, threshold: 1}
`, refPath)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := execRoot(t, "align", "check", "--config", cfg, movedPath, blankPath)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 images not located") {
		t.Fatalf("align check: %v\n%s", err, out)
	}
	row := regexp.MustCompile(`moved\.png\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+located`).FindStringSubmatch(out)
	if row == nil {
		t.Fatalf("no located row for moved.png:\n%s", out)
	}
	want := []float64{8, -5, 3}
	tol := []float64{0.5, 0.5, 0.2}
	for i := range want {
		v, _ := strconv.ParseFloat(row[i+1], 64)
		// getRotationMatrix2D turns about (128, 128), the pose is measured at
		// the frame centre (127.5, 127.5): 0.03 px apart at 3 degrees.
		if math.Abs(v-want[i]) > tol[i] {
			t.Errorf("pose %d: %v, want %v", i, v, want[i])
		}
	}
	if !regexp.MustCompile(`blank\.png.*not_located: part not located: the frame is blank`).MatchString(out) {
		t.Errorf("no not_located row for blank.png:\n%s", out)
	}

	prev := filepath.Join(dir, "preview.png")
	out, err = execRoot(t, "mask", "preview", "--mask", maskPath, "--image", movedPath, "--config", cfg, "-o", prev)
	m := regexp.MustCompile(`aligned: dx (\S+) dy (\S+)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("mask preview: %v\n%s", err, out)
	}
	if dx, _ := strconv.ParseFloat(m[1], 64); math.Abs(dx-8) > 0.5 {
		t.Errorf("mask preview pose dx %v, want 8", dx)
	}
	if _, err := capture.ReadImage(prev); err != nil {
		t.Fatalf("preview not written: %v", err)
	}
	if _, err = execRoot(t, "mask", "preview", "--mask", maskPath, "--image", blankPath, "--config", cfg, "-o", prev); err == nil || !strings.Contains(err.Error(), "not located") {
		t.Fatalf("mask preview of a blank frame: %v", err)
	}
}
