package daemon

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/result"
	"github.com/segad-edge/segad-edge/segad"
)

// The fast unit tests of the daemon's own logic: small fakes of its own
// interfaces (capture.Source, model.Detectors, model.Scorer, Publisher,
// Output), no ONNX Runtime, no broker.

// slowDetectors gives a flat 16x16 map after a delay.
type slowDetectors struct{ delay time.Duration }

func (s slowDetectors) Run([]infer.Image) (*infer.SetOutput, error) {
	time.Sleep(s.delay)
	return &infer.SetOutput{Detectors: []infer.Output{{Map: make([]float32, 16*16)}}}, nil
}
func (s slowDetectors) RunEach([]infer.Image) error { return nil }
func (s slowDetectors) InputSizes() []infer.Size    { return []infer.Size{{Width: 16, Height: 16}} }
func (s slowDetectors) Warmup(int) error            { return nil }
func (s slowDetectors) Close() error                { return nil }

type zeroScorer struct{}

func (zeroScorer) NumFeatures() int         { return 0 }
func (zeroScorer) Margin([]float32) float64 { return 0 }

// listSource hands out n gray frames at once, then waits for the stop.
type listSource struct {
	n, next int
}

func (s *listSource) Name() string { return "list" }
func (s *listSource) Next(ctx context.Context) (*capture.Frame, error) {
	if s.next >= s.n {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	s.next++
	img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(128, 128, 128, 0), 16, 16, gocv.MatTypeCV8UC3)
	return &capture.Frame{Source: "list", Seq: uint64(s.next), Image: img, Color: capture.ColorBGR, Captured: time.Now()}, nil
}
func (s *listSource) State() capture.SourceState { return capture.SourceState{Connected: true} }
func (s *listSource) Close() error               { return nil }

// recordingOutput records results in order; with block set it waits on it.
type recordingOutput struct {
	name   string
	block  chan struct{}
	mu     sync.Mutex
	got    []uint64
	closed atomic.Bool
}

func (o *recordingOutput) Name() string { return o.name }
func (o *recordingOutput) Publish(ctx context.Context, r result.Result) error {
	if o.block != nil {
		select {
		case <-o.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, r.Seq)
	return nil
}
func (o *recordingOutput) Close() error { o.closed.Store(true); return nil }
func (o *recordingOutput) seqs() []uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]uint64(nil), o.got...)
}

