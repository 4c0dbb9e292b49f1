package daemon

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/mqtt"
)

// TestDropOldestStillAnswersEveryFrame: with a one-frame queue and a
// source much faster than inference, drop_oldest rejects frames it cannot
// inspect, yet every frame still gets exactly one result (dropped ones fail
// closed with reason "dropped"), and the drops are counted.
func TestDropOldestStillAnswersEveryFrame(t *testing.T) {
	const n = 30
	d, _, port := newTestDaemon(t, n, "meanstd_blur.onnx", "1000", func(c *config.Config) {
		c.Pipeline.Queue, c.Pipeline.Overflow = 1, "drop_oldest"
	})
	got := runToEnd(t, d, port, n)
	seqs := map[uint64]bool{}
	var dropped int
	for _, r := range got {
		seqs[r.Seq] = true
		switch {
		case r.ReasonCode == ReasonDropped:
			dropped++
			if r.Verdict != mqtt.VerdictError {
				t.Errorf("dropped frame %d has verdict %s, want error (rejected)", r.Seq, r.Verdict)
			}
		case r.Verdict != mqtt.VerdictPass:
			t.Errorf("frame %d: %s %s", r.Seq, r.Verdict, r.Reason)
		}
	}
	if len(seqs) != n {
		t.Errorf("%d distinct frames answered, want %d", len(seqs), n)
	}
	if m := int(testutil.ToFloat64(d.Metrics.Dropped)); m != dropped {
		t.Errorf("drop counter %d, dropped results %d", m, dropped)
	}
	t.Logf("%d of %d frames dropped", dropped, n)
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
		if r.Verdict != mqtt.VerdictPass || !r.Warn {
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
