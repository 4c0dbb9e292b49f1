package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segad-edge/segad-edge/assurance/golden"
	"github.com/segad-edge/segad-edge/audit"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/logging"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/result"
)

// Publisher is the primary output: *mqtt.Publisher stores every result
// durably and sends it to the broker (falling back to a direct send when
// its store fails); `segad inspect` prints them. A result is stored when
// Publish returns nil, and only then is its frame acknowledged to the
// source (a watch-folder file moves to done/ or failed/). Stats reports the
// link for /readyz, health and metrics; it must not block.
type Publisher interface {
	Publish(ctx context.Context, r result.Result) error
	Stats() mqtt.Stats
	Close(ctx context.Context) error
}

// Output is a best-effort peer of the publisher (a result history, a PLC
// server): it gets every result, in order, after the publisher. A slow or
// failing output never blocks the line or another output: each has a
// bounded queue whose overflow is counted and logged.
type Output interface {
	Name() string
	Publish(ctx context.Context, r result.Result) error
	Close() error
}

// AsideRecorder is an Output that also records results which decide
// nothing on the line (Result.Kind golden or shadow): the history. Outputs
// that do not implement it (the PLC servers) never see such results.
type AsideRecorder interface {
	Output
	RecordsAside() bool
}

// Daemon is the running inspection line: a frame source feeding a bounded
// queue, two stages inspecting frames (model.Inspector) and handing results
// to the publisher and the outputs, plus audit, metrics and hot reload
// around it.
type Daemon struct {
	log *slog.Logger
	// floodLog is log with its warnings rate-limited per message: every
	// per-frame and per-message warning goes through it.
	floodLog *slog.Logger
	logLevel *slog.LevelVar
	metrics  *metrics
	insp     *model.Inspector
	pub      Publisher
	outputs  []*peer
	audit    *audit.Store
	shadow   Shadow // nil: no candidate runner (daemon/shadow.go)

	sourceFn func(capture.PreprocessConfig) (capture.Source, error) // Options.Source
	srcMu    sync.Mutex
	src      *sourceRef

	cfgMu    sync.Mutex
	cfg      *config.Config
	reloadMu sync.Mutex // one reload at a time (SIGHUP and file edits race)

	queue *frameQueue

	inflight    atomic.Int64 // frames taken from the source and not finished
	aborting    atomic.Bool  // shutdown deadline passed: remaining frames fail closed fast
	lastPubErr  atomic.Int64 // unix nanos of the last result the publisher could not store
	started     time.Time
	ready       atomic.Bool
	lastBeat    atomic.Int64 // unix nanos of the last sign of pipeline life
	configError atomic.Pointer[string]
	sampleRand  *rand.Rand

	httpLimits HTTPLimits
	freeing    atomic.Bool // returnMemory is running
	linkWatch  linkWatch   // the result link's progress

	routes       func(*http.ServeMux, func(http.HandlerFunc) http.HandlerFunc)
	outputHealth func() map[string]string
	preview      *previewState        // Options.Preview; nil without one
	onReload     func(*config.Config) // Options.OnReload
	golden       *goldenState         // assurance.golden; nil when off (golden.go)
	degraded     func() string
}

