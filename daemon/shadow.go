package daemon

import (
	"context"
	"log/slog"
	"strings"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/result"
)

// Shadow is a candidate model scored beside the live one (segad.shadow;
// *shadow.Runner implements it). It decides nothing: the daemon offers it
// every judged frame after the result is published, and it records its own
// verdicts aside (Result.Kind shadow) through the function Start gives it.
type Shadow interface {
	// Start sets where the candidate's results go (the daemon's
	// recordAside: outputs that record aside, the history).
	Start(record func(result.Result))
	// Apply builds and installs the candidate of cfg (none when
	// segad.shadow is unset); an error leaves the one in force.
	Apply(cfg *config.Config, log *slog.Logger) error
	// Offer hands over a judged frame and its live result. It must not
	// block and must copy what it keeps: the frame is closed after.
	Offer(f *capture.Frame, live result.Result)
	// Health is what is wrong with the candidate ("" when nothing).
	Health() string
	// Close stops it; no result is recorded after Close returns.
	Close(ctx context.Context) error
}

// startShadow builds the configured candidate at start: a candidate that
// cannot be built (missing, corrupt, trained for other detectors without
// detectors of its own) stops the start with the reason, like a live model
// would, because a shadow that silently records nothing is a report that
// silently lies.
func (d *Daemon) startShadow(s Shadow, cfg *config.Config) error {
	if s == nil {
		return nil
	}
	s.Start(d.recordAside)
	if err := s.Apply(cfg, d.log); err != nil {
		return err
	}
	d.shadow = s
	return nil
}

// shadowChanged reports whether a reload changes segad.shadow.
func shadowChanged(changes []config.Change) bool {
	for _, c := range changes {
		if c.Key == "segad.shadow" || strings.HasPrefix(c.Key, "segad.shadow.") {
			return true
		}
	}
	return false
}

// liveModelChanges are the changes that concern the live model: a change
// of the candidate alone (segad.shadow) rebuilds the candidate, not the
// line's model.
func liveModelChanges(changes []config.Change) []config.Change {
	out := make([]config.Change, 0, len(changes))
	for _, c := range changes {
		if c.Key != "segad.shadow" && !strings.HasPrefix(c.Key, "segad.shadow.") {
			out = append(out, c)
		}
	}
	return out
}

// offerShadow hands a judged production frame to the candidate.
func (d *Daemon) offerShadow(q *queued, r *result.Result) {
	if d.shadow != nil && r.Kind == "" {
		d.shadow.Offer(q.f, *r)
	}
}

// closeShadow stops the candidate before the outputs close, so no shadow
// result is offered to a closed output.
func (d *Daemon) closeShadow(ctx context.Context) {
	if d.shadow == nil {
		return
	}
	if err := d.shadow.Close(ctx); err != nil {
		d.log.Warn("shadow candidate did not stop cleanly", "err", err)
	}
}
