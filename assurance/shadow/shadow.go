// Package shadow runs a candidate model beside the live one (segad.shadow):
// a deterministic share of the line's frames is scored again by the
// candidate, in its own bounded worker, and the candidate's verdicts are
// recorded aside (Result.Kind shadow: the history only, never the PLC, the
// result topic, the counters or the audit). The candidate decides nothing
// and can never delay the line: a frame the worker cannot take at once is
// dropped for the candidate and counted.
//
// A candidate trained for the live detectors and mask (the bundle manifest
// says so; model.Build verifies it) needs no inference of its own: its
// feature row is the live result's, so it costs one forest evaluation. A
// candidate with its own detectors (segad.shadow.detectors) runs the full
// model on a copy of the frame's preprocessed image.
//
// A shadow result pairs with its live result by ID: the shadow's ID is the
// live ID with IDSuffix appended, and it carries the same station, source,
// sequence number and part ID (docs/assurance.md).
package shadow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/result"
)

// IDSuffix turns a live result's ID into its shadow result's ID: the pair
// is found from either side without a column of its own in the history.
const IDSuffix = "-shadow"

// LiveID is the live result's ID of a shadow result's ID ("" when id is
// not a shadow ID).
func LiveID(id string) string {
	if live, ok := strings.CutSuffix(id, IDSuffix); ok {
		return live
	}
	return ""
}

// QueueSize is how many frames may wait for the candidate; beyond it a
// frame is dropped for the candidate (never for the line) and counted.
const QueueSize = 8

// Sampled reports whether the frame with sequence number seq is among the
// share the candidate scores. The choice is a hash of seq (splitmix64), so
// it is the same for the same line on every run, spreads over periodic
// lines, and a share of 0.25 takes a quarter of the frames on average.
func Sampled(seq uint64, share float64) bool {
	if share >= 1 {
		return true
	}
	z := seq + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11)/(1<<53) < share
}

// Scorer is the candidate's forest on a feature row (model.Scorer).
type Scorer = model.Scorer

// candidate is one built candidate model and how it is fed.
type candidate struct {
	bundle string  // the candidate's bundle folder
	share  float64 // segad.shadow.share
	// own: the candidate runs its own detectors on a copy of the frame
	// (insp); otherwise it scores the live feature row with scorer.
	own       bool
	insp      *model.Inspector
	scorer    Scorer
	features  []string // the feature names scorer takes (reuse mode)
	threshold float64
	hash      string // the candidate forest's hash (Result.Bundle)

	use    sync.RWMutex // held while scoring; Lock to close
	closed bool
	close  func() error
}

// shutdown closes the candidate once no frame is being scored with it.
func (c *candidate) shutdown() error {
	if c == nil {
		return nil
	}
	c.use.Lock()
	defer c.use.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.close != nil {
		return c.close()
	}
	return nil
}

// job is one frame for the candidate: the live result and, for a candidate
// with its own detectors, a copy of the frame.
type job struct {
	c     *candidate
	live  result.Result
	frame *capture.Frame
}

// Runner scores the sampled frames with the candidate. The zero candidate
// (no segad.shadow) makes Offer a single atomic load.
type Runner struct {
	log *slog.Logger
	cur atomic.Pointer[candidate]

	mu     sync.RWMutex // guards closed against sends on jobs
	closed bool
	jobs   chan job
	done   chan struct{}

	recMu  sync.RWMutex // guards record against a stop
	record func(result.Result)

	applyMu sync.Mutex // one Apply at a time

	results   *prometheus.CounterVec
	disagree  *prometheus.CounterVec
	dropped   prometheus.Counter
	lastError atomic.Pointer[string]
}

// New starts a runner without a candidate; Apply gives it one.
func New(log *slog.Logger) *Runner {
	if log == nil {
		log = slog.Default()
	}
	r := &Runner{log: log.With("stage", "shadow"), jobs: make(chan job, QueueSize), done: make(chan struct{}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "segad_shadow_results_total",
			Help: "Results of the shadow candidate (segad.shadow), by verdict."}, []string{"verdict"}),
		disagree: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "segad_shadow_disagreements_total",
			Help: "Parts the candidate judged otherwise than the live model: candidate_rejects (live passed), candidate_passes (live rejected)."}, []string{"kind"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "segad_shadow_dropped_total",
			Help: "Sampled frames the candidate could not take because its worker was behind (never a line frame)."}),
	}
	go r.work()
	return r
}

