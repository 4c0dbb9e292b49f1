package capture

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/internal/hostile"
)

// withLimits sets process-wide limits for one test and restores the
// defaults afterwards.
func withLimits(t *testing.T, l Limits) {
	t.Helper()
	if err := SetLimits(l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { SetLimits(Limits{}) })
}

// TestHostileImages: every hostile file is refused with its reason before
// OpenCV allocates for it (or, for the valid ones, decodes), through both
// entry points: bytes (HTTP /inspect) and files (sources, tools).
func TestHostileImages(t *testing.T) {
	dir := t.TempDir()
	for _, c := range hostile.Cases() {
		t.Run(c.Name, func(t *testing.T) {
			path := filepath.Join(dir, c.File)
			if err := os.WriteFile(path, c.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, via := range []string{"bytes", "file"} {
				var m gocv.Mat
				var err error
				if via == "bytes" {
					m, err = DecodeImage(c.Data)
				} else {
					m, err = ReadImage(path)
				}
				if c.OK {
					if err != nil {
						t.Fatalf("%s: valid file refused: %v", via, err)
					}
					if m.Cols() != 64 || m.Rows() != 48 || m.Type() != gocv.MatTypeCV8UC3 {
						t.Fatalf("%s: decoded %dx%d %v", via, m.Cols(), m.Rows(), m.Type())
					}
					m.Close()
					continue
				}
				if err == nil {
					m.Close()
					t.Fatalf("%s: hostile file decoded", via)
				}
				if !strings.Contains(strings.ToLower(err.Error()), c.Want) {
					t.Fatalf("%s: error %q lacks %q", via, err, c.Want)
				}
				if via == "file" && !strings.Contains(err.Error(), c.File) {
					t.Fatalf("file error %q does not name the file", err)
				}
			}
			f := DecodeFrame(c.Data, PreprocessConfig{Width: 16, Height: 16})
			defer f.Close()
			if (f.Err == nil) != c.OK || (c.OK && f.Image.Cols() != 16) {
				t.Fatalf("DecodeFrame: err %v", f.Err)
			}
		})
	}
}

// TestGuardCatchesOpenCVExceptions: without the header check, OpenCV
// throws cv::Exception for a gigapixel header; through the guard that is
// an error, not an aborted process (gocv.IMDecode aborts here).
func TestGuardCatchesOpenCVExceptions(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"png 100000x100000", hostile.HugePNG(100000, 100000, false)},
		{"gray png", hostile.HugePNG(100000, 100000, true)},
		{"jpeg 65500x65500", hostile.HugeJPEG(65500, 65500)},
		{"bmp 100000x100000", hostile.HugeBMP(100000, 100000)},
		{"tiff 100000x100000", hostile.HugeTIFF(100000, 100000)},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := guardedIMDecode(c.data, gocv.IMReadColor)
			if err == nil {
				m.Close()
				t.Fatal("OpenCV decoded a gigapixel header")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "CV_IO_MAX_IMAGE_PIXELS") {
				t.Fatalf("error %v, want OpenCV's pixel assertion as ErrCorrupt", err)
			}
		})
	}
}

