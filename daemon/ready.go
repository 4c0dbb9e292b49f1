package daemon

import (
	"fmt"
	"sync"
	"time"

	"github.com/segad-edge/segad-edge/mqtt"
)

// LinkState says whether results can reach the broker, for /readyz.
type LinkState struct {
	// Stalled is true when results wait and none can be published.
	Stalled bool
	// Reason says why, in words for an operator.
	Reason string
}

// LinkReporter is implemented by publishers that can tell themselves
// whether they can publish. /readyz asks it on every request, so Link must
// not block.
type LinkReporter interface {
	Link() LinkState
}

// linkStallAfter is how long results may wait in the outbox with none
// acknowledged before the link counts as stalled: longer than a reconnect
// (back-off capped at 10 s) plus an acknowledgement timeout, so a broker
// restart does not flap readiness.
const linkStallAfter = 30 * time.Second

// mqttStalled is the publisher's own stall report, read from its Stats: why
// it says it cannot publish (disconnected, or results waiting with no PUBACK
// for longer than mqtt.ack_timeout), "" when it does not say so. This is the
// one place where mqtt.Stats' stall fields are read.
func mqttStalled(s mqtt.Stats) string {
	if !s.Stalled {
		return ""
	}
	if s.StalledReason != "" {
		return s.StalledReason
	}
	return "the MQTT link cannot publish"
}

// linkWatch turns the publisher's counters, sampled once a second, into a
// link state: stalled when the publisher says so, or when results have
// waited in the outbox for linkStallAfter with none acknowledged.
type linkWatch struct {
	mu        sync.Mutex
	published uint64
	progress  time.Time // last time the backlog was empty or an ack arrived
	state     LinkState
}

// observe records one sample and returns the link state.
func (w *linkWatch) observe(s mqtt.Stats, now time.Time) LinkState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.progress.IsZero() || s.Backlog == 0 || s.Published != w.published {
		w.progress = now
	}
	w.published = s.Published
	switch idle := now.Sub(w.progress); {
	case mqttStalled(s) != "":
		w.state = LinkState{Stalled: true, Reason: mqttStalled(s)}
	case idle >= linkStallAfter:
		reason := fmt.Sprintf("%d results waiting in the outbox, none acknowledged by the broker for %s (connected: %v)",
			s.Backlog, idle.Round(time.Second), s.Connected)
		if s.LastError != "" {
			reason += "; last error: " + s.LastError
		}
		w.state = LinkState{Stalled: true, Reason: reason}
	default:
		w.state = LinkState{}
	}
	return w.state
}

// last is the most recent state (no sampling: /readyz must not block).
func (w *linkWatch) last() LinkState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// link is the result link's state: the publisher's own report when it
// gives one (LinkReporter), else what watchHealth last sampled.
func (d *Daemon) link() LinkState {
	if r, ok := d.pub.(LinkReporter); ok {
		return r.Link()
	}
	return d.linkWatch.last()
}
