package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// migration is one schema step. Steps run in order, each in its own
// transaction together with its schema_version row, so a database is always
// at exactly one version; a step's statements are idempotent (IF NOT
// EXISTS) so a step interrupted before its commit simply runs again.
type migration struct {
	version     int
	description string
	sqlite, pg  []string
}

// migrations is the schema history. Append only: never edit a released step.
var migrations = []migration{
	{
		version:     1,
		description: "results and labels",
		sqlite: []string{
			// Times are unix microseconds (UTC); JSON columns are TEXT.
			`CREATE TABLE IF NOT EXISTS results (
  id TEXT PRIMARY KEY,
  station TEXT NOT NULL,
  seq INTEGER NOT NULL,
  part_id TEXT NOT NULL,
  captured_at INTEGER,
  decided_at INTEGER NOT NULL,
  verdict TEXT NOT NULL,
  warn INTEGER NOT NULL,
  score REAL,
  threshold REAL NOT NULL,
  reason_code TEXT NOT NULL,
  reason TEXT NOT NULL,
  bundle TEXT NOT NULL,
  map_max TEXT,
  features TEXT,
  contributions TEXT,
  audit_path TEXT,
  kind TEXT NOT NULL DEFAULT 'production',
  label TEXT,
  defect_type TEXT,
  labelled_by TEXT,
  labelled_at INTEGER
)`,
			`CREATE INDEX IF NOT EXISTS results_decided ON results (decided_at, id)`,
			`CREATE INDEX IF NOT EXISTS results_part ON results (part_id, decided_at)`,
			`CREATE INDEX IF NOT EXISTS results_labelled ON results (label, decided_at) WHERE label IS NOT NULL`,
			`CREATE TABLE IF NOT EXISTS labels (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  result_id TEXT NOT NULL,
  label TEXT NOT NULL,
  defect_type TEXT NOT NULL,
  note TEXT NOT NULL,
  who TEXT NOT NULL,
  labelled_at INTEGER NOT NULL
)`,
			`CREATE INDEX IF NOT EXISTS labels_result ON labels (result_id, seq)`,
		},
		pg: []string{
			// The primary key holds decided_at because a TimescaleDB
			// hypertable partitioned by time needs every unique index to;
			// IDs are unique by construction (ULIDs) and a re-sent result
			// has the same decided_at, so ON CONFLICT still catches it.
			`CREATE TABLE IF NOT EXISTS results (
  id TEXT NOT NULL,
  station TEXT NOT NULL,
  seq BIGINT NOT NULL,
  part_id TEXT NOT NULL,
  captured_at TIMESTAMPTZ,
  decided_at TIMESTAMPTZ NOT NULL,
  verdict TEXT NOT NULL,
  warn BOOLEAN NOT NULL,
  score DOUBLE PRECISION,
  threshold DOUBLE PRECISION NOT NULL,
  reason_code TEXT NOT NULL,
  reason TEXT NOT NULL,
  bundle TEXT NOT NULL,
  map_max JSONB,
  features JSONB,
  contributions JSONB,
  audit_path TEXT,
  kind TEXT NOT NULL DEFAULT 'production',
  label TEXT,
  defect_type TEXT,
  labelled_by TEXT,
  labelled_at TIMESTAMPTZ,
  PRIMARY KEY (id, decided_at)
)`,
			`CREATE INDEX IF NOT EXISTS results_decided ON results (decided_at, id)`,
			`CREATE INDEX IF NOT EXISTS results_id ON results (id)`,
			`CREATE INDEX IF NOT EXISTS results_part ON results (part_id, decided_at)`,
			`CREATE INDEX IF NOT EXISTS results_labelled ON results (label, decided_at) WHERE label IS NOT NULL`,
			`CREATE TABLE IF NOT EXISTS labels (
  seq BIGSERIAL PRIMARY KEY,
  result_id TEXT NOT NULL,
  label TEXT NOT NULL,
  defect_type TEXT NOT NULL,
  note TEXT NOT NULL,
  who TEXT NOT NULL,
  labelled_at TIMESTAMPTZ NOT NULL
)`,
			`CREATE INDEX IF NOT EXISTS labels_result ON labels (result_id, seq)`,
		},
	},
	// Version 2 is changes.go's audit trail of configuration changes
	// (who set which threshold when, from the console or elsewhere).
	migrationConfigChanges,
}

// SchemaVersion is the newest schema this build knows.
var SchemaVersion = migrations[len(migrations)-1].version

// ErrNewerSchema is returned (wrapped, with both versions) for a database
// written by a newer segad: this build refuses to touch it.
var ErrNewerSchema = errors.New("history database has a newer schema")

const createVersionSQL = `CREATE TABLE IF NOT EXISTS schema_version (
  version INTEGER PRIMARY KEY,
  description TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`

// version reads the schema version (0 for an empty database).
func (d *database) version(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil {
		return 0, err
	}
	return int(v.Int64), nil
}

