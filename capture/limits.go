package capture

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"gocv.io/x/gocv"
)

// ErrTooLarge is wrapped by every refusal on the limits: too many pixels
// declared, a file over max_bytes, or no decode slot free in time.
var ErrTooLarge = errors.New("image over the capture limits")

// Limits bound what one image may cost before a single pixel is decoded.
// They are process-wide (one set of decoder threads and one memory budget
// serve every source and the HTTP API): Open applies the configured ones,
// SetLimits sets them directly; until then the defaults hold.
type Limits struct {
	// MaxPixels is the largest width x height an image header may declare
	// (default 50,000,000: a 50 MP industrial camera; range 1..1073741824,
	// OpenCV's own ceiling). Checked from the header, before decoding, so a
	// small file that declares gigapixels (a decompression bomb) costs
	// nothing.
	MaxPixels int64 `yaml:"max_pixels"`
	// MaxBytes is the largest image file or upload that is read at all
	// (default 256 MiB; range 1024..2147483647). Files are stat'ed first and
	// read through a bounded reader, so a growing file cannot overshoot.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxConcurrentDecodes is how many images may be decoded at once in the
	// whole process (default 2; range 1..64). Further decodes wait up to
	// 30 s for a slot and are then refused.
	MaxConcurrentDecodes int `yaml:"max_concurrent_decodes"`
}

// Limit defaults and ranges; Validate names them in its errors.
const (
	DefaultMaxPixels            = 50_000_000
	DefaultMaxBytes             = 256 << 20
	DefaultMaxConcurrentDecodes = 2

	maxPixelsCeiling  = 1 << 30 // CV_IO_MAX_IMAGE_PIXELS
	minMaxBytes       = 1024
	maxBytesCeiling   = 1<<31 - 1 // one cv::Mat row of bytes
	maxDecodesCeiling = 64
)

// decodeWait is how long a decode waits for a slot before it is refused:
// long enough for a queue of large images on a slow CPU, short enough that
// a wedged decoder shows up as errors rather than a silent stop.
const decodeWait = 30 * time.Second

// Defaults fills every unset limit with its default.
func (l *Limits) Defaults() {
	if l.MaxPixels == 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxConcurrentDecodes == 0 {
		l.MaxConcurrentDecodes = DefaultMaxConcurrentDecodes
	}
}

// withDefaults returns a copy with Defaults applied.
func (l Limits) withDefaults() Limits {
	l.Defaults()
	return l
}

// validate reports every out-of-range limit (after defaults).
func (l Limits) validate() []error {
	l = l.withDefaults()
	var errs []error
	if l.MaxPixels < 1 || l.MaxPixels > maxPixelsCeiling {
		errs = append(errs, fmt.Errorf("limits.max_pixels: %d is outside 1..%d", l.MaxPixels, maxPixelsCeiling))
	}
	if l.MaxBytes < minMaxBytes || l.MaxBytes > maxBytesCeiling {
		errs = append(errs, fmt.Errorf("limits.max_bytes: %d is outside %d..%d", l.MaxBytes, minMaxBytes, maxBytesCeiling))
	}
	if l.MaxConcurrentDecodes < 1 || l.MaxConcurrentDecodes > maxDecodesCeiling {
		errs = append(errs, fmt.Errorf("limits.max_concurrent_decodes: %d is outside 1..%d", l.MaxConcurrentDecodes, maxDecodesCeiling))
	}
	return errs
}

// decodeGate is the process-wide limit state: the limits and a semaphore
// whose size can change while decodes hold slots.
type decodeGate struct {
	mu      sync.Mutex
	lim     Limits
	active  int
	changed chan struct{} // closed and replaced whenever a slot frees up
}

var gate = &decodeGate{lim: Limits{}.withDefaults(), changed: make(chan struct{})}

