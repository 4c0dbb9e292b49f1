package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/segad-edge/segad-edge/assurance/golden"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/result"
	"github.com/segad-edge/segad-edge/systemd"
)

// loadGolden reads the golden set of assurance.golden.dir (nil when
// challenges are off). A missing or empty folder, or an image that cannot
// be read, stops the start with the file named: a challenge that could
// never pass would only hide the real fault.
func loadGolden(cfg *config.Config, log *slog.Logger) (*golden.Set, error) {
	g := cfg.Assurance.Golden
	if !g.On() {
		return nil, nil
	}
	s, err := golden.Load(g.Dir)
	if err != nil {
		return nil, fmt.Errorf("%s: assurance.golden.dir: %w", cfg.Path, err)
	}
	pass := 0
	for _, im := range s.Images {
		if im.Expect == result.VerdictPass {
			pass++
		}
	}
	log.Info("golden set loaded", "dir", g.Dir, "good", pass, "bad", len(s.Images)-pass,
		"on_start", g.StartChallenge(), "every", g.Every, "action", g.Action)
	return s, nil
}

// startGolden runs the start-up challenge before the daemon reports ready
// and starts the schedule. A failed challenge does not stop the process:
// the daemon stays up, not ready (/readyz 503 with the failing images,
// health status degraded, parts failed closed or flagged), so an operator
// can see why and ask for another challenge once the station is fixed;
// systemd is told READY (the service did start) with the degraded status,
// rather than being left to kill and restart it in a loop.
// It reports whether the line may call itself ready.
func startGolden(ctx context.Context, d *daemon.Daemon, n *systemd.Notifier, log *slog.Logger) bool {
	if !d.GoldenOn() {
		return true
	}
	n.Status("golden-sample challenge")
	s, ran := d.StartGolden(ctx)
	if ran && !s.Passed {
		n.Status("degraded: " + s.Brief())
		log.Error("not ready: the start-up golden-sample challenge failed; inspecting with assurance.golden.action until a challenge passes",
			"failing", s.Failing, "reason", s.Brief())
		return false
	}
	return true
}
