package history

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	// Drivers: SQLite (cgo, the SQLite amalgamation) and PostgreSQL (pgx).
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/mattn/go-sqlite3"
)

// database is an open history database of either backend. SQL is written
// once with ? placeholders; q() rebinds them for PostgreSQL.
type database struct {
	pg bool
	// w is the writer pool (one connection for SQLite: one writer), r the
	// readers (SQLite: read-only connections; PostgreSQL: the same pool).
	w, r   *sql.DB
	target string
}

// row is one results row as written.
type row struct {
	ID, Station           string
	Seq                   int64
	PartID                string
	CapturedAt, DecidedAt time.Time
	Verdict               string
	Warn                  bool
	Score                 *float64
	Threshold             float64
	ReasonCode, Reason    string
	Bundle                string
	MapMax, Features      string // JSON or ""
	Contributions         string // JSON or ""
	AuditPath             string
	Kind                  string
}

// sqliteDSN builds a file: URI for mattn/go-sqlite3 with the given query
// parameters. The path is escaped so '?', '#' and '%' in a file name stay
// part of it.
func sqliteDSN(path string, params string) string {
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + p + "?" + params
}

// openDatabase opens and (unless read-only) migrates the database.
func openDatabase(ctx context.Context, cfg Config, log *slog.Logger) (*database, error) {
	if cfg.Backend == BackendPostgres {
		return openPostgres(ctx, cfg, log)
	}
	return openSQLite(ctx, cfg)
}