// TestImageLimits: the configurable limits refuse with texts that name the
// key, and what fits is decoded; a smaller limit applies at once.
func TestImageLimits(t *testing.T) {
	dir := t.TempDir()
	png := hostile.PNG(640, 480)
	pngPath := filepath.Join(dir, "p.png")
	os.WriteFile(pngPath, png, 0o644)
	bomb := hostile.PNGBomb(4000, 3000) // 12 MP of zeros in ~12 KB
	cases := []struct {
		name string
		lim  Limits
		data []byte
		want string // "" = decodes
	}{
		{"defaults decode a VGA png", Limits{}, png, ""},
		{"max_pixels below the image", Limits{MaxPixels: 640*480 - 1}, png, "png declares 640x480 = 307200 pixels, over capture.limits.max_pixels 307199: refused before decoding"},
		{"max_pixels exactly the image", Limits{MaxPixels: 640 * 480}, png, ""},
		{"max_bytes below the file", Limits{MaxBytes: int64(len(png) - 1)}, png, fmt.Sprintf("image is %d bytes, over capture.limits.max_bytes %d", len(png), len(png)-1)},
		{"small bomb under the default", Limits{}, bomb, ""},
		{"small bomb over a 10 MP limit", Limits{MaxPixels: 10_000_000}, bomb, "over capture.limits.max_pixels 10000000"},
		{"tiff of doubles over 8 bytes a pixel", Limits{MaxPixels: 1000}, tiffWith(20, 20, 64, 4), "over 8 x capture.limits.max_pixels"},
		{"side over OpenCV's", Limits{MaxPixels: 1 << 30}, hostile.HugePNG(1<<20+1, 1, false), "OpenCV decodes at most 1048576 per side"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			withLimits(t, c.lim)
			m, err := DecodeImage(c.data)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				m.Close()
				return
			}
			if err == nil {
				m.Close()
				t.Fatal("decoded over the limit")
			}
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want ErrTooLarge with %q", err, c.want)
			}
		})
	}
	t.Run("file over max_bytes is not read", func(t *testing.T) {
		withLimits(t, Limits{MaxBytes: 4096})
		big := filepath.Join(dir, "big.png")
		f, _ := os.Create(big)
		f.Truncate(3 << 30) // a sparse 3 GB file: reading it would take 3 GB
		f.Close()
		_, err := ReadImage(big)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "is 3221225472 bytes, over capture.limits.max_bytes 4096: refused without reading") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("fifo and devices are refused without opening", func(t *testing.T) {
		fifo := filepath.Join(dir, "pipe.png")
		if err := syscall.Mkfifo(fifo, 0o644); err != nil {
			t.Skip("mkfifo:", err)
		}
		for _, p := range []string{fifo, "/dev/zero", dir} {
			done := make(chan error, 1)
			go func() { _, err := ReadImage(p); done <- err }()
			select {
			case err := <-done:
				if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "not a regular file") {
					t.Fatalf("%s: error %v", p, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: ReadImage blocked", p)
			}
		}
	})
	t.Run("limits are validated", func(t *testing.T) {
		if err := SetLimits(Limits{MaxConcurrentDecodes: -1}); err == nil || !strings.Contains(err.Error(), "max_concurrent_decodes") {
			t.Fatalf("SetLimits accepted -1 decodes: %v", err)
		}
		if CurrentLimits() != (Limits{}).withDefaults() {
			t.Fatalf("a refused SetLimits changed the limits: %+v", CurrentLimits())
		}
	})
}

// tiffWith is a TIFF whose first IFD declares w x h with bps bits and spp
// samples a pixel (the pixel data is not there; only the header matters).
func tiffWith(w, h uint32, bps, spp uint16) []byte {
	b := hostile.HugeTIFF(w, h)
	for k := 0; k < 9; k++ {
		e := b[10+12*k:]
		switch tag := uint16(e[0]) | uint16(e[1])<<8; tag {
		case 258:
			e[8], e[9] = byte(bps), byte(bps>>8)
		case 277:
			e[8], e[9] = byte(spp), byte(spp>>8)
		}
	}
	return b
}

// TestDecodeConcurrencyLimit: at most max_concurrent_decodes decodes run at
// once across goroutines, and none is lost.
func TestDecodeConcurrencyLimit(t *testing.T) {
	withLimits(t, Limits{MaxConcurrentDecodes: 2})
	data := hostile.PNGBomb(3000, 3000) // ~9 MP: a few ms each
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak, errs := 0, 0
	stop := make(chan struct{})
	go func() { // sample the gate while decodes run
		for {
			select {
			case <-stop:
				return
			default:
			}
			gate.mu.Lock()
			mu.Lock()
			peak = max(peak, gate.active)
			mu.Unlock()
			gate.mu.Unlock()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := DecodeImage(data)
			if err != nil {
				mu.Lock()
				errs++
				mu.Unlock()
				return
			}
			m.Close()
		}()
	}
	wg.Wait()
	close(stop)
	if errs != 0 || peak > 2 || peak == 0 {
		t.Fatalf("peak %d concurrent decodes (limit 2), %d errors", peak, errs)
	}
	// A full gate refuses after its wait rather than hanging.
	gate.mu.Lock()
	gate.active += 2
	gate.mu.Unlock()
	defer func() { gate.mu.Lock(); gate.active -= 2; gate.mu.Unlock() }()
	err := gate.acquire(50 * time.Millisecond)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "2 image decodes already running") {
		t.Fatalf("full gate: %v", err)
	}
}

