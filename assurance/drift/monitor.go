package drift

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/result"
)

// Options are what New needs.
type Options struct {
	// Config is assurance.drift (defaults filled in).
	Config config.DriftConfig
	// Reference is the bundle's drift.json.
	Reference *bundle.DriftReference
	// Forest, when set, is the forest the reference was written with
	// (result.Result.Bundle's form, "sha256:..."): results judged by
	// another forest (a reload changed segad.bundle) are not monitored,
	// as the reference does not describe that model's training parts.
	Forest string
	// Log receives the alarm's raise and clear lines (default slog.Default()).
	Log *slog.Logger
}

// watched is one monitored feature: its reference and, per window slot,
// the bin the slot's part fell in.
type watched struct {
	ref    *bundle.DriftFeature
	col    int // position in the result's feature row (-1 until known)
	counts []int
	psi    float64
	// dof is the number of bins the reference fills, less one: the
	// degrees of freedom of PSI's sampling noise (Floor).
	dof int
}

// Monitor is the drift monitor, a daemon output (Name, Publish, Close).
// It is safe for concurrent use: the daemon publishes from one goroutine,
// health and metrics read from others.
type Monitor struct {
	cfg    config.DriftConfig
	ref    *bundle.DriftReference
	forest string
	log    *slog.Logger

	mu    sync.Mutex
	feats []watched
	// bins is the window of passed parts: slot s holds the bin of every
	// watched feature (len(feats) entries from s*len(feats)), so the part
	// leaving the window is taken out of the counts exactly.
	bins      []uint8
	n, next   int
	rowNames  []string // the feature names the columns were resolved for
	unmatched uint64   // results whose rows lack a watched feature
	psiAlarm  bool
	psiWorst  int // index into feats of the worst feature while alarmed
	// Reject rate over the last Window judged parts (pass or fail).
	rej             []bool
	rn, rnext, rk   int
	p0              float64 // the rate the rejects are tested against
	rejAlarm        bool
	rejP            float64
	passes, judged  uint64
	raised, cleared uint64
	otherModel      uint64 // results of another forest than the reference's
}

// MinReferenceGood is the smallest reference (good training parts) the
// defaults were validated with: a demo line fitted on 120 good parts
// raised a false alarm in 20,000 steady parts, one fitted on 300 none
// (docs/assurance.md).
const MinReferenceGood = 300

// maxBins bounds a reference's bins so a window slot's bin fits in a byte.
const maxBins = 250

