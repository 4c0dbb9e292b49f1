package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
)

// TestReloadSwapsWatchSourceWithoutDoubles: a capture edit reopens a watch
// folder in place while the line runs; files from before and after the
// swap are each inspected exactly once and moved out of the folder, and a
// reload that also changes the threshold never judges a part with a mix of
// old and new settings.
func TestReloadSwapsWatchSourceWithoutDoubles(t *testing.T) {
	watch := t.TempDir()
	d, cfgPath, port := newTestDaemon(t, 1, "meanstd_blur.onnx", "1000", func(c *config.Config) {
		c.Capture = capture.Config{Kind: capture.KindWatch, Path: watch,
			Watch: capture.WatchConfig{Poll: 20 * time.Millisecond}}
	})
	// The file on disk must describe the same source for the reload diff.
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(string(raw), "capture:\n  kind: video\n  path: parts.avi\n",
		fmt.Sprintf("capture:\n  kind: watch\n  path: %q\n  watch: {poll: 20ms}\n", watch), 1)
	if err := os.WriteFile(cfgPath, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, port)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	drop := func(names ...string) {
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(watch, n+".png"), encodePart(t), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	drop("a1", "a2", "a3")
	sub.WaitResults(1, 10*time.Second)
	// Edit: another interpolation (reopens the source) and a new threshold.
	edited := strings.Replace(base, "watch: {poll: 20ms}", "watch: {poll: 20ms}\n  preprocess: {interpolation: linear}", 1)
	edited = strings.Replace(edited, "threshold: 1000", "threshold: -1000", 1)
	if err := os.WriteFile(cfgPath, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	drop("b1", "b2", "b3")
	got := sub.WaitResults(6, 15*time.Second)
	time.Sleep(300 * time.Millisecond) // a double would arrive now
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got = sub.WaitResults(6, time.Second)
	seen := map[string]int{}
	for _, r := range got {
		seen[r.PartID]++
		if strings.HasPrefix(r.PartID, "b") && r.Threshold != -1000 {
			t.Errorf("part %s judged at threshold %v after the reload", r.PartID, r.Threshold)
		}
	}
	for _, id := range []string{"a1", "a2", "a3", "b1", "b2", "b3"} {
		if seen[id] != 1 {
			t.Errorf("part %s has %d results, want exactly 1 (all: %v)", id, seen[id], seen)
		}
	}
	left, _ := filepath.Glob(filepath.Join(watch, "*.png"))
	if len(left) != 0 {
		t.Errorf("files left in the watch folder (not acknowledged): %v", left)
	}
}
