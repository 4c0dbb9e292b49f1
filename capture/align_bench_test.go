package capture

import (
	"image"
	"testing"

	"gocv.io/x/gocv"
)

// BenchmarkAlign is fixturing's cost per 256x256 frame on one OpenCV thread:
// registering (pyramid, ECC, texture score) and warping a frame moved by
// (6, -4) px and 3 degrees, per motion and method. Baseline side by side:
// the INTER_AREA resize of the same 512x512 camera frame to 256x256 that
// preprocessing does anyway (README reports the ratios).
func BenchmarkAlign(b *testing.B) {
	prev := SetOpenCVThreads(1)
	defer SetOpenCVThreads(prev)
	dir := b.TempDir()
	ref := texturedPart(1, 512)
	defer ref.Close()
	refPath := writeMat(b, dir, "ref.png", ref)
	orig := moved(ref, 12, -8, 3)
	defer orig.Close()
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(orig, &small, image.Pt(256, 256), 0, 0, gocv.InterpolationArea)

	b.Run("baseline-resize-area", func(b *testing.B) {
		out := gocv.NewMat()
		defer out.Close()
		for i := 0; i < b.N; i++ {
			gocv.Resize(orig, &out, image.Pt(256, 256), 0, 0, gocv.InterpolationArea)
		}
	})
	for _, c := range []struct{ motion, method string }{
		{MotionTranslation, MethodECC},
		{MotionEuclidean, MethodECC},
		{MotionAffine, MethodECC},
		{MotionEuclidean, MethodFeatures},
	} {
		b.Run(c.motion+"-"+c.method, func(b *testing.B) {
			pre, err := newPreprocessor(alignPre(refPath, c.motion, c.method))
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i++ {
				img := small.Clone()
				a := pre.locate(&img)
				img.Close()
				if !a.Located() {
					b.Fatal(a.Err)
				}
			}
		})
	}
}
