package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/result"
)

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
		in *model.Inferred
	}
	inferred := make(chan pending, 1)
	go func() {
		defer close(inferred)
		for {
			q, ok := d.queue.pop()
			if !ok {
				return
			}
			d.metrics.QueueDepth.Set(float64(d.queue.depth()))
			switch {
			case q.reject != nil:
				inferred <- pending{q, d.insp.Rejected(q.f, result.ReasonCapture, q.reject)}
			case q.dropped:
				inferred <- pending{q, d.insp.Rejected(q.f, result.ReasonDropped,
					errors.New("inference fell behind the camera; the part was not inspected (pipeline.overflow: drop_oldest)"))}
			case d.aborting.Load():
				inferred <- pending{q, d.insp.Rejected(q.f, result.ReasonShutdown,
					errors.New("the daemon stopped before this part was inspected (pipeline.shutdown_timeout)"))}
			default:
				inferred <- pending{q, d.insp.Infer(q.f)}
			}
		}
	}()
	workDone := make(chan struct{})
	go func() {
		defer close(workDone)
		for p := range inferred {
			d.finish(p.q, d.insp.Score(p.in, d.previewDue(p.q.f) || d.audit != nil))
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
	// Outputs close beside the publisher, each bounded by half the flush
	// time (queue, then Close), so together they end within it. They are
	// best effort beside the durable publisher: what one could not finish
	// (a history that lost results) is logged, not a failed stop.
	peersDone := make(chan struct{})
	go func() {
		defer close(peersDone)
		d.closeShadow(ctx)
		if err := closePeers(d.outputs, flush/2); err != nil {
			d.log.Warn("an output did not close cleanly", "err", err)
		}
	}()
	if d.pub != nil {
		errs = append(errs, d.pub.Close(ctx))
	}
	<-peersDone
	if detectorsIdle {
		errs = append(errs, d.insp.Close())
	}
	errs = append(errs, <-srcErr)
	return errors.Join(errs...)
}

// closePeers closes the outputs side by side, each given at most flush to
// finish its queue.
func closePeers(peers []*peer, flush time.Duration) error {
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.close(flush)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
