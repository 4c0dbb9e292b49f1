package history

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestConfigChanges: the audit trail of configuration changes on a real
// SQLite file and a real PostgreSQL: newest first, every field as written,
// bad input refused with the field named, a read-only store refusing, and
// a version-1 database migrated without losing its results.
func TestConfigChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		t.Run("RoundTrip", func(t *testing.T) { testChangesRoundTrip(t, b) })
		t.Run("BadInput", func(t *testing.T) { testChangesBadInput(t, b) })
		t.Run("MigrateFromV1", func(t *testing.T) { testChangesMigrate(t, b) })
	})
}

func testChangesRoundTrip(t *testing.T, b backend) {
	ctx := context.Background()
	s := open(t, b.cfg(t))
	base := time.Date(2026, 12, 4, 17, 0, 0, 123456789, time.UTC)
	in := []ConfigChange{
		{At: base, User: "anna", Source: "console", Key: "segad.threshold", Old: "0.0", New: "1.25"},
		{At: base.Add(time.Second), User: "anna", Source: "console", Key: "segad.warn_threshold", Old: "", New: "0.5"},
		{At: base.Add(2 * time.Second), User: "cli:root", Source: "cli", Key: "segad.threshold", Old: "1.25", New: "1.5"},
		{At: base.Add(2 * time.Second), User: "bo \u00e9", Source: "console", Key: "segad.bundle", Old: "a", New: "b"},
	}
	for _, c := range in {
		if err := s.RecordChange(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Changes(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("%d changes, want %d", len(got), len(in))
	}
	// Newest first; the same instant in insertion order reversed.
	for i, want := range []ConfigChange{in[3], in[2], in[1], in[0]} {
		want.At = want.At.Truncate(time.Microsecond)
		if !got[i].At.Equal(want.At) || got[i].User != want.User || got[i].Source != want.Source ||
			got[i].Key != want.Key || got[i].Old != want.Old || got[i].New != want.New {
			t.Errorf("change %d: %+v, want %+v", i, got[i], want)
		}
	}
	if two, err := s.Changes(ctx, 2); err != nil || len(two) != 2 || two[0].Key != "segad.bundle" {
		t.Errorf("limit 2: %+v, %v", two, err)
	}
	before := time.Now().Add(-time.Second)
	if err := s.RecordChange(ctx, ConfigChange{User: "anna", Source: "console", Key: "segad.threshold", Old: "1.5", New: "2"}); err != nil {
		t.Fatal(err)
	}
	if last, err := s.Changes(ctx, 1); err != nil || last[0].New != "2" || last[0].At.Before(before) {
		t.Errorf("zero time is not now: %+v, %v", last, err)
	}
}

func testChangesBadInput(t *testing.T, b backend) {
	ctx := context.Background()
	cfg := b.cfg(t)
	s := open(t, cfg)
	ok := ConfigChange{User: "anna", Source: "console", Key: "segad.threshold", Old: "0", New: "1"}
	for _, tc := range []struct {
		name  string
		edit  func(c *ConfigChange)
		param string
	}{
		{"no user", func(c *ConfigChange) { c.User = " " }, "user"},
		{"no key", func(c *ConfigChange) { c.Key = "" }, "key"},
		{"newline in user", func(c *ConfigChange) { c.User = "anna\nadmin" }, "user"},
		{"NUL in new", func(c *ConfigChange) { c.New = "1\x00" }, "new"},
		{"huge old", func(c *ConfigChange) { c.Old = strings.Repeat("9", MaxChangeValue+1) }, "old"},
		{"invalid UTF-8 source", func(c *ConfigChange) { c.Source = "\xff" }, "source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := s.RecordChange(ctx, c)
			var pe *ParamError
			if !errors.As(err, &pe) || pe.Param != tc.param {
				t.Fatalf("error %v, want a ParamError on %s", err, tc.param)
			}
		})
	}
	if got, err := s.Changes(ctx, 10); err != nil || len(got) != 0 {
		t.Errorf("refused changes were stored: %+v, %v", got, err)
	}
	for _, lim := range []int{-1, MaxChanges + 1} {
		if _, err := s.Changes(ctx, lim); err == nil {
			t.Errorf("limit %d accepted", lim)
		}
	}
	if err := s.RecordChange(ctx, ok); err != nil {
		t.Fatal(err)
	}
	ro := cfg
	ro.ReadOnly = true
	r := open(t, ro)
	if err := r.RecordChange(ctx, ok); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only store: %v", err)
	}
	if got, err := r.Changes(ctx, 10); err != nil || len(got) != 1 {
		t.Errorf("read-only Changes: %+v, %v", got, err)
	}
}

// testChangesMigrate turns a fresh database back into a version-1 one (no
// config_changes, no version-2 row) and checks that opening it migrates.
func testChangesMigrate(t *testing.T, b backend) {
	ctx := context.Background()
	cfg := b.cfg(t)
	s := open(t, cfg)
	publishN(t, s, 0, 3)
	flush(t, s)
	if _, err := s.db.w.Exec(`DROP TABLE config_changes`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.w.Exec(`DELETE FROM schema_version WHERE version >= 2`); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	ro := cfg
	ro.ReadOnly = true
	if _, err := Open(ctx, ro); err == nil || !strings.Contains(err.Error(), "open it once for writing") {
		t.Fatalf("read-only open of a version-1 database: %v", err)
	}
	s2 := open(t, cfg)
	if err := s2.RecordChange(ctx, ConfigChange{User: "anna", Source: "console", Key: "segad.threshold", New: "1"}); err != nil {
		t.Fatalf("after migration: %v", err)
	}
	if p, err := s2.Query(ctx, Query{}); err != nil || len(p.Results) != 3 {
		t.Fatalf("results after migration: %d, %v", len(p.Results), err)
	}
	var v int
	if err := s2.db.w.QueryRow(`SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil || v != SchemaVersion {
		t.Errorf("schema version %d (%v), want %d", v, err, SchemaVersion)
	}
}
