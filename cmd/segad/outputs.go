package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segad-edge/segad-edge/assurance/drift"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/plc"
	"github.com/segad-edge/segad-edge/plc/modbus"
	"github.com/segad-edge/segad-edge/plc/opcua"
)

// `segad results` (results.go) works on the database the history output
// writes; it was built for the lead to register and never was, so the
// binary had no such command. Registered here, beside the history's
// wiring in `segad run`.

// outputs are the result outputs beside MQTT that the config enables: the
// history store and the PLC servers. They are opened before the daemon
// (which takes them in its Options) and reach the daemon for triggers and
// status through line, which is set once the daemon exists.
type outputs struct {
	list    []daemon.Output
	history *history.Store
	opcua   *opcua.Process
	drift   *drift.Monitor
	line    lineRef
	closers []func() error
}

// lineRef is the plc.Line of the PLC servers: the daemon, once New has
// returned. Before that (and after a failed start) triggers are refused and
// the status is "starting".
type lineRef struct{ d atomic.Pointer[daemon.Daemon] }

func (l *lineRef) Trigger(ctx context.Context, partID string) error {
	d := l.d.Load()
	if d == nil {
		return errors.New("the daemon is starting")
	}
	return d.PLCTrigger(ctx, partID)
}

func (l *lineRef) Status() plc.Status {
	d := l.d.Load()
	if d == nil {
		return plc.Status{Online: true, Error: "starting"}
	}
	return d.PLCStatus()
}

// openOutputs opens what cfg enables. On error, what was opened is closed.
func openOutputs(ctx context.Context, cfg *config.Config, log *slog.Logger) (o *outputs, err error) {
	o = &outputs{}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	if h := cfg.History; h.On() {
		hc := h.StoreConfig()
		hc.Logger = log.With("component", "history")
		s, err := history.Open(ctx, hc)
		if err != nil {
			return nil, fmt.Errorf("history %s: %w", historyTarget(h), err)
		}
		o.history = s
		o.list = append(o.list, s)
		o.closers = append(o.closers, s.Close)
		log.Info("recording results in the history", "store", historyTarget(h))
	}
	if m := cfg.PLC.Modbus; m.Enabled {
		s, err := modbus.Listen(m, &o.line, log.With("component", "modbus"))
		if err != nil {
			return nil, fmt.Errorf("plc.modbus: %w", err)
		}
		o.list = append(o.list, s)
		o.closers = append(o.closers, s.Close)
		log.Info("Modbus TCP server listening", "addr", s.Addr().String())
	}
	if u := cfg.PLC.OPCUA; u.Enabled {
		// The server runs in a child process (`segad opcua-serve`), so a
		// peer that crashes it never stops inspection (docs/opcua.md).
		state := filepath.Dir(cfg.MQTT.Outbox.Path)
		s, err := opcua.StartProcess(u, opcua.ProcessOptions{
			Options:  opcua.Options{StateDir: state, Status: o.line.Status, Logger: log.With("component", "opcua"), Version: version},
			LogLevel: cfg.Log.Level, LogFormat: cfg.Log.Format,
		})
		if err != nil {
			return nil, fmt.Errorf("plc.opcua: %w", err)
		}
		o.opcua = s
		o.list = append(o.list, s)
		o.closers = append(o.closers, s.Close)
		log.Info("OPC UA server listening", "endpoint", s.Endpoint(), "pid", s.ProcessStats().Pid)
	}
	if err := o.openDrift(cfg, log); err != nil {
		return nil, err
	}
	return o, nil
}

// health names the outputs that cannot do their work: a failing history,
// an OPC UA server process that is down (being restarted).
func (o *outputs) health() map[string]string {
	var m map[string]string
	add := func(k, v string) {
		if m == nil {
			m = map[string]string{}
		}
		m[k] = v
	}
	if o.history != nil {
		if h := o.history.Health(); !h.OK {
			add("history", h.Reason)
		}
	}
	if o.opcua != nil {
		if st := o.opcua.ProcessStats(); !st.Up {
			add("opcua", fmt.Sprintf("the OPC UA server process is down and being restarted (restarts %d, last exit: %s)", st.Restarts, st.LastExit))
		}
	}
	return m
}

func historyTarget(h config.HistoryConfig) string {
	if h.URL != "" {
		return "postgresql"
	}
	return h.Path
}

// attach hands the daemon to the PLC servers.
func (o *outputs) attach(d *daemon.Daemon) { o.line.d.Store(d) }

// close closes what was opened when the daemon never took them over (the
// daemon closes its outputs when it stops).
func (o *outputs) close() {
	for i := len(o.closers) - 1; i >= 0; i-- {
		_ = o.closers[i]()
	}
}

// options fills the daemon options that serve the outputs: the history's
// HTTP API, the health and metrics of the history and the OPC UA server
// process.
func (o *outputs) options(opt *daemon.Options) {
	opt.Outputs = o.list
	opt.OutputHealth = o.health
	defer o.driftOptions(opt) // last: it adds its route to those set below
	if u := o.opcua; u != nil {
		opt.Collectors = append(opt.Collectors,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "segad_opcua_up", Help: "1 while the OPC UA server process serves."},
				func() float64 {
					if u.ProcessStats().Up {
						return 1
					}
					return 0
				}),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "segad_opcua_restarts_total", Help: "Restarts of the OPC UA server process after it ended."},
				func() float64 { return float64(u.ProcessStats().Restarts) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "segad_opcua_dropped_total", Help: "Results not handed to the OPC UA server process (its queue was full)."},
				func() float64 { return float64(u.ProcessStats().Dropped) }),
		)
	}
	if o.history == nil {
		return
	}
	hist := o.history
	api := &history.API{Store: o.history, Log: opt.Logger,
		// Explained with the model loaded now: a result judged by another
		// forest (before a model change) is refused with the difference.
		Explain: func(_ context.Context, row history.Row, method string) (any, error) {
			d := o.line.d.Load()
			if d == nil {
				return nil, errors.New("the daemon is starting")
			}
			m := d.Model()
			if row.Bundle != "" && row.Bundle != m.ForestHash {
				return nil, fmt.Errorf("result %s was judged by forest %s, the line now runs %s: explain it with `segad score --explain` and that bundle", row.ID, row.Bundle, m.ForestHash)
			}
			if method != "exact" && method != "path" {
				return nil, &history.ParamError{Param: "method", Value: method, Reason: "want exact or path"}
			}
			return m.ExplainRow(row.Result().Features, method)
		}}
	opt.Routes = func(mux *http.ServeMux, auth func(http.HandlerFunc) http.HandlerFunc) { api.Register(mux, auth) }
	opt.AuditKeep = func(id string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		ok, err := hist.IsLabelled(ctx, id)
		return err == nil && ok
	}
	opt.Collectors = append(opt.Collectors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "segad_history_written", Help: "Results recorded in the history since start."},
			func() float64 { return float64(hist.Health().Written) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "segad_history_not_recorded", Help: "Results the history could not record (queue full or store failing) since start."},
			func() float64 { return float64(hist.Health().NotRecorded) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "segad_history_ok", Help: "1 while the history records results."},
			func() float64 {
				if hist.Health().OK {
					return 1
				}
				return 0
			}),
	)
}
