package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/segad-edge/segad-edge/result"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/partid"
)

// sourceRef is a frame source with the frames it has in flight. A reload
// swaps in a new source: the old one stops being read at once (its context
// is cancelled) but is closed only after its in-flight frames are finished,
// because a watch folder acknowledges each file through the source that
// handed it out (moving it to done/ or failed/).
type sourceRef struct {
	src      FrameSource
	ctx      context.Context
	cancel   context.CancelFunc
	inflight sync.WaitGroup
}

func newSourceRef(src FrameSource) *sourceRef {
	ctx, cancel := context.WithCancel(context.Background())
	return &sourceRef{src: src, ctx: ctx, cancel: cancel}
}

// retire stops reading the source and closes it once its frames are done.
func (r *sourceRef) retire() {
	r.cancel()
	go func() {
		r.inflight.Wait()
		r.src.Close()
	}()
}

func (d *Daemon) currentRef() *sourceRef {
	d.srcMu.Lock()
	defer d.srcMu.Unlock()
	return d.src
}

func (d *Daemon) currentSource() FrameSource { return d.currentRef().src }

// overflowPolicy is pipeline.overflow, except that file sources always
// block: their frames wait on disk, and dropping one would throw a part
// away unseen (drop_oldest exists for cameras, whose frames do not wait).
func (d *Daemon) overflowPolicy(cfg *config.Config) string {
	if cfg.Pipeline.Overflow == "block" {
		return "block"
	}
	switch cfg.Capture.Kind {
	case capture.KindVideo, capture.KindSequence, capture.KindFolder, capture.KindWatch:
		d.log.Info("pipeline.overflow drop_oldest applies to live cameras; file sources wait instead", "kind", cfg.Capture.Kind)
		return "block"
	}
	return "drop_oldest"
}

// queued is a frame between capture and inference. A frame dropped by the
// overflow policy stays in its place (its images released) so that its
// fail-closed result is published in order with the others.
type queued struct {
	f       *capture.Frame
	ref     *sourceRef
	dropped bool
	// reject is set for a part the line will not inspect because it never
	// got a frame (a trigger that could not be served): it carries no image,
	// and gets a capture_error result with this reason in queue order, so
	// it is published, counted and audited like every other part.
	reject error
}

// live reports whether the item is a frame still to be inspected (it counts
// against the queue's capacity).
func (it *queued) live() bool { return !it.dropped && it.reject == nil }

// maxRejects bounds the unserved-trigger answers waiting in the queue. They
// hold no image (a few hundred bytes each), but a trigger flood must not
// grow memory without bound: beyond it, the trigger handler waits for the
// line, which pushes back on the MQTT trigger queue (whose own overflow
// comes back here as more unserved triggers, answered in turn).
const maxRejects = 1024

// frameQueue is the bounded queue between capture and inference. It counts
// only frames still to be inspected against its capacity: with drop_oldest,
// a push into a full queue marks the oldest live frame dropped instead of
// waiting; with block, it waits for room.
type frameQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	items   []*queued
	live    int
	rejects int // items with reject set
	cap     int
	block   bool
	closed  bool
}

func newFrameQueue(capacity int, policy string) *frameQueue {
	q := &frameQueue{cap: max(capacity, 1), block: policy == "block"}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push adds a frame. It returns the frame it dropped to make room (nil if
// none), or ok=false when ctx ended while a blocking push waited or the
// queue is closed (the caller then answers the frame itself).
func (q *frameQueue) push(ctx context.Context, it *queued) (dropped *queued, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, false
	}
	if q.block {
		stop := context.AfterFunc(ctx, func() {
			q.mu.Lock()
			q.cond.Broadcast()
			q.mu.Unlock()
		})
		defer stop()
		for q.live >= q.cap && ctx.Err() == nil {
			q.cond.Wait()
		}
		if (ctx.Err() != nil && q.live >= q.cap) || q.closed {
			return nil, false
		}
	} else if q.live >= q.cap {
		for _, old := range q.items {
			if old.live() {
				old.dropped = true
				old.f.ReleaseImages()
				q.live--
				dropped = old
				break
			}
		}
	}
	q.items = append(q.items, it)
	q.live++
	q.cond.Broadcast()
	return dropped, true
}

// pushReject queues an answer for a part that gets no frame (it.reject
// set). It does not count against the frame capacity (there is nothing to
// inspect) and never drops; it waits only while maxRejects answers are
// already waiting. ok=false once the queue is closed: the caller answers
// the part itself.
func (q *frameQueue) pushReject(it *queued) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.rejects >= maxRejects && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return false
	}
	q.items = append(q.items, it)
	q.rejects++
	q.cond.Broadcast()
	return true
}

