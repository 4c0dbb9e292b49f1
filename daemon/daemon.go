package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/segad"
)

// Daemon is the running inspection line: a frame source feeding a bounded
// queue, one worker inspecting frames (Line.Inspect) and handing results to
// the publisher, plus audit, metrics and hot reload around it.
type Daemon struct {
	log     *slog.Logger
	Metrics *Metrics
	line    *Line
	pub     Publisher
	audit   *Audit

	srcMu sync.Mutex
	src   FrameSource

	cfgMu sync.Mutex
	cfg   *config.Config

	queue    chan *capture.Frame
	overflow string

	started     time.Time
	frames      atomic.Uint64
	fails       atomic.Uint64
	errs        atomic.Uint64
	ready       atomic.Bool
	lastBeat    atomic.Int64 // unix nanos of the last sign of pipeline life
	configError atomic.Pointer[string]
	sampleRand  *rand.Rand
}

// Options are what New needs besides the configuration.
type Options struct {
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// Publisher overrides the configured MQTT publisher (e.g. `segad
	// inspect` prints results instead).
	Publisher Publisher
	// Source overrides the configured frame source.
	Source FrameSource
}

// New builds every stage from the configuration: ONNX Runtime, detectors
// (warmed up), mask, forest, publisher and frame source. On error everything
// opened so far is closed.
func New(cfg *config.Config, opt Options) (d *Daemon, err error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	d = &Daemon{log: log, Metrics: NewMetrics(), cfg: cfg, started: time.Now(),
		overflow: cfg.Pipeline.Overflow, queue: make(chan *capture.Frame, cfg.Pipeline.Queue),
		sampleRand: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	if err := infer.Init(cfg.ONNXRuntime.Library); err != nil {
		return nil, err
	}
	if err := ResolveThreshold(cfg); err != nil {
		return nil, err
	}
	model, err := BuildModel(cfg, log)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { model.Close() })
	d.line = NewLine(model, settingsOf(cfg))
	d.Metrics.ModelInfo.WithLabelValues(model.Bundle, strings.Join(model.Names, ","), fmt.Sprint(model.Extractor.NumFeatures())).Set(1)

	if cfg.Audit.Dir != "" {
		if d.audit, err = NewAudit(cfg.Audit.Dir, cfg.Audit.MaxBytes, cfg.Audit.MaxAge, log); err != nil {
			return nil, err
		}
	}
	d.pub = opt.Publisher
	if d.pub == nil {
		if cfg.MQTT.Broker == "" {
			return nil, fmt.Errorf("%s: mqtt.broker is not set: give a broker URL (tcp://host:1883, ssl://host:8883) or embedded", cfg.Path)
		}
		p, err := mqtt.New(cfg.MQTT, log.With("stage", "mqtt"))
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			p.Close(ctx)
		})
		p.SetHealth(d.health)
		p.OnTrigger(func(t mqtt.Trigger) {
			if err := d.Trigger(t.PartID); err != nil {
				log.Warn("trigger ignored", "part_id", t.PartID, "err", err)
			}
		})
		d.pub = p
	}
	d.src = opt.Source
	if d.src == nil {
		if d.src, err = OpenSource(cfg, model, log); err != nil {
			return nil, err
		}
	}
	d.ready.Store(true)
	d.beat()
	return d, nil
}

// BuildFeatureModel opens the detectors (warmed up), the mask at the map
// size and the feature extractor: everything but the forest (Scorer is nil).
// `segad fit` computes its training features with it, so training and the
// line share one feature path.
func BuildFeatureModel(cfg *config.Config, log *slog.Logger) (*Model, error) {
	set, err := infer.OpenSet(cfg.Detectors, cfg.Classifier)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			set.Close()
		}
	}()
	names := make([]string, len(cfg.Detectors))
	var mapSize infer.Size
	for i, d := range set.Detectors() {
		names[i] = d.Name()
		ms := d.Config().Post.MapSize
		if i == 0 {
			mapSize = ms
		} else if ms != mapSize {
			return nil, fmt.Errorf("detector %s gives %s maps but %s gives %s: set the same post.map_size for all", d.Name(), ms, names[0], mapSize)
		}
		log.Info("detector ready", "name", d.Name(), "model", d.Config().Model, "providers", d.Providers(), "map", ms)
	}
	if err := set.Warmup(max(cfg.Pipeline.Warmup, 1)); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	mask, err := LoadMask(cfg.SegAD, mapSize.Width, mapSize.Height, log)
	if err != nil {
		return nil, err
	}
	extra := ""
	if cfg.Classifier != nil {
		extra = "classifier"
	}
	ex, err := segad.NewExtractor(mask, names, extra)
	if err != nil {
		return nil, err
	}
	ok = true
	return newModel(set, names, mask, ex), nil
}

