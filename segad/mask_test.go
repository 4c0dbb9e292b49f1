package segad

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/npy"
)

func writePNG(t testing.TB, path string, img image.Image) {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func grayImg(w, h int, f func(x, y int) uint8) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			g.SetGray(x, y, color.Gray{Y: f(x, y)})
		}
	}
	return g
}

func TestLoadMask(t *testing.T) {
	dir := t.TempDir()
	three := func(x, y int) uint8 { return uint8(x % 3) }
	writePNG(t, filepath.Join(dir, "plain.png"), grayImg(6, 4, three))
	writePNG(t, filepath.Join(dir, "sidecar.png"), grayImg(6, 4, three))
	if err := WriteNames(filepath.Join(dir, "sidecar.names.txt"), []string{"left", "mid", "right"}); err != nil {
		t.Fatal(err)
	}
	writePNG(t, filepath.Join(dir, "ignore.png"), grayImg(6, 4, func(x, y int) uint8 {
		if y == 0 {
			return 255
		}
		return uint8(x % 2)
	}))
	writePNG(t, filepath.Join(dir, "toohigh.png"), grayImg(6, 4, func(x, y int) uint8 { return uint8(x) }))
	rgb := image.NewRGBA(image.Rect(0, 0, 2, 2))
	rgb.Set(1, 1, color.RGBA{200, 10, 10, 255})
	writePNG(t, filepath.Join(dir, "colour.png"), rgb)
	if err := npy.WriteUint8(filepath.Join(dir, "labels.npy"), []int{2, 3}, []uint8{0, 1, 1, 255, 0, 1}); err != nil {
		t.Fatal(err)
	}
	if err := npy.WriteFloat32(filepath.Join(dir, "float.npy"), []int{2, 2}, []float32{0, 1, 0, 1}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "corrupt.png"), []byte("\x89PNG\r\n\x1a\nnope"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		file      string
		names     []string
		wantNames []string
		wantErr   string
	}{
		{file: "plain.png", wantNames: []string{"seg0", "seg1", "seg2"}},
		{file: "sidecar.png", wantNames: []string{"left", "mid", "right"}},
		{file: "sidecar.png", names: []string{"a", "b", "c"}, wantNames: []string{"a", "b", "c"}},
		{file: "ignore.png", wantNames: []string{"seg0", "seg1"}},
		{file: "labels.npy", wantNames: []string{"seg0", "seg1"}},
		{file: "toohigh.png", names: []string{"a", "b"}, wantErr: "label 2 at pixel (2, 0) but only 2 segments are declared"},
		{file: "plain.png", names: []string{"a", "a", "b"}, wantErr: `both named "a"`},
		{file: "colour.png", wantErr: "pixel (1, 1) is coloured"},
		{file: "float.npy", wantErr: "want an integer label array"},
		{file: "corrupt.png", wantErr: "decode png"},
		{file: "missing.png", wantErr: "no such file"},
		{file: "mask.bmp", wantErr: "unsupported mask format"},
	}
	for _, tc := range tests {
		t.Run(tc.file+strings.Join(tc.names, ","), func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			m, err := LoadMask(path, tc.names)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want one naming %s and containing %q", err, path, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.Names, tc.wantNames) {
				t.Fatalf("names = %v, want %v", m.Names, tc.wantNames)
			}
		})
	}
}

func TestResizeNearest(t *testing.T) {
	m := &Mask{Width: 2, Height: 2, Labels: []uint8{0, 1, 2, 255}, Names: DefaultNames(3)}
	up, err := m.Resize(4, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 255, 255, 2, 2, 255, 255}
	if !slices.Equal(up.Labels, want) {
		t.Fatalf("4x4 = %v, want %v", up.Labels, want)
	}
	// Downscaling a thin segment away must surface as a warning naming it.
	thin := VADTemplate(256, 256, DefaultVADGeometry())
	small, err := thin.Resize(8, 8)
	if err != nil {
		t.Fatal(err)
	}
	warn, err := small.Validate()
	if err != nil {
		t.Fatal(err)
	}
	if len(warn) == 0 {
		t.Fatal("8x8 VAD template: want warnings for segments lost in resizing")
	}
	lost := 0
	for _, w := range warn {
		switch {
		case strings.Contains(w, "has no pixels at 8x8"):
			lost++
		case strings.Contains(w, "pixels at 8x8: its quantile, skew and kurtosis are noise"):
		default:
			t.Errorf("warning %q does not say why", w)
		}
	}
	if lost == 0 {
		t.Errorf("no warning names a segment lost in resizing: %q", warn)
	}
	if _, err := m.Resize(0, 3); err == nil {
		t.Fatal("Resize(0, 3): no error")
	}
}