// SetLimits replaces the process-wide limits (zero fields take their
// defaults). Decodes already running keep their slot; a smaller
// concurrency applies as they finish.
func SetLimits(l Limits) error {
	if errs := l.validate(); len(errs) > 0 {
		return fmt.Errorf("capture limits: %w", errors.Join(errs...))
	}
	gate.mu.Lock()
	gate.lim = l.withDefaults()
	close(gate.changed)
	gate.changed = make(chan struct{})
	gate.mu.Unlock()
	return nil
}

// CurrentLimits returns the limits in force.
func CurrentLimits() Limits {
	gate.mu.Lock()
	defer gate.mu.Unlock()
	return gate.lim
}

// acquire takes a decode slot, waiting at most wait.
func (g *decodeGate) acquire(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		g.mu.Lock()
		if g.active < g.lim.MaxConcurrentDecodes {
			g.active++
			g.mu.Unlock()
			return nil
		}
		ch, n := g.changed, g.active
		g.mu.Unlock()
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%d image decodes already running for over %s (capture.limits.max_concurrent_decodes): %w", n, wait, ErrTooLarge)
		}
		t := time.NewTimer(left)
		select {
		case <-ch:
			t.Stop()
		case <-t.C:
		}
	}
}

func (g *decodeGate) release() {
	g.mu.Lock()
	g.active--
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// CheckImage parses data's header and checks it against the limits in
// force, without decoding: what DecodeImage does before OpenCV sees a byte.
func CheckImage(data []byte) (ImageHeader, error) {
	return checkImage(data, CurrentLimits())
}

func checkImage(data []byte, lim Limits) (ImageHeader, error) {
	if int64(len(data)) > lim.MaxBytes {
		return ImageHeader{}, fmt.Errorf("image is %d bytes, over capture.limits.max_bytes %d: %w", len(data), lim.MaxBytes, ErrTooLarge)
	}
	// Dimensions first: a header that claims gigapixels is refused for its
	// size even when the rest of the file is also missing.
	h, perr := ParseImageHeader(data)
	if h.Width <= 0 || h.Height <= 0 {
		return h, perr
	}
	if h.Width > maxSide || h.Height > maxSide {
		return h, fmt.Errorf("%s declares %dx%d pixels; OpenCV decodes at most %d per side: refused before decoding: %w",
			h.Format, h.Width, h.Height, maxSide, ErrTooLarge)
	}
	if h.Pixels() > lim.MaxPixels {
		return h, fmt.Errorf("%s declares %dx%d = %d pixels, over capture.limits.max_pixels %d: refused before decoding: %w",
			h.Format, h.Width, h.Height, h.Pixels(), lim.MaxPixels, ErrTooLarge)
	}
	// Decoders work in the file's own sample type (TIFF can hold 4 x 64-bit
	// samples a pixel, compressing to almost nothing): 8 bytes a pixel is
	// 16-bit RGBA, the most a camera writes.
	if h.SampleBytes > 8*lim.MaxPixels {
		return h, fmt.Errorf("%s declares %d bytes of samples (%dx%d), over 8 x capture.limits.max_pixels: refused before decoding: %w",
			h.Format, h.SampleBytes, h.Width, h.Height, ErrTooLarge)
	}
	return h, perr
}

// DecodeImage is the one way an encoded image becomes a Mat in this
// repository: header and limits check, a process-wide decode slot, then
// OpenCV's decoder behind a C++ exception guard. The Mat is 8-bit BGR and
// the caller must Close it. Errors wrap ErrEmptyFile, ErrUnsupported,
// ErrTruncated, ErrCorrupt or ErrTooLarge; nothing panics or aborts.
func DecodeImage(data []byte) (gocv.Mat, error) {
	lim := CurrentLimits()
	h, err := checkImage(data, lim)
	if err != nil {
		return gocv.Mat{}, err
	}
	if err := gate.acquire(decodeWait); err != nil {
		return gocv.Mat{}, err
	}
	defer gate.release()
	m, err := guardedIMDecode(data, gocv.IMReadColor)
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("decode %dx%d %s: %w", h.Width, h.Height, h.Format, err)
	}
	if m.Empty() {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("decode %dx%d %s: %w", h.Width, h.Height, h.Format, ErrCorrupt)
	}
	rotated := m.Cols() == h.Height && m.Rows() == h.Width // EXIF orientation applied
	if (m.Cols() != h.Width || m.Rows() != h.Height) && !rotated {
		// The header parsed here and the one the decoder used disagree: do
		// not trust either.
		got := fmt.Sprintf("%dx%d", m.Cols(), m.Rows())
		m.Close()
		return gocv.Mat{}, fmt.Errorf("decode %s: header says %dx%d, decoder produced %s: %w", h.Format, h.Width, h.Height, got, ErrCorrupt)
	}
	return m, nil
}

