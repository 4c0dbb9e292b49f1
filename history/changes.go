package history

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// ConfigChange is one change of a configuration key made through segad
// (the console's threshold Apply, a CLI): who, when, where from, and the
// key's text before and after. It is the audit trail beside the log line.
type ConfigChange struct {
	// At is when the change was written (zero: now).
	At time.Time `json:"at"`
	// User is who made it (a console user name, or "cli:<os user>").
	User string `json:"user"`
	// Source is where it came from ("console", "cli", ...).
	Source string `json:"source"`
	// Key is the dotted config key ("segad.threshold").
	Key string `json:"key"`
	// Old and New are the key's text in the file ("" when absent).
	Old string `json:"old"`
	New string `json:"new"`
}

// Bounds of a ConfigChange's fields.
const (
	// MaxChangeField bounds User, Source and Key.
	MaxChangeField = 256
	// MaxChangeValue bounds Old and New.
	MaxChangeValue = 4096
	// MaxChanges is the most changes Changes returns at once.
	MaxChanges = 10000
)

// migrationConfigChanges adds the config_changes table.
var migrationConfigChanges = migration{
	version:     2,
	description: "config changes",
	sqlite: []string{
		`CREATE TABLE IF NOT EXISTS config_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  changed_at INTEGER NOT NULL,
  who TEXT NOT NULL,
  source TEXT NOT NULL,
  key TEXT NOT NULL,
  old_value TEXT NOT NULL,
  new_value TEXT NOT NULL
)`,
		`CREATE INDEX IF NOT EXISTS config_changes_at ON config_changes (changed_at, seq)`,
	},
	pg: []string{
		`CREATE TABLE IF NOT EXISTS config_changes (
  seq BIGSERIAL PRIMARY KEY,
  changed_at TIMESTAMPTZ NOT NULL,
  who TEXT NOT NULL,
  source TEXT NOT NULL,
  key TEXT NOT NULL,
  old_value TEXT NOT NULL,
  new_value TEXT NOT NULL
)`,
		`CREATE INDEX IF NOT EXISTS config_changes_at ON config_changes (changed_at, seq)`,
	},
}

// Validate checks a change before it is stored: who and which key are
// required, every field bounded and printable (they end up in CSV, logs
// and the console).
func (c *ConfigChange) Validate() error {
	if strings.TrimSpace(c.User) == "" {
		return paramErr("user", c.User, "required: say who changed the configuration")
	}
	if strings.TrimSpace(c.Key) == "" {
		return paramErr("key", c.Key, "required: the changed key, like segad.threshold")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"user", c.User, MaxChangeField}, {"source", c.Source, MaxChangeField}, {"key", c.Key, MaxChangeField},
		{"old", c.Old, MaxChangeValue}, {"new", c.New, MaxChangeValue}} {
		if err := printable(f.name, f.v, f.max); err != nil {
			return err
		}
	}
	return nil
}

// RecordChange stores a configuration change in the audit trail (written
// at once, not through the results queue: a change is rare and must not be
// dropped with results when the queue is full).
func (s *Store) RecordChange(ctx context.Context, c ConfigChange) error {
	if s.cfg.ReadOnly {
		return ErrReadOnly
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if c.At.IsZero() {
		c.At = time.Now()
	}
	c.At = c.At.UTC().Truncate(time.Microsecond)
	db, err := s.current()
	if err != nil {
		return err
	}
	if _, err := db.w.ExecContext(ctx, db.q(`INSERT INTO config_changes (changed_at, who, source, key, old_value, new_value) VALUES (?, ?, ?, ?, ?, ?)`),
		db.t(c.At), clean(c.User), clean(c.Source), clean(c.Key), clean(c.Old), clean(c.New)); err != nil {
		return fmt.Errorf("history: %s: record config change of %s: %w", s.target(), c.Key, err)
	}
	return nil
}

// Changes returns the newest configuration changes first, at most limit
// (1..MaxChanges; 0 means 100).
func (s *Store) Changes(ctx context.Context, limit int) ([]ConfigChange, error) {
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > MaxChanges {
		return nil, paramErr("limit", fmt.Sprint(limit), "out of range [1, %d]", MaxChanges)
	}
	db, err := s.current()
	if err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT changed_at, who, source, key, old_value, new_value FROM config_changes ORDER BY changed_at DESC, seq DESC LIMIT ?`), limit)
	if err != nil {
		return nil, fmt.Errorf("history: %s: read config changes: %w", s.target(), err)
	}
	defer rows.Close()
	var out []ConfigChange
	for rows.Next() {
		var c ConfigChange
		if err := rows.Scan(timeCol{&c.At}, &c.User, &c.Source, &c.Key, &c.Old, &c.New); err != nil {
			return nil, fmt.Errorf("history: %s: read config changes: %w", s.target(), err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history: %s: read config changes: %w", s.target(), err)
	}
	return out, nil
}
