package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync/atomic"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/console"
	"github.com/segad-edge/segad-edge/console/auth"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/mqtt"
)

// consoleWiring joins the technician console (package console) to the
// daemon: the console is one of its outputs (every result), its preview
// hook (the Live frame) and a set of routes on its HTTP server.
type consoleWiring struct {
	c       *console.Console
	d       atomic.Pointer[daemon.Daemon]
	cfg     *config.Config
	cfgPath string
	// bundle is the bundle in force (segad.bundle; a promotion or an edit
	// changes it on a reload), with its manifest: the Threshold page's
	// operating points must be the forest's that judges, never a previous
	// one's, whose scores are on another scale.
	bundle atomic.Pointer[consoleBundle]
}

// consoleBundle is a bundle path and its manifest (nil: none, or not
// readable).
type consoleBundle struct {
	path     string
	manifest *bundle.Manifest
}

// setBundle reads the manifest of the bundle at path ("" for a plain
// forest). A bundle that cannot be read here fails model.Build with the
// reason, so it is only noted.
func (w *consoleWiring) setBundle(path string, log *slog.Logger) {
	cb := &consoleBundle{path: path}
	if path != "" {
		b, err := bundle.Load(path)
		if err != nil {
			log.Warn("console: the bundle's operating points are not shown", "bundle", path, "err", err)
		} else {
			cb.manifest = b.Manifest
		}
	}
	w.bundle.Store(cb)
}

// openConsole adds the console to opt when the config serves it (console
// enabled and an HTTP listener); nil when it does not.
func openConsole(cfg *config.Config, cfgPath string, outs *outputs, opt *daemon.Options, log *slog.Logger) (*consoleWiring, error) {
	if !cfg.Console.On() || cfg.HTTP.Listen == "off" {
		return nil, nil
	}
	clog := log.With("component", "console")
	am, err := auth.New(cfg.Console, auth.Options{Logger: clog, Secure: cfg.HTTP.TLSCert != ""})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	abs, err := filepath.Abs(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("console: config path %s: %w", cfgPath, err)
	}
	w := &consoleWiring{cfg: cfg, cfgPath: abs}
	w.setBundle(cfg.SegAD.Bundle, clog)
	co := console.Options{Auth: am, Logger: clog, LiveRate: cfg.Console.LiveRate, ConfigPath: abs, AuditDir: cfg.Audit.Dir,
		Manifest: func() *bundle.Manifest { return w.bundle.Load().manifest }}
	if outs.history != nil {
		co.History = outs.history
		co.Explain = w.explain
	}
	w.c = console.New(co)
	opt.Outputs = append(opt.Outputs, w.c)
	opt.Preview = consolePreview{w.c}
	// console.users, session_ttl, live_rate and login_attempts are live
	// keys: an applied reload hands them on.
	prevReload := opt.OnReload
	opt.OnReload = func(applied *config.Config) {
		if prevReload != nil {
			prevReload(applied)
		}
		if err := am.Update(applied.Console); err != nil {
			clog.Error("console: users not updated; the previous ones stay", "err", err)
		}
		w.c.SetLiveRate(applied.Console.LiveRate)
		if applied.SegAD.Bundle != w.bundle.Load().path {
			w.setBundle(applied.SegAD.Bundle, clog)
		}
	}
	prev := opt.Routes
	opt.Routes = func(mux *http.ServeMux, bearer func(http.HandlerFunc) http.HandlerFunc) {
		if prev != nil {
			prev(mux, bearer)
		}
		w.c.Register(mux)
	}
	if !am.Configured() {
		clog.Warn("console: no users configured: read-only, loopback clients only (add console.users)")
	} else if cfg.HTTP.TLSCert == "" && !cfg.HTTP.OnLoopback() {
		clog.Warn("console: users log in over plain HTTP on a non-loopback address: passwords and session cookies cross the network in clear text (set http.tls_cert and http.tls_key)", "listen", cfg.HTTP.Listen)
	}
	return w, nil
}

// attach hands the running daemon to the console.
func (w *consoleWiring) attach(d *daemon.Daemon) {
	if w == nil {
		return
	}
	w.d.Store(d)
	w.c.Attach(consoleLine{w})
}

// explain is the history API's explanation with the model in force (as
// outputs.options gives the bearer-token API).
func (w *consoleWiring) explain(_ context.Context, row history.Row, method string) (any, error) {
	return explainRow(w.d.Load(), row, method)
}

// consolePreview converts the daemon's preview frames for the console.
type consolePreview struct{ c *console.Console }

func (p consolePreview) PreviewDue() bool { return p.c.PreviewDue() }

func (p consolePreview) PreviewFrame(f daemon.PreviewFrame) {
	p.c.SetFrame(console.Frame{ResultID: f.ResultID, Seq: f.Seq, JPEG: f.JPEG, Width: f.Width, Height: f.Height, At: f.At})
}

// consoleLine is the daemon as the console reads it.
type consoleLine struct{ w *consoleWiring }

func (l consoleLine) Status() mqtt.Health            { return l.w.d.Load().Status() }
func (l consoleLine) BrokerConnected() bool          { return l.w.d.Load().BrokerConnected() }
func (l consoleLine) Thresholds() (float64, float64) { return l.w.d.Load().Thresholds() }

func (l consoleLine) Identity() console.Identity {
	m := l.w.d.Load().Model()
	return console.Identity{Station: l.w.cfg.Station, Version: version, Forest: m.ForestHash, Detectors: m.Names,
		Bundle: l.w.bundle.Load().path, Config: l.w.cfgPath}
}
