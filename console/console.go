// Package console is the technician console the daemon serves at
// http.listen "/" (docs/console.md): Live (the latest part with its
// heatmap, pushed over server-sent events), History, Threshold (histogram,
// what-if, Apply into the YAML file), Review (labelling) and Health.
//
// The console is a daemon output: it receives every result, keeps the
// latest one, counters of the last hour and per-minute latency quantiles,
// and pushes at most console.live_rate updates a second to each browser,
// the newest winning, so a fast line costs a browser nothing more than a
// slow one. Pages are server-rendered from embedded templates with one
// small script; nothing is loaded from outside the daemon.
package console

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/console/auth"
	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/result"
)

// Line is what the console reads from the running daemon.
type Line interface {
	// Status is the line's health (camera, queue, broker, outbox).
	Status() mqtt.Health
	// BrokerConnected reports whether the MQTT link is up.
	BrokerConnected() bool
	// Thresholds are the threshold and warn threshold in force (warn NaN:
	// no warn band).
	Thresholds() (threshold, warn float64)
	// Identity names the model and bundle in force.
	Identity() Identity
}

// Identity names what judges the parts, for the Health page.
type Identity struct {
	Station   string   `json:"station"`
	Version   string   `json:"version"`
	Forest    string   `json:"forest"`
	Detectors []string `json:"detectors"`
	Bundle    string   `json:"bundle,omitempty"`
	Config    string   `json:"config"`
}

// Options are what New needs.
type Options struct {
	// Auth checks sessions, roles and CSRF tokens.
	Auth *auth.Manager
	// Logger receives threshold changes and refusals (default slog.Default()).
	Logger *slog.Logger
	// LiveRate is the most Live updates a second per browser (console.live_rate).
	LiveRate int
	// ConfigPath is the YAML file Apply edits (the daemon watches it).
	ConfigPath string
	// History is the result history; nil when history is off (the
	// History and Review pages then say so, and Threshold uses the parts
	// the console saw since start).
	History *history.Store
	// Explain explains a recorded result (as the history API's).
	Explain func(ctx context.Context, row history.Row, method string) (any, error)
	// Manifest returns the manifest of the bundle in force (nil: no bundle),
	// for the operating-point table.
	Manifest func() *bundle.Manifest
	// AuditDir is audit.dir, where thumbnails of kept images are read.
	AuditDir string
}

// recentParts is how many recent scores the Threshold page shows when the
// history is off (and at most when it is on).
const recentParts = 1000

// Console is the technician console: a daemon output and its HTTP pages.
type Console struct {
	opt  Options
	log  *slog.Logger
	rate atomic.Int64 // updates per second per browser
	line atomic.Pointer[lineBox]

	watchers    atomic.Int64 // browsers on the live feed now
	streams     streamSlots  // Live streams open, bounded
	lastPreview atomic.Int64 // unix nanos of the last preview taken

	mu      sync.Mutex
	ver     uint64        // bumped on every new result or frame
	changed chan struct{} // closed and replaced on every bump
	latest  *result.Result
	frame   *Frame
	hour    [60]minuteCount // parts, fails and errors per minute of the last hour
	recent  []recentPart    // ring of the last recentParts scores
	next    int
	lat     latencies

	snapMu sync.Mutex
	snaps  []snapshot // Threshold pages' parts lists, newest last
}

type lineBox struct{ l Line }

// Frame is a rendered part for the Live page (daemon.PreviewFrame).
type Frame struct {
	ResultID      string
	Seq           uint64
	JPEG          []byte
	Width, Height int
	At            time.Time
}

type minuteCount struct {
	minute                        int64 // unix minute the counts belong to
	parts, fails, errors, dropped int
}

type recentPart struct {
	ID      string
	Score   float64
	Verdict result.Verdict
	Warn    bool
	At      time.Time
}

// New makes a console; it serves nothing until Register.
func New(opt Options) *Console {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	c := &Console{opt: opt, log: opt.Logger, changed: make(chan struct{})}
	c.SetLiveRate(opt.LiveRate)
	return c
}

// SetLiveRate changes console.live_rate (a reload).
func (c *Console) SetLiveRate(n int) {
	if n <= 0 {
		n = 4
	}
	c.rate.Store(int64(n))
}

// Attach hands the console the running line.
func (c *Console) Attach(l Line) { c.line.Store(&lineBox{l}) }

func (c *Console) lineNow() Line {
	if b := c.line.Load(); b != nil {
		return b.l
	}
	return nil
}

// Name is the output's name in logs.
func (c *Console) Name() string { return "console" }

// Publish takes one result: it becomes the latest, is counted and its
// score kept for the Threshold page. It never waits on a browser.
func (c *Console) Publish(_ context.Context, r result.Result) error {
	now := time.Now()
	min := now.Unix() / 60
	c.mu.Lock()
	defer c.mu.Unlock()
	rr := r
	rr.Features = nil // not shown live; the history keeps them
	c.latest = &rr
	b := &c.hour[min%60]
	if b.minute != min {
		*b = minuteCount{minute: min}
	}
	b.parts++
	switch r.Verdict {
	case result.VerdictFail:
		b.fails++
	case result.VerdictError:
		b.errors++
	}
	if r.ReasonCode == result.ReasonDropped {
		b.dropped++ // the line fell behind the camera (pipeline.overflow: drop_oldest)
	}
	score := math.NaN()
	if r.Score != nil {
		score = *r.Score
	}
	p := recentPart{ID: r.ID, Score: score, Verdict: r.Verdict, Warn: r.Warn, At: r.DecidedAt}
	if len(c.recent) < recentParts {
		c.recent = append(c.recent, p)
	} else {
		c.recent[c.next] = p
		c.next = (c.next + 1) % recentParts
	}
	c.lat.add(now, r.LatencyMS)
	c.bumpLocked()
	return nil
}

