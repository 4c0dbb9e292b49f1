package capture

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// watchConfig polls fast so the tests run in well under a second per file.
func watchConfig(dir string) Config {
	return Config{Kind: KindWatch, Path: dir, Preprocess: PreprocessConfig{Width: 32, Height: 32},
		Watch: WatchConfig{Poll: 30 * time.Millisecond, StablePolls: 2, Grace: 2 * time.Second}}
}

// names lists the regular files of dir, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// TestWatchFolder feeds a watch folder while it runs: files present at
// start, files dropped later, a file written in two halves with a pause
// longer than the stability window, a zero-byte file, and temp names. Each
// part is inspected exactly once, complete, and moved on Ack.
func TestWatchFolder(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, filepath.Join(dir, "p001.png"), 40, 40, 10, 0, 0)
	s := openT(t, watchConfig(dir))
	w := s.(*watchSource)

	f := nextT(t, s, 5*time.Second)
	if f.PartID != "p001" || f.Err != nil || f.Seq != 1 {
		t.Fatalf("first: part %q seq %d err %v", f.PartID, f.Seq, f.Err)
	}
	// Not acknowledged yet: still in the folder, not offered again.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if g, err := s.Next(ctx); err == nil {
		t.Fatalf("offered %s while %s awaits its ack", g.Path, f.Path)
	}
	cancel()
	if err := w.Ack(f, true); err != nil {
		t.Fatal(err)
	}
	if err := w.Ack(f, true); err == nil {
		t.Fatal("second ack of the same frame accepted")
	}
	f.Close()

	// A file still being written: first half, a pause of several polls
	// (size stable, but the PNG end marker is missing), then the rest.
	full := encodeImage(t, ".png", 120, 90)
	partial := filepath.Join(dir, "p002.png")
	go func() {
		fh, _ := os.Create(partial)
		fh.Write(full[:len(full)/3])
		fh.Sync()
		time.Sleep(400 * time.Millisecond)
		fh.Write(full[len(full)/3:])
		fh.Close()
		// Temp names are ignored; an upload renamed into place is not.
		os.WriteFile(filepath.Join(dir, "p003.png.part"), full, 0o644)
		os.Rename(filepath.Join(dir, "p003.png.part"), filepath.Join(dir, "p003.png"))
		os.WriteFile(filepath.Join(dir, "p004.png"), nil, 0o644)
	}()
	seen := map[string]int{}
	for len(seen) < 3 {
		f := nextT(t, s, 10*time.Second)
		seen[f.PartID]++
		switch f.PartID {
		case "p002", "p003":
			if f.Err != nil || f.Original.Cols() != 120 || f.Original.Rows() != 90 {
				t.Fatalf("%s: err %v (inspected before it was complete?)", f.PartID, f.Err)
			}
			if err := w.Ack(f, true); err != nil {
				t.Fatal(err)
			}
		case "p004":
			if !errors.Is(f.Err, ErrEmptyFile) {
				t.Fatalf("zero-byte file: err %v", f.Err)
			}
			if err := w.Ack(f, false); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected part %q", f.PartID)
		}
		f.Close()
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("%s inspected %d times", p, n)
		}
	}
	if got := names(t, filepath.Join(dir, "done")); len(got) != 3 {
		t.Errorf("done/ holds %v", got)
	}
	if got := names(t, filepath.Join(dir, "failed")); len(got) != 1 || got[0] != "p004.png" {
		t.Errorf("failed/ holds %v", got)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("watch folder still holds %v", got)
	}
	if st := s.State(); !st.Connected || st.LastFrameAge <= 0 {
		t.Errorf("state %+v", st)
	}
}

// TestWatchRestart: a file handed out but not acknowledged when the daemon
// stops is inspected again after a restart; acknowledged ones never are, and
// a re-dropped name does not overwrite the first in done/.
func TestWatchRestart(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.png", "b.png"} {
		writeImage(t, filepath.Join(dir, n), 16, 16, 0, 0, 0)
	}
	s1 := openT(t, watchConfig(dir))
	fa := nextT(t, s1, 5*time.Second)
	fb := nextT(t, s1, 5*time.Second)
	if fa.PartID != "a" || fb.PartID != "b" {
		t.Fatalf("order %s, %s", fa.PartID, fb.PartID)
	}
	fa.Ack(true)
	fa.Close()
	fb.Close()
	s1.Close() // "crash" before b's result was acknowledged

	writeImage(t, filepath.Join(dir, "a.png"), 16, 16, 0, 0, 0) // operator re-drops a part
	s2 := openT(t, watchConfig(dir))
	got := map[string]bool{}
	for i := 0; i < 2; i++ {
		f := nextT(t, s2, 5*time.Second)
		got[f.PartID] = true
		if err := f.Ack(true); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if !got["a"] || !got["b"] {
		t.Fatalf("after restart got %v, want a (re-dropped) and b (unacknowledged)", got)
	}
	if d := names(t, filepath.Join(dir, "done")); len(d) != 3 {
		t.Fatalf("done/ holds %v, want a.png, a-1.png, b.png", d)
	}
}

// TestWatchCorruptFileFromTheFuture: a corrupt file whose mtime lies in the
// future (a camera whose clock runs ahead) still becomes an error frame
// once the grace period has passed since it first failed to decode, rather
// than waiting forever.
func TestWatchCorruptFileFromTheFuture(t *testing.T) {
	dir := t.TempDir()
	cfg := watchConfig(dir)
	cfg.Watch.Grace = 300 * time.Millisecond
	s := openT(t, cfg)
	p := filepath.Join(dir, "future.png")
	if err := os.WriteFile(p, []byte("\x89PNG\r\n\x1a\nnot really"), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(24 * time.Hour)
	if err := os.Chtimes(p, future, future); err != nil {
		t.Fatal(err)
	}
	f := nextT(t, s, 5*time.Second)
	defer f.Close()
	if f.Err == nil || f.PartID != "future" {
		t.Fatalf("frame for a corrupt file: part %q err %v, want an error frame", f.PartID, f.Err)
	}
}
