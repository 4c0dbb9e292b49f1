package main

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/result"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

// rssBytes reads the process's resident set size from /proc.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	f := strings.Fields(string(b))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// countingPublisher discards results but counts them, and samples RSS at
// the given result counts.
type countingPublisher struct {
	n       atomic.Int64
	at      map[int64]*int64
	sample  func() int64
	rejects atomic.Int64
}

func (p *countingPublisher) Publish(_ context.Context, r result.Result) error {
	n := p.n.Add(1)
	if r.Rejected() {
		p.rejects.Add(1)
	}
	if v, ok := p.at[n]; ok {
		*v = p.sample()
	}
	return nil
}

func (p *countingPublisher) Close(context.Context) error { return nil }

func (p *countingPublisher) Stats() mqtt.Stats { return mqtt.Stats{} }

// TestMemoryFlat is the daemon issue's memory acceptance: RSS stays within
// 5% over 50,000 frames after warm-up. Frames go through the whole line
// (preprocessing, detector, features, forest, result) with a detector
// fixture; results are counted instead of published so the broker's memory
// is not measured.
func TestMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 frames")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "part.png")
	pic := image.NewRGBA(image.Rect(0, 0, 256, 256))
	for y := 0; y < 256; y++ {
		for x := 0; x < 256; x++ {
			pic.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	fh, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(fh, pic); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	testenv.TrainForest(t, filepath.Join(dir, "brf.json"), 29)
	cfgPath := filepath.Join(dir, "segad.yaml")
	cfgText := fmt.Sprintf(`onnxruntime: {library: %q}
capture: {kind: folder, path: .}
detectors:
  - name: ms
    model: %q
segad: {mask: builtin:vad, model: brf.json, threshold: 0}
pipeline: {overflow: block, queue: 4}
`, testenv.ORTLib(t), filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx"))
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	const warm, total = 5000, 55000
	src, err := newRepeatSource(data, total)
	if err != nil {
		t.Fatal(err)
	}
	defer src.original.Close()
	var after, end int64
	pub := &countingPublisher{at: map[int64]*int64{warm: &after, total: &end}, sample: func() int64 { return rssBytes(t) }}
	d, err := daemon.New(cfg, daemon.Options{Logger: quietLogger(), Source: src.open, Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pub.n.Load() != total {
		t.Fatalf("%d results for %d frames", pub.n.Load(), total)
	}
	growth := float64(end-after) / float64(after)
	t.Logf("RSS after %d warm-up frames %.1f MiB, after %d more %.1f MiB (%+.2f%%)", warm, float64(after)/(1<<20), total-warm, float64(end)/(1<<20), 100*growth)
	if growth > 0.05 {
		t.Errorf("RSS grew %.1f%% over %d frames (limit 5%%)", 100*growth, total-warm)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
