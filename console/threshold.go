package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/console/auth"
	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/metrics"
	"github.com/segad-edge/segad-edge/result"
)

// scorePart is one recent part on the Threshold page.
type scorePart struct {
	ID      string         `json:"id"`
	Score   *float64       `json:"score"` // null: not scored (fails closed)
	Verdict result.Verdict `json:"verdict"`
	Warn    bool           `json:"warn,omitempty"`
	Label   string         `json:"label,omitempty"`
}

// thresholdPage is the Threshold page's data: the parts the what-if works
// on (the same list the page's script and GET /console/api/whatif use,
// named by Snapshot), the thresholds in force and the file revision an
// Apply must still find.
type thresholdPage struct {
	Snapshot    string                  `json:"snapshot"`
	Source      string                  `json:"source"`
	Parts       []scorePart             `json:"parts"`
	Threshold   *float64                `json:"threshold"`
	Warn        *float64                `json:"warn"`
	Revision    string                  `json:"revision"`
	Table       []bundle.OperatingPoint `json:"table,omitempty"`
	Calibration string                  `json:"calibration,omitempty"`
	Confidence  float64                 `json:"confidence"`
}

// snapshots keeps the parts lists of the last few Threshold pages, so the
// what-if API judges exactly the parts the page shows while the line goes
// on adding parts.
const snapshots = 32

type snapshot struct {
	id    string
	parts []metrics.Part
}

// recentForThreshold is the parts list: the history's newest production
// results with their labels when the history is on, else what the
// console saw since start.
func (c *Console) recentForThreshold(ctx context.Context) ([]scorePart, string, error) {
	if h := c.opt.History; h != nil {
		pg, err := h.Query(ctx, history.Query{Limit: recentParts, Kind: history.KindProduction})
		if err != nil {
			return nil, "", fmt.Errorf("read recent parts from the history: %w", err)
		}
		out := make([]scorePart, 0, len(pg.Results))
		for i := len(pg.Results) - 1; i >= 0; i-- { // oldest first
			r := pg.Results[i]
			p := scorePart{ID: r.ID, Score: r.Score, Verdict: r.Verdict, Warn: r.Warn}
			if r.Label != nil {
				p.Label = r.Label.Label
			}
			out = append(out, p)
		}
		return out, "history", nil
	}
	rec := c.recentScores()
	out := make([]scorePart, 0, len(rec))
	for _, r := range rec {
		out = append(out, scorePart{ID: r.ID, Score: finite(r.Score), Verdict: r.Verdict, Warn: r.Warn})
	}
	return out, "since start", nil
}

func toMetricParts(ps []scorePart) []metrics.Part {
	out := make([]metrics.Part, len(ps))
	for i, p := range ps {
		s := math.NaN()
		if p.Score != nil {
			s = *p.Score
		}
		out[i] = metrics.Part{Score: s, Label: p.Label}
	}
	return out
}

func (c *Console) thresholdData() (*thresholdPage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	parts, src, err := c.recentForThreshold(ctx)
	if err != nil {
		return nil, err
	}
	d := &thresholdPage{Parts: parts, Source: src, Confidence: metrics.DefaultConfidence}
	if l := c.lineNow(); l != nil {
		thr, warn := l.Thresholds()
		d.Threshold, d.Warn = finite(thr), finite(warn)
	}
	if c.opt.ConfigPath != "" {
		rev, err := config.FileRevision(c.opt.ConfigPath)
		if err != nil {
			return nil, fmt.Errorf("read config %s: %w", c.opt.ConfigPath, err)
		}
		d.Revision = string(rev)
	}
	if c.opt.Manifest != nil {
		if m := c.opt.Manifest(); m != nil {
			d.Table, d.Calibration = m.Threshold.Table, m.Threshold.Calibration
			if len(d.Table) == 0 {
				d.Table = m.Threshold.Points
			}
		}
	}
	d.Snapshot = c.keepSnapshot(toMetricParts(parts))
	return d, nil
}

func (c *Console) keepSnapshot(parts []metrics.Part) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	c.snapMu.Lock()
	defer c.snapMu.Unlock()
	c.snaps = append(c.snaps, snapshot{id: id, parts: parts})
	if len(c.snaps) > snapshots {
		c.snaps = c.snaps[len(c.snaps)-snapshots:]
	}
	return id
}

func (c *Console) findSnapshot(id string) ([]metrics.Part, bool) {
	c.snapMu.Lock()
	defer c.snapMu.Unlock()
	for _, s := range c.snaps {
		if s.id == id {
			return s.parts, true
		}
	}
	return nil, false
}

