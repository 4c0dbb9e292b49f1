package model

import (
	"image"
	"image/color"
	"math"
	"math/rand"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/result"
)

// partImage is a 256x256 textured part on a dark background: seed 1 an
// ellipse, any other seed a bar with another texture (another part).
func partImage(seed int64) gocv.Mat {
	rng := rand.New(rand.NewSource(seed))
	noise := gocv.NewMatWithSize(256, 256, gocv.MatTypeCV8UC1)
	defer noise.Close()
	pix, _ := noise.DataPtrUint8()
	for i := range pix {
		pix[i] = uint8(rng.Intn(256))
	}
	tex := gocv.NewMat()
	defer tex.Close()
	gocv.GaussianBlur(noise, &tex, image.Pt(0, 0), 3, 0, gocv.BorderReflect101)
	gocv.Normalize(tex, &tex, 40, 230, gocv.NormMinMax)
	out := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(30, 0, 0, 0), 256, 256, gocv.MatTypeCV8UC1)
	defer out.Close()
	mask := gocv.NewMatWithSize(256, 256, gocv.MatTypeCV8UC1)
	defer mask.Close()
	white := color.RGBA{R: 255, G: 255, B: 255, A: 255}
	if seed == 1 {
		gocv.Ellipse(&mask, image.Pt(128, 128), image.Pt(96, 80), 20, 0, 360, white, -1)
	} else { // another part: a bar
		gocv.Rectangle(&mask, image.Rect(96, 32, 160, 224), white, -1)
	}
	tex.CopyToWithMask(&out, mask)
	bgr := gocv.NewMat()
	gocv.CvtColor(out, &bgr, gocv.ColorGrayToBGR)
	return bgr
}

// shifted moves m by (dx, dy) pixels and turns it by angle degrees about
// its centre.
func shifted(m gocv.Mat, dx, dy, angle float64) gocv.Mat {
	r := gocv.GetRotationMatrix2D(image.Pt(m.Cols()/2, m.Rows()/2), angle, 1)
	defer r.Close()
	r.SetDoubleAt(0, 2, r.GetDoubleAt(0, 2)+dx)
	r.SetDoubleAt(1, 2, r.GetDoubleAt(1, 2)+dy)
	out := gocv.NewMat()
	gocv.WarpAffineWithParams(m, &out, r, image.Pt(m.Cols(), m.Rows()), gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
	return out
}

// TestNotLocatedFailsClosed: with fixturing on, frames decoded through
// capture's one preprocessing path and inspected by the model: a jittered
// good part is scored and carries its pose; a blank frame, another part,
// noise and a part half out of view fail closed with not_located (and
// still carry the registration's pose and score).
func TestNotLocatedFailsClosed(t *testing.T) {
	dir := t.TempDir()
	ref := partImage(1)
	defer ref.Close()
	refPath := filepath.Join(dir, "ref.png")
	if err := capture.WriteImage(refPath, ref); err != nil {
		t.Fatal(err)
	}
	c := capture.Config{Kind: capture.KindFolder, Path: dir, Preprocess: capture.PreprocessConfig{Width: 128, Height: 128},
		Align: capture.AlignConfig{Reference: refPath}}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	insp := NewInspector(fakeModel(t, &fakeDetectors{size: 32}, -1), Settings{Station: "s", Threshold: 1, Warn: math.NaN()})
	defer insp.Close()
	for _, tc := range []struct {
		name string
		img  func() gocv.Mat
		code string
	}{
		{"jittered good part", func() gocv.Mat { return shifted(ref, 9, -6, 3) }, ""},
		{"blank", func() gocv.Mat {
			return gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 90, 90, 0), 256, 256, gocv.MatTypeCV8UC3)
		}, result.ReasonNotLocated},
		{"wrong part", func() gocv.Mat { return partImage(2) }, result.ReasonNotLocated},
		{"noise", func() gocv.Mat {
			m := gocv.NewMatWithSize(256, 256, gocv.MatTypeCV8UC3)
			gocv.RandU(&m, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
			return m
		}, result.ReasonNotLocated},
		{"half visible", func() gocv.Mat { return shifted(ref, 128, 0, 0) }, result.ReasonNotLocated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := capture.FrameFromMat(tc.img(), c.Preprocess)
			defer f.Close()
			r := insp.Inspect(f, false).Result
			if r.ReasonCode != tc.code {
				t.Fatalf("reason code %q (%s), want %q", r.ReasonCode, r.Reason, tc.code)
			}
			if tc.code != "" && r.Verdict != result.VerdictError {
				t.Fatalf("not located but verdict %s", r.Verdict)
			}
			if r.Pose == nil {
				t.Fatal("no pose in the result")
			}
			if tc.code == "" {
				// 9, -6 px at 256 are 4.5, -3 at the 128 px frame.
				if math.Abs(r.Pose.DX-4.5) > 0.5 || math.Abs(r.Pose.DY+3) > 0.5 || math.Abs(r.Pose.Angle-3) > 0.2 {
					t.Fatalf("pose %+v, want (4.5, -3, 3 deg)", *r.Pose)
				}
			}
			t.Logf("%s: %+v %s", r.Verdict, *r.Pose, r.Reason)
		})
	}
}
