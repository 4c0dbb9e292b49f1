package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the daemon's Prometheus metrics. Each Daemon has its own
// registry so tests (and several pipelines in one process) do not collide.
type Metrics struct {
	Registry *prometheus.Registry

	Frames       prometheus.Counter
	Verdicts     *prometheus.CounterVec   // verdict=pass|fail|error
	Dropped      prometheus.Counter       // frames dropped because inference fell behind
	StageSeconds *prometheus.HistogramVec // stage=capture|infer|segad|publish|total
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

// NewMetrics registers the daemon's metrics (plus Go and process metrics)
// in a new registry.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{Registry: r}
	m.Frames = prometheus.NewCounter(prometheus.CounterOpts{Name: "segad_frames_total", Help: "Frames taken from the source (parts)."})
	m.Verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "segad_verdicts_total", Help: "Results by verdict."}, []string{"verdict"})
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
	for _, c := range []prometheus.Collector{m.Frames, m.Verdicts, m.Dropped, m.StageSeconds, m.QueueDepth, m.Reconnects, m.AckFailures,
		m.CameraUp, m.FrameAge, m.Outbox, m.OutboxDrops, m.PublishErrs, m.TriggersUnserved, m.HTTPRefused, m.Reloads, m.ModelInfo, m.Score} {
		f(c)
	}
	return m
}
