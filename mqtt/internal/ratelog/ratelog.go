// Package ratelog bounds log volume under floods: a peer that sends 20,000
// bad packets a second must not write 20,000 log lines a second (disk,
// journald and the operator's attention are finite). Every log line that a
// peer can trigger in package mqtt goes through a Limiter, and every value a
// peer controls is cut with Excerpt.
package ratelog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	// Interval is the window of the per-message budget.
	Interval = 10 * time.Second
	// Burst is how many lines of one message pass per window.
	Burst = 5
	// MaxValue is the most bytes of one logged value (topic, payload
	// excerpt, client ID, error text) that a peer controls.
	MaxValue = 128
	// maxLimiterKeys bounds the limiter's memory: keys are fixed message
	// texts, so this is reached only by a bug, and then the map starts over.
	maxLimiterKeys = 512
)

// Limiter lets at most Burst lines of each message through per
// Interval. The rest are counted; at the end of the window (flush) one
// line per message reports how many were suppressed, so nothing vanishes
// silently and nothing floods.
type Limiter struct {
	mu   sync.Mutex
	keys map[string]*state
	now  func() time.Time
}

type state struct {
	log        *slog.Logger
	level      slog.Level
	start      time.Time
	n          int
	suppressed uint64
}

// New returns a Limiter with an empty budget table.
func New() *Limiter {
	return &Limiter{keys: map[string]*state{}, now: time.Now}
}

// Log writes msg with args at level unless its budget for this window is
// spent, in which case it is counted for the next flush.
func (l *Limiter) Log(logger *slog.Logger, level slog.Level, msg string, args ...any) {
	if !logger.Enabled(context.Background(), level) {
		return
	}
	l.mu.Lock()
	now := l.now()
	st := l.keys[msg]
	if st == nil {
		if len(l.keys) >= maxLimiterKeys {
			l.keys = map[string]*state{}
		}
		st = &state{log: logger, level: level, start: now}
		l.keys[msg] = st
	}
	if now.Sub(st.start) >= Interval {
		st.start, st.n = now, 0
	}
	st.n++
	if st.n > Burst {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	logger.Log(context.Background(), level, msg, args...)
}

// Flush reports, once per message, how many lines were suppressed since
// the last flush. The owner calls it every Interval and at close.
func (l *Limiter) Flush() {
	type rep struct {
		msg string
		st  state
	}
	var reps []rep
	l.mu.Lock()
	for msg, st := range l.keys {
		if st.suppressed > 0 {
			reps = append(reps, rep{msg, *st})
			st.suppressed = 0
		}
	}
	l.mu.Unlock()
	for _, r := range reps {
		r.st.log.Log(context.Background(), r.st.level, r.msg+" (repeated; similar lines suppressed)",
			"suppressed", r.st.suppressed, "window", Interval.String())
	}
}

// Run flushes every Interval until stop closes, then once more.
func (l *Limiter) Run(stop <-chan struct{}) {
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.Flush()
		case <-stop:
			l.Flush()
			return
		}
	}
}

// ExcerptBytes is Excerpt for a byte slice; it copies at most MaxValue
// bytes, however large b is.
func ExcerptBytes(b []byte) string {
	if len(b) <= MaxValue {
		return string(b)
	}
	s := Excerpt(string(b[:MaxValue+4]))
	return s[:strings.LastIndex(s, "...(")] + fmt.Sprintf("...(%d bytes)", len(b))
}

// Excerpt returns at most MaxValue bytes of s (on a rune boundary) and
// says how long s was, so a 1 MB topic or payload never reaches a log line.
func Excerpt(s string) string {
	if len(s) <= MaxValue {
		return s
	}
	cut := MaxValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:cut], len(s))
}
