package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segad-edge/segad-edge/audit"

	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/result"
)

// finish is the last step of every frame: the result goes to the publisher
// (stored durably), then to every output, is counted, logged and audited,
// and the frame is acknowledged to the source that gave it (only once the
// result is stored) and closed.
func (d *Daemon) finish(q *queued, ins model.Inspection) {
	f := q.f
	defer func() {
		f.Close()
		if q.ref != nil {
			q.ref.inflight.Done()
			d.inflight.Add(-1)
		}
		d.beat()
	}()
	res := &ins.Result
	d.goldenMark(res)
	// Inspector.Score stamped the ID and schema (the one place for every
	// path), so the audit entry, the log line and every output carry the same.
	t := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	wire := *res
	if !d.insp.Settings().PublishFeatures {
		wire.Features = nil // only with mqtt.publish_features; outputs and audit keep the row
	}
	err := d.pub.Publish(ctx, wire)
	cancel()
	d.metrics.StageSeconds.WithLabelValues("publish").Observe(time.Since(t).Seconds())
	stored := err == nil
	if err != nil {
		// The publisher could not store the result (disk full, closed); it
		// has tried the broker directly so the PLC still hears of a reject.
		// The part's file stays unacknowledged so a restart inspects it again.
		d.metrics.PublishErrs.Inc()
		d.lastPubErr.Store(time.Now().UnixNano())
		d.floodLog.Error("result not stored in the outbox", "id", res.ID, "seq", res.Seq, "part_id", res.PartID, "verdict", res.Verdict, "err", err)
	}
	for _, o := range d.outputs {
		o.offer(*res)
	}
	d.offerShadow(q, res)
	d.metrics.count(res)
	d.log.Debug("part", "id", res.ID, "seq", res.Seq, "part_id", res.PartID, "verdict", res.Verdict, "score", res.Score, "reason", res.Reason)
	if d.audit != nil && (res.Rejected() || d.samplePass()) {
		// Fixturing: the maps are in the reference pose; draw them where
		// the part was in the original frame.
		maps, mask := audit.Unwarp(f.Align, ins.Maps, ins.MapW, ins.MapH, ins.Mask)
		if err := d.audit.Save(res, f.Original, maps, ins.MapW, ins.MapH, mask); err != nil {
			d.floodLog.Warn("audit entry not saved", "id", res.ID, "seq", res.Seq, "err", err)
		}
	}
	d.offerPreview(f, &ins)
	if q.ref != nil && stored && f.Ack != nil {
		if err := f.Ack(!res.Rejected()); err != nil {
			d.floodLog.Warn("cannot move inspected file", "file", f.Path, "err", err)
		}
	}
}

// recordAside hands a result that decides nothing on the line (a golden
// challenge's, a shadow model's: r.Kind set) to the outputs that record
// such results (AsideRecorder). It is not published, counted or audited.
func (d *Daemon) recordAside(r result.Result) {
	for _, o := range d.outputs {
		if a, ok := o.out.(AsideRecorder); ok && a.RecordsAside() {
			o.offer(r)
		}
	}
}

func (d *Daemon) samplePass() bool {
	d.cfgMu.Lock()
	share := d.cfg.Audit.SamplePass
	d.cfgMu.Unlock()
	return share > 0 && d.sampleRand.Float64() < share
}

// peerQueue is how many results an output may have waiting; beyond it the
// newest result is dropped for that output (counted, logged), never for
// the publisher or the other outputs.
const peerQueue = 1024

// peerTimeout bounds one Publish of an output.
const peerTimeout = 5 * time.Second

// peer is an Output behind its own bounded queue and goroutine, so a slow
// or failing output can never block the line or the other outputs.
type peer struct {
	out     Output
	log     *slog.Logger
	q       chan result.Result
	done    chan struct{}
	dropped atomic.Uint64
	failed  atomic.Uint64
	once    sync.Once
}

func startPeer(o Output, log *slog.Logger) *peer {
	p := &peer{out: o, log: log.With("output", o.Name()), q: make(chan result.Result, peerQueue), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *peer) run() {
	defer close(p.done)
	for r := range p.q {
		ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
		err := p.out.Publish(ctx, r)
		cancel()
		if err != nil {
			p.failed.Add(1)
			p.log.Warn("output did not take a result", "id", r.ID, "seq", r.Seq, "err", err)
		}
	}
}

// offer queues r for the output without waiting.
func (p *peer) offer(r result.Result) {
	select {
	case p.q <- r:
	default:
		n := p.dropped.Add(1)
		p.log.Warn("output too slow: result dropped for it", "id", r.ID, "seq", r.Seq, "dropped", n)
	}
}

// close lets the output finish its queue for at most grace, then closes it,
// waiting at most grace for that too: an output is best effort, and a slow
// one (a child process, a database) must not hold up the stop.
func (p *peer) close(grace time.Duration) error {
	p.once.Do(func() { close(p.q) })
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	select {
	case <-p.done:
	case <-deadline.C:
		p.log.Error("output still busy at shutdown; closing it", "output", p.out.Name(), "waiting", len(p.q))
	}
	closed := make(chan error, 1)
	go func() { closed <- p.out.Close() }()
	select {
	case err := <-closed:
		return err
	case <-time.After(grace):
		return fmt.Errorf("output %s did not close within %s; left to process exit", p.out.Name(), grace)
	}
}
