package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segad-edge/segad-edge/assurance/drift"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
)

// openDrift opens the drift monitor (assurance.drift) as an output beside
// the others. It is off, with a line that says why, when the section is
// disabled, when the forest is not a bundle, or when the bundle was written
// before `segad fit` wrote drift references; a damaged drift.json stops
// the start with the file and what is wrong.
func (o *outputs) openDrift(cfg *config.Config, log *slog.Logger) error {
	m, err := openDriftMonitor(cfg, log)
	if err != nil || m == nil {
		return err
	}
	o.drift = m
	o.list = append(o.list, m)
	return nil
}

func openDriftMonitor(cfg *config.Config, log *slog.Logger) (*drift.Monitor, error) {
	dc := cfg.Assurance.Drift
	switch {
	case !dc.On():
		log.Info("drift monitoring off (assurance.drift.enabled: false)")
		return nil, nil
	case cfg.SegAD.Bundle == "":
		log.Info("drift monitoring off: the forest is segad.model, not a bundle, so there is no training reference (segad fit writes one into its bundle)")
		return nil, nil
	}
	ref, err := bundle.LoadDrift(cfg.SegAD.Bundle)
	if errors.Is(err, bundle.ErrNoDrift) {
		log.Warn("drift monitoring off: the bundle has no drift reference; it was written before segad fit wrote drift.json, re-run segad fit to monitor drift",
			"bundle", cfg.SegAD.Bundle)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("assurance.drift: %w (or set assurance.drift.enabled: false)", err)
	}
	// The forest the reference belongs to, in the form results carry
	// (model.fileHash), so results of a reloaded bundle are told apart.
	sum, err := bundle.FileSHA256(filepath.Join(cfg.SegAD.Bundle, bundle.ModelFile))
	if err != nil {
		return nil, fmt.Errorf("assurance.drift: %w", err)
	}
	m, err := drift.New(drift.Options{Config: dc, Reference: ref, Forest: "sha256:" + sum[:16], Log: log.With("component", "drift")})
	if err != nil {
		return nil, fmt.Errorf("assurance.drift: bundle %s: %w", cfg.SegAD.Bundle, err)
	}
	return m, nil
}

// driftOptions hands the daemon the monitor's health (status degraded
// while an alarm is raised; never /readyz), its metrics and its route:
//
//	GET /api/drift   the monitor's state (drift.Status: every watched
//	                 feature's PSI and floor, worst first; the reject
//	                 window), behind the API's bearer token
func (o *outputs) driftOptions(opt *daemon.Options) {
	m := o.drift
	if m == nil {
		return
	}
	prev := opt.Routes
	opt.Routes = func(mux *http.ServeMux, auth func(http.HandlerFunc) http.HandlerFunc) {
		if prev != nil {
			prev(mux, auth)
		}
		mux.HandleFunc("GET /api/drift", auth(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(m.Status())
		}))
	}
	opt.Degraded = func() string {
		if a := m.Alarm(); a != "" {
			return "drift: " + a
		}
		return ""
	}
	opt.Collectors = append(opt.Collectors, driftCollector{m})
}

// driftCollector serves the monitor's state on /metrics, read at scrape
// time (nothing is updated per part).
type driftCollector struct{ m *drift.Monitor }

var (
	driftPSIDesc = prometheus.NewDesc("segad_drift_psi", "Population stability index of a watched feature of passed parts over the drift window, against the bundle's good training parts.",
		[]string{"segment", "detector", "stat"}, nil)
	driftFloorDesc = prometheus.NewDesc("segad_drift_psi_floor", "The PSI a watched feature shows by chance (the alarm compares psi - floor with assurance.drift.psi_alarm).",
		[]string{"segment", "detector", "stat"}, nil)
	driftAlarmDesc = prometheus.NewDesc("segad_drift_alarm", "1 while a drift alarm is raised (kind feature: a feature's PSI; kind reject_rate: too many rejects).",
		[]string{"kind"}, nil)
	driftRejectDesc = prometheus.NewDesc("segad_reject_rate_window", "Share of rejected parts among the last judged parts (the drift window).", nil, nil)
	driftExpectDesc = prometheus.NewDesc("segad_reject_rate_expected", "The reject rate the window is tested against (the bundle's calibrated false-reject rate, or assurance.drift.expected_reject_rate); 0 when the test is off.", nil, nil)
	driftWindowDesc = prometheus.NewDesc("segad_drift_window_parts", "Passed parts in the drift window.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c driftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{driftPSIDesc, driftFloorDesc, driftAlarmDesc, driftRejectDesc, driftExpectDesc, driftWindowDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c driftCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Status()
	for _, f := range s.Features {
		seg := f.Segment
		if seg == "" {
			seg = "all" // a whole-map feature (the maximum)
		}
		ch <- prometheus.MustNewConstMetric(driftPSIDesc, prometheus.GaugeValue, f.PSI, seg, f.Detector, f.Stat)
		ch <- prometheus.MustNewConstMetric(driftFloorDesc, prometheus.GaugeValue, f.Floor, seg, f.Detector, f.Stat)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(driftAlarmDesc, prometheus.GaugeValue, b(s.FeatureAlarm), "feature")
	ch <- prometheus.MustNewConstMetric(driftAlarmDesc, prometheus.GaugeValue, b(s.RejectAlarm), "reject_rate")
	rate := 0.0
	if s.RejectWindow > 0 {
		rate = float64(s.Rejects) / float64(s.RejectWindow)
	}
	ch <- prometheus.MustNewConstMetric(driftRejectDesc, prometheus.GaugeValue, rate)
	ch <- prometheus.MustNewConstMetric(driftExpectDesc, prometheus.GaugeValue, s.ExpectedRejectRate)
	ch <- prometheus.MustNewConstMetric(driftWindowDesc, prometheus.GaugeValue, float64(s.Window))
}