// unitDaemon assembles a daemon from fakes, as New does from a config.
func unitDaemon(t *testing.T, src capture.Source, det model.Detectors, pub Publisher, queue int, deadline time.Duration, outs ...Output) *Daemon {
	t.Helper()
	mask := segad.VADTemplate(16, 16, segad.DefaultVADGeometry())
	ex, err := segad.NewExtractor(mask, []string{"f"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{}
	cfg.Capture.Kind, cfg.Pipeline.Queue, cfg.Pipeline.Overflow, cfg.Pipeline.ShutdownTimeout = capture.KindFolder, queue, "block", deadline
	d := &Daemon{log: quietLog(), floodLog: quietLog(), metrics: newMetrics(), cfg: cfg, started: time.Now(),
		sampleRand: rand.New(rand.NewPCG(1, 1)), pub: pub,
		insp: model.NewInspector(model.New(det, []string{"f"}, mask, ex, zeroScorer{}), model.Settings{Threshold: 1, Warn: math.NaN()})}
	d.src = newSourceRef(src)
	d.queue = newFrameQueue(queue, d.overflowPolicy(cfg))
	for _, o := range outs {
		d.outputs = append(d.outputs, startPeer(o, quietLog()))
	}
	return d
}

// TestShutdownDeadline: frames still queued when a stop outlasts
// pipeline.shutdown_timeout are answered with reason shutdown instead of
// inspected; every frame still gets exactly one result, in order, and the
// stop is bounded.
func TestShutdownDeadline(t *testing.T) {
	const n = 8
	pub := &fakePublisher{}
	d := unitDaemon(t, &listSource{n: n}, slowDetectors{delay: 150 * time.Millisecond}, pub, n, 200*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for d.queue.depth() < n-1 { // the source has handed out its frames
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 200*time.Millisecond+stopGrace(200*time.Millisecond)+time.Second {
		t.Errorf("stop took %s", took)
	}
	got := pub.got()
	if len(got) != n {
		t.Fatalf("%d results for %d frames", len(got), n)
	}
	shut := 0
	for i, r := range got {
		if r.Seq != uint64(i+1) {
			t.Fatalf("result %d is frame %d: out of order", i, r.Seq)
		}
		if r.ReasonCode == result.ReasonShutdown {
			shut++
			if r.Verdict != result.VerdictError {
				t.Errorf("frame %d: shutdown with verdict %s", r.Seq, r.Verdict)
			}
		}
	}
	if shut == 0 || shut == n {
		t.Errorf("%d of %d frames rejected at the deadline, want some inspected and the rest rejected", shut, n)
	}
}

// TestOutputsArePeers: every output gets every result in order after the
// publisher; a stuck output holds neither the publisher nor the others,
// and is closed at the stop.
func TestOutputsArePeers(t *testing.T) {
	const n = 5
	pub := &fakePublisher{}
	fast := &recordingOutput{name: "history"}
	stuck := &recordingOutput{name: "plc", block: make(chan struct{})}
	d := unitDaemon(t, &listSource{n: n}, slowDetectors{}, pub, 2, time.Second, fast, stuck)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	if got := pub.wait(t, n); len(got) != n {
		t.Fatalf("publisher got %d of %d results while an output was stuck", len(got), n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(fast.seqs()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	for i, s := range fast.seqs() {
		if s != uint64(i+1) {
			t.Fatalf("output order %v", fast.seqs())
		}
	}
	if len(fast.seqs()) != n {
		t.Fatalf("fast output got %v while another was stuck", fast.seqs())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !fast.closed.Load() || !stuck.closed.Load() {
		t.Error("outputs not closed at the stop")
	}
}

// TestPeerOverflowCounted: an output that falls behind loses results for
// itself only, each counted.
func TestPeerOverflowCounted(t *testing.T) {
	out := &recordingOutput{name: "slow", block: make(chan struct{})}
	p := &peer{out: out, log: quietLog(), q: make(chan result.Result, 2), done: make(chan struct{})}
	for i := 1; i <= 5; i++ {
		p.offer(result.Result{Seq: uint64(i)})
	}
	if p.dropped.Load() != 3 {
		t.Fatalf("dropped %d, want 3", p.dropped.Load())
	}
	go p.run()
	close(out.block)
	if err := p.close(time.Second); err != nil {
		t.Fatal(err)
	}
	if got := out.seqs(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("output got %v, want the first two", got)
	}
}

// asideOutput is a recordingOutput that records results aside (as the
// history does).
type asideOutput struct{ *recordingOutput }

func (asideOutput) RecordsAside() bool { return true }

// TestRecordAsideOnlyToRecorders: a golden or shadow result reaches the
// outputs that record aside (history) and never the others (the PLC).
func TestRecordAsideOnlyToRecorders(t *testing.T) {
	hist := asideOutput{&recordingOutput{name: "history"}}
	plcOut := &recordingOutput{name: "plc"}
	d := &Daemon{}
	for _, o := range []Output{hist, plcOut} {
		d.outputs = append(d.outputs, startPeer(o, quietLog()))
	}
	d.recordAside(result.Result{Seq: 7, Kind: result.KindGolden})
	for _, p := range d.outputs {
		if err := p.close(time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := hist.seqs(); len(got) != 1 || got[0] != 7 {
		t.Errorf("history got %v, want the golden result", got)
	}
	if got := plcOut.seqs(); len(got) != 0 {
		t.Errorf("the PLC output got %v, want nothing", got)
	}
}
