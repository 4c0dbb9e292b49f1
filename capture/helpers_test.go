package capture

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

// colourMat returns a w x h BGR image filled with (b, g, r) plus a diagonal
// gradient, so resizes and crops have something to get wrong.
func colourMat(w, h int, b, g, r uint8) gocv.Mat {
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	pix, _ := m.DataPtrUint8()
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := (y*w + x) * 3
			pix[i] = b
			pix[i+1] = g + uint8((x+y)%8)
			pix[i+2] = r
		}
	}
	return m
}

// writeImage encodes a test image to path with OpenCV (the extension picks
// the codec).
func writeImage(t testing.TB, path string, w, h int, b, g, r uint8) {
	t.Helper()
	m := colourMat(w, h, b, g, r)
	defer m.Close()
	if !gocv.IMWrite(path, m) {
		t.Fatalf("IMWrite %s failed", path)
	}
}

// encodeImage returns the encoded bytes of a test image.
func encodeImage(t testing.TB, ext string, w, h int) []byte {
	t.Helper()
	m := colourMat(w, h, 10, 100, 200)
	defer m.Close()
	buf, err := gocv.IMEncode(gocv.FileExt(ext), m)
	if err != nil {
		t.Fatalf("encode %s: %v", ext, err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...)
}

// writeVideo writes n frames of MJPG AVI with gocv's VideoWriter; frame i
// has blue level 10*i (mod 250) so order can be checked after decoding.
func writeVideo(t testing.TB, path string, n, w, h int) {
	t.Helper()
	vw, err := gocv.VideoWriterFile(path, "MJPG", 25, w, h, true)
	if err != nil {
		t.Fatalf("video writer %s: %v", path, err)
	}
	if !vw.IsOpened() {
		t.Fatalf("video writer %s: not opened (MJPG unsupported?)", path)
	}
	for i := 0; i < n; i++ {
		m := colourMat(w, h, uint8(10*i%250), 50, 50)
		if err := vw.Write(m); err != nil {
			t.Fatalf("write frame %d to %s: %v", i, path, err)
		}
		m.Close()
	}
	vw.Close()
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Fatalf("video %s not written: %v", path, err)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openT opens a source and closes it at the end of the test.
func openT(t testing.TB, cfg Config) Source {
	t.Helper()
	if cfg.Logger == nil && !testing.Verbose() {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.Kind, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// nextT gets one frame within timeout.
func nextT(t testing.TB, s Source, timeout time.Duration) *Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	f, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("next from %s: %v (state %+v)", s.Name(), err, s.State())
	}
	return f
}

// meanBGR is the mean of each channel of an 8UC3 Mat.
func meanBGR(m gocv.Mat) [3]float64 {
	pix, _ := m.DataPtrUint8()
	var s [3]float64
	for i := 0; i < len(pix); i += 3 {
		s[0] += float64(pix[i])
		s[1] += float64(pix[i+1])
		s[2] += float64(pix[i+2])
	}
	n := float64(len(pix) / 3)
	return [3]float64{s[0] / n, s[1] / n, s[2] / n}
}