// pop takes the oldest frame, waiting for one; ok=false once the queue is
// closed and empty.
func (q *frameQueue) pop() (*queued, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.items) == 0 {
		return nil, false
	}
	it := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	switch {
	case it.reject != nil:
		q.rejects--
	case !it.dropped:
		q.live--
	}
	q.cond.Broadcast()
	return it, true
}

func (q *frameQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *frameQueue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Trigger asks the source for the freshest frame (on-demand mode). A part
// ID that breaks the part-ID rule (package partid) is refused.
func (d *Daemon) Trigger(partID string) error {
	if _, err := partid.Check(partID); err != nil {
		return fmt.Errorf("trigger refused: %w", err)
	}
	src := d.currentSource()
	if src == nil {
		return errors.New("the daemon is starting: no source yet")
	}
	t, ok := src.(capture.Triggerer)
	if !ok {
		return fmt.Errorf("source %s does not take triggers (set capture.trigger.mode: on-demand on a live source)", src.Name())
	}
	return t.Trigger(partID)
}

// onTrigger handles an MQTT trigger. Every trigger gets exactly one
// result: the part's inspection when the source takes it, else a
// capture_error result with its part ID (so a PLC waiting for that part is
// not left without an answer). A trigger the MQTT side flagged Overflow
// (triggers arrived faster than the line takes them) is answered at once
// without asking the source.
func (d *Daemon) onTrigger(t mqtt.Trigger) {
	if t.Overflow {
		d.rejectTrigger(t.PartID, errors.New("trigger not served: triggers arrived faster than the line takes them; the part was not inspected"))
		return
	}
	if err := d.Trigger(t.PartID); err != nil {
		d.rejectTrigger(t.PartID, fmt.Errorf("trigger not served: %w", err))
	}
}

// rejectTrigger answers a trigger that will get no frame with a
// capture_error result. The answer goes through the queue, behind the
// frames already taken, so results stay in the order the line saw its
// parts and pass the one finish path (published, counted, audited).
func (d *Daemon) rejectTrigger(partID string, err error) {
	if _, perr := partid.Check(partID); perr != nil {
		// The MQTT side checks part IDs already; never let one through
		// into results, PLC registers or file names anyway.
		err = fmt.Errorf("%w (its part ID was refused: %v)", err, perr)
		partID = ""
	}
	d.Metrics.TriggersUnserved.Inc()
	d.floodLog.Warn("trigger not served", "part_id", partID, "err", err)
	it := &queued{f: &capture.Frame{Source: "trigger", PartID: partID, Captured: time.Now()}, reject: err}
	if d.queue == nil || !d.queue.pushReject(it) {
		// The line no longer takes parts (stopping): answer here.
		d.finish(it, d.line.Score(d.line.Rejected(it.f, result.ReasonCapture, err), false))
	}
}

// Run runs the line until ctx is cancelled or a finite source ends, then
// shuts down gracefully: capture stops, frames already taken are inspected,
// results are flushed to the outbox and everything is closed within
// pipeline.shutdown_timeout (after which frames still waiting are rejected
// with reason "shutdown" rather than inspected). Every frame taken from the
// source gets exactly one result, in the order the source gave them.
func (d *Daemon) Run(ctx context.Context) error {
	capDone := make(chan error, 1)
	go func() { capDone <- d.captureLoop(ctx) }()

	// Two stages drain the queue until capture has stopped and the queue is
	// empty: inference of frame n+1 overlaps scoring and publishing of
	// frame n.
	type pending struct {
		q  *queued
		in *Inferred
	}
	inferred := make(chan pending, 1)
	go func() {
		defer close(inferred)
		for {
			q, ok := d.queue.pop()
			if !ok {
				return
			}
			d.Metrics.QueueDepth.Set(float64(d.queue.depth()))
			switch {
			case q.reject != nil:
				inferred <- pending{q, d.line.Rejected(q.f, result.ReasonCapture, q.reject)}
			case q.dropped:
				inferred <- pending{q, d.line.Rejected(q.f, result.ReasonDropped,
					errors.New("inference fell behind the camera; the part was not inspected (pipeline.overflow: drop_oldest)"))}
			case d.aborting.Load():
				inferred <- pending{q, d.line.Rejected(q.f, result.ReasonShutdown,
					errors.New("the daemon stopped before this part was inspected (pipeline.shutdown_timeout)"))}
			default:
				inferred <- pending{q, d.line.Infer(q.f)}
			}
		}
	}()
	workDone := make(chan struct{})
	go func() {
		defer close(workDone)
		for p := range inferred {
			d.finish(p.q, d.line.Score(p.in, d.audit != nil))
		}
	}()
	healthCtx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go d.watchHealth(healthCtx)

	var capErr error
	stopAt := time.Now()
	deadline := d.shutdownTimeout()
	select {
	case capErr = <-capDone: // finite source ended (or failed)
		stopAt = time.Now()
	case <-ctx.Done():
		stopAt = time.Now()
		d.log.Info("stopping: finishing frames in flight", "queued", d.queue.depth())
		select {
		case <-capDone: // a stop, not a capture failure
		case <-time.After(deadline):
			// A source that ignores cancellation (stuck in a driver) must
			// not wedge the stop: go on without it. A frame it hands out
			// later finds the queue closed and is answered there.
			d.log.Error("capture did not stop within the shutdown deadline; stopping without it", "deadline", deadline)
		}
	}
	d.queue.close()
	grace := stopGrace(deadline)
	finished := true
	select {
	case <-workDone:
	case <-time.After(time.Until(stopAt.Add(deadline))):
		// Reject what is still queued instead of inspecting it, and give
		// the frame in inference a short grace.
		d.aborting.Store(true)
		d.log.Error("shutdown deadline passed: rejecting frames not yet inspected", "deadline", deadline, "queued", d.queue.depth())
		select {
		case <-workDone:
		case <-time.After(grace):
			finished = false
			d.log.Error("the pipeline is still busy after the shutdown deadline (a detector or the outbox hangs): leaving it to process exit", "grace", grace)
		}
	}
	return errors.Join(capErrOrNil(capErr), d.closeWithin(finished, grace))
}

// ShutdownSlack is how much longer than pipeline.shutdown_timeout a stop
// may take at most: a grace for frames rejected at the deadline plus one
// for closing the source and the publisher (each at most 5 s). `segad run`
// exits the process when a stop outlasts shutdown_timeout + ShutdownSlack,
// so no hung peer (broker, camera, disk) can keep the daemon from stopping.
const ShutdownSlack = 2*maxStopGrace + 5*time.Second

// maxStopGrace bounds each of the two grace periods of a stop.
const maxStopGrace = 5 * time.Second

func stopGrace(deadline time.Duration) time.Duration {
	return min(max(deadline, time.Second), maxStopGrace)
}

// ShutdownBound is the longest a stop of this daemon may take (see
// ShutdownSlack).
func (d *Daemon) ShutdownBound() time.Duration { return d.shutdownTimeout() + ShutdownSlack }

// closeWithin runs close in the background and waits at most grace for it:
// a source or publisher whose Close hangs (a camera driver, a dead broker
// during the final flush) is left to process exit. Results not yet sent
// stay in the durable outbox and are sent after the restart.
func (d *Daemon) closeWithin(detectorsIdle bool, grace time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- d.closeBounded(detectorsIdle, grace) }()
	select {
	case err := <-done:
		return err
	case <-time.After(grace + time.Second):
		return fmt.Errorf("shutdown: closing the source and the publisher did not finish within %s; left to process exit (results not yet sent stay in the outbox)", grace)
	}
}

