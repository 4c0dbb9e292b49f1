package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/partid"
	"github.com/segad-edge/segad-edge/result"
)

// sourceRef is a frame source with the frames it has in flight. A reload
// swaps in a new source: the old one stops being read at once (its context
// is cancelled) but is closed only after its in-flight frames are finished,
// because a watch folder acknowledges each file through the source that
// handed it out (moving it to done/ or failed/).
type sourceRef struct {
	src      capture.Source
	ctx      context.Context
	cancel   context.CancelFunc
	inflight sync.WaitGroup
}

func newSourceRef(src capture.Source) *sourceRef {
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

func (d *Daemon) currentSource() capture.Source { return d.currentRef().src }

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
		d.metrics.frames.Add(1)
		it := &queued{f: f, ref: ref}
		dropped, ok := d.queue.push(ctx, it)
		if !ok {
			// Stopping while the queue was full: this part gets its result now.
			d.finish(it, d.insp.Score(d.insp.Rejected(f, result.ReasonShutdown, errors.New("the daemon stopped before this part was inspected")), false))
			return ctx.Err()
		}
		if dropped != nil {
			d.metrics.Dropped.Inc()
		}
		d.metrics.QueueDepth.Set(float64(d.queue.depth()))
	}
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
	d.metrics.TriggersUnserved.Inc()
	d.floodLog.Warn("trigger not served", "part_id", partID, "err", err)
	it := &queued{f: &capture.Frame{Source: "trigger", PartID: partID, Captured: time.Now()}, reject: err}
	if d.queue == nil || !d.queue.pushReject(it) {
		// The line no longer takes parts (stopping): answer here.
		d.finish(it, d.insp.Score(d.insp.Rejected(it.f, result.ReasonCapture, err), false))
	}
}

// openSource opens the source of cc with the model's preprocessing: the
// one place frame geometry is decided (model.Model.Preprocess), for the
// configured source and for Options.Source alike.
func (d *Daemon) openSource(cc capture.Config, m *model.Model) (capture.Source, error) {
	pc := m.Preprocess(cc.Preprocess)
	if d.sourceFn != nil {
		return d.sourceFn(pc)
	}
	cc.Preprocess, cc.Logger = pc, d.floodLog.With("stage", "capture")
	return capture.Open(cc)
}

// Probe bounds for a new live source on reload: it must deliver a first
// frame within its open_timeout plus watchdog, clamped to this range, or the
// running source stays.
const (
	minProbe = time.Second
	maxProbe = 60 * time.Second
)

// probeSource checks that a source opened by a reload works before the
// running one is closed for it. Live kinds (device, stream, gstreamer) open
// in the background, so an Open without error proves nothing: wait until
// their reader has read a frame, and refuse on their first failure or when
// none comes in time (a pipeline with a missing element, one that ends at
// once, a camera that is off). The probe watches State and never calls
// Next, so no frame is taken from the source (nor lost) before the switch:
// the first frame inspected afterwards is a fresh one, as for any live
// source. File kinds (video, sequence, folder, watch) fail in Open when
// their path is unusable, and a file read to probe them would be a part
// taken out of order, so for them opening is the probe.
func probeSource(src capture.Source, cc capture.Config) error {
	switch cc.Kind {
	case capture.KindDevice, capture.KindStream, capture.KindGStreamer:
	default:
		return nil
	}
	open, wd := cc.OpenTimeout, cc.Watchdog
	if open <= 0 {
		open = 30 * time.Second
	}
	if wd <= 0 {
		wd = 5 * time.Second
	}
	limit := min(max(open+wd, minProbe), maxProbe)
	deadline := time.Now().Add(limit)
	for {
		st := src.State()
		switch {
		case st.LastFrameAge > 0:
			return nil
		case st.LastError != "":
			return fmt.Errorf("source %s failed before its first frame: %s", src.Name(), st.LastError)
		case time.Now().After(deadline):
			return fmt.Errorf("source %s delivered no frame within %s (capture.open_timeout + capture.watchdog)", src.Name(), limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