func TestHashChangesWithContent(t *testing.T) {
	a := VADTemplate(64, 64, DefaultVADGeometry())
	b := VADTemplate(64, 64, DefaultVADGeometry())
	if a.Hash() != b.Hash() {
		t.Fatal("equal masks hash differently")
	}
	b.Labels[100]++
	c := VADTemplate(64, 64, DefaultVADGeometry())
	c.Names[0] = "bg"
	d := VADTemplate(32, 128, DefaultVADGeometry())
	for name, o := range map[string]*Mask{"label": b, "name": c, "size": d} {
		if o.Hash() == a.Hash() {
			t.Errorf("changing the %s keeps the hash", name)
		}
	}
}

func TestVADTemplate(t *testing.T) {
	m := VADTemplate(256, 256, DefaultVADGeometry())
	warn, err := m.Validate()
	if err != nil || len(warn) != 0 {
		t.Fatalf("Validate: %v %v", warn, err)
	}
	if !slices.Equal(m.Names, VADSegmentNames) || len(m.Names) != 7 {
		t.Fatalf("names %v", m.Names)
	}
	at := func(x, y int) uint8 { return m.Labels[y*256+x] }
	tests := []struct {
		name string
		x, y int
		want uint8
	}{
		{"corner", 2, 2, VADBackground},
		{"centre", 128, 128, VADPiezoMiddle},
		{"disc edge", 128, 128 - 74, VADPiezoBorder},
		{"above the disc", 128, 128 - 95, VADOuterHalfCircle},
		{"below the disc, no half-circle", 60, 128 + 95, VADBackground},
		{"left dot", 128 - 28, 128 + 26, VADSolderDots},
		{"left pin", 128 - 41, 128 + 102, VADPins},
		{"right pin", 128 + 41, 128 + 102, VADPins},
	}
	for _, tc := range tests {
		if got := at(tc.x, tc.y); got != tc.want {
			t.Errorf("%s (%d,%d): label %d (%s), want %d (%s)", tc.name, tc.x, tc.y, got, m.Names[got], tc.want, m.Names[tc.want])
		}
	}
	// Left-right symmetry of the default part.
	for y := 0; y < 256; y++ {
		for x := 0; x < 128; x++ {
			if at(x, y) != at(255-x, y) {
				t.Fatalf("not mirror-symmetric at (%d,%d)", x, y)
			}
		}
	}
	c := m.Counts()
	if c[VADWires] == 0 || c[VADSolderDots] == 0 {
		t.Fatalf("counts %v", c)
	}
}

func TestMaskWriteRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m := VADTemplate(48, 40, DefaultVADGeometry())
	for _, name := range []string{"m.png", "m2.npy"} {
		p := filepath.Join(dir, name)
		var err error
		if strings.HasSuffix(name, ".png") {
			err = m.WritePNG(p)
		} else {
			err = m.WriteNpy(p)
		}
		if err != nil {
			t.Fatal(err)
		}
		back, err := LoadMask(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if back.Hash() != m.Hash() {
			t.Fatalf("%s: round trip changed the mask", name)
		}
	}
}

// FuzzDecodePNGMask: malformed PNGs give errors, never panics.
func FuzzDecodePNGMask(f *testing.F) {
	var buf bytes.Buffer
	png.Encode(&buf, grayImg(5, 3, func(x, y int) uint8 { return uint8(x) }))
	f.Add(buf.Bytes())
	buf.Reset()
	pal := image.NewPaletted(image.Rect(0, 0, 3, 3), color.Palette{color.Black, color.White})
	png.Encode(&buf, pal)
	f.Add(buf.Bytes())
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodePNGMask(bytes.NewReader(b))
		if err == nil && len(m.Labels) != m.Width*m.Height {
			t.Fatalf("%dx%d mask with %d labels", m.Width, m.Height, len(m.Labels))
		}
	})
}

// FuzzLoadMaskNpy: malformed .npy masks give errors, never panics.
func FuzzLoadMaskNpy(f *testing.F) {
	var buf bytes.Buffer
	npy.WriteTo(&buf, "|u1", []int{2, 3}, []byte{0, 1, 2, 255, 0, 1})
	f.Add(buf.Bytes())
	buf.Reset()
	npy.WriteTo(&buf, "<i8", []int{1, 1}, make([]byte, 8))
	f.Add(buf.Bytes())
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "m.npy")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := LoadMask(p, nil)
		if err == nil {
			if _, err := NewExtractor(m, []string{"d"}, ""); err != nil {
				t.Fatalf("loaded mask rejected by the extractor: %v", err)
			}
		}
	})
}

