package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/result"
)

// metrics are the daemon's counters and gauges: the one set behind the
// health topic, /readyz and Prometheus (each daemon has its own registry,
// so tests and several pipelines in one process do not collide). Frames
// and verdicts are counted once, in atomics that Prometheus reads and the
// health topic reports.
type metrics struct {
	Registry *prometheus.Registry

	frames   atomic.Uint64
	verdicts [3]atomic.Uint64 // pass, fail, error

	Dropped      prometheus.Counter       // frames dropped because inference fell behind
	StageSeconds *prometheus.HistogramVec // stage=queue|infer|segad|publish|total
	QueueDepth   prometheus.Gauge
	Reconnects   prometheus.Gauge
	// AckFailures counts watch-folder files whose move to done/ or failed/
	// failed (they are inspected again after a restart).
	AckFailures prometheus.Gauge
	CameraUp    prometheus.Gauge
	FrameAge    prometheus.Gauge
	Outbox      prometheus.Gauge
	OutboxDrops prometheus.Gauge
	PublishErrs prometheus.Counter
	// TriggersUnserved counts triggers answered with a capture_error result
	// because no frame could be taken for them.
	TriggersUnserved prometheus.Counter
	// HTTPRefused counts HTTP requests refused by a limit, by reason
	// (body_too_large, busy, bad_part_id).
	HTTPRefused *prometheus.CounterVec
	Reloads     *prometheus.CounterVec // result=applied|rejected
	ModelInfo   *prometheus.GaugeVec   // bundle, detectors, features
	Score       prometheus.Histogram
}

var verdictOrder = [3]result.Verdict{result.VerdictPass, result.VerdictFail, result.VerdictError}

// newMetrics registers the daemon's metrics (plus Go and process metrics)
// in a new registry.
func newMetrics() *metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{Registry: r}
	frames := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "segad_frames_total", Help: "Frames taken from the source (parts)."},
		func() float64 { return float64(m.frames.Load()) })
	var verdicts []prometheus.Collector
	for i, v := range verdictOrder {
		verdicts = append(verdicts, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "segad_verdicts_total", Help: "Results by verdict.",
			ConstLabels: prometheus.Labels{"verdict": string(v)}}, func() float64 { return float64(m.verdicts[i].Load()) }))
	}
	m.Dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "segad_frames_dropped_total", Help: "Frames dropped because inference fell behind (pipeline.overflow: drop_oldest)."})
	m.StageSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "segad_stage_seconds", Help: "Per-frame time spent in each stage.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2},
	}, []string{"stage"})
	m.QueueDepth = prometheus.NewGauge(prometheus.GaugeOpts{Name: "segad_queue_depth", Help: "Frames waiting for inference."})
	m.Reconnects = prometheus.NewGauge(prometheus.GaugeOpts{Name: "segad_camera_reconnects", Help: "Times the source was reopened."})
	m.AckFailures = prometheus.NewGauge(prometheus.GaugeOpts{Name: "segad_source_ack_failures", Help: "Watch-folder files that could not be moved to done/ or failed/ after their result was stored."})
	m.CameraUp = prometheus.NewGauge(prometheus.GaugeOpts{Name: "segad_camera_connected", Help: "1 when the source is delivering frames."})
	m.FrameAge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "segad_camera_last_frame_age_seconds", Help: "Age of the source's last frame."})
	m.Outbox = prometheus.NewGauge(prometheus.GaugeOpts{Name: "segad_outbox_backlog", Help: "Results waiting in the durable outbox for the broker."})
	m.OutboxDrops = prometheus.NewGauge(prometheus.GaugeOpts{Name: "segad_outbox_dropped", Help: "Pass results dropped because the outbox was full."})
	m.PublishErrs = prometheus.NewCounter(prometheus.CounterOpts{Name: "segad_publish_errors_total", Help: "Results that could not be stored in the outbox."})
	m.TriggersUnserved = prometheus.NewCounter(prometheus.CounterOpts{Name: "segad_triggers_unserved_total", Help: "Triggers answered with a capture_error result because no frame could be taken for them."})
	m.HTTPRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "segad_http_refused_total", Help: "HTTP requests refused by a limit, by reason."}, []string{"reason"})
	m.Reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "segad_config_reloads_total", Help: "Configuration reloads by result."}, []string{"result"})
	m.ModelInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "segad_model_info", Help: "The loaded model (value 1)."}, []string{"bundle", "detectors", "features"})
	m.Score = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "segad_score", Help: "SegAD scores (raw margins).",
		Buckets: prometheus.LinearBuckets(-10, 1, 21)})
	r.MustRegister(append(verdicts, frames, m.Dropped, m.StageSeconds, m.QueueDepth, m.Reconnects, m.AckFailures,
		m.CameraUp, m.FrameAge, m.Outbox, m.OutboxDrops, m.PublishErrs, m.TriggersUnserved, m.HTTPRefused, m.Reloads, m.ModelInfo, m.Score)...)
	return m
}