// TestTrailingBytesAndTruncation: bytes after a complete image are
// accepted, truncation anywhere before its end is caught, for each format
// with an end to find (OpenCV decodes a truncated JPEG as grey without an
// error).
func TestTrailingBytesAndTruncation(t *testing.T) {
	valid := map[string][]byte{
		"png":  hostile.PNG(64, 48),
		"jpeg": hostile.JPEG(64, 48),
		"bmp":  hostile.BMP(64, 48),
		"pnm":  append([]byte("P5\n# comment\n64 48\n255\n"), make([]byte, 64*48)...),
	}
	for name, data := range valid {
		t.Run(name, func(t *testing.T) {
			for _, trailer := range []int{1, 1000} {
				m, err := DecodeImage(hostile.WithTrailer(data, trailer))
				if err != nil {
					t.Fatalf("%d trailing bytes: %v", trailer, err)
				}
				m.Close()
			}
			if name == "jpeg" { // zero padding after EOI, as some encoders write
				m, err := DecodeImage(append(append([]byte(nil), data...), make([]byte, 100)...))
				if err != nil {
					t.Fatalf("zero padding: %v", err)
				}
				m.Close()
			}
			for _, cut := range []int{len(data) - 1, len(data) - 2, len(data) * 3 / 4, len(data) / 2, 40} {
				_, err := ParseImageHeader(hostile.Truncate(data, cut))
				if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("cut at %d of %d: %v, want truncated", cut, len(data), err)
				}
			}
		})
	}
}

// TestHeaderFormats: each accepted format's header parser reads what
// OpenCV's encoders (or the hostile generators) wrote.
func TestHeaderFormats(t *testing.T) {
	cases := []struct {
		name   string
		data   []byte
		format Format
		w, h   int
	}{
		{"png", encodeImage(t, ".png", 40, 30), FormatPNG, 40, 30},
		{"jpeg", encodeImage(t, ".jpg", 40, 30), FormatJPEG, 40, 30},
		{"bmp", encodeImage(t, ".bmp", 40, 30), FormatBMP, 40, 30},
		{"tiff opencv", encodeImage(t, ".tiff", 40, 30), FormatTIFF, 40, 30},
		{"tiff hostile", hostile.TIFF(8, 4), FormatTIFF, 8, 4},
		{"bmp top-down", bmpTopDown(hostile.BMP(6, 5)), FormatBMP, 6, 5},
		{"pgm", append([]byte("P5 7 3 255\n"), make([]byte, 21)...), FormatPNM, 7, 3},
		{"ppm 16-bit", append([]byte("P6\n2 2\n65535\n"), make([]byte, 24)...), FormatPNM, 2, 2},
		{"pbm ascii", []byte("P1\n3 2\n0 1 0\n1 0 1\n"), FormatPNM, 3, 2},
		{"webp lossless", webpVP8L(300, 200), FormatWebP, 300, 200},
		{"webp extended", webpVP8X(5000, 4000), FormatWebP, 5000, 4000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := ParseImageHeader(c.data)
			if err != nil && !strings.HasPrefix(c.name, "webp") {
				t.Fatal(err)
			}
			if h.Format != c.format || h.Width != c.w || h.Height != c.h {
				t.Fatalf("header %+v, want %s %dx%d", h, c.format, c.w, c.h)
			}
			if strings.HasPrefix(c.name, "webp") {
				return // headers only: the payload is not a real bitstream
			}
			m, err := DecodeImage(c.data)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Cols() != c.w || m.Rows() != c.h {
				t.Fatalf("decoded %dx%d", m.Cols(), m.Rows())
			}
		})
	}
	withLimits(t, Limits{})
	if _, err := CheckImage(webpVP8X(16000, 16000)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("256 MP WebP header: %v", err)
	}
}

func bmpTopDown(b []byte) []byte {
	h := int32(b[22]) | int32(b[23])<<8 | int32(b[24])<<16 | int32(b[25])<<24
	h = -h
	b[22], b[23], b[24], b[25] = byte(h), byte(h>>8), byte(h>>16), byte(h>>24)
	return b
}

func webpVP8L(w, h int) []byte {
	b := append([]byte("RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f"), make([]byte, 20)...)
	bits := uint32(w-1) | uint32(h-1)<<14
	b[21], b[22], b[23], b[24] = byte(bits), byte(bits>>8), byte(bits>>16), byte(bits>>24)
	n := uint32(len(b) - 8)
	b[4], b[5], b[6], b[7] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	return b
}

func webpVP8X(w, h int) []byte {
	b := append([]byte("RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00"), make([]byte, 20)...)
	b[24], b[25], b[26] = byte(w-1), byte((w-1)>>8), byte((w-1)>>16)
	b[27], b[28], b[29] = byte(h-1), byte((h-1)>>8), byte((h-1)>>16)
	n := uint32(len(b) - 8)
	b[4], b[5], b[6], b[7] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	return b
}

