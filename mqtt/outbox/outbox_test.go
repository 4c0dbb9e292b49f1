package outbox

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func mustAppend(t testing.TB, o *Outbox, id string, fail bool) uint64 {
	t.Helper()
	seq, err := o.Append(context.Background(), Entry{ID: id, Fail: fail, Result: []byte(`{"id":"` + id + `"}`)})
	if err != nil {
		t.Fatalf("Append %s: %v", id, err)
	}
	return seq
}

func pendingIDs(t testing.TB, o *Outbox) []string {
	t.Helper()
	es, err := o.Next(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

// TestFullPolicy: when full, the oldest pass results go first and fail
// results survive until nothing else is left.
func TestFullPolicy(t *testing.T) {
	tests := []struct {
		name     string
		limits   Limits
		appends  string // p = pass, f = fail, in order; IDs are p0, f1, p2...
		want     []string
		wantPass uint64
		wantFail uint64
	}{
		{"under limit keeps all", Limits{MaxEntries: 5}, "pfpf", []string{"p0", "f1", "p2", "f3"}, 0, 0},
		{"oldest pass dropped first", Limits{MaxEntries: 3}, "pfppf", []string{"f1", "p3", "f4"}, 2, 0},
		{"fails kept while passes remain", Limits{MaxEntries: 3}, "ffpfp", []string{"f0", "f1", "f3"}, 2, 0},
		{"all fails: oldest fail dropped", Limits{MaxEntries: 2}, "fff", []string{"f1", "f2"}, 0, 1},
		{"bytes bound", Limits{MaxBytes: 3 * int64(encodedSize(Entry{ID: "p0", Result: []byte(`{"id":"p0"}`)}))}, "pppf", []string{"p1", "p2", "f3"}, 1, 0},
	}
	for _, tc := range tests {
		for _, durable := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/durable=%v", tc.name, durable), func(t *testing.T) {
				o := open(t, durable, Options{Limits: tc.limits})
				for i, c := range tc.appends {
					mustAppend(t, o, fmt.Sprintf("%c%d", c, i), c == 'f')
				}
				got := pendingIDs(t, o)
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("pending %v, want %v", got, tc.want)
				}
				s := o.Stats()
				if s.DroppedPass != tc.wantPass || s.DroppedFail != tc.wantFail || s.Entries != len(tc.want) {
					t.Errorf("stats %+v, want %d pass and %d fail drops, %d entries", s, tc.wantPass, tc.wantFail, len(tc.want))
				}
			})
		}
	}
}

func open(t testing.TB, durable bool, opt Options) *Outbox {
	t.Helper()
	if !durable {
		o := OpenMemory(opt)
		t.Cleanup(func() { _ = o.Close() })
		return o
	}
	o, err := Open(filepath.Join(t.TempDir(), "o.db"), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close() })
	return o
}

// TestMaxAge drops entries older than MaxAge, pass or fail.
func TestMaxAge(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	o := open(t, true, Options{Limits: Limits{MaxAge: time.Minute}, Now: clock})
	mustAppend(t, o, "old-fail", true)
	mustAppend(t, o, "old-pass", false)
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	mustAppend(t, o, "new", false)
	if got := pendingIDs(t, o); fmt.Sprint(got) != "[new]" {
		t.Fatalf("pending %v, want [new]", got)
	}
	if s := o.Stats(); s.Expired != 2 || s.Drops() != 2 {
		t.Fatalf("stats %+v, want 2 expired", s)
	}
}

// TestRecoverInOrder: pending entries survive reopening, in order, and
// acknowledged ones do not come back; sequence numbers keep increasing.
func TestRecoverInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	o, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, mustAppend(t, o, fmt.Sprint("r", i), i == 3))
	}
	o.Ack(seqs[0], seqs[1])
	if _, err := Open(path, Options{}); err == nil {
		t.Fatal("a second Open of a locked outbox succeeded")
	} else if want := "locked by another process"; !contains(err.Error(), want) || !contains(err.Error(), path) {
		t.Fatalf("second Open error %q should name %s and say %q", err, path, want)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	es, err := o2.Next(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 || es[0].ID != "r2" || es[1].ID != "r3" || !es[1].Fail || es[2].ID != "r4" || string(es[2].Result) != `{"id":"r4"}` {
		t.Fatalf("recovered %+v", es)
	}
	if s := mustAppend(t, o2, "r5", false); s <= seqs[4] {
		t.Fatalf("seq after reopen %d not above %d", s, seqs[4])
	}
	if got := pendingIDs(t, o2); fmt.Sprint(got) != "[r2 r3 r4 r5]" {
		t.Fatalf("pending %v", got)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestGroupCommitConcurrent: many concurrent appenders all get distinct,
// durable sequence numbers.
func TestGroupCommitConcurrent(t *testing.T) {
	o := open(t, true, Options{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint64]bool{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				s := mustAppend(t, o, fmt.Sprintf("g%d-%d", g, i), false)
				mu.Lock()
				seen[s] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 400 || o.Stats().Entries != 400 {
		t.Fatalf("%d distinct seqs, %d entries; want 400", len(seen), o.Stats().Entries)
	}
}

// BenchmarkAppend measures Append (durable = fsynced) against the in-memory
// baseline and bbolt without fsync, with 1 and 8 concurrent appenders.
func BenchmarkAppend(b *testing.B) {
	payload := make([]byte, 600) // a typical result JSON without features
	for _, mode := range []string{"memory", "nosync", "durable"} {
		for _, par := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/parallelism=%d", mode, par), func(b *testing.B) {
				var o *Outbox
				switch mode {
				case "memory":
					o = OpenMemory(Options{})
				default:
					var err error
					o, err = Open(filepath.Join(b.TempDir(), "o.db"), Options{NoSync: mode == "nosync"})
					if err != nil {
						b.Fatal(err)
					}
				}
				defer o.Close()
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						s, err := o.Append(context.Background(), Entry{ID: "x", Result: payload})
						if err != nil {
							b.Error(err)
							return
						}
						o.Ack(s)
					}
				})
			})
		}
	}
}