func capErrOrNil(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || errors.Is(err, capture.ErrClosed) {
		return nil
	}
	return err
}

func (d *Daemon) shutdownTimeout() time.Duration {
	d.cfgMu.Lock()
	defer d.cfgMu.Unlock()
	return d.cfg.Pipeline.ShutdownTimeout
}

// captureLoop moves frames from the source into the queue until ctx ends
// or a finite source is exhausted. A reload swaps the source underneath:
// the old one's Next returns (its context is cancelled) and the loop goes
// on with the new one.
func (d *Daemon) captureLoop(ctx context.Context) error {
	for {
		ref := d.currentRef()
		nctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(ref.ctx, cancel)
		f, err := ref.src.Next(nctx)
		stop()
		cancel()
		if err != nil {
			if ctx.Err() == nil && ref.ctx.Err() != nil {
				continue // swapped by a reload
			}
			return err
		}
		ref.inflight.Add(1)
		d.inflight.Add(1)
		d.frames.Add(1)
		d.Metrics.Frames.Inc()
		it := &queued{f: f, ref: ref}
		dropped, ok := d.queue.push(ctx, it)
		if !ok {
			// Stopping while the queue was full: this part gets its result now.
			d.finish(it, d.line.Score(d.line.Rejected(f, result.ReasonShutdown, errors.New("the daemon stopped before this part was inspected")), false))
			return ctx.Err()
		}
		if dropped != nil {
			d.Metrics.Dropped.Inc()
		}
		d.Metrics.QueueDepth.Set(float64(d.queue.depth()))
	}
}