// TestValidateRefusesMasksThatInspectNothing: a mask with no labelled pixel
// (all 255, or labels that only name empty segments) makes every feature
// 0 and lets every defect pass: refused, whether it comes from a PNG, a
// .npy or code, with the file named and what to do.
func TestValidateRefusesMasksThatInspectNothing(t *testing.T) {
	fill := func(w, h int, v uint8) []uint8 {
		l := make([]uint8, w*h)
		for i := range l {
			l[i] = v
		}
		return l
	}
	tests := []struct {
		name string
		m    *Mask
	}{
		{"all ignored, segments named", &Mask{Width: 64, Height: 64, Labels: fill(64, 64, Ignore), Names: VADSegmentNames}},
		{"all ignored, one segment", &Mask{Width: 3, Height: 1, Labels: fill(3, 1, Ignore), Names: []string{"part"}}},
		{"1x1 all ignored, two segments named", &Mask{Width: 1, Height: 1, Labels: []uint8{Ignore}, Names: []string{"a", "b"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.m.Validate()
			if err == nil || !strings.Contains(err.Error(), "no pixel belongs to any of the") || !strings.Contains(err.Error(), "defective parts would pass") {
				t.Fatalf("Validate = %v, want a refusal saying nothing would be inspected", err)
			}
		})
	}
	// The same through files: a PNG of 255 with a names sidecar, and a .npy.
	dir := t.TempDir()
	pngPath := filepath.Join(dir, "ignored.png")
	writePNG(t, pngPath, grayImg(32, 32, func(int, int) uint8 { return Ignore }))
	if err := WriteNames(SidecarPath(pngPath), []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	npyPath := filepath.Join(dir, "ignored.npy")
	if err := npy.WriteUint8(npyPath, []int{16, 16}, fill(16, 16, Ignore)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{pngPath, npyPath} {
		_, err := LoadMask(p, []string{"part"})
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "no pixel belongs") {
			t.Errorf("LoadMask(%s) = %v, want a refusal naming the file", p, err)
		}
	}
	// A resize that loses every labelled pixel is refused too (the daemon
	// validates the mask at the map size).
	dot := &Mask{Width: 100, Height: 100, Labels: fill(100, 100, Ignore), Names: []string{"dot"}}
	dot.Labels[50*100+51] = 0
	if _, err := dot.Validate(); err != nil {
		t.Fatalf("one labelled pixel at 100x100: %v", err)
	}
	small, err := dot.Resize(10, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Validate(); err == nil || !strings.Contains(err.Error(), "at 10x10") {
		t.Fatalf("resized to 10x10, the dot is gone: Validate = %v, want a refusal naming the size", err)
	}
}

// TestValidateWarnsOnOddMasks: merely odd masks pass with a warning that
// says what is odd: a mask labelling under MinLabelledShare of its pixels,
// and segments under MinSegmentPixels pixels.
func TestValidateWarnsOnOddMasks(t *testing.T) {
	mk := func(w, h int, set func(l []uint8)) *Mask {
		l := make([]uint8, w*h)
		for i := range l {
			l[i] = Ignore
		}
		set(l)
		return &Mask{Width: w, Height: h, Labels: l, Names: []string{"a", "b"}}
	}
	tests := []struct {
		name string
		m    *Mask
		want []string // substrings, one warning each; nil: no warning
	}{
		{"2% labelled", mk(100, 100, func(l []uint8) {
			for i := 0; i < 100; i++ {
				l[i], l[100+i] = 0, 1
			}
		}), []string{"only 200 of 10000 pixels (2.00%) belong to a segment at 100x100"}},
		{"tiny segment", mk(10, 10, func(l []uint8) {
			for i := range l {
				l[i] = 0
			}
			for i := 0; i < 5; i++ {
				l[i] = 1
			}
		}), []string{`segment 1 "b" has only 5 pixels at 10x10`}},
		{"half labelled, both large", mk(10, 10, func(l []uint8) {
			for i := 0; i < 50; i++ {
				l[i] = uint8(i % 2)
			}
		}), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			warn, err := tc.m.Validate()
			if err != nil {
				t.Fatalf("refused an odd but usable mask: %v", err)
			}
			if len(warn) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", warn, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(warn[i], w) {
					t.Errorf("warning %q does not say %q", warn[i], w)
				}
			}
		})
	}
}
