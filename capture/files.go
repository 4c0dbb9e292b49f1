package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"log/slog"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/partid"
)

// Per-file errors, carried (wrapped with the file name) in Frame.Err so the
// daemon can tell an operator what is wrong with the file.
var (
	ErrEmptyFile   = errors.New("zero-byte file")
	ErrUnsupported = errors.New("unsupported image format (want " + AcceptedFormats + ")")
	ErrTruncated   = errors.New("truncated image (the file ends before the image does)")
	ErrCorrupt     = errors.New("corrupt image")
)

// base holds what every source kind shares: identity, preprocessing and the
// sequence counter.
type base struct {
	cfg  Config
	name string
	pre  *preprocessor
	log  *slog.Logger
	seq  atomic.Uint64
}

func newBase(cfg Config, pre *preprocessor) base {
	return base{cfg: cfg, name: cfg.Name, pre: pre, log: cfg.Logger.With("source", cfg.Name, "kind", string(cfg.Kind))}
}

// Name implements Source.
func (b *base) Name() string { return b.name }

// frame wraps orig (ownership passes to the frame) and preprocesses it. A
// preprocessing failure (ROI outside the frame) gives an error frame.
func (b *base) frame(orig gocv.Mat, captured time.Time, partID, path string) *Frame {
	img, err := b.pre.apply(orig)
	if err != nil {
		orig.Close()
		return b.errorFrame(captured, partID, path, fmt.Errorf("preprocess frame from %s: %w", b.name, err))
	}
	al := b.pre.locate(&img)
	return &Frame{Source: b.name, Seq: b.seq.Add(1), Captured: captured, PartID: partID, Path: path,
		Original: orig, Image: img, Color: b.pre.color, Align: al}
}

// errorFrame is a part that could not be read; it has no Mats.
func (b *base) errorFrame(captured time.Time, partID, path string, err error) *Frame {
	return &Frame{Source: b.name, Seq: b.seq.Add(1), Captured: captured, PartID: partID, Path: path,
		Color: b.pre.color, Err: err}
}

// PartIDFromFile is the part ID a file's name gives: the name without
// folder and extension (cameras and FTP drops name files after the part:
// serial, barcode). A name that is not a valid part ID (partid.Check:
// control characters, newlines, invalid UTF-8, over partid.MaxLen bytes)
// gives "" and an error saying why: the file still gets its result, but
// without a part ID, so the raw name never reaches a PLC.
func PartIDFromFile(p string) (string, error) {
	name := filepath.Base(p)
	id := strings.TrimSuffix(name, filepath.Ext(name))
	if _, err := partid.Check(id); err != nil {
		return "", fmt.Errorf("file name %s is not a valid part ID (%v); its result carries no part ID", safePath(name), err)
	}
	return id, nil
}

// partID is PartIDFromFile with the refusal logged.
func (b *base) partID(p string) string {
	id, err := PartIDFromFile(p)
	if err != nil {
		b.log.Warn("file name is not a valid part ID; the result carries an empty part_id", "file", p, "err", err)
	}
	return id
}

// decodeFile reads and decodes one image file into 8-bit BGR through the
// guarded reader (size, header, pixel and concurrency limits; OpenCV's
// exceptions caught).
func decodeFile(path string) (gocv.Mat, error) {
	return ReadImage(path)
}

// listImages returns the regular, non-hidden files of dir matching pattern,
// sorted by name (os.ReadDir sorts).
func listImages(dir, pattern string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.Type().IsRegular() || !wantFile(e.Name(), pattern) {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	return out, nil
}

// wantFile skips hidden files and the temporary names FTP/SMB clients write
// to before renaming, then applies the configured pattern.
func wantFile(name, pattern string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "~") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".tmp", ".part", ".partial", ".filepart", ".crdownload", ".swp":
		return false
	}
	if pattern == "" {
		return true
	}
	ok, err := filepath.Match(pattern, name)
	return err == nil && ok
}

// fileSource is the shared Next loop of folder and sequence: a list of paths
// known up front (folder) or generated until the first missing one (sequence).
type fileSource struct {
	base
	mu     sync.Mutex
	next   func() (string, bool) // next path; false at the end
	closed bool
}

