package golden

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/result"
)

// pngBytes is a small real PNG (decoded by OpenCV through capture's
// guarded reader in Load).
func pngBytes(t *testing.T, shade uint8) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 32, 24))
	for y := 0; y < 24; y++ {
		for x := 0; x < 32; x++ {
			img.Set(x, y, color.RGBA{shade, uint8(x * 8), uint8(y * 10), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for f, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoad reads both layouts: the folders (good/, bad/<type>/; other
// files and loose files in bad/ ignored) and the manifest (which alone
// decides, so a stray image in good/ is not in the set).
func TestLoad(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string // file -> "png" or text
		want  []string          // file expect type
	}{
		{"folders", map[string]string{
			"good/b.png": "png", "good/a.PNG": "png", "good/notes.txt": "x",
			"bad/crack/c1.png": "png", "bad/missing_wire/m.jpg": "png", "bad/loose.png": "png",
		}, []string{"good/a.PNG pass ", "good/b.png pass ", "bad/crack/c1.png fail crack", "bad/missing_wire/m.jpg fail missing_wire"}},
		{"manifest", map[string]string{
			"golden.yaml":  "images:\n  - {file: parts/ok.png, expect: pass}\n  - {file: parts/nok.png, expect: fail, type: crack}\n  - {file: ./parts/ok2.png, expect: good}\n",
			"parts/ok.png": "png", "parts/nok.png": "png", "parts/ok2.png": "png", "good/stray.png": "png",
		}, []string{"parts/ok.png pass ", "parts/nok.png fail crack", "parts/ok2.png pass "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string][]byte{}
			for f, kind := range c.files {
				if kind == "png" {
					files[f] = pngBytes(t, uint8(len(f)))
				} else {
					files[f] = []byte(kind)
				}
			}
			writeFiles(t, dir, files)
			s, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, im := range s.Images {
				got = append(got, string(im.File)+" "+string(im.Expect)+" "+im.Type)
				if _, err := os.Stat(im.Path); err != nil {
					t.Errorf("%s: path %s: %v", im.File, im.Path, err)
				}
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("images\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

// TestLoadRefuses: what cannot make a challenge is refused with the file
// and the fix named.
func TestLoadRefuses(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"manifest duplicate", map[string]string{"golden.yaml": "images:\n  - {file: a.png, expect: pass}\n  - {file: ./a.png, expect: fail}\n", "a.png": "png"}, []string{"a.png is listed twice"}},
		{"manifest unknown key", map[string]string{"golden.yaml": "images:\n  - {file: a.png, expected: pass}\n", "a.png": "png"}, []string{"golden.yaml", "expected"}},
		{"manifest missing file", map[string]string{"golden.yaml": "images:\n  - {file: gone.png, expect: pass}\n"}, []string{"gone.png", "cannot be read"}},
		{"manifest absolute", map[string]string{"golden.yaml": "images:\n  - {file: /etc/hostname, expect: pass}\n"}, []string{"outside the golden folder"}},
		{"manifest no file", map[string]string{"golden.yaml": "images:\n  - {expect: pass}\n"}, []string{"file is missing"}},
		{"empty image", map[string]string{"good/a.png": ""}, []string{"good/a.png", "cannot be read"}},
		{"not a folder", nil, []string{"not a folder"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.files == nil {
				dir = filepath.Join(dir, "file")
				os.WriteFile(dir, []byte("x"), 0o644)
			}
			files := map[string][]byte{}
			for f, kind := range c.files {
				if kind == "png" {
					files[f] = pngBytes(t, 1)
				} else {
					files[f] = []byte(kind)
				}
			}
			writeFiles(t, dir, files)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func score(v float64) *float64 { return &v }

// TestRunCompares: each image is held against its expectation (an error
// verdict is never right), the summary names the wrong ones, and a
// challenge cut short by its context has not passed.
func TestRunCompares(t *testing.T) {
	set := &Set{Dir: "g", Images: []Image{
		{File: "good/1.png", Expect: result.VerdictPass},
		{File: "good/2.png", Expect: result.VerdictPass},
		{File: "bad/crack/1.png", Expect: result.VerdictFail, Type: "crack"},
		{File: "bad/crack/2.png", Expect: result.VerdictFail, Type: "crack"},
	}}
	cases := []struct {
		name    string
		judge   map[string]result.Result
		passed  bool
		failing []string
	}{
		{"all right", map[string]result.Result{
			"good/1.png": {Verdict: result.VerdictPass, Score: score(-2)}, "good/2.png": {Verdict: result.VerdictPass, Score: score(-1)},
			"bad/crack/1.png": {Verdict: result.VerdictFail, Score: score(2)}, "bad/crack/2.png": {Verdict: result.VerdictFail, Score: score(3)},
		}, true, nil},
		{"a missed defect and an unreadable good part", map[string]result.Result{
			"good/1.png": {Verdict: result.VerdictPass, Score: score(-2)}, "good/2.png": {Verdict: result.VerdictError, ReasonCode: "capture_error", Reason: "gone"},
			"bad/crack/1.png": {Verdict: result.VerdictPass, Score: score(-0.5), Threshold: 0.5}, "bad/crack/2.png": {Verdict: result.VerdictFail, Score: score(3)},
		}, false, []string{"good/2.png", "bad/crack/1.png"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Run(context.Background(), set, "test", func(_ context.Context, im Image) result.Result { return c.judge[im.File] })
			if s.Passed != c.passed || strings.Join(s.Failing, ",") != strings.Join(c.failing, ",") || len(s.Images) != 4 {
				t.Fatalf("passed %v failing %v (%d images), want %v %v", s.Passed, s.Failing, len(s.Images), c.passed, c.failing)
			}
			for _, f := range c.failing {
				if !strings.Contains(s.Brief(), f) {
					t.Errorf("brief %q does not name %s", s.Brief(), f)
				}
			}
			if !c.passed && !strings.Contains(s.Brief(), "expected fail, got pass (score -0.5, threshold 0.5)") {
				t.Errorf("brief %q does not say what the missed defect scored", s.Brief())
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	s := Run(ctx, set, "test", func(context.Context, Image) result.Result {
		if n++; n == 2 {
			cancel()
		}
		return result.Result{Verdict: result.VerdictPass}
	})
	if s.Passed || s.Error == "" || len(s.Images) != 2 {
		t.Errorf("cancelled challenge: passed %v error %q images %d", s.Passed, s.Error, len(s.Images))
	}
}
