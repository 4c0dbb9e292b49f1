package audit

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/segad"
)

// TestAuditBoundsAndOverlay: entries are written as <result id>.jpg/.json
// in a folder per day, the overlay keeps the image's size and paints the
// heatmap where the map is hot, and the folder stays under its byte bound
// (oldest first) and drops entries past their age, also across restarts.
func TestAuditBoundsAndOverlay(t *testing.T) {
	dir := t.TempDir()
	mask := segad.VADTemplate(64, 64, segad.DefaultVADGeometry())
	img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(60, 60, 60, 0), 120, 160, gocv.MatTypeCV8UC3)
	defer img.Close()
	hot := make([]float32, 64*64)
	for i := range hot {
		if i%64 < 8 && i/64 < 8 { // top-left corner is hot
			hot[i] = 10
		}
	}
	ov := Overlay(img, [][]float32{hot}, 64, 64, mask)
	if ov.Cols() != 160 || ov.Rows() != 120 {
		t.Fatalf("overlay is %dx%d, want the image's 160x120", ov.Cols(), ov.Rows())
	}
	// JET maps the hottest value to red: top-left (under the text band)
	// must be redder than the cold bottom-right.
	hr := ov.GetVecbAt(10, 2)[2]
	cr := ov.GetVecbAt(110, 150)[2]
	ov.Close()
	if hr <= cr {
		t.Errorf("hot corner red %d not above cold corner red %d", hr, cr)
	}

	a, err := Open(dir, 0, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	save := func(a *Store, id string) {
		t.Helper()
		r := &result.Result{ID: id, DecidedAt: now, Verdict: result.VerdictFail}
		if err := a.Save(r, img, [][]float32{hot}, 64, 64, mask); err != nil {
			t.Fatal(err)
		}
	}
	save(a, "r1")
	day := filepath.Join(dir, now.UTC().Format("2006-01-02"))
	for _, f := range []string{"r1.jpg", "r1.json"} {
		if _, err := os.Stat(filepath.Join(day, f)); err != nil {
			t.Fatalf("audit entry %s: %v", f, err)
		}
	}
	one := a.Bytes()
	// A bound of about two entries keeps the newest two only.
	b, err := Open(dir, 2*one+one/2, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r2", "r3", "r4"} {
		time.Sleep(10 * time.Millisecond) // distinct modification times
		save(b, id)
	}
	if b.Bytes() > 2*one+one/2 {
		t.Errorf("audit holds %d bytes, bound %d", b.Bytes(), 2*one+one/2)
	}
	for id, want := range map[string]bool{"r1": false, "r2": false, "r3": true, "r4": true} {
		_, err := os.Stat(filepath.Join(day, id+".json"))
		if (err == nil) != want {
			t.Errorf("entry %s present=%v, want %v", id, err == nil, want)
		}
	}
	// Age bound, applied when the folder is opened again.
	old := now.Add(-48 * time.Hour)
	for _, f := range []string{"r3.jpg", "r3.json"} {
		if err := os.Chtimes(filepath.Join(day, f), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir, 0, 24*time.Hour, quietLog()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(day, "r3.json")); err == nil {
		t.Error("entry older than max_age survived a restart")
	}
	if _, err := os.Stat(filepath.Join(day, "r4.json")); err != nil {
		t.Error("fresh entry deleted by the age bound")
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestAuditKeepsLabelledEntries: entries whose result is labelled (the keep
// rule says so) outlive the byte bound, at runtime and when a restart
// re-indexes the folder; the others still go oldest first.
func TestAuditKeepsLabelledEntries(t *testing.T) {
	dir := t.TempDir()
	mask := segad.VADTemplate(64, 64, segad.DefaultVADGeometry())
	img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(60, 60, 60, 0), 120, 160, gocv.MatTypeCV8UC3)
	defer img.Close()
	maps := [][]float32{make([]float32, 64*64)}
	labelled := map[string]bool{"r0": true, "r2": true}
	var asked int
	keep := func(id string) bool { asked++; return labelled[id] }
	save := func(a *Store, id string, at time.Time) {
		t.Helper()
		if err := a.Save(&result.Result{ID: id, DecidedAt: at, Verdict: result.VerdictFail}, img, maps, 64, 64, mask); err != nil {
			t.Fatal(err)
		}
	}
	probe, err := Open(t.TempDir(), 0, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	// The probe entry is the same size as the others: same ID length and
	// the same time (RFC 3339 drops trailing zeros of the nanoseconds, so
	// another time could differ by a few bytes and make the bounds flaky).
	now := time.Now()
	save(probe, "rx", now)
	one := probe.Bytes()

	a, err := OpenKeeping(dir, 3*one+one/2, 0, quietLog(), keep)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		save(a, fmt.Sprintf("r%d", i), now)
		time.Sleep(5 * time.Millisecond) // distinct modification times: oldest first
	}
	ids := func() map[string]bool {
		out := map[string]bool{}
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && filepath.Ext(p) == ".jpg" {
				out[strings.TrimSuffix(filepath.Base(p), ".jpg")] = true
			}
			return nil
		})
		return out
	}
	got := ids()
	if !got["r0"] || !got["r2"] {
		t.Fatalf("labelled entries pruned: left %v", got)
	}
	if got["r1"] || got["r3"] {
		t.Fatalf("old unlabelled entries kept beyond the bound: left %v", got)
	}
	if !got["r7"] {
		t.Fatalf("newest entry missing: %v", got)
	}
	// A restart with a smaller bound keeps them too; without the rule they go.
	if _, err := OpenKeeping(dir, one, 0, quietLog(), keep); err != nil {
		t.Fatal(err)
	}
	if got := ids(); !got["r0"] || !got["r2"] {
		t.Fatalf("labelled entries pruned at restart: left %v", got)
	}
	plain, err := Open(dir, one, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	// Only r0 and r2 are left (the newer ones did not fit beside them), so
	// without the rule the oldest goes and what stays fits the bound.
	if got := ids(); got["r0"] || plain.Bytes() > one {
		t.Fatalf("without a keep rule the bound must hold: left %v, %d bytes > %d", got, plain.Bytes(), one)
	}
	if asked == 0 {
		t.Fatal("keep rule never consulted")
	}
}
