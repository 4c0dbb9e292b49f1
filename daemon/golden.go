package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segad-edge/segad-edge/assurance/golden"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/partid"
	"github.com/segad-edge/segad-edge/result"
)

// ErrGoldenBusy is returned when a golden-sample challenge is asked for
// while one runs: the running one answers the question.
var ErrGoldenBusy = errors.New("a golden-sample challenge is already running")

// goldenState is the daemon's golden-sample challenge (assurance.golden):
// the set, the last summary and the gate it puts on readiness and on
// production results.
type goldenState struct {
	set     *golden.Set
	cfg     config.GoldenConfig
	running sync.Mutex // one challenge at a time

	mu   sync.Mutex
	last *golden.Summary
	// why is last's Brief when it has not passed, "" when it has: made
	// once per challenge, since every production result reads it.
	why string
	// gen counts reloads that changed the judgement: a challenge that
	// started before one vouches for the old judgement and is not kept.
	gen uint64
	// publish sends a summary to the retained MQTT topic (nil without MQTT).
	publish func(golden.Summary)
	// ctx is StartGolden's: challenges asked for over HTTP or MQTT stop
	// with the daemon rather than judging with a model being closed.
	ctx context.Context

	pass, lastRun, failing prometheus.Gauge
	imageFailures          *prometheus.CounterVec
	runs                   *prometheus.CounterVec
}

// newGolden sets up challenges for set with the daemon's metrics; nil
// when set is nil (challenges off).
func (d *Daemon) newGolden(set *golden.Set, cfg config.GoldenConfig) error {
	if set == nil {
		return nil
	}
	g := &goldenState{set: set, cfg: cfg,
		pass: prometheus.NewGauge(prometheus.GaugeOpts{Name: "segad_golden_pass",
			Help: "1 when the last golden-sample challenge judged every image right, 0 when it failed or none has run."}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{Name: "segad_golden_last_run_timestamp_seconds",
			Help: "Unix time of the last golden-sample challenge (0: none yet)."}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "segad_golden_failing_images",
			Help: "Golden images the last challenge judged wrongly."}),
		imageFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "segad_golden_image_failures_total",
			Help: "Challenges in which this golden image was judged wrongly."}, []string{"file"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "segad_golden_runs_total",
			Help: "Golden-sample challenges by result (passed, failed) and trigger."}, []string{"result", "trigger"}),
	}
	for _, c := range []prometheus.Collector{g.pass, g.lastRun, g.failing, g.imageFailures, g.runs} {
		if err := d.metrics.Registry.Register(c); err != nil {
			return fmt.Errorf("register golden metrics: %w", err)
		}
	}
	d.golden = g
	return nil
}

// goldenMQTT wires the challenge to the MQTT publisher: the retained
// summary topic and the command topic.
func (d *Daemon) goldenMQTT(p *mqtt.Publisher) {
	g := d.golden
	if g == nil {
		return
	}
	g.publish = func(s golden.Summary) {
		body, err := json.Marshal(s)
		if err == nil {
			err = p.PublishGolden(body)
		}
		if err != nil {
			d.floodLog.Warn("golden summary not published", "topic", p.GoldenTopic(), "err", err)
		}
	}
	p.OnGoldenRun(func() {
		if _, err := d.RunGolden(g.runCtx(), "mqtt"); err != nil {
			d.floodLog.Warn("golden challenge asked for over MQTT not run", "topic", p.GoldenRunTopic(), "err", err)
		}
	})
}

// GoldenOn reports whether golden-sample challenges are configured.
func (d *Daemon) GoldenOn() bool { return d.golden != nil }

// RunGolden runs a golden-sample challenge now: every golden image through
// the line's model (the path of HTTP /inspect: capture's guarded reader,
// the model's preprocessing, model.Inspector.Inspect), each result
// recorded aside (history, kind golden; never published, counted or sent
// to a PLC), then the summary is kept for readiness and health, counted in
// the metrics and published retained. ErrGoldenBusy when one runs already.
func (d *Daemon) RunGolden(ctx context.Context, trigger string) (golden.Summary, error) {
	g := d.golden
	if g == nil {
		return golden.Summary{}, errors.New("golden-sample challenges are off: set assurance.golden.dir")
	}
	if !g.running.TryLock() {
		return golden.Summary{}, ErrGoldenBusy
	}
	defer g.running.Unlock()
	return d.runGolden(ctx, trigger), nil
}

