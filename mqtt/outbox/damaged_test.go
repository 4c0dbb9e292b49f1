package outbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeOutbox appends n entries through a real outbox and closes it.
func writeOutbox(t *testing.T, path string, n int) {
	t.Helper()
	o, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	// Concurrent appends share fsyncs (group commit), keeping this fast.
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				id := fmt.Sprintf("r%05d", i)
				if _, err := o.Append(context.Background(), Entry{ID: id, Result: bytes.Repeat([]byte("x"), 150)}); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

// leafPage returns the id of the n-th leaf page and the page size.
func leafPage(t *testing.T, path string, n int) (uint64, int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var leaves []uint64
	_ = db.View(func(tx *bolt.Tx) error {
		for id := 2; ; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return nil
			}
			if p.Type == "leaf" {
				leaves = append(leaves, uint64(id))
			}
		}
	})
	if len(leaves) <= n {
		t.Fatalf("only %d leaf pages", len(leaves))
	}
	return leaves[n], db.Info().PageSize
}

// TestOpenDamagedFile damages a real outbox file the way a bad disk or a
// torn write would and opens it: bbolt itself panics on these files (in a
// goroutine no recover reaches, a crash loop under systemd). Open must
// return an error that names the file, says what to do and how many
// results are still readable; with QuarantineCorrupt it moves the file
// aside and re-queues what is readable, in order.
func TestOpenDamagedFile(t *testing.T) {
	const n = 600
	tests := []struct {
		name   string
		damage func(t *testing.T, path string, b []byte)
		// minReadable: at least this many entries must be re-queued.
		minReadable int
	}{
		{"leaf page header type", func(t *testing.T, path string, b []byte) {
			id, ps := leafPage(t, path, 1)
			binary.LittleEndian.PutUint16(b[int(id)*ps+8:], 0x7)
		}, n / 2},
		{"leaf page header zeroed", func(t *testing.T, path string, b []byte) {
			id, ps := leafPage(t, path, 2)
			clear(b[int(id)*ps : int(id)*ps+16])
		}, n / 2},
		{"both meta pages", func(t *testing.T, path string, b []byte) {
			_, ps := leafPage(t, path, 0)
			b[16] ^= 0xff
			b[ps+16] ^= 0xff
		}, 0},
		{"entry bytes (tree intact)", func(t *testing.T, path string, b []byte) {
			// Damage an encoded entry's version byte: bbolt reads the
			// page fine, the outbox cannot decode the entry.
			i := bytes.Index(b, []byte("r00007"))
			if i < 0 {
				t.Fatal("entry r00007 not found in the file")
			}
			b[i-1-10] = 99 // version byte: 10 header bytes and the ID length before the ID
		}, n - 1},
	}
	for _, tc := range tests {
		for _, quarantine := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/quarantine=%v", tc.name, quarantine), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "outbox.db")
				writeOutbox(t, path, n)
				// The order to keep: append order (seq), read back intact.
				o0, err := Open(path, Options{})
				if err != nil {
					t.Fatal(err)
				}
				orig, _ := o0.Next(0, n)
				o0.Close()
				rank := map[string]int{}
				for i, e := range orig {
					rank[e.ID] = i
				}
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				tc.damage(t, path, b)
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
				var logs bytes.Buffer
				o, err := Open(path, Options{QuarantineCorrupt: quarantine, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
				if !quarantine {
					if err == nil {
						o.Close()
						t.Fatal("opened a damaged outbox without complaint")
					}
					t.Logf("Open: %v", err)
					for _, want := range []string{path, "damaged", "mv " + path, "quarantine_corrupt", "can still be read", "lost"} {
						if !strings.Contains(err.Error(), want) && !(want == "can still be read" && strings.Contains(err.Error(), "nothing can be read")) {
							t.Errorf("error does not say %q: %v", want, err)
						}
					}
					return
				}
				if err != nil {
					t.Fatalf("Open with QuarantineCorrupt: %v", err)
				}
				defer o.Close()
				aside, _ := filepath.Glob(path + ".corrupt-*")
				if len(aside) != 1 {
					t.Errorf("damaged file not moved aside: %v", aside)
				}
				if !strings.Contains(logs.String(), "moved it aside") {
					t.Errorf("no log line about the quarantine: %s", logs.String())
				}
				es, err := o.Next(0, n)
				if err != nil {
					t.Fatal(err)
				}
				if len(es) < tc.minReadable || len(es) > n {
					t.Fatalf("re-queued %d entries, want %d..%d", len(es), tc.minReadable, n)
				}
				prev := -1
				for _, e := range es {
					if rank[e.ID] <= prev {
						t.Fatalf("re-queued out of order: %s (appended %d) after the entry appended %d", e.ID, rank[e.ID], prev)
					}
					prev = rank[e.ID]
				}
				// The new outbox works.
				if _, err := o.Append(context.Background(), Entry{ID: "after", Result: []byte("{}")}); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}
