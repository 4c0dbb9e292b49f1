package infer

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/segad-edge/segad-edge/npy"

	"github.com/segad-edge/segad-edge/internal/testenv"
)

// setup loads ONNX Runtime (idempotent: Init with the same path is a no-op).
func setup(tb testing.TB) {
	tb.Helper()
	if err := Init(testenv.ORTLib(tb)); err != nil {
		tb.Fatalf("Init: %v", err)
	}
}

func fixture(name string) string { return filepath.Join("testdata", name) }

// npyArray is a fixture array: float32 values or bytes.
type npyArray struct {
	shape []int
	f32   []float32
	u8    []byte
}

// readNpy reads a fixture with the project's npy reader (tests may use it;
// the infer package itself does not depend on another stage).
func readNpy(tb testing.TB, path string) npyArray {
	tb.Helper()
	a, err := npy.Read(path)
	if err != nil {
		tb.Fatalf("%v (regenerate with /usr/bin/python3 scripts/golden/onnx_fixtures.py)", err)
	}
	out := npyArray{shape: a.Shape, f32: a.Float32}
	if a.Kind == npy.Int {
		out.u8 = make([]byte, len(a.Int))
		for i, v := range a.Int {
			out.u8[i] = byte(v)
		}
	}
	return out
}

// testImage is the fixtures' BGR image, copied into a buffer with a padded
// stride so that stride handling is exercised.
func testImage(tb testing.TB) Image {
	a := readNpy(tb, fixture("image.npy"))
	h, w := a.shape[0], a.shape[1]
	stride := 3*w + 17
	pix := make([]byte, stride*h)
	for y := 0; y < h; y++ {
		copy(pix[y*stride:], a.u8[y*3*w:(y+1)*3*w])
	}
	return Image{Width: w, Height: h, Stride: stride, Pix: pix}
}

// maxRelErr compares got with want: |g-w| / max(1, |w|), the largest over all values.
func maxRelErr(got, want []float32) (float64, int) {
	worst, at := 0.0, -1
	for i := range want {
		d := math.Abs(float64(got[i])-float64(want[i])) / math.Max(1, math.Abs(float64(want[i])))
		if d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	return worst, at
}

// logCapture routes slog's default logger into a buffer for the test.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func captureLogs(tb testing.TB) *logCapture {
	c := &logCapture{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug})))
	tb.Cleanup(func() { slog.SetDefault(old) })
	return c
}

func procStatus(tb testing.TB, key string) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key+":") {
			var v int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, key+":")), "%d", &v)
			return v
		}
	}
	tb.Fatalf("no %s in /proc/self/status", key)
	return 0
}

func openFDs(tb testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}
