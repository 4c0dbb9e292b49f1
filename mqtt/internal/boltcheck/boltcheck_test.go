package boltcheck

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// makeDB writes a real bbolt file the way the outbox does (NoFreelistSync):
// n entries in bucket "outbox", some large (overflow pages), half of them
// deleted again (freed pages), and a small second bucket (inline).
func makeDB(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	for batch := 0; batch < 4; batch++ {
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("outbox"))
			if err != nil {
				return err
			}
			if _, err := tx.CreateBucketIfNotExists([]byte("small")); err != nil {
				return err
			}
			for i := batch * n / 4; i < (batch+1)*n/4; i++ {
				v := []byte(strings.Repeat("v", 100))
				if i%50 == 0 {
					v = []byte(strings.Repeat("L", 10000))
				}
				if err := b.Put(binary.BigEndian.AppendUint64(nil, uint64(i)), v); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("outbox"))
		for i := 0; i < n/2; i += 2 {
			if err := b.Delete(binary.BigEndian.AppendUint64(nil, uint64(i))); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// leafPages returns the ids of the pages of bucket "outbox" by walking
// with bbolt itself (on the intact file).
func pagesOf(t *testing.T, path string) (leaves, branches []uint64, pageSize int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pageSize = db.Info().PageSize
	err = db.View(func(tx *bolt.Tx) error {
		for id := 2; ; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return nil
			}
			switch p.Type {
			case "leaf":
				leaves = append(leaves, uint64(id))
			case "branch":
				branches = append(branches, uint64(id))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return leaves, branches, pageSize
}

func TestCheck(t *testing.T) {
	const n = 4000
	intact := makeDB(t, n)
	leaves, branches, ps := pagesOf(t, intact)
	if len(leaves) < 3 || len(branches) < 1 {
		t.Fatalf("test file too small: %d leaves, %d branches", len(leaves), len(branches))
	}
	live := n - n/4
	tests := []struct {
		name    string
		damage  func(b []byte)
		wantErr string // "" means intact
		minLeft int    // salvage must find at least this many
	}{
		{"intact", func([]byte) {}, "", live},
		{"meta page 0 damaged (bbolt uses meta 1)", func(b []byte) { b[16] ^= 0xff }, "", live},
		{"both meta pages damaged", func(b []byte) { b[16] ^= 0xff; b[ps+16] ^= 0xff }, "no valid meta page", 0},
		{"leaf page type", func(b []byte) { put16(b, int(leaves[1])*ps+8, 0x7) }, "not a branch or leaf page", live / 2},
		{"leaf page id", func(b []byte) { put64(b, int(leaves[2])*ps, 999999) }, "header names page", live / 2},
		{"leaf element count", func(b []byte) { put16(b, int(leaves[1])*ps+10, 0xffff) }, "do not fit", live / 2},
		{"leaf element offset", func(b []byte) { put32(b, int(leaves[1])*ps+16+4, 1<<30) }, "points outside the page", live / 2},
		{"branch child out of range", func(b []byte) { put64(b, int(branches[0])*ps+16+8, 1<<40) }, "out of bounds", 0},
		{"page header zeroed", func(b []byte) { clear(b[int(leaves[0])*ps : int(leaves[0])*ps+16]) }, "", live / 2},
		{"truncated file", nil, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(intact)
			if err != nil {
				t.Fatal(err)
			}
			if tc.damage == nil {
				b = b[:len(b)/2]
			} else {
				tc.damage(b)
			}
			path := filepath.Join(t.TempDir(), "x.db")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := Check(path)
			damaged := tc.name != "intact" && !strings.HasPrefix(tc.name, "meta page 0")
			if !damaged {
				if err != nil || !r.OK() {
					t.Fatalf("Check on a file bbolt reads: %v (%v)", err, r.Problems)
				}
			} else {
				if err == nil || !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Check on a damaged file: err %v, want ErrCorrupt", err)
				}
				if tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not say %q", err, tc.wantErr)
				}
			}
			got, err := Salvage(path, []byte("outbox"), func(k, v []byte) {
				if len(k) != 8 {
					t.Errorf("salvaged key of %d bytes", len(k))
				}
			})
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			if got < tc.minLeft || got > n { // an older meta page may show entries deleted since
				t.Errorf("salvaged %d entries, want %d..%d", got, tc.minLeft, n)
			}
		})
	}
}

func TestCheckMissingAndEmpty(t *testing.T) {
	dir := t.TempDir()
	if _, err := Check(filepath.Join(dir, "none.db")); err != nil {
		t.Errorf("missing file: %v", err)
	}
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(empty); err != nil {
		t.Errorf("empty file: %v", err)
	}
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("junk", 5000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(junk); !errors.Is(err, ErrCorrupt) {
		t.Errorf("junk file: %v, want ErrCorrupt", err)
	}
}

func put16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func put64(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }
