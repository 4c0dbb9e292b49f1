package console

import (
	"slices"
	"time"

	"github.com/segad-edge/segad-edge/metrics"
)

// latencyMinutes is how many minutes of latency quantiles the Health page
// shows.
const latencyMinutes = 60

// maxSamplesPerMinute bounds the samples kept per stage in the current
// minute (beyond it every other one is skipped), so a 100 parts/s line
// keeps a few hundred KiB at most.
const maxSamplesPerMinute = 8192

// latencies turns the results' per-stage latencies into per-minute p50
// and p99 (metrics.Quantile, numpy's linear quantile): samples of the current minute are kept, and their quantiles
// computed when the minute ends.
type latencies struct {
	minute  int64
	samples map[string][]float64
	skip    map[string]int
	done    []LatencyMinute // oldest first, at most latencyMinutes
}

// LatencyMinute is one stage's latency quantiles over one minute.
type LatencyMinute struct {
	Minute time.Time `json:"minute"`
	Stage  string    `json:"stage"`
	N      int       `json:"n"`
	P50    float64   `json:"p50_ms"`
	P99    float64   `json:"p99_ms"`
}

func (l *latencies) add(now time.Time, ms map[string]float64) {
	min := now.Unix() / 60
	if min != l.minute {
		l.roll()
		l.minute = min
	}
	if l.samples == nil {
		l.samples, l.skip = map[string][]float64{}, map[string]int{}
	}
	for stage, v := range ms {
		s := l.samples[stage]
		if len(s) >= maxSamplesPerMinute {
			l.skip[stage]++
			if l.skip[stage]%2 == 1 {
				continue
			}
			s[l.skip[stage]/2%len(s)] = v
			continue
		}
		l.samples[stage] = append(s, v)
	}
}

// roll closes the current minute.
func (l *latencies) roll() {
	if l.minute == 0 {
		return
	}
	at := time.Unix(l.minute*60, 0).UTC()
	stages := make([]string, 0, len(l.samples))
	for s := range l.samples {
		stages = append(stages, s)
	}
	slices.Sort(stages)
	for _, s := range stages {
		v := l.samples[s]
		if len(v) == 0 {
			continue
		}
		l.done = append(l.done, LatencyMinute{Minute: at, Stage: s, N: len(v), P50: metrics.Quantile(v, 0.5), P99: metrics.Quantile(v, 0.99)})
	}
	if extra := len(l.done) - latencyMinutes*max(len(stages), 1); extra > 0 {
		l.done = append(l.done[:0], l.done[extra:]...)
	}
	clear(l.samples)
	clear(l.skip)
}

// current is the finished minutes plus the one in progress.
func (l *latencies) current() []LatencyMinute {
	out := slices.Clone(l.done)
	if l.minute == 0 {
		return out
	}
	at := time.Unix(l.minute*60, 0).UTC()
	stages := make([]string, 0, len(l.samples))
	for s := range l.samples {
		stages = append(stages, s)
	}
	slices.Sort(stages)
	for _, s := range stages {
		v := l.samples[s]
		if len(v) == 0 {
			continue
		}
		out = append(out, LatencyMinute{Minute: at, Stage: s, N: len(v), P50: metrics.Quantile(v, 0.5), P99: metrics.Quantile(v, 0.99)})
	}
	return out
}
