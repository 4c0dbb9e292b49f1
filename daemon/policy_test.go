package daemon

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
)

// TestDropOldestStillAnswersEveryFrame: with a one-frame queue and a live
// source faster than inference (a GStreamer test pattern as the camera,
// paced at 400 fps by the pipeline clock: a fast line camera, not an
// unpaced flood, so the results to flush at the stop stay within what a
// loaded CI machine publishes in the shutdown grace), drop_oldest rejects
// frames it cannot inspect, yet every frame still gets exactly one result,
// in order (dropped ones fail closed with reason "dropped"), and the drops
// are counted. TestDropBoundWaits covers the unpaced flood.
func TestDropOldestStillAnswersEveryFrame(t *testing.T) {
	d, _, port := newTestDaemon(t, 1, "meanstd_blur.onnx", "1000", func(c *config.Config) {
		c.Pipeline.Queue, c.Pipeline.Overflow = 1, "drop_oldest"
		c.Capture.Kind = capture.KindGStreamer
		c.Capture.Path = ""
		c.Capture.Pipeline = "videotestsrc pattern=ball ! video/x-raw,width=320,height=240,framerate=400/1 ! videoconvert ! appsink sync=true"
	})
	sub := subscribe(t, port)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	frames := int(d.metrics.frames.Load())
	got := sub.WaitResults(frames, 10*time.Second)
	if len(got) != frames || frames < 10 {
		t.Fatalf("%d results for %d frames", len(got), frames)
	}
	var dropped int
	for i, r := range got {
		if r.Seq != uint64(i+1) {
			t.Fatalf("result %d is frame %d: not one result per frame in order", i, r.Seq)
		}
		switch {
		case r.ReasonCode == result.ReasonDropped:
			dropped++
			if r.Verdict != result.VerdictError {
				t.Errorf("dropped frame %d has verdict %s, want error (rejected)", r.Seq, r.Verdict)
			}
		case r.Verdict != result.VerdictPass:
			t.Errorf("frame %d: %s %s", r.Seq, r.Verdict, r.Reason)
		}
	}
	if dropped == 0 {
		t.Error("no frame dropped: the source did not outpace inference")
	}
	if m := int(testutil.ToFloat64(d.metrics.Dropped)); m != dropped {
		t.Errorf("drop counter %d, dropped results %d", m, dropped)
	}
	t.Logf("%d of %d frames dropped", dropped, frames)
}

// TestWarnBandAndMetrics: a pass at or above warn_threshold is flagged, and
// the Prometheus endpoint counts frames and verdicts.
func TestWarnBandAndMetrics(t *testing.T) {
	const n = 5
	d, _, port := newTestDaemon(t, n, "meanstd_blur.onnx", "1000", func(c *config.Config) {
		warn := -1000.0
		c.SegAD.WarnThreshold = &warn
	})
	srv := httptest.NewServer(d.Handler(""))
	defer srv.Close()
	got := runToEnd(t, d, port, n)
	for _, r := range got {
		if r.Verdict != result.VerdictPass || !r.Warn {
			t.Errorf("frame %d: verdict %s warn %v, want a flagged pass", r.Seq, r.Verdict, r.Warn)
		}
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"segad_frames_total 5", `segad_verdicts_total{verdict="pass"} 5`, `segad_stage_seconds_count{stage="infer"} 5`, "segad_model_info{"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