// finish publishes (durably) a result, records metrics, writes the audit
// entry and acknowledges the frame to the source that gave it. It closes
// the frame.
func (d *Daemon) finish(q *queued, ins Inspection) {
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
	// Line.Score stamped the ID and schema (the one place for every path),
	// so the audit entry, the log line and the MQTT message carry the same.
	t := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := d.pub.Publish(ctx, *res)
	cancel()
	d.Metrics.StageSeconds.WithLabelValues("publish").Observe(time.Since(t).Seconds())
	stored := err == nil
	if err != nil {
		// The outbox could not store the result (disk full, closed). Try
		// the broker directly so the PLC still hears of a reject, and leave
		// the part's file unacknowledged so a restart inspects it again.
		d.Metrics.PublishErrs.Inc()
		d.lastPubErr.Store(time.Now().UnixNano())
		d.floodLog.Error("result not stored in the outbox", "id", res.ID, "seq", res.Seq, "part_id", res.PartID, "verdict", res.Verdict, "err", err)
		if direct, ok := d.pub.(interface{ PublishDirect(result.Result) error }); ok {
			if err := direct.PublishDirect(*res); err != nil {
				d.floodLog.Error("result not delivered either", "id", res.ID, "err", err)
			}
		}
	}
	d.Metrics.Verdicts.WithLabelValues(string(res.Verdict)).Inc()
	for stage, v := range res.LatencyMS {
		d.Metrics.StageSeconds.WithLabelValues(stage).Observe(v / 1000)
	}
	if res.Score != nil {
		d.Metrics.Score.Observe(*res.Score)
	}
	switch res.Verdict {
	case result.VerdictFail:
		d.fails.Add(1)
	case result.VerdictError:
		d.errs.Add(1)
	}
	d.log.Debug("part", "id", res.ID, "seq", res.Seq, "part_id", res.PartID, "verdict", res.Verdict, "score", res.Score, "reason", res.Reason)
	if d.audit != nil && (res.Rejected() || d.samplePass()) {
		if err := d.audit.Save(res, f.Original, ins.Maps, ins.MapW, ins.MapH, ins.Mask); err != nil {
			d.floodLog.Warn("audit entry not saved", "id", res.ID, "seq", res.Seq, "err", err)
		}
	}
	if q.ref != nil && stored && f.Path != "" {
		if a, ok := q.ref.src.(capture.Acker); ok {
			if err := a.Ack(f, !res.Rejected()); err != nil {
				d.floodLog.Warn("cannot move inspected file", "file", f.Path, "err", err)
			}
		}
	}
}

