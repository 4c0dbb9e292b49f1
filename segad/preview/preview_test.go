package preview

import (
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/internal/hostile"
	"github.com/segad-edge/segad-edge/segad"
)

// partImage writes a BGR test image with a horizontal gradient, so a tint
// that ignored the image (or swapped channels) would show.
func partImage(t *testing.T, path string, w, h int) []byte {
	t.Helper()
	pix := make([]byte, 3*w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := 3 * (y*w + x)
			pix[i], pix[i+1], pix[i+2] = uint8(x), uint8(y), 128
		}
	}
	m, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, pix)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !gocv.IMWrite(path, m) {
		t.Fatalf("write %s", path)
	}
	return pix
}

func TestRenderFileTintsSegments(t *testing.T) {
	dir := t.TempDir()
	const w, h = 200, 160 // not the mask's size: Render must resize the mask
	src := partImage(t, filepath.Join(dir, "part.png"), w, h)
	mask := segad.VADTemplate(256, 256, segad.DefaultVADGeometry())
	out := filepath.Join(dir, "overlay.png")
	if err := RenderFile(mask, filepath.Join(dir, "part.png"), out, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	img := gocv.IMRead(out, gocv.IMReadColor)
	defer img.Close()
	if img.Cols() != w || img.Rows() != h {
		t.Fatalf("overlay is %dx%d, want the image's %dx%d", img.Cols(), img.Rows(), w, h)
	}
	got := img.ToBytes()
	rm, _ := mask.Resize(w, h)
	alpha := DefaultOptions().Alpha
	// Check every pixel whose 5x5 neighbourhood lies in one segment (away
	// from outlines) and outside the legend corner.
	legend := LegendRect(mask, w, h)
	if legend.Empty() || legend.Dx() >= w || legend.Dy() >= h {
		t.Fatalf("legend %v does not fit a corner of %dx%d", legend, w, h)
	}
	checked := map[int]int{}
	for y := 2; y < h-2; y++ {
		for x := 2; x < w-2; x++ {
			if image.Pt(x, y).In(legend.Inset(-3)) {
				continue
			}
			l := rm.Labels[y*w+x]
			uniform := true
			for dy := -2; dy <= 2 && uniform; dy++ {
				for dx := -2; dx <= 2; dx++ {
					if rm.Labels[(y+dy)*w+x+dx] != l {
						uniform = false
						break
					}
				}
			}
			if !uniform {
				continue
			}
			c := Colour(int(l))
			bgr := [3]uint8{c.B, c.G, c.R}
			i := 3 * (y*w + x)
			for ch := 0; ch < 3; ch++ {
				if want := Tint(src[i+ch], bgr[ch], alpha); got[i+ch] != want {
					t.Fatalf("pixel (%d,%d) segment %d channel %d = %d, want tint %d", x, y, l, ch, got[i+ch], want)
				}
			}
			checked[int(l)]++
		}
	}
	for _, j := range []int{segad.VADBackground, segad.VADPiezoMiddle, segad.VADPiezoBorder, segad.VADPins} {
		if checked[j] == 0 {
			t.Errorf("no interior pixel of segment %d checked", j)
		}
	}
	// The legend corner is drawn (dark box) rather than tinted.
	if got[0] != 20 || got[1] != 20 || got[2] != 20 {
		t.Errorf("top-left pixel %v: want the legend's dark box", got[:3])
	}
}

func TestRenderIgnoredPixelsUntouched(t *testing.T) {
	m := &segad.Mask{Width: 4, Height: 2, Labels: []uint8{0, 0, 255, 255, 1, 1, 255, 255}, Names: []string{"a", "b"}}
	pix := make([]byte, 3*4*2)
	for i := range pix {
		pix[i] = uint8(10 * i)
	}
	img, _ := gocv.NewMatFromBytes(2, 4, gocv.MatTypeCV8UC3, pix)
	defer img.Close()
	out, err := Render(m, img, Options{Alpha: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	got := out.ToBytes()
	for _, px := range []int{2, 3, 6, 7} {
		for ch := 0; ch < 3; ch++ {
			if got[3*px+ch] != pix[3*px+ch] {
				t.Fatalf("ignored pixel %d changed", px)
			}
		}
	}
	if c := Colour(1); got[3*4] != Tint(pix[3*4], c.B, 0.5) {
		t.Fatalf("segment pixel not tinted: %d", got[3*4])
	}
}

func TestRenderFileErrors(t *testing.T) {
	dir := t.TempDir()
	mask := segad.VADTemplate(32, 32, segad.DefaultVADGeometry())
	corrupt := filepath.Join(dir, "corrupt.png")
	os.WriteFile(corrupt, []byte("\x89PNG\r\n\x1a\ngarbage"), 0o644)
	partImage(t, filepath.Join(dir, "ok.png"), 32, 32)
	tests := []struct {
		name, image, out string
		opt              Options
		want             string
	}{
		{"missing image", filepath.Join(dir, "nope.png"), filepath.Join(dir, "o.png"), DefaultOptions(), "cannot read image " + filepath.Join(dir, "nope.png")},
		{"corrupt image", corrupt, filepath.Join(dir, "o.png"), DefaultOptions(), "cannot read image " + corrupt},
		{"bad alpha", filepath.Join(dir, "ok.png"), filepath.Join(dir, "o.png"), Options{Alpha: 2}, "alpha 2 outside 0..1"},
		{"unwritable output", filepath.Join(dir, "ok.png"), filepath.Join(dir, "no", "dir", "o.png"), DefaultOptions(), "cannot write"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := RenderFile(mask, tc.image, tc.out, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRenderFileHostile: files and output names that made OpenCV throw
// (and gocv abort the process) are errors naming the problem.
func TestRenderFileHostile(t *testing.T) {
	dir := t.TempDir()
	partImage(t, filepath.Join(dir, "part.png"), 64, 48)
	huge := filepath.Join(dir, "huge.png")
	os.WriteFile(huge, hostile.HugePNG(100000, 100000, false), 0o644)
	mask := segad.VADTemplate(64, 64, segad.DefaultVADGeometry())
	cases := []struct {
		name, in, out, want string
	}{
		{"gigapixel header", huge, filepath.Join(dir, "o.png"), "max_pixels"},
		{"missing image", filepath.Join(dir, "nope.png"), filepath.Join(dir, "o.png"), "no such file"},
		{"unknown output extension", filepath.Join(dir, "part.png"), filepath.Join(dir, "o.xyz"), "OpenCV refused"},
		{"output folder missing", filepath.Join(dir, "part.png"), filepath.Join(dir, "no", "o.png"), "could not write"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := RenderFile(mask, c.in, c.out, DefaultOptions())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}