// Collectors are the runner's Prometheus metrics.
func (r *Runner) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.results, r.disagree, r.dropped}
}

// Start sets where shadow results go (the daemon's recorder of results
// that decide nothing: the history).
func (r *Runner) Start(record func(result.Result)) {
	r.recMu.Lock()
	r.record = record
	r.recMu.Unlock()
}

// Active reports whether a candidate is in force.
func (r *Runner) Active() bool { return r.cur.Load() != nil }

// Apply builds the candidate of cfg's segad.shadow (none when unset) and
// puts it in force, closing the previous one once it is idle. A candidate
// that cannot be built is an error and changes nothing: at start the
// daemon refuses to start, on a reload the reload is rejected.
func (r *Runner) Apply(cfg *config.Config, log *slog.Logger) error {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	var next *candidate
	if cfg.SegAD.Shadow != nil {
		var err error
		if next, err = build(cfg, log); err != nil {
			msg := err.Error()
			r.lastError.Store(&msg)
			return err
		}
	}
	old := r.cur.Swap(next)
	r.lastError.Store(nil)
	if next != nil {
		r.log.Info("shadow candidate in force", "bundle", next.bundle, "forest", next.hash, "share", next.share,
			"own_detectors", next.own, "threshold", next.threshold)
	} else if old != nil {
		r.log.Info("shadow candidate removed", "bundle", old.bundle)
	}
	return old.shutdown()
}

// use puts a candidate built elsewhere in force: sc scores the live
// feature rows named features (the tests' small fakes, to check what a
// candidate that misbehaves does to the line).
func (r *Runner) use(bundle string, share, threshold float64, features []string, sc Scorer) {
	c := &candidate{bundle: bundle, share: share, scorer: sc, features: features, threshold: threshold, hash: "test"}
	r.cur.Swap(c).shutdown()
}

// build builds the candidate through model.Build, the one way into the
// model stage, with the derived configuration (config.ShadowModelConfig).
func build(cfg *config.Config, log *slog.Logger) (*candidate, error) {
	s := cfg.SegAD.Shadow
	mc := cfg.ShadowModelConfig()
	if _, err := bundle.Load(s.Bundle); err != nil {
		return nil, fmt.Errorf("segad.shadow: candidate bundle %s cannot be used: %w (name a folder written by segad fit -o, or remove segad.shadow)", s.Bundle, err)
	}
	m, set, err := model.Build(mc, model.Options{Log: log})
	if err != nil {
		hint := "retrain the candidate with segad fit, or remove segad.shadow"
		switch {
		case s.OwnDetectors():
			hint = "check segad.shadow.detectors against the bundle, or remove segad.shadow"
		case strings.Contains(err.Error(), "does not match this configuration"):
			hint = "the candidate was trained for other detectors or another mask: give it its own detectors under segad.shadow.detectors, retrain it for the live ones, or remove segad.shadow"
		}
		return nil, fmt.Errorf("segad.shadow: candidate bundle %s cannot be used: %w (%s)", s.Bundle, err, hint)
	}
	c := &candidate{bundle: s.Bundle, share: s.Share, own: s.OwnDetectors(), threshold: set.Threshold, hash: m.ForestHash}
	if c.own {
		c.insp = model.NewInspector(m, set)
		c.close = c.insp.Close
		return c, nil
	}
	// The candidate was verified against the live detectors, mask and
	// features, so the live result's feature row is its input: keep the
	// forest, free the second set of detector sessions.
	c.scorer, c.features = m.Scorer, m.Extractor.Names()
	if err := m.Close(); err != nil {
		log.Warn("shadow: closing the candidate's verification detectors", "err", err)
	}
	return c, nil
}

// Offer hands the candidate a frame the line has just judged (live, with
// its ID). It never blocks: a frame that is not sampled, or that the
// worker has no room for, is left (the latter counted). The frame is
// copied when the candidate needs it, since the line closes it after.
func (r *Runner) Offer(f *capture.Frame, live result.Result) {
	c := r.cur.Load()
	if c == nil || !Sampled(live.Seq, c.share) {
		return
	}
	if live.Kind != "" || live.Score == nil || (!c.own && live.Bundle == c.hash) {
		// Only parts the live model scored (a dropped or unreadable frame
		// has nothing to compare), and not by the candidate itself: around
		// a promotion the frames in flight were judged by the forest that
		// is now the candidate, on the same features.
		return
	}
	j := job{c: c, live: live}
	if c.own {
		if f == nil || f.Err != nil || f.Image.Empty() {
			return
		}
		j.frame = &capture.Frame{Source: f.Source, Seq: f.Seq, Captured: f.Captured, PartID: f.PartID, Path: f.Path,
			Image: f.Image.Clone(), Color: f.Color}
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		j.frame.Close()
		return
	}
	select {
	case r.jobs <- j:
	default:
		j.frame.Close()
		r.dropped.Inc()
	}
}