// ReadImageFile reads an image file within capture.limits.max_bytes: the
// size is checked before reading (a 3 GB file costs nothing) and the read
// is bounded (a file that grows meanwhile cannot overshoot). Devices,
// FIFOs and directories are refused without being opened, so a path such as
// /dev/zero or a named pipe cannot hang or exhaust the caller.
func ReadImageFile(path string) ([]byte, error) {
	return readImageFile(path, CurrentLimits().MaxBytes)
}

func readImageFile(path string, maxBytes int64) ([]byte, error) {
	name := safePath(path)
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", name, bareErr(err))
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read image %s: not a regular file (%s): %w", name, st.Mode().Type(), ErrUnsupported)
	}
	if st.Size() > maxBytes {
		return nil, fmt.Errorf("image %s is %d bytes, over capture.limits.max_bytes %d: refused without reading: %w", name, st.Size(), maxBytes, ErrTooLarge)
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("image %s: %w", name, ErrEmptyFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", name, bareErr(err))
	}
	defer f.Close()
	data := make([]byte, 0, st.Size())
	data, err = readAllInto(data, io.LimitReader(f, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", name, bareErr(err))
	}
	if int64(len(data)) > maxBytes {
		return nil, fmt.Errorf("image %s grew past capture.limits.max_bytes %d while being read: %w", name, maxBytes, ErrTooLarge)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("image %s: %w", name, ErrEmptyFile)
	}
	return data, nil
}

// readAllInto is io.ReadAll into a buffer sized from stat, so the common
// case allocates once.
func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// ReadImage reads and decodes an image file through ReadImageFile and
// DecodeImage; errors name the file. The caller closes the Mat.
func ReadImage(path string) (gocv.Mat, error) {
	data, err := ReadImageFile(path)
	if err != nil {
		return gocv.Mat{}, err
	}
	m, err := DecodeImage(data)
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("image %s: %w", safePath(path), err)
	}
	return m, nil
}

// ReadFrame reads one image file and preprocesses it as a source
// configured with pc would, for tools that inspect or fit from files
// (segad inspect, fit, detector fitting). A file that cannot be read gives
// a frame with Err naming the file (and no Mats). The caller fills Source,
// Seq and PartID, and must Close the frame.
func ReadFrame(path string, pc PreprocessConfig) *Frame {
	data, err := ReadImageFile(path)
	if err != nil {
		pc = Config{Preprocess: pc}.withDefaults().Preprocess
		return &Frame{Captured: time.Now(), Color: pc.Color, Path: path, Err: err}
	}
	f := DecodeFrame(data, pc)
	f.Path = path
	if f.Err != nil {
		f.Err = fmt.Errorf("%s: %w", safePath(path), f.Err)
	}
	return f
}

// safePath is path for error texts, which end up in published results and
// on PLC screens: a name with control characters, invalid UTF-8 or terminal
// escapes (legal in Linux file names, and what a careless FTP client
// writes) is quoted with Go escapes instead of passed through.
func safePath(path string) string {
	if utf8.ValidString(path) && strings.IndexFunc(path, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return path
	}
	return strconv.QuoteToASCII(path)
}

// bareErr drops the path an *fs.PathError repeats (unquoted), keeping the
// operation and cause; errors.Is still sees the cause (fs.ErrNotExist).
func bareErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