func openFolder(cfg Config, pre *preprocessor) (Source, error) {
	st, err := os.Stat(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("capture source %q: folder %s: %w", cfg.Name, cfg.Path, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("capture source %q: folder %s is not a directory", cfg.Name, cfg.Path)
	}
	files, err := listImages(cfg.Path, cfg.Pattern)
	if err != nil {
		return nil, fmt.Errorf("capture source %q: list folder %s: %w", cfg.Name, cfg.Path, err)
	}
	s := &fileSource{base: newBase(cfg, pre)}
	i := 0
	s.next = func() (string, bool) {
		if i >= len(files) {
			return "", false
		}
		i++
		return files[i-1], true
	}
	s.log.Info("folder opened", "path", cfg.Path, "files", len(files))
	return s, nil
}

// openSequence reads path, a printf pattern such as frames/%04d.png, from
// index 0 or 1 (OpenCV's rule) up to the first missing index. It decodes
// each file itself rather than through OpenCV's image-sequence backend so a
// bad file in the middle is an error frame, not a silent end of the run.
func openSequence(cfg Config, pre *preprocessor) (Source, error) {
	if strings.Count(cfg.Path, "%") != 1 {
		return nil, fmt.Errorf("capture source %q: sequence path %s needs one printf verb such as %%04d", cfg.Name, cfg.Path)
	}
	name := func(i int) string { return fmt.Sprintf(cfg.Path, i) }
	start := -1
	for _, i := range []int{0, 1} {
		if _, err := os.Stat(name(i)); err == nil {
			start = i
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("capture source %q: sequence %s: neither %s nor %s exists (numbering must start at 0 or 1)",
			cfg.Name, cfg.Path, name(0), name(1))
	}
	s := &fileSource{base: newBase(cfg, pre)}
	i := start
	s.next = func() (string, bool) {
		p := name(i)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			return "", false
		}
		i++
		return p, true
	}
	return s, nil
}

// Next implements Source.
func (s *fileSource) Next(ctx context.Context) (*Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	p, ok := s.next()
	if !ok {
		return nil, io.EOF
	}
	f := s.readFile(p)
	if f.Err != nil {
		s.log.Warn("bad image file: error frame", "path", p, "err", f.Err)
	}
	return f, nil
}

// readFile turns one file into a frame or an error frame.
func (b *base) readFile(p string) *Frame {
	part := b.partID(p)
	st, err := os.Stat(p)
	if err != nil {
		return b.errorFrame(time.Now(), part, p, fmt.Errorf("stat image %s: %w", safePath(p), bareErr(err)))
	}
	m, err := decodeFile(p)
	if err != nil {
		return b.errorFrame(st.ModTime(), part, p, err)
	}
	return b.frame(m, st.ModTime(), part, p)
}

// State implements Source: a file source is connected until closed.
func (s *fileSource) State() SourceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SourceState{Connected: !s.closed}
}

// Close implements Source.
func (s *fileSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// videoSource replays a recorded video file once through OpenCV's FFMPEG
// backend; reading a file cannot stall, so it is read in the caller's
// goroutine.
type videoSource struct {
	base
	mu        sync.Mutex
	vc        *gocv.VideoCapture
	lastFrame time.Time
	lastErr   string
}

func openVideoFile(cfg Config, pre *preprocessor) (Source, error) {
	if cfg.Kind == KindSequence {
		return openSequence(cfg, pre)
	}
	st, err := os.Stat(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("capture source %q: video %s: %w", cfg.Name, cfg.Path, err)
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("capture source %q: video %s: %w", cfg.Name, cfg.Path, ErrEmptyFile)
	}
	vc, err := gocv.VideoCaptureFileWithAPI(cfg.Path, gocv.VideoCaptureFFmpeg)
	if err != nil || !vc.IsOpened() {
		vc.Close()
		return nil, fmt.Errorf("capture source %q: open video %s with FFMPEG: not a readable video (%v)", cfg.Name, cfg.Path, err)
	}
	return &videoSource{base: newBase(cfg, pre), vc: vc}, nil
}

// Next implements Source.
func (s *videoSource) Next(ctx context.Context) (*Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vc == nil {
		return nil, ErrClosed
	}
	m := gocv.NewMat()
	if !s.vc.Read(&m) || m.Empty() {
		m.Close()
		return nil, io.EOF
	}
	s.lastFrame = time.Now()
	return s.frame(m, s.lastFrame, "", s.cfg.Path), nil
}

// State implements Source.
func (s *videoSource) State() SourceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SourceState{Connected: s.vc != nil, LastError: s.lastErr}
	if !s.lastFrame.IsZero() {
		st.LastFrameAge = time.Since(s.lastFrame)
	}
	return st
}

// Close implements Source.
func (s *videoSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vc != nil {
		s.vc.Close()
		s.vc = nil
	}
	return nil
}
