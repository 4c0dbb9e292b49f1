package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/result"
)

// TestApplyThresholdReload is the console's Apply path without the
// browser: config.EditThresholds writes the real daemon's file (comments
// kept), Reload applies it, the next part is judged with the new
// threshold, and Options.OnReload hands the configuration in force to the
// console (its users and limits are live keys).
func TestApplyThresholdReload(t *testing.T) {
	d, cfgPath, _ := newTestDaemon(t, 3, "meanstd_blur.onnx", "-1000", nil)
	defer d.Close()
	var got []*config.Config
	d.onReload = func(c *config.Config) { got = append(got, c) }
	inspect := func() result.Result {
		f := d.frameFromBytes(encodePart(t), "p1")
		defer f.Close()
		return d.insp.Inspect(f, false).Result
	}
	if r := inspect(); r.Verdict != result.VerdictFail {
		t.Fatalf("threshold -1000: verdict %s, want fail", r.Verdict)
	}
	rev, err := config.FileRevision(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	thr, warn := 1000.0, -1000.0 // every score so far was >= -1000
	if _, changes, err := config.EditThresholds(cfgPath, rev, &thr, &warn); err != nil || len(changes) != 2 {
		t.Fatalf("apply: %v %+v", err, changes)
	}
	if _, _, err := config.Edit(cfgPath, "", []config.Set{{Key: "console.session_ttl", Value: "2h"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if r := inspect(); r.Verdict != result.VerdictPass || r.Threshold != 1000 || !r.Warn {
		t.Fatalf("after apply: verdict %s threshold %v warn %v, want a warn pass at 1000", r.Verdict, r.Threshold, r.Warn)
	}
	if len(got) != 1 || *got[0].SegAD.Threshold != 1000 || got[0].Console.SessionTTL != 2*time.Hour {
		t.Fatalf("OnReload calls %d, %+v", len(got), got)
	}
	// A refused reload does not call it.
	if err := os.WriteFile(cfgPath, []byte("segad: [broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err == nil || len(got) != 1 {
		t.Fatalf("broken file: %v, %d calls", err, len(got))
	}
}

// TestWatchSymlinkedConfig: a config reached through a symlink is edited
// at its target (config.Edit renames there); the watcher sees it and the
// new threshold applies without a SIGHUP.
func TestWatchSymlinkedConfig(t *testing.T) {
	d, cfgPath, _ := newTestDaemon(t, 3, "meanstd_blur.onnx", "-1000", nil)
	defer d.Close()
	real := filepath.Join(filepath.Dir(cfgPath), "real.yaml")
	if err := os.Rename(cfgPath, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.yaml", cfgPath); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.WatchConfig(ctx); err != nil {
		t.Fatal(err)
	}
	thr := 1000.0
	if _, _, err := config.EditThresholds(cfgPath, "", &thr, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := d.frameFromBytes(encodePart(t), "p1")
		r := d.insp.Inspect(f, false).Result
		f.Close()
		if r.Threshold == 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("threshold still %v 10 s after the edit of the symlinked config", r.Threshold)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if fi, err := os.Lstat(cfgPath); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the config is no longer a symlink: %v", err)
	}
}
