package capture

import (
	"image"
	"os"
	"path/filepath"
	"testing"

	"github.com/segad-edge/segad-edge/infer"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/internal/testenv"
)

// benchFrame is a 1280x1024 camera frame: a real tire image from the shared
// data upscaled (so the encoders see real texture), or a synthetic pattern
// when the shared folder is absent.
func benchFrame(b *testing.B) gocv.Mat {
	b.Helper()
	if shared := sharedDir(b); shared != "" {
		p := filepath.Join(shared, "data", "mvtec3d-tire-rgb", "test", "good", "rgb", "000.png")
		if src := gocv.IMRead(p, gocv.IMReadColor); !src.Empty() {
			defer src.Close()
			out := gocv.NewMat()
			gocv.Resize(src, &out, image.Pt(1280, 1024), 0, 0, gocv.InterpolationCubic)
			return out
		}
	}
	b.Log("shared data absent: synthetic 1280x1024 frame")
	return colourMat(1280, 1024, 90, 120, 150)
}

// sharedDir is testenv.SharedDir without the skip: the benchmark falls
// back to a synthetic frame instead.
func sharedDir(b *testing.B) string {
	p := os.Getenv("SEGAD_SHARED")
	if p == "" {
		p = filepath.Join(testenv.RepoRoot(b), "..", "shared")
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// BenchmarkFramePath breaks the per-frame cost of a 1280x1024 camera frame
// into decode, resize to 256x256 and NCHW float32 conversion. Baselines side
// by side: OpenCV's resize itself (the conversion must not cost more) and
// OpenCV's dnn.BlobFromImage doing the same layout conversion.
func BenchmarkFramePath(b *testing.B) {
	frame := benchFrame(b)
	defer frame.Close()
	enc := map[string][]byte{}
	for _, ext := range []gocv.FileExt{gocv.JPEGFileExt, gocv.PNGFileExt} {
		buf, err := gocv.IMEncode(ext, frame)
		if err != nil {
			b.Fatal(err)
		}
		enc[string(ext)] = append([]byte(nil), buf.GetBytes()...)
		buf.Close()
	}
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(frame, &small, image.Pt(256, 256), 0, 0, gocv.InterpolationArea)
	tensor := make([]float32, 3*256*256)

	for _, ext := range []string{".jpg", ".png"} {
		b.Run("decode"+ext, func(b *testing.B) {
			b.SetBytes(int64(len(enc[ext])))
			for i := 0; i < b.N; i++ {
				m, err := gocv.IMDecode(enc[ext], gocv.IMReadColor)
				if err != nil || m.Empty() {
					b.Fatal("decode failed", err)
				}
				m.Close()
			}
		})
	}
	for _, r := range []struct {
		name   string
		interp gocv.InterpolationFlags
	}{{"resize-area", gocv.InterpolationArea}, {"resize-linear", gocv.InterpolationLinear}} {
		b.Run(r.name, func(b *testing.B) {
			out := gocv.NewMat()
			defer out.Close()
			for i := 0; i < b.N; i++ {
				gocv.Resize(frame, &out, image.Pt(256, 256), 0, 0, r.interp)
			}
		})
	}
	// The conversion the line runs: infer.FillNCHW straight from the
	// preprocessed frame's bytes into the detector's input tensor.
	b.Run("nchw-go", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := toTensor(tensor, small); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("nchw-blobFromImage", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			blob := gocv.BlobFromImage(small, 1.0/255, image.Pt(256, 256), gocv.NewScalar(0, 0, 0, 0), true, false)
			blob.Close()
		}
	})
	pre, err := newPreprocessor(PreprocessConfig{Width: 256, Height: 256, Interpolation: "area", Color: ColorBGR})
	if err != nil {
		b.Fatal(err)
	}
	for _, ext := range []string{".jpg", ".png"} {
		b.Run("total"+ext, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				m, _ := gocv.IMDecode(enc[ext], gocv.IMReadColor)
				img, err := pre.apply(m)
				if err != nil {
					b.Fatal(err)
				}
				if err := toTensor(tensor, img); err != nil {
					b.Fatal(err)
				}
				img.Close()
				m.Close()
			}
		})
	}
}

var benchPre, _ = infer.NewPreprocess(infer.PreprocessConfig{InputSize: infer.Size{Width: 256, Height: 256}, ColorOrder: "rgb", Scale: 1.0 / 255})

// toTensor is infer's conversion of an 8-bit BGR Mat into an NCHW RGB
// tensor scaled to [0,1], as a detector does it.
func toTensor(dst []float32, m gocv.Mat) error {
	pix, err := m.DataPtrUint8()
	if err != nil {
		return err
	}
	return infer.FillNCHW(dst, infer.Image{Width: m.Cols(), Height: m.Rows(), Stride: m.Step(), Pix: pix}, benchPre)
}