func (d *Daemon) samplePass() bool {
	d.cfgMu.Lock()
	share := d.cfg.Audit.SamplePass
	d.cfgMu.Unlock()
	return share > 0 && d.sampleRand.Float64() < share
}

// beat records a sign of pipeline life for the systemd watchdog: a result
// finished, or nothing in flight (an idle line waiting for parts is alive).
// Taking frames in does not count: a hung detector must starve the
// watchdog even while the camera delivers.
func (d *Daemon) beat() { d.lastBeat.Store(time.Now().UnixNano()) }

// LastBeat is when the pipeline last showed progress; the watchdog pings
// systemd only while it is recent.
func (d *Daemon) LastBeat() time.Time { return time.Unix(0, d.lastBeat.Load()) }

// watchHealth refreshes the source gauges and beats while idle.
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
		d.Metrics.Reconnects.Set(float64(st.Reconnects))
		d.Metrics.AckFailures.Set(float64(st.AckFailures))
		d.Metrics.FrameAge.Set(st.LastFrameAge.Seconds())
		up := 0.0
		if st.Connected {
			up = 1
		}
		d.Metrics.CameraUp.Set(up)
		if p, ok := d.pub.(*mqtt.Publisher); ok {
			s := p.Stats()
			d.Metrics.Outbox.Set(float64(s.Backlog))
			d.Metrics.OutboxDrops.Set(float64(s.Drops))
			was := d.linkWatch.last()
			if l := d.linkWatch.observe(s, time.Now()); l.Stalled != was.Stalled {
				if l.Stalled {
					d.log.Error("results cannot be published: not ready", "reason", l.Reason)
				} else {
					d.log.Info("results are reaching the broker again: ready")
				}
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
	h := mqtt.Health{UptimeS: time.Since(d.started).Seconds(), Frames: d.frames.Load(), Fails: d.fails.Load(),
		Errors: d.errs.Load()}
	if d.queue != nil {
		h.QueueDepth = d.queue.depth()
	}
	h.CameraState = cam
	if e := d.configError.Load(); e != nil {
		h.LastConfigError = *e
	}
	return h
}

// Close releases every stage. Run calls it; call it yourself only when Run
// was never started.
func (d *Daemon) Close() error { return d.closeBounded(true, d.shutdownTimeout()) }

// closeBounded releases the stages, giving the publisher's final flush at
// most flush; with detectorsIdle false (a frame is stuck in inference at
// shutdown) the detectors are left to process exit rather than freed under
// the running inference.
func (d *Daemon) closeBounded(detectorsIdle bool, flush time.Duration) error {
	// The source closes alongside the publisher: a camera stuck in its
	// driver must not keep the outbox from its final flush and close.
	srcErr := make(chan error, 1)
	if ref := d.currentRef(); ref != nil {
		ref.cancel()
		go func() { srcErr <- ref.src.Close() }()
	} else {
		srcErr <- nil
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), flush)
	defer cancel()
	if d.pub != nil {
		errs = append(errs, d.pub.Close(ctx))
	}
	if detectorsIdle {
		errs = append(errs, d.line.Close())
	}
	errs = append(errs, <-srcErr)
	return errors.Join(errs...)
}