func (d *database) newer(v int) error {
	return fmt.Errorf("%w: %s is at schema version %d, this segad knows up to %d: upgrade segad, or point history at another database",
		ErrNewerSchema, d.target, v, SchemaVersion)
}

// checkVersion is the read-only open's check: the schema must be exactly
// this build's (an older one is migrated by the daemon or `segad results
// label`, which open it for writing).
func (d *database) checkVersion(ctx context.Context) error {
	if err := d.looksLikeHistory(ctx, d.r, true); err != nil {
		return err
	}
	v, err := d.version(ctx, d.r)
	if err != nil {
		return fmt.Errorf("history: %s: read schema version: %w", d.target, err)
	}
	switch {
	case v > SchemaVersion:
		return d.newer(v)
	case v < SchemaVersion:
		return fmt.Errorf("history: %s is at schema version %d, this segad needs %d: open it once for writing (segad run, or segad results label) to migrate it",
			d.target, v, SchemaVersion)
	}
	return nil
}

// looksLikeHistory refuses a database that has tables but no
// schema_version: someone else's database, never to be migrated into.
func (d *database) looksLikeHistory(ctx context.Context, db *sql.DB, readOnly bool) error {
	var tables, ours int
	var err error
	if d.pg {
		err = db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(*) FILTER (WHERE table_name = 'schema_version')
 FROM information_schema.tables WHERE table_schema = current_schema()`).Scan(&tables, &ours)
	} else {
		err = db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(name = 'schema_version'), 0)
 FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).Scan(&tables, &ours)
	}
	if err != nil {
		return fmt.Errorf("history: %s: %w", d.target, err)
	}
	if tables > 0 && ours == 0 {
		return fmt.Errorf("history: %s: %w: it has %d tables but no schema_version; point history at a new file or database",
			d.target, errNotHistory, tables)
	}
	if tables == 0 && readOnly {
		return fmt.Errorf("history: %s: %w: it is empty", d.target, errNotHistory)
	}
	return nil
}

// migrate brings the schema to SchemaVersion. Concurrent migrators (two
// stations starting at once on one PostgreSQL) serialise on a transaction
// lock and re-read the version inside it.
func (d *database) migrate(ctx context.Context, log *slog.Logger) error {
	if err := d.looksLikeHistory(ctx, d.w, false); err != nil {
		return err
	}
	if _, err := d.w.ExecContext(ctx, createVersionSQL); err != nil {
		return fmt.Errorf("history: %s: create schema_version: %w", d.target, err)
	}
	for _, m := range migrations {
		if err := d.step(ctx, m); err != nil {
			return err
		}
	}
	if d.pg {
		d.hypertable(ctx, log)
	}
	return nil
}

func (d *database) step(ctx context.Context, m migration) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("history: %s: migrate to version %d: %w", d.target, m.version, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if d.pg {
		// One migrator at a time per database (SQLite: BEGIN IMMEDIATE).
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7319001)`); err != nil {
			return fmt.Errorf("history: %s: migration lock: %w", d.target, err)
		}
	}
	v, err := d.version(ctx, tx)
	if err != nil {
		return fmt.Errorf("history: %s: read schema version: %w", d.target, err)
	}
	if v > SchemaVersion {
		return d.newer(v)
	}
	if v >= m.version {
		return nil
	}
	stmts := m.sqlite
	if d.pg {
		stmts = m.pg
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("history: %s: migrate to version %d (%s): %w", d.target, m.version, firstLine(s), err)
		}
	}
	if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)`),
		m.version, m.description, nowText()); err != nil {
		return fmt.Errorf("history: %s: record schema version %d: %w", d.target, m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("history: %s: commit migration to version %d: %w", d.target, m.version, err)
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// hypertable makes results a TimescaleDB hypertable when the extension is
// installed on the server, and says in a log line which it is. Without it
// results stays a plain table: everything works the same, retention just
// deletes rows instead of dropping chunks.
func (d *database) hypertable(ctx context.Context, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	var avail bool
	if err := d.w.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')`).Scan(&avail); err != nil || !avail {
		log.Info("history: TimescaleDB is not installed on the server; results is a plain PostgreSQL table", "target", d.target)
		return
	}
	var already bool
	err := d.w.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')`).Scan(&already)
	if err == nil && !already {
		_, err = d.w.ExecContext(ctx, `CREATE EXTENSION IF NOT EXISTS timescaledb`)
	}
	if err == nil {
		_, err = d.w.ExecContext(ctx, `SELECT create_hypertable('results', 'decided_at', if_not_exists => TRUE, migrate_data => TRUE)`)
	}
	if err != nil {
		log.Info("history: TimescaleDB is installed but results could not be made a hypertable; it stays a plain table", "target", d.target, "err", err)
		return
	}
	log.Info("history: results is a TimescaleDB hypertable", "target", d.target)
}
