package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/segad-edge/segad-edge/assurance/drift"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/result"
)

// driftBundle writes a bundle folder with a model file and, unless ref is
// nil, drift.json.
func driftBundle(t *testing.T, ref *bundle.DriftReference) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bundle.ModelFile), []byte(`{"forest": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if ref != nil {
		if err := bundle.WriteDrift(dir, ref); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func smallDriftRef() *bundle.DriftReference {
	return &bundle.DriftReference{Good: 300, Bins: 2, ExpectedFRR: 0.01, ExpectedFRRHigh: 0.03, Features: []bundle.DriftFeature{
		{Name: "wires.fine.mean", Segment: "wires", Detector: "fine", Stat: "mean", Edges: []float64{0.5}, Shares: []float64{0.5, 0.5}},
		{Name: "fine.max", Detector: "fine", Stat: "max", Edges: []float64{2}, Shares: []float64{0.5, 0.5}},
	}}
}

// TestOpenDriftMonitor: the monitor is on with a bundle's reference, off
// with a line that says why otherwise (disabled, a bare forest, an older
// bundle without drift.json), and a damaged drift.json stops the start
// naming the file.
func TestOpenDriftMonitor(t *testing.T) {
	off := false
	cases := []struct {
		name    string
		bundle  string
		enabled *bool
		on      bool
		log     string
		err     string
	}{
		{name: "bundle with a reference", bundle: driftBundle(t, smallDriftRef()), on: true, log: "drift monitor on"},
		{name: "disabled", bundle: driftBundle(t, smallDriftRef()), enabled: &off, log: "assurance.drift.enabled: false"},
		{name: "bare forest", log: "not a bundle"},
		{name: "older bundle", bundle: driftBundle(t, nil), log: "re-run segad fit"},
		{name: "damaged drift.json", bundle: func() string {
			d := driftBundle(t, nil)
			os.WriteFile(filepath.Join(d, bundle.DriftFile), []byte(`{"format": 1, "good": 3, "features": [{"name": "a", "shares": [0.2]}]}`), 0o644)
			return d
		}(), err: "sum to"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := &config.Config{}
			cfg.Assurance.Drift = config.DefaultDriftConfig()
			if c.enabled != nil {
				cfg.Assurance.Drift.Enabled = c.enabled
			}
			cfg.SegAD.Bundle = c.bundle
			var logs bytes.Buffer
			m, err := openDriftMonitor(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), bundle.DriftFile) {
					t.Fatalf("want an error naming %s with %q, got %v", bundle.DriftFile, c.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (m != nil) != c.on {
				t.Fatalf("monitor on %v, want %v", m != nil, c.on)
			}
			if !strings.Contains(logs.String(), c.log) {
				t.Errorf("log lacks %q:\n%s", c.log, logs.String())
			}
		})
	}
}

// TestDriftHealthAndMetrics: an alarm reaches the daemon's Degraded hook
// (status degraded, named segment), the metrics and GET /api/drift
// (behind the API's auth); without one they are quiet.
func TestDriftHealthAndMetrics(t *testing.T) {
	cfg := &config.Config{}
	cfg.Assurance.Drift = config.DefaultDriftConfig()
	cfg.Assurance.Drift.Window, cfg.Assurance.Drift.MinParts = 100, 50
	cfg.SegAD.Bundle = driftBundle(t, smallDriftRef())
	m, err := openDriftMonitor(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	o := &outputs{drift: m}
	var opt daemon.Options
	o.driftOptions(&opt)
	reg := prometheus.NewRegistry()
	for _, c := range opt.Collectors {
		reg.MustRegister(c)
	}
	if why := opt.Degraded(); why != "" {
		t.Fatalf("degraded before any part: %q", why)
	}
	// Every passed part in the top bin of wires.fine.mean (the reference
	// has half there): PSI (1-0.5)ln(2) + (1e-4-0.5)ln(1e-4/0.5) = 4.6.
	for i := 0; i < 100; i++ {
		_ = m.Publish(context.Background(), result.Result{Verdict: result.VerdictPass, Features: []result.Feature{
			{Name: "wires.fine.mean", Value: 0.9}, {Name: "fine.max", Value: float64(i%2) * 3}}})
	}
	why := opt.Degraded()
	if !strings.HasPrefix(why, "drift: wires: fine mean drifted, PSI 4.") {
		t.Fatalf("degraded reason %q", why)
	}
	want := `
# HELP segad_drift_alarm 1 while a drift alarm is raised (kind feature: a feature's PSI; kind reject_rate: too many rejects).
# TYPE segad_drift_alarm gauge
segad_drift_alarm{kind="feature"} 1
segad_drift_alarm{kind="reject_rate"} 0
# HELP segad_reject_rate_window Share of rejected parts among the last judged parts (the drift window).
# TYPE segad_reject_rate_window gauge
segad_reject_rate_window 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "segad_drift_alarm", "segad_reject_rate_window"); err != nil {
		t.Error(err)
	}
	// GET /api/drift, behind the API's auth (here one that refuses all
	// but a marked request, to see the route is wrapped).
	mux := http.NewServeMux()
	opt.Routes(mux, func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer ok" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	})
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/api/drift", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("/api/drift without the token: %d, want 401", rec.Code)
	}
	rec = httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/drift", nil)
	req.Header.Set("Authorization", "Bearer ok")
	mux.ServeHTTP(rec, req)
	var st drift.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("/api/drift: %d %v: %s", rec.Code, err, rec.Body.String())
	}
	if !st.FeatureAlarm || st.Window != 100 || len(st.Features) != 1 || st.Features[0].Segment != "wires" || st.Features[0].PSI < 4 {
		t.Errorf("/api/drift: %+v", st)
	}
	if n, err := testutil.GatherAndCount(reg, "segad_drift_psi"); err != nil || n != 1 {
		t.Errorf("segad_drift_psi series %d (%v), want one per watched feature (1: the default stats watch mean and q995, not max)", n, err)
	}
}
