package capture

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPipeline is a GStreamer camera stand-in: videotestsrc is a real
// GStreamer source decoded through OpenCV's real GStreamer backend.
func testPipeline(extra string) string {
	return "videotestsrc " + extra + " ! video/x-raw,width=160,height=120,framerate=30/1 ! videoconvert ! appsink"
}

// fastReconnect keeps reconnect tests short.
var fastReconnect = ReconnectConfig{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}

// TestGStreamerFreeRun: frames flow with monotonic sequence numbers and the
// configured preprocessing; the state says connected.
func TestGStreamerFreeRun(t *testing.T) {
	s := openT(t, Config{Kind: KindGStreamer, Pipeline: testPipeline("is-live=true"),
		Preprocess: PreprocessConfig{Width: 64, Height: 48}})
	var last uint64
	var lastAt time.Time
	for i := 0; i < 10; i++ {
		f := nextT(t, s, 10*time.Second)
		if f.Err != nil || f.Seq <= last || f.Captured.Before(lastAt) || f.Image.Cols() != 64 || f.Original.Cols() != 160 || f.PartID != "" {
			t.Fatalf("frame %d: seq %d after %d, err %v, image %d, original %d", i, f.Seq, last, f.Err, f.Image.Cols(), f.Original.Cols())
		}
		last, lastAt = f.Seq, f.Captured
		f.Close()
	}
	st := s.State()
	if !st.Connected || st.Reconnecting || st.LastFrameAge > 2*time.Second {
		t.Fatalf("state %+v", st)
	}
	if err := s.(Triggerer).Trigger("P1"); err == nil {
		t.Fatal("Trigger accepted on a free-run source")
	}
}

// TestGStreamerEndsAndReconnects: a pipeline with num-buffers ends (a cut
// stream); the source reopens it with backoff and frames keep coming.
func TestGStreamerEndsAndReconnects(t *testing.T) {
	s := openT(t, Config{Kind: KindGStreamer, Pipeline: testPipeline("num-buffers=5"), Reconnect: fastReconnect,
		Preprocess: PreprocessConfig{Width: 32, Height: 32}})
	var last uint64
	for i := 0; i < 17; i++ { // more than three pipeline lifetimes
		f := nextT(t, s, 10*time.Second)
		if f.Seq != last+1 {
			t.Fatalf("seq %d after %d: numbering must continue across reconnects", f.Seq, last)
		}
		last = f.Seq
		f.Close()
	}
	st := s.State()
	if st.Reconnects < 3 || !strings.Contains(st.LastError, "no frame") {
		t.Fatalf("state after 17 frames of 5-frame pipelines: %+v", st)
	}
}

// TestGStreamerStallWatchdog: a pipeline whose buffers take 1.5 s each
// stalls Read; the watchdog abandons the reader and reconnects instead of
// hanging, and the error says stalled.
func TestGStreamerStallWatchdog(t *testing.T) {
	if testing.Short() {
		t.Skip("stall test takes seconds")
	}
	s := openT(t, Config{Kind: KindGStreamer, Watchdog: 300 * time.Millisecond, OpenTimeout: 5 * time.Second, Reconnect: fastReconnect,
		Pipeline: "videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=30/1 ! identity sleep-time=1500000 ! videoconvert ! appsink"})
	waitFor(t, 10*time.Second, "the watchdog to report a stall", func() bool {
		return strings.Contains(s.State().LastError, "stalled")
	})
	st := s.State()
	if st.Connected || !st.Reconnecting {
		t.Fatalf("state during stall %+v", st)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > closeWait+time.Second {
		t.Fatalf("Close took %s", d)
	}
}

// TestStreamFileCutAndBack: a stream (FFMPEG backend) whose file ends,
// disappears and comes back: the source keeps reconnecting with bounded
// backoff, reports the failure, and resumes.
func TestStreamFileCutAndBack(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cam.avi")
	writeVideo(t, p, 4, 64, 48)
	s := openT(t, Config{Kind: KindStream, URL: p, Reconnect: fastReconnect, Preprocess: PreprocessConfig{Width: 32, Height: 24}})
	for i := 0; i < 6; i++ { // more than one file length: one reconnect at least
		nextT(t, s, 10*time.Second).Close()
	}
	// Cut: remove the file. Drain what is already read, then the source
	// must sit in reconnecting with an error naming the stream.
	os.Remove(p)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			f, err := s.Next(ctx)
			if err != nil {
				return
			}
			f.Close()
		}
	}()
	waitFor(t, 10*time.Second, "reconnecting state", func() bool {
		st := s.State()
		return st.Reconnecting && !st.Connected && strings.Contains(st.LastError, "cam.avi")
	})
	before := s.State().Reconnects
	time.Sleep(time.Second)
	after := s.State().Reconnects
	cancel()
	// Backoff 20ms doubling to a 200ms cap: about 5-8 attempts a second, not a hot loop.
	if n := after - before; n < 2 || n > 15 {
		t.Fatalf("%d reconnect attempts in 1s with backoff 20ms..200ms", n)
	}
	writeVideo(t, p, 4, 64, 48)
	f := nextT(t, s, 10*time.Second)
	f.Close()
	waitFor(t, 5*time.Second, "connected again", func() bool { return s.State().Connected })
}