// count records one finished result: its verdict, stage latencies, score.
func (m *metrics) count(r *result.Result) {
	for i, v := range verdictOrder {
		if r.Verdict == v {
			m.verdicts[i].Add(1)
		}
	}
	for stage, v := range r.LatencyMS {
		m.StageSeconds.WithLabelValues(stage).Observe(v / 1000)
	}
	if r.Score != nil {
		m.Score.Observe(*r.Score)
	}
}

// setModel reports the model in force.
func (m *metrics) setModel(md *model.Model) {
	m.ModelInfo.Reset()
	m.ModelInfo.WithLabelValues(md.ForestHash, strings.Join(md.Names, ","), fmt.Sprint(md.Extractor.NumFeatures())).Set(1)
}

// beat records a sign of pipeline life for the systemd watchdog: a result
// finished, or nothing in flight (an idle line waiting for parts is alive).
// Taking frames in does not count: a hung detector must starve the
// watchdog even while the camera delivers.
func (d *Daemon) beat() { d.lastBeat.Store(time.Now().UnixNano()) }

// LastBeat is when the pipeline last showed progress; the watchdog pings
// systemd only while it is recent.
func (d *Daemon) LastBeat() time.Time { return time.Unix(0, d.lastBeat.Load()) }

// watchHealth refreshes the source and publisher gauges once a second and
// beats while idle.
func (d *Daemon) watchHealth(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := d.currentSource().State()
		d.metrics.Reconnects.Set(float64(st.Reconnects))
		d.metrics.AckFailures.Set(float64(st.AckFailures))
		d.metrics.FrameAge.Set(st.LastFrameAge.Seconds())
		up := 0.0
		if st.Connected {
			up = 1
		}
		d.metrics.CameraUp.Set(up)
		s := d.pub.Stats()
		d.metrics.Outbox.Set(float64(s.Backlog))
		d.metrics.OutboxDrops.Set(float64(s.Drops))
		was := d.linkWatch.last()
		if l := d.linkWatch.observe(s, time.Now()); l.Stalled != was.Stalled {
			if l.Stalled {
				d.log.Error("results cannot be published: not ready", "reason", l.Reason)
			} else {
				d.log.Info("results are reaching the broker again: ready")
			}
		}
		if d.inflight.Load() == 0 {
			d.beat()
		}
	}
}

// health fills the daemon's part of the MQTT health JSON.
func (d *Daemon) health() mqtt.Health {
	var st capture.SourceState
	cam := "connected"
	if ref := d.currentRef(); ref != nil {
		st = ref.src.State()
	} else {
		cam = "starting"
	}
	switch {
	case cam == "starting":
	case st.Reconnecting:
		cam = "reconnecting"
	case !st.Connected:
		cam = "disconnected"
	}
	if st.LastError != "" && !st.Connected {
		cam += ": " + st.LastError
	}
	h := mqtt.Health{UptimeS: time.Since(d.started).Seconds(), Frames: d.metrics.frames.Load(),
		Fails: d.metrics.verdicts[1].Load(), Errors: d.metrics.verdicts[2].Load()}
	if d.queue != nil {
		h.QueueDepth = d.queue.depth()
	}
	h.CameraState = cam
	if e := d.configError.Load(); e != nil {
		h.LastConfigError = *e
	}
	if d.outputHealth != nil {
		h.Outputs = d.outputHealth()
	}
	d.goldenHealth(&h)
	d.degradedHealth(&h)
	return h
}

// linkState says whether results can reach the broker, for /readyz.
type linkState struct {
	// Stalled is true when results wait and none can be published.
	Stalled bool
	// Reason says why, in words for an operator.
	Reason string
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

// linkWatch turns the publisher's counters into a link state: stalled when
// the publisher says so, or when results have waited in the outbox for
// linkStallAfter with none acknowledged.
type linkWatch struct {
	mu        sync.Mutex
	published uint64
	progress  time.Time // last time the backlog was empty or an ack arrived
	state     linkState
}

// observe records one sample and returns the link state.
func (w *linkWatch) observe(s mqtt.Stats, now time.Time) linkState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.progress.IsZero() || s.Backlog == 0 || s.Published != w.published {
		w.progress = now
	}
	w.published = s.Published
	switch idle := now.Sub(w.progress); {
	case mqttStalled(s) != "":
		w.state = linkState{Stalled: true, Reason: mqttStalled(s)}
	case idle >= linkStallAfter:
		reason := fmt.Sprintf("%d results waiting in the outbox, none acknowledged by the broker for %s (connected: %v)",
			s.Backlog, idle.Round(time.Second), s.Connected)
		if s.LastError != "" {
			reason += "; last error: " + s.LastError
		}
		w.state = linkState{Stalled: true, Reason: reason}
	default:
		w.state = linkState{}
	}
	return w.state
}

// last is the most recent state.
func (w *linkWatch) last() linkState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// link is the result link's state now: the publisher's Stats (which must
// not block) observed on every /readyz request as well as once a second.
func (d *Daemon) link() linkState { return d.linkWatch.observe(d.pub.Stats(), time.Now()) }
