// Package logging sets up the program's structured logger (text or JSON,
// with a level that a reload can change) and the rate limit that keeps
// per-frame and per-message warnings from flooding the journal.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// ParseLevel maps debug|info|warn|error to a slog level (info otherwise).
func ParseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// New builds the program's structured logger (text or JSON) at a level
// that can be changed while it runs (the returned LevelVar: the daemon's
// hot reload sets log.level through it). Text suits journald; JSON suits
// log shippers.
func New(w io.Writer, level, format string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	lv.Set(ParseLevel(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), lv
	}
	return slog.New(slog.NewTextHandler(w, opts)), lv
}

// Log flood limits for per-frame and per-message warnings: a camera that
// delivers corrupt files at 50 frames/s, or a PLC flooding the trigger topic,
// must not turn the journal into the bottleneck (or fill the disk).
const (
	// Burst is how many warnings with the same message pass per Every.
	Burst = 10
	// Every is the window of Burst; after it one summary line says how
	// many were suppressed.
	Every = 10 * time.Second
)

// NewRateLimitHandler wraps next so that Warn and Error records pass at most
// burst times per message (and level) in every window of length every; the
// rest are counted and, when the window ends, summarised in one Warn line
// "log lines suppressed" with the message, the count and the window. Debug
// and Info records always pass: they are not per-frame at those levels unless
// the operator asked for debug. Handlers derived with WithAttrs/WithGroup
// share the counters, so a per-site logger (log.With("stage", ...)) is
// limited together with its parent.
func NewRateLimitHandler(next slog.Handler, burst int, every time.Duration) slog.Handler {
	return &rateLimitHandler{next: next, lim: &rateLimiter{burst: max(burst, 1), every: every, keys: map[string]*rateWindow{}, out: next}}
}

type rateLimiter struct {
	burst int
	every time.Duration
	out   slog.Handler // where summaries go (the root handler, no extra attrs)

	mu   sync.Mutex
	keys map[string]*rateWindow
}

type rateWindow struct {
	start      time.Time
	passed     int
	suppressed int
	level      slog.Level
	msg        string
	timer      *time.Timer
}

// allow reports whether a record with this level and message may pass now.
func (l *rateLimiter) allow(level slog.Level, msg string, now time.Time) bool {
	key := level.String() + "\x00" + msg
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.keys[key]
	if w == nil || now.Sub(w.start) >= l.every {
		if w != nil && w.suppressed > 0 {
			// The window ended with a pending summary whose timer has not
			// fired yet: write it now, before the new window's lines.
			w.timer.Stop()
			l.summarise(w)
		}
		w = &rateWindow{start: now, level: level, msg: msg}
		l.keys[key] = w
		l.pruneLocked(now)
	}
	if w.passed < l.burst {
		w.passed++
		return true
	}
	w.suppressed++
	if w.suppressed == 1 {
		// A summary is due even if the flood stops now: nothing else would
		// ever report what was hidden.
		w.timer = time.AfterFunc(w.start.Add(l.every).Sub(now), func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.keys[key] == w && w.suppressed > 0 {
				l.summarise(w)
			}
		})
	}
	return false
}

// summarise writes the suppressed count of w and resets it. Callers hold mu.
func (l *rateLimiter) summarise(w *rateWindow) {
	n := w.suppressed
	w.suppressed = 0
	r := slog.NewRecord(time.Now(), slog.LevelWarn, "log lines suppressed", 0)
	r.AddAttrs(slog.String("message", w.msg), slog.String("level", w.level.String()),
		slog.Int("suppressed", n), slog.Duration("window", l.every))
	_ = l.out.Handle(context.Background(), r)
}

// pruneLocked forgets windows long past, so a stream of distinct messages
// cannot grow the map without bound.
func (l *rateLimiter) pruneLocked(now time.Time) {
	if len(l.keys) < 1024 {
		return
	}
	for k, w := range l.keys {
		if now.Sub(w.start) >= 2*l.every && w.suppressed == 0 {
			delete(l.keys, k)
		}
	}
}

type rateLimitHandler struct {
	next slog.Handler
	lim  *rateLimiter
}

func (h *rateLimitHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *rateLimitHandler) Handle(ctx context.Context, r slog.Record) error {
	now := r.Time
	if now.IsZero() {
		now = time.Now()
	}
	if r.Level >= slog.LevelWarn && !h.lim.allow(r.Level, r.Message, now) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *rateLimitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &rateLimitHandler{next: h.next.WithAttrs(as), lim: h.lim}
}

func (h *rateLimitHandler) WithGroup(name string) slog.Handler {
	return &rateLimitHandler{next: h.next.WithGroup(name), lim: h.lim}
}

// RateLimited returns log with its Warn and Error lines limited per message
// (Burst per Every, then a summary).
func RateLimited(log *slog.Logger) *slog.Logger {
	return slog.New(NewRateLimitHandler(log.Handler(), Burst, Every))
}