// runGolden is RunGolden with the challenge lock held.
func (d *Daemon) runGolden(ctx context.Context, trigger string) golden.Summary {
	g := d.golden
	g.mu.Lock()
	gen := g.gen
	g.mu.Unlock()
	s := golden.Run(ctx, g.set, trigger, d.judgeGolden)
	if ctx.Err() != nil && !s.Passed {
		// Stopped, not failed (the daemon stopping): the parts judged so
		// far say nothing about the images not judged, so the last summary
		// stands and nothing is published.
		d.log.Info("golden-sample challenge stopped before its end; the last summary stands", "trigger", trigger, "judged", len(s.Images), "of", len(g.set.Images))
		return s
	}
	if !g.setLastOf(&s, gen) {
		d.log.Info("golden-sample challenge superseded by a configuration change; not kept", "trigger", trigger, "passed", s.Passed)
		return s
	}
	outcome := "failed"
	if s.Passed {
		outcome = "passed"
		g.pass.Set(1)
		d.log.Info("golden-sample challenge passed", "trigger", trigger, "images", len(s.Images), "seconds", s.Seconds)
	} else {
		g.pass.Set(0)
		d.log.Error("golden-sample challenge failed: "+d.goldenConsequence(), "trigger", trigger, "failing", s.Failing, "reason", s.Brief())
	}
	g.runs.WithLabelValues(outcome, trigger).Inc()
	g.lastRun.Set(float64(s.At.UnixNano()) / 1e9)
	g.failing.Set(float64(len(s.Failing)))
	for _, f := range s.Failing {
		g.imageFailures.WithLabelValues(f).Inc()
	}
	if g.publish != nil {
		g.publish(s)
	}
	return s
}

// goldenAfterReload re-challenges the line after a reload changed what
// judges the parts (detectors, mask, forest or bundle, thresholds, the
// source's preprocessing): the last challenge vouched for the old
// judgement, not the new one, and a retrained model that rejects what the
// old one passed is exactly what a challenge is for. Until the new
// challenge has passed, the line is not ready and assurance.golden.action
// applies (a challenge of the demo's 8 images takes about half a second).
//
// It is called in two steps around the swap: goldenAfterReload (before the
// new model judges any part) marks the last summary pending, so not one
// part is judged by the new model under the old model's passed challenge;
// the func it returns (nil when nothing to re-challenge) starts the
// challenge once the new model is in place.
func (d *Daemon) goldenAfterReload(changes []config.Change) (start func()) {
	g := d.golden
	if g == nil {
		return nil
	}
	var why string
	for _, c := range changes {
		if c.Class == config.Model || c.Class == config.Capture || strings.HasPrefix(c.Key, "segad.threshold") {
			why = c.Key
			break
		}
	}
	if why == "" {
		return nil
	}
	pending := golden.Summary{At: time.Now().UTC(), Trigger: "reload", Failing: []string{},
		Error: fmt.Sprintf("%s changed: re-running the golden-sample challenge for the new configuration", why)}
	g.mu.Lock()
	g.gen++
	g.setLastLocked(&pending)
	g.mu.Unlock()
	g.pass.Set(0)
	return func() {
		d.log.Info("configuration change: re-running the golden-sample challenge", "key", why)
		go func() {
			// Waits for a challenge in flight: it judged with the old model.
			g.running.Lock()
			defer g.running.Unlock()
			d.runGolden(g.runCtx(), "reload")
		}()
	}
}

// goldenConsequence says what a failed challenge does to production parts.
func (d *Daemon) goldenConsequence() string {
	if d.golden.cfg.Action == config.GoldenFlag {
		return "the line keeps its verdicts and marks every result (assurance.golden.action: flag) until a challenge passes"
	}
	return "every part fails closed with golden_failed (assurance.golden.action: fail_closed) until a challenge passes"
}

// judgeGolden inspects one golden image as the line would a frame of it.
func (d *Daemon) judgeGolden(_ context.Context, im golden.Image) result.Result {
	d.cfgMu.Lock()
	pc := d.cfg.Capture.Preprocess
	d.cfgMu.Unlock()
	f := capture.ReadFrame(im.Path, d.insp.Model().Preprocess(pc))
	f.Source = "golden"
	if id, err := partid.Check("golden:" + im.File); err == nil {
		f.PartID = id
	}
	ins := d.insp.Inspect(f, false)
	f.Close()
	r := ins.Result
	r.Kind = result.KindGolden
	d.recordAside(r)
	return r
}