// TestDeviceMissing: a camera that is not there (no /dev/video77 here) never
// crashes the source: it retries, reports why, and Next honours ctx.
func TestDeviceMissing(t *testing.T) {
	s := openT(t, Config{Kind: KindDevice, Device: "/dev/video77", Width: 640, Height: 480, Reconnect: fastReconnect})
	waitFor(t, 5*time.Second, "a failed open", func() bool { return s.State().Reconnects >= 1 })
	st := s.State()
	if st.Connected || !strings.Contains(st.LastError, "/dev/video77") {
		t.Fatalf("state %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on a missing camera: %v", err)
	}
	s.Close()
	if _, err := s.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

// TestOnDemandTrigger: no frame without a trigger; a trigger yields a frame
// read after it, carrying the part ID; triggers on a dead source give error
// frames for the part.
func TestOnDemandTrigger(t *testing.T) {
	s := openT(t, Config{Kind: KindGStreamer, Pipeline: testPipeline("is-live=true"),
		Trigger: TriggerConfig{Mode: TriggerOnDemand, Timeout: 3 * time.Second}})
	waitFor(t, 10*time.Second, "connection", func() bool { return s.State().Connected && s.State().LastFrameAge > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	if f, err := s.Next(ctx); err == nil {
		f.Close()
		t.Fatal("on-demand source delivered a frame without a trigger")
	}
	cancel()
	time.Sleep(300 * time.Millisecond) // let frames go stale in the grabber
	for _, part := range []string{"SN-001", "SN-002"} {
		at := time.Now()
		if err := s.(Triggerer).Trigger(part); err != nil {
			t.Fatal(err)
		}
		f := nextT(t, s, 5*time.Second)
		if f.Err != nil || f.PartID != part || f.Captured.Before(at) {
			t.Fatalf("trigger %s at %v: frame part %q captured %v err %v", part, at, f.PartID, f.Captured, f.Err)
		}
		f.Close()
	}

	dead := openT(t, Config{Kind: KindDevice, Device: "77", Reconnect: fastReconnect,
		Trigger: TriggerConfig{Mode: TriggerOnDemand, Timeout: 200 * time.Millisecond}})
	if err := dead.(Triggerer).Trigger("SN-003"); err != nil {
		t.Fatal(err)
	}
	f := nextT(t, dead, 5*time.Second)
	defer f.Close()
	if f.Err == nil || f.PartID != "SN-003" || !strings.Contains(f.Err.Error(), "SN-003") {
		t.Fatalf("dead camera trigger: part %q err %v", f.PartID, f.Err)
	}
}

// TestFreeRunMaxRate: a 30 fps camera limited to 5 frames a second.
func TestFreeRunMaxRate(t *testing.T) {
	s := openT(t, Config{Kind: KindGStreamer, Pipeline: testPipeline("is-live=true"),
		Trigger: TriggerConfig{MaxRate: 5}, Preprocess: PreprocessConfig{Width: 16, Height: 16}})
	nextT(t, s, 10*time.Second).Close() // connected
	start := time.Now()
	n := 0
	for time.Since(start) < 1200*time.Millisecond {
		nextT(t, s, 5*time.Second).Close()
		n++
	}
	if n < 4 || n > 8 {
		t.Fatalf("%d frames in 1.2s at max_rate 5", n)
	}
}
