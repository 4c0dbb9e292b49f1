package daemon

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
)

func testCfg(kind capture.Kind, overflow string) *config.Config {
	cfg := &config.Config{}
	cfg.Capture.Kind, cfg.Pipeline.Overflow = kind, overflow
	return cfg
}

func item(seq uint64) *queued { return &queued{f: &capture.Frame{Seq: seq}} }

func popSeqs(t *testing.T, q *frameQueue, n int) (seqs []uint64, dropped []bool) {
	t.Helper()
	for i := 0; i < n; i++ {
		it, ok := q.pop()
		if !ok {
			t.Fatalf("pop %d: queue closed", i)
		}
		seqs = append(seqs, it.f.Seq)
		dropped = append(dropped, it.dropped)
	}
	return seqs, dropped
}

// TestQueueOrderAndDropOldest (no ONNX Runtime): frames leave in the order
// they came; with drop_oldest a push into a full queue marks the oldest
// live frame dropped but keeps it in its place (its result is published in
// order), and unserved-trigger answers take no frame capacity and are
// never dropped.
func TestQueueOrderAndDropOldest(t *testing.T) {
	q := newFrameQueue(2, "drop_oldest")
	ctx := context.Background()
	for seq := uint64(1); seq <= 2; seq++ {
		if d, ok := q.push(ctx, item(seq)); !ok || d != nil {
			t.Fatalf("push %d: dropped %v ok %v", seq, d, ok)
		}
	}
	if !q.pushReject(&queued{f: &capture.Frame{Seq: 100}, reject: errors.New("trigger not served")}) {
		t.Fatal("reject refused")
	}
	d, ok := q.push(ctx, item(3))
	if !ok || d == nil || d.f.Seq != 1 {
		t.Fatalf("push into a full queue dropped %v, want frame 1", d)
	}
	if q.depth() != 4 {
		t.Fatalf("depth %d, want 4 (the dropped frame keeps its place)", q.depth())
	}
	seqs, dropped := popSeqs(t, q, 4)
	want := []uint64{1, 2, 100, 3}
	for i := range want {
		if seqs[i] != want[i] {
			t.Fatalf("order %v, want %v", seqs, want)
		}
	}
	if !dropped[0] || dropped[1] || dropped[2] || dropped[3] {
		t.Fatalf("dropped %v, want only the first", dropped)
	}
	q.close()
	if _, ok := q.pop(); ok {
		t.Fatal("pop on a closed, empty queue")
	}
	if _, ok := q.push(ctx, item(9)); ok {
		t.Fatal("push into a closed queue accepted")
	}
}

// TestQueueBlockWaitsAndStops: with block, a push into a full queue waits
// for room, and gives up (ok false) when its context ends or the queue
// closes; nothing is dropped.
func TestQueueBlockWaitsAndStops(t *testing.T) {
	q := newFrameQueue(1, "block")
	ctx := context.Background()
	q.push(ctx, item(1))
	pushed := make(chan bool, 1)
	go func() {
		_, ok := q.push(ctx, item(2))
		pushed <- ok
	}()
	select {
	case <-pushed:
		t.Fatal("push into a full blocking queue did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	if seqs, _ := popSeqs(t, q, 1); seqs[0] != 1 {
		t.Fatalf("popped %v", seqs)
	}
	if !<-pushed {
		t.Fatal("push after room was made failed")
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, ok := q.push(cctx, item(3)); ok {
		t.Fatal("a blocked push outlived its context")
	}
	if seqs, dropped := popSeqs(t, q, 1); seqs[0] != 2 || dropped[0] {
		t.Fatalf("popped %v dropped %v", seqs, dropped)
	}
}

// TestOverflowPolicy: drop_oldest applies to live cameras only; file
// sources always wait (their parts would be thrown away unseen).
func TestOverflowPolicy(t *testing.T) {
	d := &Daemon{log: quietLog()}
	for kind, want := range map[capture.Kind]string{
		capture.KindDevice: "drop_oldest", capture.KindStream: "drop_oldest", capture.KindGStreamer: "drop_oldest",
		capture.KindVideo: "block", capture.KindSequence: "block", capture.KindFolder: "block", capture.KindWatch: "block",
	} {
		cfg := testCfg(kind, "drop_oldest")
		if got := d.overflowPolicy(cfg); got != want {
			t.Errorf("%s: %s, want %s", kind, got, want)
		}
		if got := d.overflowPolicy(testCfg(kind, "block")); got != "block" {
			t.Errorf("%s with block: %s", kind, got)
		}
	}
}