func (r *Runner) work() {
	defer close(r.done)
	if err := lowerPriority(); err != nil {
		r.log.Warn("shadow worker runs at normal priority", "err", err)
	}
	for j := range r.jobs {
		res := r.score(j)
		j.frame.Close()
		if res == nil {
			continue
		}
		r.results.WithLabelValues(string(res.Verdict)).Inc()
		switch {
		case res.Verdict == result.VerdictPass && j.live.Rejected():
			r.disagree.WithLabelValues("candidate_passes").Inc()
		case res.Rejected() && !j.live.Rejected():
			r.disagree.WithLabelValues("candidate_rejects").Inc()
		}
		r.recMu.RLock()
		if r.record != nil {
			r.record(*res)
		}
		r.recMu.RUnlock()
	}
}

// score judges one frame with the candidate: a shadow result paired with
// the live one, or nil when the candidate was closed meanwhile.
func (r *Runner) score(j job) *result.Result {
	c := j.c
	c.use.RLock()
	defer c.use.RUnlock()
	if c.closed {
		return nil
	}
	var res result.Result
	if c.own {
		res = c.insp.Inspect(j.frame, false).Result
	} else {
		t := time.Now()
		res = result.Result{Station: j.live.Station, Source: j.live.Source, Seq: j.live.Seq, PartID: j.live.PartID,
			CapturedAt: j.live.CapturedAt, MapMax: j.live.MapMax, Bundle: c.hash}
		row, err := c.row(j.live.Features)
		if err != nil {
			res.Threshold = c.threshold
			result.FailClosed(&res, result.ReasonMap, err)
		} else {
			res.Decide(c.scorer.Margin(row), c.threshold, math.NaN())
		}
		res.DecidedAt = time.Now()
		res.LatencyMS = map[string]float64{"segad": float64(time.Since(t).Microseconds()) / 1000}
		res.Schema = result.SchemaVersion
	}
	res.Station = j.live.Station
	res.ID = j.live.ID + IDSuffix
	res.Kind = result.KindShadow
	return &res
}

// row is the live feature row as the candidate's input; an error when the
// live features are not the ones the candidate was built for (the live
// model was reloaded with other detectors or mask since).
func (c *candidate) row(fs []result.Feature) ([]float32, error) {
	if len(fs) != len(c.features) {
		return nil, fmt.Errorf("shadow: the live result has %d features, candidate %s takes %d (the live detectors or mask changed: give the candidate its own detectors or retrain it)", len(fs), c.bundle, len(c.features))
	}
	row := make([]float32, len(fs))
	for i, f := range fs {
		if f.Name != c.features[i] {
			return nil, fmt.Errorf("shadow: live feature %d is %s, candidate %s takes %s (the live detectors or mask changed: give the candidate its own detectors or retrain it)", i, f.Name, c.bundle, c.features[i])
		}
		row[i] = float32(f.Value)
	}
	return row, nil
}

// Health is what is wrong with the shadow candidate ("" when nothing): the
// last candidate that could not be built.
func (r *Runner) Health() string {
	if p := r.lastError.Load(); p != nil {
		return *p
	}
	return ""
}

// Close stops taking frames, lets the worker finish what is queued (at most
// until ctx ends), closes the candidate and stops recording: no shadow
// result is recorded after Close returns.
func (r *Runner) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.jobs)
	r.mu.Unlock()
	var err error
	select {
	case <-r.done:
	case <-ctx.Done():
		err = errors.New("shadow: the candidate did not finish its queued frames before the stop; they are not recorded")
	}
	r.recMu.Lock()
	r.record = nil
	r.recMu.Unlock()
	if err != nil {
		// The worker may still be scoring with the candidate: leave its
		// detectors to process exit rather than free them under it.
		return err
	}
	return r.cur.Swap(nil).shutdown()
}