// scores is GET /console/api/scores: a fresh parts list (and snapshot).
func (c *Console) scores(w http.ResponseWriter, _ *http.Request) {
	d, err := c.thresholdData()
	if err != nil {
		jsonError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// whatIf is GET /console/api/whatif?threshold=X[&snapshot=ID]: what X
// would do to the page's parts (metrics.ComputeWhatIf).
func (c *Console) whatIf(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	thr, err := parseThreshold("threshold", q.Get("threshold"), true)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	parts, ok := c.findSnapshot(q.Get("snapshot"))
	if !ok {
		if q.Get("snapshot") != "" {
			jsonError(w, http.StatusGone, "the page's parts list has expired: reload the Threshold page")
			return
		}
		ps, _, err := c.recentForThreshold(r.Context())
		if err != nil {
			jsonError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		parts = toMetricParts(ps)
	}
	writeJSON(w, http.StatusOK, metrics.ComputeWhatIf(parts, *thr, metrics.DefaultConfidence))
}

// parseThreshold reads a threshold typed by a person: a finite number
// within ±config.MaxThreshold. Empty is nil when not required.
func parseThreshold(key, s string, required bool) (*float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		if required {
			return nil, fmt.Errorf("%s is required", key)
		}
		return nil, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a number (write it like 0.5 or -1.25)", key, s)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, fmt.Errorf("%s %q is not a finite number", key, s)
	}
	if math.Abs(v) > config.MaxThreshold {
		return nil, fmt.Errorf("%s %v is out of range: it must lie within ±%g (the score is the forest's margin, typically within ±20)", key, v, config.MaxThreshold)
	}
	return &v, nil
}

// applyRequest is POST /console/api/threshold: numbers as typed (strings,
// so a bad one is named rather than refused as bad JSON), and the file
// revision the page was rendered with.
type applyRequest struct {
	Threshold string `json:"threshold"`
	Warn      string `json:"warn"`
	Revision  string `json:"revision"`
}

// applyResponse says what was written.
type applyResponse struct {
	Revision string              `json:"revision"`
	Changes  []config.FileChange `json:"changes"`
	Message  string              `json:"message"`
}

// applyThreshold writes segad.threshold and segad.warn_threshold into the
// YAML file (config.EditThresholds: comments and order kept, atomic
// rename) if the file is still the one the page was rendered from; the
// daemon's file watch then applies it. Every change is logged and
// recorded in the history with who made it.
func (c *Console) applyThreshold(w http.ResponseWriter, r *http.Request) {
	u, _ := auth.UserFrom(r.Context())
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<10))
	if err != nil {
		jsonError(w, http.StatusBadRequest, "read request: "+err.Error())
		return
	}
	var req applyRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		jsonError(w, http.StatusBadRequest, `request: `+err.Error()+` (want {"threshold": "0.5", "warn": "0.2", "revision": "..."})`)
		return
	}
	thr, err := parseThreshold("threshold", req.Threshold, true)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	warn, err := parseThreshold("warn threshold", req.Warn, false)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	if warn != nil && *warn >= *thr {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("warn threshold %v must be below the threshold %v (the warn band lies under the fail threshold)", *warn, *thr))
		return
	}
	if req.Revision == "" {
		jsonError(w, http.StatusBadRequest, "revision is missing: reload the Threshold page")
		return
	}
	if u.Role < auth.RoleEngineer {
		if lo, hi, ok := c.scoreSpan(); ok && (*thr < lo || *thr > hi) {
			c.log.Warn("console: threshold change refused: outside the scores seen", "user", u.Name, "threshold", *thr, "low", lo, "high", hi)
			jsonError(w, http.StatusForbidden, fmt.Sprintf("threshold %v lies outside the scores the line has seen and the bundle's operating points (%.4g .. %.4g): it would pass or fail every part, so only an engineer may set it (nothing was written)", *thr, lo, hi))
			return
		}
	}
	if c.opt.ConfigPath == "" {
		jsonError(w, http.StatusConflict, "this daemon runs without a config file to edit")
		return
	}
	rev, changes, err := config.EditThresholds(c.opt.ConfigPath, config.Revision(req.Revision), thr, warn)
	if err != nil {
		var ce *config.ConflictError
		if errors.As(err, &ce) {
			c.log.Warn("console: threshold change refused: the file changed meanwhile", "user", u.Name, "file", c.opt.ConfigPath)
			jsonError(w, http.StatusConflict, err.Error()+" (nothing was written: reload the page to see the file as it is now)")
			return
		}
		c.log.Warn("console: threshold change refused", "user", u.Name, "file", c.opt.ConfigPath, "err", err)
		jsonError(w, http.StatusBadRequest, err.Error()+" (nothing was written)")
		return
	}
	for _, ch := range changes {
		c.log.Info("console: threshold edited", "user", u.Name, "file", c.opt.ConfigPath, "key", ch.Key, "old", ch.Old, "new", ch.New)
		if h := c.opt.History; h != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := h.RecordChange(ctx, history.ConfigChange{At: time.Now().UTC(), User: u.Name, Source: "console", Key: ch.Key, Old: ch.Old, New: ch.New})
			cancel()
			if err != nil {
				c.log.Warn("console: config change not recorded in the history", "key", ch.Key, "err", err)
			}
		}
	}
	msg := "no change: the file already has these values"
	if len(changes) > 0 {
		msg = fmt.Sprintf("written to %s; the daemon applies it from the next part", c.opt.ConfigPath)
	}
	writeJSON(w, http.StatusOK, applyResponse{Revision: string(rev), Changes: changes, Message: msg})
}

// scoreSpan is the range of scores a technician may put the threshold in:
// from the lowest to the highest of the recent parts' scores and the
// bundle's operating-point thresholds. A threshold beyond it would pass
// (or fail) every part the line has seen, which switches inspection off
// rather than tunes it: that takes an engineer. false while the line has
// judged no part and no bundle gives operating points.
func (c *Console) scoreSpan() (lo, hi float64, ok bool) {
	add := func(v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		if !ok {
			lo, hi, ok = v, v, true
			return
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	for _, p := range c.recentScores() {
		add(p.Score)
	}
	if c.opt.Manifest != nil {
		if m := c.opt.Manifest(); m != nil {
			add(m.Threshold.Suggested)
			for _, p := range m.Threshold.Table {
				add(p.Threshold)
			}
			for _, p := range m.Threshold.Points {
				add(p.Threshold)
			}
		}
	}
	return lo, hi, ok
}