// Close ends the output (browsers are ended by the HTTP server's stop).
func (c *Console) Close() error { return nil }

func (c *Console) bumpLocked() {
	c.ver++
	close(c.changed)
	c.changed = make(chan struct{})
}

// maxFrameRate bounds the Live frames rendered a second, whatever
// live_rate: a frame (heatmap overlay and JPEG) is the one part of Live
// that costs the line measurable CPU, while the numbers beside it are
// cheap to send at live_rate.
const maxFrameRate = 2

// PreviewDue reports whether the daemon should render the part it is
// scoring: only while a browser watches Live, and at most
// min(live_rate, maxFrameRate) times a second.
func (c *Console) PreviewDue() bool {
	if c.watchers.Load() == 0 {
		return false
	}
	now := time.Now().UnixNano()
	last := c.lastPreview.Load()
	if now-last < int64(time.Second)/min(c.rate.Load(), maxFrameRate) {
		return false
	}
	return c.lastPreview.CompareAndSwap(last, now)
}

// SetFrame takes a rendered frame for the Live page.
func (c *Console) SetFrame(f Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frame = &f
	c.bumpLocked()
}

// countsLocked are the last hour's parts, fails, errors and dropped frames.
func (c *Console) countsLocked(now time.Time) (parts, fails, errors, dropped int) {
	min := now.Unix() / 60
	for _, b := range c.hour {
		if b.minute > min-60 && b.minute <= min {
			parts += b.parts
			fails += b.fails
			errors += b.errors
			dropped += b.dropped
		}
	}
	return
}

// liveUpdate is one Live message (SSE data and GET /console/api/live).
type liveUpdate struct {
	Version    uint64                `json:"version"`
	Result     *result.Result        `json:"result"`
	Top        []result.Contribution `json:"top,omitempty"`
	FrameSeq   uint64                `json:"frame_seq"`
	FrameID    string                `json:"frame_id,omitempty"`
	Threshold  *float64              `json:"threshold"`
	Warn       *float64              `json:"warn"`
	Parts      int                   `json:"parts_hour"`
	Fails      int                   `json:"fails_hour"`
	Errors     int                   `json:"errors_hour"`
	Dropped    int                   `json:"dropped_hour"`
	Camera     string                `json:"camera"`
	Broker     string                `json:"broker"`
	Backlog    int                   `json:"outbox_backlog"`
	Drops      uint64                `json:"outbox_drops"`
	QueueDepth int                   `json:"queue_depth"`
	Outputs    map[string]string     `json:"outputs,omitempty"`
	ConfigErr  string                `json:"config_error,omitempty"`
	At         time.Time             `json:"at"`
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// snapshot builds the Live message now.
func (c *Console) snapshot() ([]byte, uint64) {
	now := time.Now()
	u := liveUpdate{At: now.UTC()}
	c.mu.Lock()
	u.Version = c.ver
	if c.latest != nil {
		r := *c.latest
		u.Result = &r
		if r.Explain != nil {
			u.Top = result.Top(r.Explain.Segments, 5)
		}
		r.Explain = nil
	}
	if c.frame != nil {
		u.FrameSeq, u.FrameID = c.frame.Seq, c.frame.ResultID
	}
	u.Parts, u.Fails, u.Errors, u.Dropped = c.countsLocked(now)
	c.mu.Unlock()
	if l := c.lineNow(); l != nil {
		thr, warn := l.Thresholds()
		u.Threshold, u.Warn = finite(thr), finite(warn)
		h := l.Status()
		u.Camera, u.Backlog, u.Drops, u.QueueDepth, u.Outputs, u.ConfigErr = h.CameraState, h.BrokerBacklog, h.OutboxDrops, h.QueueDepth, h.Outputs, h.LastConfigError
		u.Broker = "connected"
		if !l.BrokerConnected() {
			u.Broker = "disconnected"
			if h.LastError != "" {
				u.Broker += ": " + h.LastError
			}
		}
	} else {
		u.Camera, u.Broker = "starting", "starting"
	}
	b, err := json.Marshal(u)
	if err != nil {
		c.log.Warn("console: live update not encoded", "err", err)
		return []byte("{}"), u.Version
	}
	return b, u.Version
}

// wait returns the channel closed on the next change and the version now.
func (c *Console) wait() (<-chan struct{}, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed, c.ver
}

// recentScores are the parts the console saw since start, oldest first.
func (c *Console) recentScores() []recentPart {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]recentPart, 0, len(c.recent))
	out = append(out, c.recent[c.next:]...)
	return append(out, c.recent[:c.next]...)
}

// Watchers is how many browsers watch Live now.
func (c *Console) Watchers() int { return int(c.watchers.Load()) }