// New makes a monitor for the watched statistics (cfg.Stats) of every
// segment and detector in the reference. It fails when the reference has
// none of them or a feature with more bins than a slot can hold.
func New(o Options) (*Monitor, error) {
	if o.Reference == nil {
		return nil, errors.New("drift monitor: no reference")
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	m := &Monitor{cfg: o.Config, ref: o.Reference, forest: o.Forest, log: log}
	for i := range o.Reference.Features {
		f := &o.Reference.Features[i]
		if !slices.Contains(o.Config.Stats, f.Stat) {
			continue
		}
		if len(f.Shares) > maxBins {
			return nil, fmt.Errorf("drift monitor: feature %s has %d bins, at most %d", f.Name, len(f.Shares), maxBins)
		}
		dof := -1
		for _, sh := range append([]float64{f.NaN}, f.Shares...) {
			if sh > 0 {
				dof++
			}
		}
		m.feats = append(m.feats, watched{ref: f, col: -1, counts: make([]int, len(f.Shares)+1), dof: max(dof, 1)})
	}
	if len(m.feats) == 0 {
		return nil, fmt.Errorf("drift monitor: the reference has no feature of the watched statistics %v", o.Config.Stats)
	}
	m.bins = make([]uint8, o.Config.Window*len(m.feats))
	if o.Reference.Good < MinReferenceGood {
		log.Warn("drift: the bundle's reference comes from few good parts; its own sampling noise can raise false alarms: fit with more good parts (docs/assurance.md)",
			"good", o.Reference.Good, "recommended", MinReferenceGood)
	}
	log.Info("drift monitor on", "features", len(m.feats), "stats", o.Config.Stats, "good", o.Reference.Good, "window", o.Config.Window,
		"noise_floor", Floor(max(o.Reference.Bins-1, 1), o.Reference.Good, o.Config.Window), "psi_alarm", o.Config.PSIAlarm)
	if o.Config.RejectOn() {
		m.p0 = o.Config.ExpectedRejectRate
		if m.p0 == 0 {
			m.p0 = max(o.Reference.ExpectedFRRHigh, o.Reference.ExpectedFRR)
		}
		if m.p0 > 0 {
			m.rej = make([]bool, o.Config.Window)
		} else {
			log.Warn("drift: reject-rate alarm off: the bundle gives no expected false-reject rate; set assurance.drift.expected_reject_rate")
		}
	}
	return m, nil
}

// Name implements daemon.Output.
func (m *Monitor) Name() string { return "drift" }

// Close implements daemon.Output.
func (m *Monitor) Close() error { return nil }

// Publish takes one result: production results only (Kind ""), passed
// parts into the feature window, passed and failed parts into the reject
// window. It never fails: a row without the watched features is counted
// (Status().Unmatched) and skipped.
func (m *Monitor) Publish(_ context.Context, r result.Result) error {
	if r.Kind != "" {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.forest != "" && r.Bundle != "" && r.Bundle != m.forest {
		if m.otherModel == 0 {
			// The alarms were about the old model: drop them rather than
			// show a doubt about a model that no longer judges. The
			// windows stay, should a reload bring the old forest back.
			m.log.Warn("drift: the line now runs another forest than the bundle's drift reference (segad.bundle reloaded): its results are not monitored; restart segad to monitor the new bundle",
				"reference_forest", m.forest, "forest", r.Bundle)
			m.psiAlarm, m.rejAlarm = false, false
		}
		m.otherModel++
		return nil
	}
	if r.Verdict == result.VerdictPass || r.Verdict == result.VerdictFail {
		m.addJudged(r.Verdict == result.VerdictFail)
	}
	if r.Verdict == result.VerdictPass {
		m.addPassed(r.Features)
	}
	return nil
}

// addPassed puts a passed part's watched features into the window and
// judges the window.
func (m *Monitor) addPassed(row []result.Feature) {
	if !m.resolve(row) {
		m.unmatched++
		return
	}
	m.passes++
	nf := len(m.feats)
	slot := m.bins[m.next*nf : (m.next+1)*nf]
	full := m.n == m.cfg.Window
	for i := range m.feats {
		w := &m.feats[i]
		if full {
			w.counts[slot[i]]--
		}
		v := row[w.col].Value
		b := len(w.ref.Shares) // the NaN bin
		if !math.IsNaN(v) {
			b = Bin(w.ref.Edges, v)
		}
		slot[i] = uint8(b)
		w.counts[b]++
	}
	m.next = (m.next + 1) % m.cfg.Window
	if !full {
		m.n++
	}
	if m.n < m.cfg.MinParts {
		return
	}
	// Each feature is judged by its excess over its sampling floor, so a
	// small training set or a part-filled window does not raise alarms
	// by noise alone (docs/assurance.md).
	worst, top := 0, math.Inf(-1)
	for i := range m.feats {
		w := &m.feats[i]
		w.psi = PSI(w.ref, w.counts, m.n)
		if x := w.psi - m.floor(w); x > top {
			worst, top = i, x
		}
	}
	m.psiWorst = worst
	switch {
	case !m.psiAlarm && top >= m.cfg.PSIAlarm:
		m.psiAlarm = true
		m.raised++
		m.log.Warn("drift alarm: passed parts no longer look like the training parts", "reason", m.featureReason(), "window", m.n, "psi_alarm", m.cfg.PSIAlarm)
	case m.psiAlarm && top < m.cfg.PSIClear:
		m.psiAlarm = false
		m.cleared++
		m.log.Info("drift alarm cleared: every watched feature is back below psi_clear", "worst", m.feats[worst].ref.Name, "psi", m.feats[worst].psi, "psi_clear", m.cfg.PSIClear)
	}
}

// floor is the PSI two samples of the same distribution show by chance:
// PSI is close to a chi-square statistic over the effective sample size,
// so its expectation is dof * (1/good + 1/window) (the reference's own
// sampling noise plus the window's). Thresholds are compared with the
// excess over it.
func (m *Monitor) floor(w *watched) float64 { return Floor(w.dof, m.ref.Good, m.n) }

// Floor is the sampling floor of a feature with dof+1 filled bins, a
// reference of good parts and a window of n parts: the PSI expected
// between two samples of one distribution.
func Floor(dof, good, n int) float64 {
	return float64(dof) * (1/float64(good) + 1/float64(n))
}

// resolve finds the watched features' columns in row, once per feature
// layout (a reload may change it): the row is the model's input row, so
// its names are the same from part to part.
func (m *Monitor) resolve(row []result.Feature) bool {
	if len(row) == len(m.rowNames) {
		same := true
		for _, w := range m.feats {
			if w.col < 0 || row[w.col].Name != m.rowNames[w.col] {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	idx := make(map[string]int, len(row))
	for i, f := range row {
		idx[f.Name] = i
	}
	for i := range m.feats {
		c, ok := idx[m.feats[i].ref.Name]
		if !ok {
			if m.unmatched == 0 {
				m.log.Warn("drift: results lack a watched feature of the bundle's drift reference; they are not monitored", "feature", m.feats[i].ref.Name, "row", len(row))
			}
			m.rowNames = nil
			return false
		}
		m.feats[i].col = c
	}
	m.rowNames = make([]string, len(row))
	for i, f := range row {
		m.rowNames[i] = f.Name
	}
	return true
}

// addJudged puts one judged part into the reject window and tests the
// window's reject count against the expected rate.
func (m *Monitor) addJudged(rejected bool) {
	if m.rej == nil {
		return
	}
	m.judged++
	if m.rn == len(m.rej) {
		if m.rej[m.rnext] {
			m.rk--
		}
	} else {
		m.rn++
	}
	m.rej[m.rnext] = rejected
	if rejected {
		m.rk++
	}
	m.rnext = (m.rnext + 1) % len(m.rej)
	if m.rn < m.cfg.MinParts {
		return
	}
	m.rejP = BinomialTail(m.rk, m.rn, m.p0)
	switch {
	case !m.rejAlarm && m.rejP < m.cfg.RejectAlpha:
		m.rejAlarm = true
		m.raised++
		m.log.Warn("drift alarm: too many rejects for the expected rate", "reason", m.rejectReason())
	case m.rejAlarm && m.rejP >= rejectClearP:
		m.rejAlarm = false
		m.cleared++
		m.log.Info("reject-rate alarm cleared", "rejects", m.rk, "window", m.rn, "expected", m.p0)
	}
}

// rejectClearP is the reject test's hysteresis: a raised alarm clears only
// when the window's rejects are not even weakly significant any more.
const rejectClearP = 0.05

func (m *Monitor) featureReason() string {
	w := m.feats[m.psiWorst]
	where := w.ref.Segment
	if where == "" {
		where = "whole map"
	}
	s := fmt.Sprintf("%s: %s %s drifted, PSI %.2f", where, w.ref.Detector, w.ref.Stat, w.psi)
	if n := m.over(); n > 1 {
		s += fmt.Sprintf(" (%d features drifted)", n)
	}
	return s
}

func (m *Monitor) over() int {
	n := 0
	for i := range m.feats {
		if w := &m.feats[i]; w.psi-m.floor(w) >= m.cfg.PSIAlarm {
			n++
		}
	}
	return n
}

func (m *Monitor) rejectReason() string {
	return fmt.Sprintf("reject rate %.1f%% over the last %d parts, expected at most %.1f%% (binomial p %.2g)",
		100*float64(m.rk)/float64(m.rn), m.rn, 100*m.p0, m.rejP)
}

// Alarm is the current alarm in words ("" when none): what health shows.
func (m *Monitor) Alarm() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var parts []string
	if m.psiAlarm {
		parts = append(parts, m.featureReason())
	}
	if m.rejAlarm {
		parts = append(parts, m.rejectReason())
	}
	return strings.Join(parts, "; ")
}

// FeatureStatus is one watched feature's state.
type FeatureStatus struct {
	Name     string  `json:"name"`
	Segment  string  `json:"segment"`
	Detector string  `json:"detector"`
	Stat     string  `json:"stat"`
	PSI      float64 `json:"psi"`
	// Floor is the PSI expected by chance (Floor); the alarm compares
	// PSI - Floor with psi_alarm.
	Floor float64 `json:"floor"`
}

// Status is the monitor's state, for metrics and reports.
type Status struct {
	// Window is the number of passed parts in the feature window.
	Window int `json:"window"`
	// Judging is true once the window holds min_parts.
	Judging bool `json:"judging"`
	// Alarm is Alarm().
	Alarm string `json:"alarm,omitempty"`
	// FeatureAlarm and RejectAlarm say which alarm is raised.
	FeatureAlarm bool `json:"feature_alarm"`
	RejectAlarm  bool `json:"reject_alarm"`
	// Features are the watched features, worst PSI first.
	Features []FeatureStatus `json:"features"`
	// RejectWindow and Rejects are the reject window's parts and rejects;
	// ExpectedRejectRate the rate they are tested against (0: test off).
	RejectWindow       int     `json:"reject_window"`
	Rejects            int     `json:"rejects"`
	ExpectedRejectRate float64 `json:"expected_reject_rate"`
	// Passes, Unmatched, Raised and Cleared count since start.
	Passes    uint64 `json:"passes"`
	Unmatched uint64 `json:"unmatched"`
	Raised    uint64 `json:"raised"`
	Cleared   uint64 `json:"cleared"`
	// OtherModel counts results of another forest (not monitored).
	OtherModel uint64 `json:"other_model"`
}

// Status returns the monitor's state.
func (m *Monitor) Status() Status {
	alarm := m.Alarm()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Status{Window: m.n, Judging: m.n >= m.cfg.MinParts, Alarm: alarm, FeatureAlarm: m.psiAlarm, RejectAlarm: m.rejAlarm,
		RejectWindow: m.rn, Rejects: m.rk, ExpectedRejectRate: m.p0, Passes: m.passes, Unmatched: m.unmatched, Raised: m.raised, Cleared: m.cleared, OtherModel: m.otherModel}
	s.Features = make([]FeatureStatus, len(m.feats))
	for i := range m.feats {
		w := &m.feats[i]
		fl := 0.0
		if m.n > 0 {
			fl = m.floor(w)
		}
		s.Features[i] = FeatureStatus{w.ref.Name, w.ref.Segment, w.ref.Detector, w.ref.Stat, w.psi, fl}
	}
	sort.SliceStable(s.Features, func(i, j int) bool {
		return s.Features[i].PSI-s.Features[i].Floor > s.Features[j].PSI-s.Features[j].Floor
	})
	return s
}

// BinomialTail is P(X >= k) for X ~ Binomial(n, p): the one-sided p-value
// of k rejects in n parts when the true reject rate is p.
func BinomialTail(k, n int, p float64) float64 {
	switch {
	case k <= 0:
		return 1
	case k > n:
		return 0
	case p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	// Sum the terms from k up in log space; beyond the mode they shrink
	// geometrically, so the sum stops once they no longer count. Below
	// the mode (k < n*p) the tail is large: take 1 - P(X <= k-1) instead.
	if float64(k) < float64(n)*p {
		return 1 - binomialHead(k-1, n, p)
	}
	lt := logChoose(n, k) + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p)
	t, sum := math.Exp(lt), 0.0
	r := p / (1 - p)
	for i := k; i <= n && t > 0; i++ {
		sum += t
		if t < sum*1e-17 {
			break
		}
		t *= float64(n-i) / float64(i+1) * r
	}
	return min(sum, 1)
}

// binomialHead is P(X <= k), summed down from k (k below the mode).
func binomialHead(k, n int, p float64) float64 {
	if k < 0 {
		return 0
	}
	lt := logChoose(n, k) + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p)
	t, sum := math.Exp(lt), 0.0
	r := (1 - p) / p
	for i := k; i >= 0 && t > 0; i-- {
		sum += t
		if t < sum*1e-17 {
			break
		}
		t *= float64(i) / float64(n-i+1) * r
	}
	return min(sum, 1)
}

func logChoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}
