package infer

import (
	"image"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/segad-edge/segad-edge/internal/testenv"
)

// loadBGR decodes a PNG from the shared data and resizes it (nearest
// neighbour; the test needs a real image, not a particular resampling) to
// w x h BGR, the layout capture hands over.
func loadBGR(tb testing.TB, path string, w, h int) Image {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	src, err := png.Decode(f)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	rgba := image.NewRGBA(src.Bounds())
	draw.Draw(rgba, rgba.Bounds(), src, src.Bounds().Min, draw.Src)
	b := rgba.Bounds()
	img := Image{Width: w, Height: h, Stride: 3 * w, Pix: make([]byte, 3*w*h)}
	for y := 0; y < h; y++ {
		sy := b.Min.Y + (2*y+1)*b.Dy()/(2*h)
		for x := 0; x < w; x++ {
			sx := b.Min.X + (2*x+1)*b.Dx()/(2*w)
			o := rgba.PixOffset(sx, sy)
			img.Pix[3*(y*w+x)+0] = rgba.Pix[o+2]
			img.Pix[3*(y*w+x)+1] = rgba.Pix[o+1]
			img.Pix[3*(y*w+x)+2] = rgba.Pix[o+0]
		}
	}
	return img
}

var imagenetMean = []float64{0.485, 0.456, 0.406}
var imagenetStd = []float64{0.229, 0.224, 0.225}

// The real pretrained int8 MobileNetV2 runs through the same code path as a
// classifier-style model. Its logits must be finite, deterministic, and equal
// to a direct onnxruntime_go run on a tensor built by straightforward code
// here (independent of the LUT preprocessing).
func TestMobileNetRealModel(t *testing.T) {
	setup(t)
	shared := testenv.SharedDir(t)
	model := filepath.Join(shared, "models", "mobilenetv2-12-int8.onnx")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("shared model missing: %v", err)
	}
	c, err := OpenClassifier(ClassifierConfig{
		Model: model, Output: OutputRef{Name: "output"}, Element: 0,
		PreprocessConfig: PreprocessConfig{InputSize: Size{224, 224}, Mean: imagenetMean, Std: imagenetStd},
	})
	if err != nil {
		t.Fatalf("OpenClassifier: %v", err)
	}
	defer c.Close()

	// Direct run: NCHW RGB tensor from a plain loop, same model, ORT defaults.
	in, err := ort.NewEmptyTensor[float32](ort.NewShape(1, 3, 224, 224))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(1, 1000))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Destroy()
	direct, err := ort.NewAdvancedSession(model, []string{"input"}, []string{"output"}, []ort.Value{in}, []ort.Value{out}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Destroy()

	images := []string{"test/good/rgb/000.png", "test/cut/rgb/000.png", "train/good/rgb/000.png"}
	for _, name := range images {
		t.Run(name, func(t *testing.T) {
			img := loadBGR(t, filepath.Join(shared, "data", "mvtec3d-tire-rgb", filepath.FromSlash(name)), 224, 224)
			if _, err := c.Run(img); err != nil {
				t.Fatal(err)
			}
			got := append([]float32(nil), c.Raw()...)
			if len(got) != 1000 {
				t.Fatalf("%d logits", len(got))
			}
			for i, v := range got {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("logit %d = %v", i, v)
				}
			}
			// Deterministic over repeated runs.
			if _, err := c.Run(img); err != nil {
				t.Fatal(err)
			}
			if e, at := maxRelErr(c.Raw(), got); e != 0 {
				t.Fatalf("second run differs: %g at %d", e, at)
			}
			d := in.GetData()
			for ch := 0; ch < 3; ch++ {
				for p := 0; p < 224*224; p++ {
					v := float64(img.Pix[3*p+2-ch]) / 255 // BGR byte 2-ch is RGB channel ch
					d[ch*224*224+p] = float32((v - imagenetMean[ch]) / imagenetStd[ch])
				}
			}
			if err := direct.Run(); err != nil {
				t.Fatal(err)
			}
			want := out.GetData()
			if e, at := maxRelErr(got, want); e > 1e-4 {
				t.Fatalf("logits differ from a direct ORT run: %g at %d (%v vs %v)", e, at, got[at], want[at])
			}
			if a, b := argmax(got), argmax(want); a != b {
				t.Fatalf("argmax %d vs direct %d", a, b)
			}
			// A real network separates real images: logits must not be flat.
			lo, hi := got[0], got[0]
			for _, v := range got {
				lo, hi = min(lo, v), max(hi, v)
			}
			if hi-lo < 1 {
				t.Fatalf("logit range %v..%v is flat", lo, hi)
			}
			t.Logf("argmax class %d, logit %.3f", argmax(got), got[argmax(got)])
		})
	}
}

func argmax(v []float32) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}