// BuildModel is BuildFeatureModel plus the forest: segad.model, or the
// model of segad.bundle after checking that the bundle was trained for
// these detectors (names and model file hashes) and this mask.
func BuildModel(cfg *config.Config, log *slog.Logger) (*Model, error) {
	m, err := BuildFeatureModel(cfg, log)
	if err != nil {
		return nil, err
	}
	modelPath := cfg.SegAD.Model
	if cfg.SegAD.Bundle != "" {
		b, err := bundle.Load(cfg.SegAD.Bundle)
		if err != nil {
			m.Close()
			return nil, err
		}
		paths := make([]string, len(cfg.Detectors))
		for i, d := range cfg.Detectors {
			paths[i] = d.Model
		}
		if err := bundle.Verify(b.Manifest, m.Names, paths, m.Mask.Hash()); err != nil {
			m.Close()
			return nil, fmt.Errorf("bundle %s does not match this configuration: %w (retrain with segad fit, or fix detectors/mask)", cfg.SegAD.Bundle, err)
		}
		modelPath = b.ModelPath
	}
	forest, err := brf.Load(modelPath)
	if err != nil {
		m.Close()
		return nil, err
	}
	if err := brf.CheckFeatures(forest, m.Extractor.NumFeatures()); err != nil {
		m.Close()
		return nil, fmt.Errorf("model %s: %w", modelPath, err)
	}
	m.Scorer, m.Bundle = forest, fileID(modelPath)
	return m, nil
}

// ResolveThreshold fills segad.threshold from the bundle's suggested
// threshold when the config leaves it out.
func ResolveThreshold(cfg *config.Config) error {
	if cfg.SegAD.Threshold != nil || cfg.SegAD.Bundle == "" {
		return nil
	}
	b, err := bundle.Load(cfg.SegAD.Bundle)
	if err != nil {
		return err
	}
	t := b.Threshold
	cfg.SegAD.Threshold = &t
	return nil
}

// LoadMask loads the configured mask (or the built-in VAD template) at the
// detectors' map size and logs its warnings.
func LoadMask(c config.SegADConfig, w, h int, log *slog.Logger) (*segad.Mask, error) {
	var mask *segad.Mask
	if c.Mask == "builtin:vad" {
		mask = segad.VADTemplate(w, h, segad.DefaultVADGeometry())
		if len(c.Segments) > 0 {
			if len(c.Segments) != mask.NumSegments() {
				return nil, fmt.Errorf("segad.segments names %d segments but builtin:vad has %d", len(c.Segments), mask.NumSegments())
			}
			mask.Names = append([]string(nil), c.Segments...)
		}
	} else {
		var err error
		if mask, err = segad.LoadMask(c.Mask, c.Segments); err != nil {
			return nil, err
		}
		if mask.Width != w || mask.Height != h {
			if mask, err = mask.Resize(w, h); err != nil {
				return nil, fmt.Errorf("resize mask %s to %dx%d: %w", c.Mask, w, h, err)
			}
		}
	}
	warnings, err := mask.Validate()
	if err != nil {
		return nil, fmt.Errorf("mask %s: %w", c.Mask, err)
	}
	for _, wrn := range warnings {
		log.Warn("mask", "file", c.Mask, "warning", wrn)
	}
	return mask, nil
}

// OpenSource opens the configured frame source, preprocessing frames to the
// first detector's input size in BGR order (what infer takes).
func OpenSource(cfg *config.Config, m *Model, log *slog.Logger) (FrameSource, error) {
	cc := cfg.Capture
	cc.Preprocess = m.Preprocess(cc.Preprocess)
	cc.Logger = log.With("stage", "capture")
	return capture.Open(cc)
}

func settingsOf(cfg *config.Config) Settings {
	s := Settings{Station: cfg.Station, Warn: math.NaN(), PublishFeatures: cfg.MQTT.PublishFeatures}
	if cfg.SegAD.Threshold != nil {
		s.Threshold = *cfg.SegAD.Threshold
	}
	if cfg.SegAD.WarnThreshold != nil {
		s.Warn = *cfg.SegAD.WarnThreshold
	}
	return s
}

