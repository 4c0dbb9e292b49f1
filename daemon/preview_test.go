package daemon

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/config"
)

// renderDelay is how long slowPreview takes to take a frame: far longer
// than the line takes for all its parts.
const renderDelay = time.Second

// slowPreview asks for every second part and takes renderDelay per frame: the line must not wait for it, and must not ask
// again while a frame is still being rendered.
type slowPreview struct {
	asked, due atomic.Int64
	busy       atomic.Bool
	askedWhile atomic.Int64 // PreviewDue calls while a frame was still rendering
	mu         sync.Mutex
	frames     []PreviewFrame
}

func (p *slowPreview) PreviewDue() bool {
	if p.busy.Load() {
		p.askedWhile.Add(1)
	}
	if p.asked.Add(1)%2 == 1 {
		p.due.Add(1)
		p.busy.Store(true) // from here until the frame is handed over
		return true
	}
	return false
}

func (p *slowPreview) PreviewFrame(f PreviewFrame) {
	time.Sleep(renderDelay)
	p.mu.Lock()
	p.frames = append(p.frames, f)
	p.mu.Unlock()
	p.busy.Store(false)
}

// TestPreviewRendersOffTheLine: frames go to the preview hook only when it
// asks, each a decodable JPEG of its own result at most previewWidth wide
// with the audit off (the maps are kept for the previewed part alone),
// and a slow hook neither slows the line nor is asked while busy.
func TestPreviewRendersOffTheLine(t *testing.T) {
	const n = 12
	cfgPath, _ := testConfig(t, t.TempDir(), n, "meanstd_blur.onnx", "0.5", "")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Audit.Dir = ""
	hook := &slowPreview{}
	pub := &fakePublisher{}
	d, err := New(cfg, Options{Logger: quietLog(), Publisher: pub, Preview: hook})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := d.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(t0)
	time.Sleep(renderDelay + 300*time.Millisecond) // the last render finishes
	results := pub.got()
	if len(results) != n {
		t.Fatalf("%d results, want %d", len(results), n)
	}
	bySeq := map[uint64]string{}
	for _, r := range results {
		bySeq[r.Seq] = r.ID
	}
	hook.mu.Lock()
	frames := hook.frames
	hook.mu.Unlock()
	if len(frames) == 0 || int64(len(frames)) > hook.due.Load() {
		t.Fatalf("%d frames for %d parts the hook asked for", len(frames), hook.due.Load())
	}
	if hook.askedWhile.Load() != 0 {
		t.Errorf("the hook was asked %d times while a frame was still rendering", hook.askedWhile.Load())
	}
	// Had the line waited for the hook, it would have taken at least
	// renderDelay per frame.
	if waited := time.Duration(len(frames)) * renderDelay; elapsed >= waited {
		t.Errorf("the line took %s for %d parts with %d frames rendered: it waited for the preview (%s)", elapsed, n, len(frames), waited)
	}
	for _, f := range frames {
		if bySeq[f.Seq] != f.ResultID {
			t.Errorf("frame of seq %d names result %s, the line published %s", f.Seq, f.ResultID, bySeq[f.Seq])
		}
		m, err := gocv.IMDecode(f.JPEG, gocv.IMReadColor)
		if err != nil || m.Empty() {
			t.Errorf("frame %d is no JPEG: %v", f.Seq, err)
			continue
		}
		if m.Cols() != f.Width || m.Rows() != f.Height || f.Width > previewWidth {
			t.Errorf("frame %d is %dx%d, says %dx%d (at most %d wide)", f.Seq, m.Cols(), m.Rows(), f.Width, f.Height, previewWidth)
		}
		m.Close()
	}
}
