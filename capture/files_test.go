package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/internal/testenv"
)

// TestFolderBadFiles: every broken file becomes an error frame naming the
// part and the file, good files decode, order is by name, EOF at the end.
func TestFolderBadFiles(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, filepath.Join(dir, "a01.png"), 40, 30, 10, 20, 30)
	writeImage(t, filepath.Join(dir, "a02.jpg"), 40, 30, 10, 20, 30)
	jpg := encodeImage(t, ".jpg", 64, 48)
	png := encodeImage(t, ".png", 64, 48)
	corrupt := append([]byte{0xFF, 0xD8, 0xFF}, make([]byte, 200)...)
	corrupt = append(corrupt, 0xFF, 0xD9)
	bad := map[string][]byte{
		"b01-zero.png":      {},
		"b02-truncated.jpg": jpg[:len(jpg)/2],
		"b03-truncated.png": png[:len(png)/2],
		"b04-text.png":      []byte("this is not an image\n"),
		"b05-corrupt.jpg":   corrupt,
	}
	for name, data := range bad {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Ignored: hidden files, upload temp names, subfolders.
	os.WriteFile(filepath.Join(dir, ".hidden.png"), png, 0o644)
	os.WriteFile(filepath.Join(dir, "c.png.part"), png, 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)

	s := openT(t, Config{Kind: KindFolder, Path: dir, Preprocess: PreprocessConfig{Width: 32, Height: 16}})
	want := []struct {
		part string
		err  error
	}{
		{"a01", nil}, {"a02", nil},
		{"b01-zero", ErrEmptyFile}, {"b02-truncated", ErrTruncated}, {"b03-truncated", ErrTruncated},
		{"b04-text", ErrUnsupported}, {"b05-corrupt", ErrCorrupt},
	}
	for i, w := range want {
		f := nextT(t, s, 5*time.Second)
		if f.PartID != w.part || f.Seq != uint64(i+1) || filepath.Dir(f.Path) != dir {
			t.Errorf("frame %d: part %q seq %d path %s, want part %q seq %d", i, f.PartID, f.Seq, f.Path, w.part, i+1)
		}
		switch {
		case w.err == nil && f.Err != nil:
			t.Errorf("%s: unexpected error %v", w.part, f.Err)
		case w.err == nil:
			if f.Image.Cols() != 32 || f.Image.Rows() != 16 || f.Original.Cols() != 40 {
				t.Errorf("%s: image %dx%d original %d wide", w.part, f.Image.Cols(), f.Image.Rows(), f.Original.Cols())
			}
			if _, _, _, _, err := f.Pixels(); err != nil {
				t.Errorf("%s: pixels: %v", w.part, err)
			}
		case !errors.Is(f.Err, w.err):
			t.Errorf("%s: error %v, want %v", w.part, f.Err, w.err)
		default:
			if _, _, _, _, err := f.Pixels(); err == nil {
				t.Errorf("%s: Pixels on an error frame should fail", w.part)
			}
		}
		f.Close()
		f.Close() // idempotent
	}
	if _, err := s.Next(context.Background()); err != io.EOF {
		t.Fatalf("after the last file: %v, want io.EOF", err)
	}
}