// cleanText: an error text fit for a result payload and a PLC screen.
func cleanText(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// TestWatchOddNamesAndHostileFiles: in a real watch folder, every hostile
// file gets exactly one error frame (no grace wait for files over the
// limits), valid odd files decode, and a name that is not a valid part ID
// gives an empty part ID while error texts quote it.
func TestWatchOddNamesAndHostileFiles(t *testing.T) {
	dir := t.TempDir()
	want := map[string]hostile.Case{}
	for _, c := range hostile.Cases() {
		os.WriteFile(filepath.Join(dir, c.File), c.Data, 0o644)
		want[c.File] = c
	}
	odd := map[string]hostile.OddName{}
	for i, n := range hostile.OddNames() {
		data := hostile.PNG(20, 10)
		if i%2 == 0 {
			data = hostile.Truncate(data, 30) // a bad file with a bad name
		}
		os.WriteFile(filepath.Join(dir, n.Name), data, 0o644)
		odd[n.Name] = n
	}
	cfg := watchConfig(dir)
	cfg.Watch.Grace = 50 * time.Millisecond
	s := openT(t, cfg)
	w := s.(*watchSource)
	seen := map[string]bool{}
	for range len(want) + len(odd) {
		f := nextT(t, s, 10*time.Second)
		base := filepath.Base(f.Path)
		if seen[base] {
			t.Fatalf("%q handed out twice", base)
		}
		seen[base] = true
		if f.Err != nil && !cleanText(f.Err.Error()) {
			t.Errorf("%q: error text carries raw control bytes: %q", base, f.Err)
		}
		if c, ok := want[base]; ok {
			if c.OK != (f.Err == nil) || (!c.OK && !strings.Contains(strings.ToLower(f.Err.Error()), c.Want)) {
				t.Errorf("%s: err %v, want ok=%v %q", c.Name, f.Err, c.OK, c.Want)
			}
		} else if n, ok := odd[base]; ok {
			wantID := ""
			if n.Valid {
				wantID = strings.TrimSuffix(n.Name, ".png")
			}
			if f.PartID != wantID {
				t.Errorf("%q: part ID %q, want %q", n.Name, f.PartID, wantID)
			}
		} else {
			t.Fatalf("unexpected file %q", base)
		}
		if err := w.Ack(f, f.Err == nil); err != nil {
			t.Errorf("ack %q: %v", base, err)
		}
		f.Close()
	}
	if got := len(names(t, filepath.Join(dir, "done"))) + len(names(t, filepath.Join(dir, "failed"))); got != len(want)+len(odd) {
		t.Fatalf("%d files acknowledged, want %d", got, len(want)+len(odd))
	}
}

// TestWatchAckFailures: done/ replaced by a file (the finding: Ack spun a
// core forever holding the source lock) and done/ removed. The failure is
// returned at once, logged and counted, the file stays in place and is not
// handed out again, other files keep flowing and Close is prompt; a
// removed done/ is recreated.
func TestWatchAckFailures(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, filepath.Join(dir, "a1.png"), 20, 20, 1, 2, 3)
	s := openT(t, watchConfig(dir))
	w := s.(*watchSource)

	f := nextT(t, s, 5*time.Second)
	done := filepath.Join(dir, "done")
	os.Remove(done)
	os.WriteFile(done, []byte("not a folder"), 0o644)
	start := time.Now()
	err := w.Ack(f, true)
	f.Close()
	if err == nil || !strings.Contains(err.Error(), "is not a folder") || time.Since(start) > time.Second {
		t.Fatalf("ack into a file: %v after %s", err, time.Since(start))
	}
	if st := w.State(); st.AckFailures != 1 || !strings.Contains(st.LastError, "a1.png") || !st.Connected {
		t.Fatalf("state %+v", st)
	}
	// The source keeps going: a new file is delivered, the stuck one is not.
	writeImage(t, filepath.Join(dir, "a2.png"), 20, 20, 1, 2, 3)
	g := nextT(t, s, 5*time.Second)
	if filepath.Base(g.Path) != "a2.png" {
		t.Fatalf("got %s, want a2.png (a1.png is stuck)", g.Path)
	}
	// done/ removed entirely (an operator's clean-up): recreated.
	os.Remove(done)
	if err := w.Ack(g, true); err != nil {
		t.Fatalf("ack with done/ removed: %v", err)
	}
	g.Close()
	if got := names(t, done); len(got) != 1 || got[0] != "a2.png" {
		t.Fatalf("done/ holds %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "a1.png")); err != nil {
		t.Fatalf("the stuck file must stay in the watch folder: %v", err)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close blocked")
	}
}

// TestFreeNameBounded: a thousand taken names end in an error, a file in
// place of the folder in another, never in a loop.
func TestFreeNameBounded(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.png"), nil, 0o644)
	for i := 1; i <= maxNameTries; i++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("p-%d.png", i)), nil, 0o644)
	}
	cases := []struct {
		name, dir, want string
	}{
		{"all taken", dir, "1000 numbered variants are all taken"},
		{"dir is a file", filepath.Join(dir, "p.png"), "is not a folder"},
		{"dir missing", filepath.Join(dir, "gone"), "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := freeName(c.dir, "p.png")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("freeName: %v, want %q", err, c.want)
			}
		})
	}
	os.Remove(filepath.Join(dir, "p-500.png"))
	if got, err := freeName(dir, "p.png"); err != nil || filepath.Base(got) != "p-500.png" {
		t.Fatalf("freeName with p-500 free: %s %v", got, err)
	}
}