// fileID is a short content hash identifying a model file in results.
func fileID(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// Line returns the inspection line (for the HTTP API and tests).
func (d *Daemon) Line() *Line { return d.line }

// Ready reports whether the daemon has warmed up and is inspecting.
func (d *Daemon) Ready() bool { return d.ready.Load() }

// Trigger asks the source for the freshest frame (on-demand mode).
func (d *Daemon) Trigger(partID string) error {
	d.srcMu.Lock()
	src := d.src
	d.srcMu.Unlock()
	t, ok := src.(capture.Triggerer)
	if !ok {
		return fmt.Errorf("source %s does not take triggers (set capture.trigger.mode: on-demand on a live source)", src.Name())
	}
	return t.Trigger(partID)
}

// Run runs the line until ctx is cancelled or a finite source ends, then
// shuts down gracefully: capture stops, frames already taken are inspected,
// results are flushed to the outbox and everything is closed within
// pipeline.shutdown_timeout. Every frame taken from the source gets exactly
// one result.
func (d *Daemon) Run(ctx context.Context) error {
	capCtx, stopCapture := context.WithCancel(ctx)
	defer stopCapture()
	capDone := make(chan error, 1)
	go func() { capDone <- d.captureLoop(capCtx) }()

	// Two stages drain the queue until capture has stopped and the queue is
	// empty, so no frame taken from the source is left without a result:
	// inference of frame n+1 overlaps scoring and publishing of frame n.
	type pending struct {
		f  *capture.Frame
		in *Inferred
	}
	inferred := make(chan pending, 1)
	go func() {
		defer close(inferred)
		for f := range d.queue {
			d.Metrics.QueueDepth.Set(float64(len(d.queue)))
			inferred <- pending{f, d.line.Infer(f)}
		}
	}()
	workDone := make(chan struct{})
	go func() {
		defer close(workDone)
		for p := range inferred {
			d.finish(p.f, d.line.Score(p.in, d.audit != nil))
		}
	}()
	go d.watchHealth(capCtx)

	var capErr error
	select {
	case capErr = <-capDone: // finite source ended (or failed)
	case <-ctx.Done():
		d.log.Info("stopping: finishing frames in flight", "queued", len(d.queue))
		stopCapture()
		capErr = <-capDone
	}
	close(d.queue)
	deadline := d.shutdownTimeout()
	select {
	case <-workDone:
	case <-time.After(deadline):
		d.log.Error("shutdown deadline passed with frames still in flight", "deadline", deadline)
	}
	return errors.Join(capErrOrNil(capErr), d.Close())
}

func capErrOrNil(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || errors.Is(err, capture.ErrClosed) {
		return nil
	}
	return err
}

func (d *Daemon) shutdownTimeout() time.Duration {
	d.cfgMu.Lock()
	defer d.cfgMu.Unlock()
	return d.cfg.Pipeline.ShutdownTimeout
}

// captureLoop moves frames from the source into the queue until ctx ends
// or a finite source is exhausted.
func (d *Daemon) captureLoop(ctx context.Context) error {
	for {
		d.srcMu.Lock()
		src := d.src
		d.srcMu.Unlock()
		f, err := src.Next(ctx)
		if err != nil {
			if errors.Is(err, capture.ErrClosed) && ctx.Err() == nil && d.sourceChanged(src) {
				continue // the source was swapped by a reload
			}
			return err
		}
		d.frames.Add(1)
		d.Metrics.Frames.Inc()
		d.beat()
		d.enqueue(f)
	}
}

func (d *Daemon) sourceChanged(old FrameSource) bool {
	d.srcMu.Lock()
	defer d.srcMu.Unlock()
	return d.src != old
}

// enqueue applies the overflow policy: block waits for the worker;
// drop_oldest rejects the oldest waiting frame (it still gets a result,
// fail-closed with reason "dropped") to keep the freshest one.
func (d *Daemon) enqueue(f *capture.Frame) {
	if d.overflow == "block" {
		d.queue <- f
		d.Metrics.QueueDepth.Set(float64(len(d.queue)))
		return
	}
	for {
		select {
		case d.queue <- f:
			d.Metrics.QueueDepth.Set(float64(len(d.queue)))
			return
		default:
		}
		select {
		case old := <-d.queue:
			d.Metrics.Dropped.Inc()
			d.reject(old, ReasonDropped, errors.New("inference fell behind the camera; the part was not inspected (pipeline.overflow: drop_oldest)"))
		default:
		}
	}
}

// reject publishes a fail-closed result for a frame that is not inspected.
func (d *Daemon) reject(f *capture.Frame, code string, err error) {
	s := d.line.Settings()
	res := mqtt.Result{Station: s.Station, Source: f.Source, Seq: f.Seq, PartID: f.PartID,
		CapturedAt: f.Captured, DecidedAt: time.Now(), Threshold: s.Threshold}
	failClosed(&res, code, err)
	d.finish(f, Inspection{Result: res})
}

// finish publishes (durably) a result, records metrics, writes the audit
// entry and acknowledges the frame to its source. It closes the frame.
func (d *Daemon) finish(f *capture.Frame, ins Inspection) {
	defer f.Close()
	res := &ins.Result
	// The ID is set here, not by the publisher, so the audit entry, the
	// log line and the MQTT message all carry the same one.
	if res.ID == "" {
		res.ID = mqtt.NewResultID(res.DecidedAt)
	}
	res.Schema = mqtt.SchemaVersion
	t := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := d.pub.Publish(ctx, *res)
	cancel()
	d.Metrics.StageSeconds.WithLabelValues("publish").Observe(time.Since(t).Seconds())
	stored := err == nil
	if err != nil {
		// The outbox could not store the result (disk full, closed). The
		// part's file stays unacknowledged so a restart inspects it again.
		d.Metrics.PublishErrs.Inc()
		d.log.Error("result not stored", "seq", res.Seq, "part_id", res.PartID, "verdict", res.Verdict, "err", err)
	}
	d.Metrics.Verdicts.WithLabelValues(string(res.Verdict)).Inc()
	for stage, v := range res.LatencyMS {
		d.Metrics.StageSeconds.WithLabelValues(stage).Observe(v / 1000)
	}
	if res.Score != nil {
		d.Metrics.Score.Observe(*res.Score)
	}
	switch res.Verdict {
	case mqtt.VerdictFail:
		d.fails.Add(1)
	case mqtt.VerdictError:
		d.errs.Add(1)
	}
	d.log.Debug("part", "id", res.ID, "seq", res.Seq, "part_id", res.PartID, "verdict", res.Verdict, "score", res.Score, "reason", res.Reason)
	if d.audit != nil && (res.Rejected() || d.samplePass()) {
		if err := d.audit.Save(res, f.Original, ins.Maps, ins.MapW, ins.MapH, ins.Mask); err != nil {
			d.log.Warn("audit entry not saved", "seq", res.Seq, "err", err)
		}
	}
	if a, ok := d.currentSource().(capture.Acker); ok && stored && f.Path != "" {
		if err := a.Ack(f, !res.Rejected()); err != nil {
			d.log.Warn("cannot move inspected file", "file", f.Path, "err", err)
		}
	}
	d.beat()
}

func (d *Daemon) samplePass() bool {
	d.cfgMu.Lock()
	share := d.cfg.Audit.SamplePass
	d.cfgMu.Unlock()
	return share > 0 && d.sampleRand.Float64() < share
}

func (d *Daemon) currentSource() FrameSource {
	d.srcMu.Lock()
	defer d.srcMu.Unlock()
	return d.src
}

// beat records a sign of pipeline life for the systemd watchdog.
func (d *Daemon) beat() { d.lastBeat.Store(time.Now().UnixNano()) }

// LastBeat is when the pipeline last showed progress (a frame taken or a
// result finished); the watchdog pings systemd only while it is recent.
func (d *Daemon) LastBeat() time.Time { return time.Unix(0, d.lastBeat.Load()) }

// watchHealth refreshes the source gauges.
func (d *Daemon) watchHealth(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := d.currentSource().State()
		d.Metrics.Reconnects.Set(float64(st.Reconnects))
		d.Metrics.FrameAge.Set(st.LastFrameAge.Seconds())
		up := 0.0
		if st.Connected {
			up = 1
		}
		d.Metrics.CameraUp.Set(up)
		if p, ok := d.pub.(*mqtt.Publisher); ok {
			s := p.Stats()
			d.Metrics.Outbox.Set(float64(s.Backlog))
			d.Metrics.OutboxDrops.Set(float64(s.Drops))
		}
		if len(d.queue) == 0 {
			// An idle line (waiting for triggers) is alive too.
			d.beat()
		}
	}
}