// TestOpenErrors: unusable paths fail at Open with the path in the message.
func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "x.avi")
	os.WriteFile(file, []byte("not a video"), 0o644)
	empty := filepath.Join(dir, "empty.avi")
	os.WriteFile(empty, nil, 0o644)
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing folder", Config{Kind: KindFolder, Path: filepath.Join(dir, "nope")}, "nope"},
		{"folder is a file", Config{Kind: KindFolder, Path: file}, "not a directory"},
		{"watch missing", Config{Kind: KindWatch, Path: filepath.Join(dir, "nope")}, "nope"},
		{"video missing", Config{Kind: KindVideo, Path: filepath.Join(dir, "v.avi")}, "v.avi"},
		{"video garbage", Config{Kind: KindVideo, Path: file}, "x.avi"},
		{"video empty", Config{Kind: KindVideo, Path: empty}, "zero-byte"},
		{"sequence no verb", Config{Kind: KindSequence, Path: filepath.Join(dir, "f.png")}, "printf"},
		{"sequence missing", Config{Kind: KindSequence, Path: filepath.Join(dir, "f%04d.png")}, "start at 0 or 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(c.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// TestVideoFile replays an MJPG AVI written by gocv's VideoWriter.
func TestVideoFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "line.avi")
	const n = 20
	writeVideo(t, p, n, 96, 64)
	s := openT(t, Config{Kind: KindVideo, Path: p, Preprocess: PreprocessConfig{Width: 48, Height: 32}})
	for i := 0; i < n; i++ {
		f := nextT(t, s, 5*time.Second)
		if f.Err != nil || f.Seq != uint64(i+1) || f.Path != p {
			t.Fatalf("frame %d: seq %d path %s err %v", i, f.Seq, f.Path, f.Err)
		}
		// MJPG is lossy: the blue level written for frame i survives within a few levels.
		if b := meanBGR(f.Image)[0]; b < float64(10*i%250)-6 || b > float64(10*i%250)+6 {
			t.Errorf("frame %d: blue mean %.1f, want about %d (frames out of order?)", i, b, 10*i%250)
		}
		if f.Image.Cols() != 48 || f.Original.Cols() != 96 {
			t.Errorf("frame %d: sizes %d/%d", i, f.Image.Cols(), f.Original.Cols())
		}
		f.Close()
	}
	if _, err := s.Next(context.Background()); err != io.EOF {
		t.Fatalf("after %d frames: %v, want io.EOF", n, err)
	}
	if st := s.State(); !st.Connected {
		t.Errorf("state %+v", st)
	}
}

// TestSequence reads printf-numbered images from 0 and from 1, stops at the
// first gap, and turns a bad file in the middle into an error frame.
func TestSequence(t *testing.T) {
	for _, start := range []int{0, 1} {
		dir := t.TempDir()
		for i := start; i < start+5; i++ {
			writeImage(t, filepath.Join(dir, fmtIndex(i)), 32, 24, uint8(20*i), 0, 0)
		}
		os.WriteFile(filepath.Join(dir, fmtIndex(start+2)), []byte{}, 0o644)  // broken in the middle
		writeImage(t, filepath.Join(dir, fmtIndex(start+7)), 32, 24, 0, 0, 0) // after a gap: not read
		s := openT(t, Config{Kind: KindSequence, Path: filepath.Join(dir, "frame%04d.png")})
		for i := start; i < start+5; i++ {
			f := nextT(t, s, 5*time.Second)
			if f.PartID != fmtIndex(i)[:9] {
				t.Errorf("start %d: part %q, want %q", start, f.PartID, fmtIndex(i)[:9])
			}
			if (i == start+2) != (f.Err != nil) {
				t.Errorf("start %d index %d: err %v", start, i, f.Err)
			}
			if f.Err == nil && int(meanBGR(f.Image)[0]+0.5) != 20*i {
				t.Errorf("start %d index %d: blue %v", start, i, meanBGR(f.Image)[0])
			}
			f.Close()
		}
		if _, err := s.Next(context.Background()); err != io.EOF {
			t.Fatalf("start %d: after the gap: %v, want io.EOF", start, err)
		}
	}
}

func fmtIndex(i int) string { return fmt.Sprintf("frame%04d.png", i) }

// TestFolderRealImages reads the shared tire images (real PNGs from a real
// line camera) through the folder source.
func TestFolderRealImages(t *testing.T) {
	dir := filepath.Join(testenv.SharedDir(t), "data", "mvtec3d-tire-rgb", "test", "good", "rgb")
	s := openT(t, Config{Kind: KindFolder, Path: dir})
	n := 0
	for {
		f, err := s.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Err != nil || f.Original.Cols() != 300 || f.Original.Rows() != 400 || f.Image.Cols() != 256 || f.Image.Rows() != 256 {
			t.Fatalf("%s: err %v original %dx%d image %dx%d", f.Path, f.Err, f.Original.Cols(), f.Original.Rows(), f.Image.Cols(), f.Image.Rows())
		}
		n++
		f.Close()
	}
	if n != 25 {
		t.Fatalf("read %d images, want the 25 in %s", n, dir)
	}
}