// TestWatchReadsAtMostMaxBytes: a huge file in the watch folder is refused
// from its size alone (the finding: a 3 GB file took 6.5 GB of memory).
func TestWatchReadsAtMostMaxBytes(t *testing.T) {
	dir := t.TempDir()
	f, _ := os.Create(filepath.Join(dir, "huge.png"))
	f.Write(hostile.PNG(8, 8))
	f.Truncate(3 << 30) // sparse: costs no disk
	f.Close()
	s := openT(t, watchConfig(dir))
	fr := nextT(t, s, 5*time.Second)
	defer fr.Close()
	if !errors.Is(fr.Err, ErrTooLarge) || !strings.Contains(fr.Err.Error(), "over capture.limits.max_bytes 268435456: refused without reading") {
		t.Fatalf("err %v", fr.Err)
	}
}

// FuzzParseImageHeader: no input makes the header guard panic, loop or
// claim a size it then fails to check; whatever it accepts within small
// limits decodes through the guarded OpenCV call without aborting. The
// seed corpus is the hostile set plus valid files of every format.
func FuzzParseImageHeader(f *testing.F) {
	for _, c := range hostile.Cases() {
		if len(c.Data) < 1<<16 {
			f.Add(c.Data)
		}
	}
	f.Add(hostile.BMP(4, 3))
	f.Add(hostile.TIFF(4, 3))
	f.Add(webpVP8L(3, 2))
	f.Add(webpVP8X(3, 2))
	f.Add([]byte("P6 2 2 255\n0123456789ab"))
	f.Add(hostile.PNGBomb(100, 100))
	lim := Limits{MaxPixels: 1 << 16, MaxBytes: 1 << 20, MaxConcurrentDecodes: 2}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := checkImage(data, lim)
		if err != nil {
			return
		}
		if h.Width <= 0 || h.Height <= 0 || h.Pixels() > lim.MaxPixels {
			t.Fatalf("accepted header %+v", h)
		}
		m, err := guardedIMDecode(data, gocv.IMReadColor)
		if err == nil {
			m.Close()
		}
	})
}

// TestErrorTextsQuoteBadNames: file errors name the file, quoted when the
// name has control bytes.
func TestErrorTextsQuoteBadNames(t *testing.T) {
	dir := t.TempDir()
	for _, n := range hostile.OddNames() {
		p := filepath.Join(dir, n.Name)
		os.WriteFile(p, nil, 0o644)
		_, err := ReadImage(p)
		if err == nil || !cleanText(err.Error()) || !errors.Is(err, ErrEmptyFile) {
			t.Errorf("%q: %q", n.Name, err)
		}
		if n.Valid && !strings.Contains(err.Error(), n.Name) {
			t.Errorf("%q: error %q does not name it as is", n.Name, err)
		}
		_, err = ReadImage(p + ".missing")
		if err == nil || !cleanText(err.Error()) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%q missing: %q", n.Name, err)
		}
	}
	if got := safePath("a/b c.png"); got != "a/b c.png" {
		t.Errorf("clean path changed: %s", got)
	}
	if got := safePath("a\nb"); !bytes.Equal([]byte(got), []byte(`"a\nb"`)) {
		t.Errorf("quoted %s", got)
	}
}