// health fills the daemon's part of the MQTT health JSON.
func (d *Daemon) health() mqtt.Health {
	var st capture.SourceState
	cam := "connected"
	if src := d.currentSource(); src != nil {
		st = src.State()
	} else {
		cam = "starting"
	}
	switch {
	case cam == "starting":
	case st.Reconnecting:
		cam = "reconnecting"
	case !st.Connected:
		cam = "disconnected"
	}
	if st.LastError != "" && !st.Connected {
		cam += ": " + st.LastError
	}
	h := mqtt.Health{UptimeS: time.Since(d.started).Seconds(), Frames: d.frames.Load(), Fails: d.fails.Load(),
		Errors: d.errs.Load(), QueueDepth: len(d.queue), CameraState: cam}
	if e := d.configError.Load(); e != nil {
		h.LastConfigError = *e
	}
	return h
}

// Close releases every stage. Run calls it; call it yourself only when Run
// was never started.
func (d *Daemon) Close() error {
	var errs []error
	d.srcMu.Lock()
	if d.src != nil {
		errs = append(errs, d.src.Close())
	}
	d.srcMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), d.shutdownTimeout())
	defer cancel()
	if d.pub != nil {
		errs = append(errs, d.pub.Close(ctx))
	}
	if m := d.line.Model(); m != nil {
		errs = append(errs, m.Close())
	}
	return errors.Join(errs...)
}