// GoldenSummary is the last challenge's summary; false when none has run.
func (d *Daemon) GoldenSummary() (golden.Summary, bool) {
	g := d.golden
	if g == nil {
		return golden.Summary{}, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last == nil {
		return golden.Summary{}, false
	}
	return *g.last, true
}

// runCtx is the context of challenges on request.
func (g *goldenState) runCtx() context.Context {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx == nil {
		return context.Background()
	}
	return g.ctx
}

// setLast records the last challenge's summary.
func (g *goldenState) setLast(s *golden.Summary) {
	g.mu.Lock()
	g.setLastLocked(s)
	g.mu.Unlock()
}

// setLastOf records s unless the judgement changed since generation gen.
func (g *goldenState) setLastOf(s *golden.Summary, gen uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gen != gen {
		return false
	}
	g.setLastLocked(s)
	return true
}

func (g *goldenState) setLastLocked(s *golden.Summary) {
	g.last, g.why = s, ""
	if !s.Passed {
		g.why = s.Brief()
	}
}

// goldenBlock says why golden-sample challenges hold the line's trust, ""
// when they do not: the last challenge failed, or the start-up challenge
// (assurance.golden.on_start) has not passed yet.
func (d *Daemon) goldenBlock() string {
	g := d.golden
	if g == nil {
		return ""
	}
	g.mu.Lock()
	last, why := g.last, g.why
	g.mu.Unlock()
	if last == nil && g.cfg.StartChallenge() {
		return "the start-up golden-sample challenge has not passed yet"
	}
	return why
}

// goldenMark applies assurance.golden.action to a production result while
// the challenges hold the line's trust: fail_closed turns every judged
// part into an error verdict with golden_failed (a part already failed
// closed keeps its own, more specific code), flag keeps the verdict and
// marks the result warn with the reason.
func (d *Daemon) goldenMark(r *result.Result) {
	why := d.goldenBlock()
	if why == "" || r.Kind != "" {
		return
	}
	if d.golden.cfg.Action == config.GoldenFlag {
		r.Warn = true
		note := "unverified: " + why + " (assurance.golden.action: flag)"
		if r.Reason != "" {
			note = r.Reason + "; " + note
		}
		r.Reason = note
		return
	}
	if r.Verdict == result.VerdictError {
		return
	}
	inspected := fmt.Sprintf("inspected: %s", r.Verdict)
	if r.Score != nil {
		inspected += fmt.Sprintf(", score %.4g", *r.Score)
	}
	result.FailClosed(r, result.ReasonGolden, fmt.Errorf("%s; this part (%s) fails closed until a challenge passes (assurance.golden.action: fail_closed)", why, inspected))
}

// HealthReport is the daemon's part of the health JSON, as the MQTT health
// topic carries it (status, golden challenge, camera, counters).
func (d *Daemon) HealthReport() mqtt.Health { return d.health() }

// goldenHealth fills the health JSON's golden part and the degraded status.
func (d *Daemon) goldenHealth(h *mqtt.Health) {
	if h.Status == "" {
		h.Status = "ok"
	}
	g := d.golden
	if g == nil {
		return
	}
	gh := &mqtt.GoldenHealth{}
	if s, ok := d.GoldenSummary(); ok {
		gh.Passed, gh.At, gh.Failing, gh.Reason = s.Passed, s.At, s.Failing, s.Brief()
	}
	if why := d.goldenBlock(); why != "" {
		gh.Reason = why
		h.Status = "degraded"
		if h.StatusReason != "" {
			why = h.StatusReason + "; " + why
		}
		h.StatusReason = why
	}
	h.Golden = gh
}

// goldenRoutes adds the challenge's HTTP API (behind the bearer token):
//
//	GET  /api/golden      the last summary (404 before the first)
//	POST /api/golden/run  start a challenge: 202; ?wait=true answers with
//	                      the summary when it ends (200 passed, 409 failed);
//	                      409 while one runs
func (d *Daemon) goldenRoutes(mux *http.ServeMux, auth func(http.HandlerFunc) http.HandlerFunc) {
	if d.golden == nil {
		return
	}
	mux.HandleFunc("GET /api/golden", auth(func(w http.ResponseWriter, _ *http.Request) {
		s, ok := d.GoldenSummary()
		if !ok {
			http.Error(w, "no golden-sample challenge has run yet", http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, s)
	}))
	mux.HandleFunc("POST /api/golden/run", auth(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") == "true" {
			// The daemon's context, not the request's: a client that
			// gives up (a timeout, a dropped connection) must not stop
			// the challenge half way.
			s, err := d.RunGolden(d.golden.runCtx(), "http")
			if err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			status := http.StatusOK
			if !s.Passed {
				status = http.StatusConflict
			}
			writeJSON(w, status, s)
			return
		}
		if !d.golden.running.TryLock() {
			http.Error(w, ErrGoldenBusy.Error(), http.StatusConflict)
			return
		}
		d.golden.running.Unlock()
		go func() {
			if _, err := d.RunGolden(d.golden.runCtx(), "http"); err != nil {
				d.floodLog.Warn("golden challenge asked for over HTTP not run", "err", err)
			}
		}()
		w.WriteHeader(http.StatusAccepted)
	}))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// StartGolden is `segad run`'s golden-sample challenge: the start-up one
// (assurance.golden.on_start) now, before the daemon reports ready, and
// then one every assurance.golden.every until ctx ends (in the
// background). It returns the start-up summary (false when none ran).
func (d *Daemon) StartGolden(ctx context.Context) (golden.Summary, bool) {
	g := d.golden
	if g == nil {
		return golden.Summary{}, false
	}
	g.mu.Lock()
	g.ctx = ctx
	g.mu.Unlock()
	var s golden.Summary
	ran := false
	if g.cfg.StartChallenge() {
		var err error
		if s, err = d.RunGolden(ctx, "start"); err == nil {
			ran = true
		}
	}
	if g.cfg.Every > 0 {
		go d.goldenSchedule(ctx, g.cfg.Every)
	}
	return s, ran
}

func (d *Daemon) goldenSchedule(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := d.RunGolden(ctx, "schedule"); err != nil {
			d.floodLog.Warn("scheduled golden challenge not run", "err", err)
		}
	}
}