// Options are what New needs besides the configuration.
type Options struct {
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// LogLevel, when set, is the logger's level; a reload sets log.level
	// through it (logging.New returns both).
	LogLevel *slog.LevelVar
	// Publisher overrides the configured MQTT publisher (e.g. `segad
	// inspect` prints results instead).
	Publisher Publisher
	// Outputs get every result after the publisher, in order, each from
	// its own bounded queue (result history, PLC servers). New does not
	// open them; the daemon closes them when it stops.
	Outputs []Output
	// Source overrides the configured frame source. It is opened with the
	// model's preprocessing (the frame geometry the detectors take), and
	// again on a reload that changes the model's input size.
	Source func(capture.PreprocessConfig) (capture.Source, error)
	// HTTPLimits bound the HTTP API (zero fields: DefaultHTTPLimits).
	HTTPLimits HTTPLimits
	// Routes, when set, adds routes to the HTTP API (the result history's
	// /api/results); each must be wrapped with auth, the API's own bearer
	// token check.
	Routes func(mux *http.ServeMux, auth func(http.HandlerFunc) http.HandlerFunc)
	// OutputHealth, when set, names the outputs that cannot do their work
	// and why (a full history disk, say). It shows in health and the log;
	// the line keeps inspecting, so it never makes /readyz fail.
	OutputHealth func() map[string]string
	// Degraded, when set, says why the line's judgement is in doubt (a
	// drift alarm), "" when it is not: health then shows status
	// "degraded" with the reason. Like OutputHealth it never makes
	// /readyz fail: the line keeps inspecting (docs/assurance.md).
	Degraded func() string
	// Collectors are extra Prometheus metrics served on /metrics.
	Collectors []prometheus.Collector
	// AuditKeep, when set, names audit entries that outlive the audit
	// bounds (labelled results, which are training data).
	AuditKeep func(resultID string) bool
	// Preview, when set, gets the latest part's frame with its heatmap
	// while it asks for one (the console's Live page; daemon/preview.go).
	Preview Preview
	// OnReload, when set, is called after every applied reload with the
	// configuration now in force, for the parts outside the daemon whose
	// keys are live (the console's users and limits: auth.Manager.Update).
	OnReload func(applied *config.Config)
	// Golden is the golden-sample set (assurance.golden, loaded with
	// golden.Load); nil turns challenges off. See StartGolden.
	Golden *golden.Set
	// Shadow, when set, scores a share of the frames with segad.shadow's
	// candidate beside the live model (daemon/shadow.go).
	Shadow Shadow
}

// New builds every stage from the configuration: the model stage
// (model.Build: detectors warmed up, mask, forest, threshold), audit,
// frame source and publisher. On error everything opened so far is
// closed.
func New(cfg *config.Config, opt Options) (d *Daemon, err error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	d = &Daemon{log: log, floodLog: logging.RateLimited(log), logLevel: opt.LogLevel, metrics: newMetrics(), cfg: cfg, started: time.Now(),
		sampleRand: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)), httpLimits: opt.HTTPLimits,
		routes: opt.Routes, outputHealth: opt.OutputHealth, degraded: opt.Degraded}
	if opt.Preview != nil {
		d.preview = &previewState{hook: opt.Preview}
	}
	d.onReload = opt.OnReload
	for _, c := range opt.Collectors {
		if err := d.metrics.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("register output metrics: %w", err)
		}
	}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	m, settings, err := model.Build(cfg, model.Options{Log: log})
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { m.Close() })
	d.insp = model.NewInspector(m, settings)
	d.metrics.setModel(m)
	if err := d.newGolden(opt.Golden, cfg.Assurance.Golden); err != nil {
		return nil, err
	}
	// The candidate before the source: a broken one fails the start fast.
	if err := d.startShadow(opt.Shadow, cfg); err != nil {
		return nil, err
	}
	if opt.Shadow != nil {
		closers = append(closers, func() { opt.Shadow.Close(context.Background()) })
	}

	if cfg.Audit.Dir != "" {
		if d.audit, err = audit.OpenKeeping(cfg.Audit.Dir, cfg.Audit.MaxBytes, cfg.Audit.MaxAge, d.floodLog, opt.AuditKeep); err != nil {
			return nil, err
		}
	}
	// The source opens before the publisher: a persistent MQTT session
	// delivers queued triggers as soon as it connects, and they need it.
	d.sourceFn = opt.Source
	src, err := d.openSource(cfg.Capture, m)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { src.Close() })
	d.src = newSourceRef(src)
	d.queue = newFrameQueue(cfg.Pipeline.Queue, d.overflowPolicy(cfg))
	d.pub = opt.Publisher
	if d.pub == nil {
		if cfg.MQTT.Broker == "" {
			return nil, fmt.Errorf("%s: mqtt.broker is not set: give a broker URL (tcp://host:1883, ssl://host:8883) or embedded", cfg.Path)
		}
		p, err := mqtt.New(cfg.MQTT, d.floodLog.With("stage", "mqtt"))
		if err != nil {
			return nil, err
		}
		p.SetHealth(d.health)
		p.OnTrigger(d.onTrigger)
		d.goldenMQTT(p)
		d.pub = p
	}
	for _, o := range opt.Outputs {
		d.outputs = append(d.outputs, startPeer(o, d.floodLog))
	}
	d.ready.Store(true)
	d.beat()
	return d, nil
}

// Ready reports whether the daemon has warmed up and is inspecting.
func (d *Daemon) Ready() bool { return d.ready.Load() }

// Model is the model in force (for reporting: bench, tests).
func (d *Daemon) Model() *model.Model { return d.insp.Model() }