func openSQLite(ctx context.Context, cfg Config) (*database, error) {
	d := &database{target: cfg.Path}
	busy := strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)
	if cfg.ReadOnly {
		if _, err := os.Stat(cfg.Path); err != nil {
			return nil, fmt.Errorf("history: open %s: %w", cfg.Path, err)
		}
		// mode=ro: this process never writes; WAL lets it read while the
		// daemon writes.
		db, err := sql.Open("sqlite3", sqliteDSN(cfg.Path, "mode=ro&_busy_timeout="+busy+"&_query_only=1"))
		if err != nil {
			return nil, fmt.Errorf("history: open %s: %w", cfg.Path, err)
		}
		db.SetMaxOpenConns(4)
		d.w, d.r = db, db
		if err := d.checkVersion(ctx); err != nil {
			db.Close()
			return nil, err
		}
		return d, nil
	}
	if dir := filepath.Dir(cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("history: create folder for %s: %w", cfg.Path, err)
		}
	}
	// WAL: readers never block the writer; synchronous=NORMAL: a crash of
	// the process loses nothing committed, a power cut at most the last
	// transactions, never consistency. _txlock=immediate takes the write
	// lock at BEGIN, so busy waits happen there, not mid-transaction.
	w, err := sql.Open("sqlite3", sqliteDSN(cfg.Path,
		"_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout="+busy+"&_txlock=immediate&_foreign_keys=0"))
	if err != nil {
		return nil, fmt.Errorf("history: open %s: %w", cfg.Path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	d.w = w
	if err := d.migrate(ctx, nil); err != nil {
		w.Close()
		return nil, diagnose(cfg.Path, err)
	}
	if cfg.maxPageCount > 0 {
		if _, err := w.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count=%d", cfg.maxPageCount)); err != nil {
			w.Close()
			return nil, err
		}
	}
	r, err := sql.Open("sqlite3", sqliteDSN(cfg.Path, "mode=ro&_busy_timeout="+busy+"&_query_only=1"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("history: open %s for reading: %w", cfg.Path, err)
	}
	r.SetMaxOpenConns(4)
	d.r = r
	return d, nil
}

func openPostgres(ctx context.Context, cfg Config, log *slog.Logger) (*database, error) {
	db, err := sql.Open("pgx", cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("history: open %s: %w", redactURL(cfg.URL), err)
	}
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	d := &database{pg: true, w: db, r: db, target: redactURL(cfg.URL)}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("history: connect to %s: %w", d.target, err)
	}
	if cfg.ReadOnly {
		if err := d.checkVersion(ctx); err != nil {
			db.Close()
			return nil, err
		}
		return d, nil
	}
	if err := d.migrate(ctx, log); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

// diagnose adds the likely cause to a SQLite error about opening or
// writing: SQLite's own message ("unable to open database file: no such
// file or directory", "attempt to write a readonly database") does not say
// that the folder or the file is not writable.
func diagnose(path string, err error) error {
	switch classify(err) {
	case "read-only", "cannot open the database file (permissions or read-only folder)":
	default:
		return err
	}
	const wOK = 2 // access(2) W_OK
	dir := filepath.Dir(path)
	if syscall.Access(dir, wOK) != nil {
		return fmt.Errorf("%w (folder %s is not writable: SQLite creates %s-wal and -shm beside the database)", err, dir, filepath.Base(path))
	}
	if _, serr := os.Stat(path); serr == nil && syscall.Access(path, wOK) != nil {
		return fmt.Errorf("%w (file %s is read-only)", err, path)
	}
	return err
}

// redactURL hides the password of a connection URL for logs and errors.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

func (d *database) close() error {
	err := d.w.Close()
	if d.r != d.w {
		if rerr := d.r.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

// q rebinds ? placeholders to $1, $2... for PostgreSQL. Statements here
// never hold a literal '?'.
func (d *database) q(s string) string {
	if !d.pg {
		return s
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// t converts a time for the database: SQLite keeps unix microseconds (an
// INTEGER sorts and compares exactly), PostgreSQL a timestamptz (also
// microseconds). A zero time is NULL.
func (d *database) t(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	if d.pg {
		return t.UTC().Truncate(time.Microsecond)
	}
	return t.UnixMicro()
}

// timeCol scans either representation back to a UTC time.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMicro(x).UTC()
	case time.Time:
		*c.t = x.UTC()
	default:
		return fmt.Errorf("history: time column holds %T", v)
	}
	return nil
}

var _ sql.Scanner = timeCol{}
var _ driver.Valuer = (*nullString)(nil)

// nullString writes "" as NULL.
type nullString string

func (s nullString) Value() (driver.Value, error) {
	if s == "" {
		return nil, nil
	}
	return string(s), nil
}

const insertSQL = `INSERT INTO results (id, station, seq, part_id, captured_at, decided_at, verdict, warn, score,
 threshold, reason_code, reason, bundle, map_max, features, contributions, audit_path, kind)
 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`

// insert writes rows in one transaction and returns how many were new; a
// result already present (same ID) is left as it is, so a retried batch is
// harmless.
func (d *database) insert(ctx context.Context, rows []row) (int, error) {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	st, err := tx.PrepareContext(ctx, d.q(insertSQL))
	if err != nil {
		return 0, err
	}
	defer st.Close()
	added := 0
	for i := range rows {
		r := &rows[i]
		var score any
		if r.Score != nil {
			score = *r.Score
		}
		res, err := st.ExecContext(ctx, r.ID, r.Station, r.Seq, r.PartID, d.t(r.CapturedAt), d.t(r.DecidedAt),
			r.Verdict, r.Warn, score, r.Threshold, r.ReasonCode, r.Reason, r.Bundle, nullString(r.MapMax),
			nullString(r.Features), nullString(r.Contributions), nullString(r.AuditPath), r.Kind)
		if err != nil {
			return 0, err
		}
		if n, err := res.RowsAffected(); err == nil {
			added += int(n)
		}
	}
	return added, tx.Commit()
}

// pruneChunk bounds one delete transaction, so the writer lock is held for
// milliseconds and readers never wait long.
const pruneChunk = 2000

// prune deletes the oldest unlabelled results beyond the age, row and byte
// bounds and passes their IDs to report after each committed chunk.
func (d *database) prune(ctx context.Context, cfg Config, now time.Time, report func([]string)) (int, error) {
	total := 0
	del := func(extra string, args []any, limit int) (int, error) {
		n := 0
		for limit > 0 {
			chunk := min(limit, pruneChunk)
			a := append(append([]any{}, args...), chunk)
			rows, err := d.w.QueryContext(ctx, d.q(`DELETE FROM results WHERE id IN (SELECT id FROM results
 WHERE label IS NULL`+extra+` ORDER BY decided_at, id LIMIT ?) RETURNING id`), a...)
			if err != nil {
				return n, err
			}
			var ids []string
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return n, err
				}
				ids = append(ids, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return n, err
			}
			if len(ids) > 0 {
				report(ids)
			}
			n += len(ids)
			limit -= chunk
			if len(ids) < chunk {
				break
			}
		}
		return n, nil
	}
	if cfg.MaxAge > 0 {
		n, err := del(" AND decided_at < ?", []any{d.t(now.Add(-cfg.MaxAge))}, 1<<62)
		total += n
		if err != nil {
			return total, fmt.Errorf("history: retention by age: %w", err)
		}
	}
	var count int64
	if cfg.MaxRows > 0 || cfg.MaxBytes > 0 {
		if err := d.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM results`).Scan(&count); err != nil {
			return total, fmt.Errorf("history: retention: count: %w", err)
		}
	}
	if cfg.MaxRows > 0 && count > cfg.MaxRows {
		n, err := del("", nil, int(count-cfg.MaxRows))
		total += n
		count -= int64(n)
		if err != nil {
			return total, fmt.Errorf("history: retention by rows: %w", err)
		}
	}
	if cfg.MaxBytes > 0 && count > 0 {
		size, err := d.size(ctx)
		if err != nil {
			return total, fmt.Errorf("history: retention: size: %w", err)
		}
		if size > cfg.MaxBytes {
			// Delete the share of rows that brings the size under the
			// bound (plus 1% slack so it does not run every interval),
			// estimated from the average row; one pass per run, because
			// PostgreSQL's size shrinks only after vacuum.
			avg := float64(size) / float64(count)
			n0 := int((float64(size-cfg.MaxBytes)+0.01*float64(cfg.MaxBytes))/avg) + 1
			n, err := del("", nil, n0)
			total += n
			if err != nil {
				return total, fmt.Errorf("history: retention by bytes: %w", err)
			}
		}
	}
	return total, nil
}

// size is the bytes the history uses: SQLite's pages in use (the file
// less its free list: freed pages are reused before the file grows);
// PostgreSQL's tables with indexes and TOAST (including dead rows until
// autovacuum reclaims them).
func (d *database) size(ctx context.Context) (int64, error) {
	if d.pg {
		var n int64
		err := d.w.QueryRowContext(ctx, `SELECT pg_total_relation_size('results') + pg_total_relation_size('labels')`).Scan(&n)
		return n, err
	}
	var pages, free, psize int64
	if err := d.w.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return 0, err
	}
	if err := d.w.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil {
		return 0, err
	}
	if err := d.w.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&psize); err != nil {
		return 0, err
	}
	return (pages - free) * psize, nil
}

// errNotHistory marks a database that is not a history database.
var errNotHistory = errors.New("not a segad history database")
