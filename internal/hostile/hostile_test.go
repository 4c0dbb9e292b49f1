package hostile

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestHugeHeadersDeclareWhatTheySay: Go's own decoders read the declared
// size from the generated headers, so the files really claim gigapixels.
func TestHugeHeadersDeclareWhatTheySay(t *testing.T) {
	cases := []struct {
		name   string
		data   []byte
		decode func(io.Reader) (image.Config, error)
		w, h   int
		maxLen int
	}{
		{"png", HugePNG(100000, 100000, false), png.DecodeConfig, 100000, 100000, 200},
		{"gray png", HugePNG(100000, 90000, true), png.DecodeConfig, 100000, 90000, 200},
		{"jpeg", HugeJPEG(65500, 65000), jpeg.DecodeConfig, 65500, 65000, 1000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := c.decode(bytes.NewReader(c.data))
			if err != nil {
				t.Fatalf("decode config: %v", err)
			}
			if cfg.Width != c.w || cfg.Height != c.h {
				t.Fatalf("declares %dx%d, want %dx%d", cfg.Width, cfg.Height, c.w, c.h)
			}
			if len(c.data) > c.maxLen {
				t.Fatalf("%d bytes, want a few dozen to hundreds", len(c.data))
			}
		})
	}
	b := HugeBMP(100000, 100000)
	if w, h := binary.LittleEndian.Uint32(b[18:]), binary.LittleEndian.Uint32(b[22:]); w != 100000 || h != 100000 || len(b) > 200 {
		t.Fatalf("BMP declares %dx%d in %d bytes", w, h, len(b))
	}
	tf := HugeTIFF(100000, 100000)
	if w := binary.LittleEndian.Uint32(tf[10+8:]); w != 100000 || len(tf) > 300 {
		t.Fatalf("TIFF declares width %d in %d bytes", w, len(tf))
	}
}

// TestPNGBombInflates: the hand-built deflate stream is valid (Go's zlib
// and PNG decoders accept it with its Adler-32 and CRCs) and inflates to
// exactly h*(w+1) zero bytes; the 30000x30000 bomb stays about 1 MB.
func TestPNGBombInflates(t *testing.T) {
	for _, sz := range [][2]uint32{{1, 1}, {3, 2}, {257, 3}, {1000, 700}} {
		b := PNGBomb(sz[0], sz[1])
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%dx%d: png decode: %v", sz[0], sz[1], err)
		}
		g, ok := img.(*image.Gray)
		if !ok || g.Bounds().Dx() != int(sz[0]) || g.Bounds().Dy() != int(sz[1]) {
			t.Fatalf("%dx%d: decoded %T %v", sz[0], sz[1], img, img.Bounds())
		}
		for _, p := range g.Pix {
			if p != 0 {
				t.Fatalf("%dx%d: non-zero pixel", sz[0], sz[1])
			}
		}
	}
	// The full-size bomb: inflate the IDAT and count, without a picture.
	b := PNGBomb(30000, 30000)
	if len(b) < 500_000 || len(b) > 1_200_000 {
		t.Fatalf("30000x30000 bomb is %d bytes, want about 1 MB", len(b))
	}
	idatLen := binary.BigEndian.Uint32(b[33:])
	zr, err := zlib.NewReader(bytes.NewReader(b[41 : 41+idatLen]))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, zr)
	if err != nil || zr.Close() != nil {
		t.Fatalf("inflate: %v", err)
	}
	if want := int64(30000) * 30001; n != want {
		t.Fatalf("inflates to %d bytes, want %d", n, want)
	}
}

// TestValidFilesDecode: the valid generators and the trailing-bytes cases
// are real images (to Go's decoders).
func TestValidFilesDecode(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		dec  func(io.Reader) (image.Image, error)
	}{
		{"png", PNG(64, 48), png.Decode},
		{"jpeg", JPEG(64, 48), jpeg.Decode},
		{"png+trailer", WithTrailer(PNG(64, 48), 1000), png.Decode},
		{"jpeg+trailer", WithTrailer(JPEG(64, 48), 1000), jpeg.Decode},
	} {
		img, err := c.dec(bytes.NewReader(c.data))
		if err != nil || img.Bounds().Dx() != 64 || img.Bounds().Dy() != 48 {
			t.Errorf("%s: %v %v", c.name, err, img)
		}
	}
	if b := BMP(5, 3); len(b) != 54+3*16 {
		t.Errorf("5x3 BMP is %d bytes, want 54 + 3 rows of 16", len(b))
	}
	if b := TIFF(8, 4); len(b) != 8+2+9*12+4+32 {
		t.Errorf("8x4 TIFF is %d bytes", len(b))
	}
}

// TestCasesAndNames: the standard set is complete and deterministic, and
// the odd names are legal Linux file names.
func TestCasesAndNames(t *testing.T) {
	a, b := Cases(), Cases()
	seen := map[string]bool{}
	for i, c := range a {
		if seen[c.Name] || seen[c.File] {
			t.Errorf("duplicate case %s / file %s", c.Name, c.File)
		}
		seen[c.Name], seen[c.File] = true, true
		if !bytes.Equal(c.Data, b[i].Data) {
			t.Errorf("%s: not deterministic", c.Name)
		}
		if c.OK == (c.Want != "") {
			t.Errorf("%s: OK %v with Want %q", c.Name, c.OK, c.Want)
		}
	}
	for _, n := range OddNames() {
		if len(n.Name) > 255 || strings.ContainsAny(n.Name, "/\x00") {
			t.Errorf("%q is not a legal file name", n.Name)
		}
		if n.Valid && !utf8.ValidString(n.Name) {
			t.Errorf("%q marked valid", n.Name)
		}
	}
}
