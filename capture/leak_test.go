package capture

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLeak pushes thousands of frames through every source kind that can
// run here (all but a V4L2 camera, which shares the live code path with
// gstreamer and stream) including error frames, reconnects, rate-limit drops,
// stale on-demand frames and Close with frames still buffered, and asserts
// that the Mat count returns to where it started.
// Run it counting: go test -tags matprofile ./capture/ -run Leak
func TestLeak(t *testing.T) {
	scale := 1
	if testing.Short() {
		scale = 10
	}
	start, counting := matCount()
	dir := t.TempDir()

	// video: 600 frames.
	video := filepath.Join(dir, "v.avi")
	writeVideo(t, video, 600/scale, 64, 48)
	drain(t, Config{Kind: KindVideo, Path: video}, -1)

	// sequence: 300 files, one broken.
	seq := filepath.Join(dir, "seq")
	os.Mkdir(seq, 0o755)
	for i := 0; i < 300/scale; i++ {
		writeImage(t, filepath.Join(seq, fmtIndex(i)), 32, 32, uint8(i), 0, 0)
	}
	os.WriteFile(filepath.Join(seq, fmtIndex(3)), []byte("junk"), 0o644)
	drain(t, Config{Kind: KindSequence, Path: filepath.Join(seq, "frame%04d.png"), Preprocess: PreprocessConfig{Color: ColorRGB}}, -1)

	// folder: the same files plus truncated ones, with an ROI and gray.
	jpg := encodeImage(t, ".jpg", 64, 48)
	os.WriteFile(filepath.Join(seq, "trunc.jpg"), jpg[:len(jpg)/2], 0o644)
	drain(t, Config{Kind: KindFolder, Path: seq, Preprocess: PreprocessConfig{Color: ColorGray, ROI: &ROI{X: 2, Y: 2, Width: 20, Height: 20}}}, -1)
	// ROI larger than the frame: every frame is an error frame.
	drain(t, Config{Kind: KindFolder, Path: seq, Preprocess: PreprocessConfig{ROI: &ROI{Width: 500, Height: 500}}}, -1)

	// gstreamer: 1000 frames over pipelines of 100 (reconnects), then close with frames buffered.
	drain(t, Config{Kind: KindGStreamer, Reconnect: fastReconnect,
		Pipeline: "videotestsrc num-buffers=100 ! video/x-raw,width=64,height=48 ! videoconvert ! appsink sync=false"}, 1000/scale)
	// gstreamer with a rate limit: dropped frames must be freed too.
	drain(t, Config{Kind: KindGStreamer, Trigger: TriggerConfig{MaxRate: 100},
		Pipeline: "videotestsrc ! video/x-raw,width=64,height=48 ! videoconvert ! appsink sync=false"}, 50/scale)

	// stream: a 200-frame file via FFMPEG, replayed (reconnect at each end).
	drain(t, Config{Kind: KindStream, URL: video, Reconnect: fastReconnect}, 1000/scale)

	// on-demand: the grabber replaces (frees) stale frames continuously.
	od := openT(t, Config{Kind: KindGStreamer, Trigger: TriggerConfig{Mode: TriggerOnDemand},
		Pipeline: "videotestsrc ! video/x-raw,width=64,height=48 ! videoconvert ! appsink sync=false"})
	for i := 0; i < 100/scale; i++ {
		if err := od.(Triggerer).Trigger("p"); err != nil {
			t.Fatal(err)
		}
		nextT(t, od, 10*time.Second).Close()
	}
	od.Close()

	// watch: 200 files dropped while it runs, acked alternately ok / failed.
	wdir := filepath.Join(dir, "watch")
	os.Mkdir(wdir, 0o755)
	ws := openT(t, watchConfig(wdir))
	n := 200 / scale
	go func() {
		for i := 0; i < n; i++ {
			p := filepath.Join(wdir, fmtIndex(i))
			if i%50 == 7 {
				os.WriteFile(p, nil, 0o644) // zero-byte
				continue
			}
			writeImage(t, p, 32, 32, 0, 0, 0)
		}
	}()
	bad := 0
	for i := 0; i < n; i++ {
		f := nextT(t, ws, 30*time.Second)
		if f.Err != nil {
			bad++
		}
		if err := f.Ack(i%2 == 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	ws.Close()
	if bad == 0 && n > 7 {
		t.Error("watch: no error frame for the zero-byte files")
	}

	if !counting {
		t.Log("built without -tags matprofile: Mat count not checked")
		return
	}
	if end, _ := matCount(); end != start {
		t.Fatalf("Mat count %d at start, %d at end: leak\n%s", start, end, matStacks())
	}
}

// drain opens cfg and reads limit frames (-1: until io.EOF), closing each,
// then closes the source.
func drain(t *testing.T, cfg Config, limit int) {
	t.Helper()
	began := time.Now()
	defer func() { t.Logf("%s: %d frames in %s", cfg.Kind, limit, time.Since(began).Round(time.Millisecond)) }()
	s := openT(t, cfg)
	n := 0
	for limit < 0 || n < limit {
		f, err := s.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", cfg.Kind, err)
		}
		f.Close()
		n++
	}
	if n == 0 {
		t.Fatalf("%s: no frames", cfg.Kind)
	}
	// Give live grabbers time to buffer a frame, so Close must free it.
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("%s: close: %v", cfg.Kind, err)
	}
}
