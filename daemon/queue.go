package daemon

import (
	"context"
	"sync"

	"github.com/segad-edge/segad-edge/capture"
)

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

// maxAnswers bounds the answers waiting in the queue: unserved-trigger
// rejects and frames dropped by drop_oldest. They hold no image (a few
// hundred bytes each), but a trigger flood, or a source faster than the
// results can be published (each dropped frame still costs a result), must
// not grow memory without bound. Beyond it, the trigger handler waits for
// the line, which pushes back on the MQTT trigger queue (whose own overflow
// comes back here as more unserved triggers, answered in turn), and a
// drop_oldest push waits like a blocking one, slowing the capture loop
// down to the pace of the results.
const maxAnswers = 1024

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
	dropped int // items with dropped set
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
		q.waitWhile(ctx, func() bool { return q.live >= q.cap })
		if (ctx.Err() != nil && q.live >= q.cap) || q.closed {
			return nil, false
		}
	} else if q.live >= q.cap {
		// Room for one more dropped-frame answer (see maxAnswers).
		q.waitWhile(ctx, func() bool { return q.answers() >= maxAnswers && !q.closed })
		if q.answers() >= maxAnswers || q.closed {
			return nil, false
		}
		dropped = q.dropOldestLive() // nil if the line took a frame meanwhile
	}
	q.items = append(q.items, it)
	q.live++
	q.cond.Broadcast()
	return dropped, true
}

// pushReject queues an answer for a part that gets no frame (it.reject
// set). It does not count against the frame capacity (there is nothing to
// inspect) and never drops; it waits only while maxAnswers answers are
// already waiting. ok=false once the queue is closed: the caller answers
// the part itself.
func (q *frameQueue) pushReject(it *queued) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.answers() >= maxAnswers && !q.closed {
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
	case it.dropped:
		q.dropped--
	default:
		q.live--
	}
	q.cond.Broadcast()
	return it, true
}

// dropOldestLive marks the oldest live frame dropped in its place (q.mu
// held) when the queue is still full, and returns it.
func (q *frameQueue) dropOldestLive() *queued {
	if q.live < q.cap {
		return nil
	}
	for _, old := range q.items {
		if old.live() {
			old.dropped = true
			old.f.ReleaseImages()
			q.live--
			q.dropped++
			return old
		}
	}
	return nil
}

// answers counts the items waiting that are answers, not frames to inspect.
func (q *frameQueue) answers() int { return q.rejects + q.dropped }

// waitWhile waits (q.mu held) while busy reports true and ctx lasts; a
// cancellation wakes the wait.
func (q *frameQueue) waitWhile(ctx context.Context, busy func() bool) {
	if !busy() {
		return
	}
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	for busy() && ctx.Err() == nil {
		q.cond.Wait()
	}
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
