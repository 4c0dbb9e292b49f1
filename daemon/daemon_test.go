package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/result"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/config"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestVideoToBroker runs the whole line in process on a video file: every
// frame yields exactly one result on the broker, in order, with the
// documented fields, and a threshold below every score rejects every part
// (reject topic too).
func TestVideoToBroker(t *testing.T) {
	const n = 12
	d, _, port := newTestDaemon(t, n, "meanstd_blur.onnx", "-1000", nil)
	sub := subscribe(t, port)
	if err := d.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Run has flushed to the broker before closing it; the subscriber got them.
	got := sub.WaitResults(n, 10*time.Second)
	if len(got) != n {
		t.Fatalf("got %d results, want %d", len(got), n)
	}
	for i, r := range got {
		if r.Seq != uint64(i+1) {
			t.Errorf("result %d has seq %d: out of order or lost", i, r.Seq)
		}
		if r.Verdict != result.VerdictFail || r.Score == nil || *r.Score < -1000 {
			t.Errorf("result %d: verdict %s score %v, want fail with a score", i, r.Verdict, r.Score)
		}
		if r.Station != "t1" || r.ID == "" || r.Schema != result.SchemaVersion || r.Bundle == "" {
			t.Errorf("result %d: header fields %+v", i, r)
		}
		if _, ok := r.MapMax["ms"]; !ok || len(r.Features) != 29 {
			t.Errorf("result %d: map_max %v, %d features (want 29)", i, r.MapMax, len(r.Features))
		}
		for _, stage := range []string{"infer", "segad", "total"} {
			if _, ok := r.LatencyMS[stage]; !ok {
				t.Errorf("result %d: no %s latency", i, stage)
			}
		}
	}
	rejects := len(sub.Rejects())
	if rejects != n {
		t.Errorf("%d rejects on the reject topic, want %d", rejects, n)
	}
}

// TestNaNMapFailsClosed: a detector whose map holds NaN never passes a
// part: every result is verdict error with reason code invalid_map.
// model.Build refuses such a detector up front (TestBuildModelRefuses), so
// it is swapped in past that check, as a model that starts giving NaN on
// some parts only would be.
func TestNaNMapFailsClosed(t *testing.T) {
	const n = 4
	d, cfgPath, port := newTestDaemon(t, n, "meanstd_blur.onnx", "1000", nil)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Detectors[0].Model = fixtureDetector(t, "nan_map.onnx")
	nan, _, err := model.Build(cfg, model.Options{Log: quietLog(), SkipProbe: true})
	if err != nil {
		t.Fatal(err)
	}
	d.insp.Swap(nan, d.insp.Settings()).Close()
	got := runToEnd(t, d, port, n)
	for _, r := range got {
		if r.Verdict != result.VerdictError || r.ReasonCode != result.ReasonMap || r.Score != nil || !strings.Contains(r.Reason, "ms") {
			t.Errorf("NaN map: verdict %s code %s score %v reason %q; want error/invalid_map naming the detector", r.Verdict, r.ReasonCode, r.Score, r.Reason)
		}
	}
}

// TestReload: a threshold edit applies to the next frame; a broken edit is
// rejected, the running settings stay and the health report says why.
func TestReload(t *testing.T) {
	d, cfgPath, _ := newTestDaemon(t, 3, "meanstd_blur.onnx", "-1000", nil)
	defer d.Close()
	img, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	inspect := func() result.Result {
		png := encodePart(t)
		f := d.frameFromBytes(png, "p1")
		defer f.Close()
		return d.insp.Inspect(f, false).Result
	}
	if r := inspect(); r.Verdict != result.VerdictFail {
		t.Fatalf("threshold -1000: verdict %s, want fail", r.Verdict)
	}
	// A valid edit: threshold far above any score.
	edited := bytes.Replace(img, []byte("threshold: -1000"), []byte("threshold: 1000"), 1)
	if err := os.WriteFile(cfgPath, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatalf("reload valid edit: %v", err)
	}
	if r := inspect(); r.Verdict != result.VerdictPass || r.Threshold != 1000 {
		t.Fatalf("after reload: verdict %s threshold %v, want pass at 1000", r.Verdict, r.Threshold)
	}
	// A broken edit: rejected, threshold stays 1000, health reports it.
	broken := bytes.Replace(edited, []byte("threshold: 1000"), []byte("threshold: [oops"), 1)
	if err := os.WriteFile(cfgPath, broken, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err == nil {
		t.Fatal("broken edit accepted")
	}
	if r := inspect(); r.Verdict != result.VerdictPass || r.Threshold != 1000 {
		t.Fatalf("after broken edit: verdict %s threshold %v, want the old settings", r.Verdict, r.Threshold)
	}
	if h := d.health(); !strings.Contains(h.LastConfigError, "segad.yaml") {
		t.Fatalf("health last_config_error = %q, want the file and error", h.LastConfigError)
	}
	// Fixing the file clears the error.
	if err := os.WriteFile(cfgPath, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if h := d.health(); h.LastConfigError != "" {
		t.Fatalf("error not cleared: %q", h.LastConfigError)
	}
}

func encodePart(t testing.TB) []byte {
	t.Helper()
	m := partImage(newRand(), true)
	defer m.Close()
	buf, err := gocv.IMEncode(gocv.PNGFileExt, m)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...)
}

// TestHTTPAPI: /inspect runs the line on an upload, a corrupt upload fails
// closed, /metrics and /healthz answer, and the token is enforced.
func TestHTTPAPI(t *testing.T) {
	d, _, _ := newTestDaemon(t, 3, "meanstd_blur.onnx", "1000", nil)
	defer d.Close()
	srv := httptest.NewServer(d.Handler("s3cret"))
	defer srv.Close()
	post := func(body []byte, token string) (*http.Response, result.Result) {
		req, _ := http.NewRequest("POST", srv.URL+"/inspect?part_id=A7", bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r result.Result
		b, _ := io.ReadAll(resp.Body)
		_ = r.UnmarshalJSON(b)
		return resp, r
	}
	if resp, _ := post(encodePart(t), ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: status %d, want 401", resp.StatusCode)
	}
	resp, r := post(encodePart(t), "s3cret")
	if resp.StatusCode != 200 || r.Verdict != result.VerdictPass || r.PartID != "A7" || r.Score == nil || math.IsNaN(*r.Score) {
		t.Fatalf("inspect: status %d result %+v", resp.StatusCode, r)
	}
	_, r = post([]byte("\x89PNG\r\n\x1a\ntruncated"), "s3cret")
	if r.Verdict != result.VerdictError || r.ReasonCode != result.ReasonCapture {
		t.Fatalf("corrupt upload: verdict %s code %s, want error/capture_error", r.Verdict, r.ReasonCode)
	}
	for path, want := range map[string]int{"/healthz": 200, "/metrics": 401} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
