// Package history records every result (pass, fail, error) in a queryable
// store: an embedded SQLite database by default, or PostgreSQL for a plant
// whose stations share one history. It is one of the daemon's outputs, a
// peer of MQTT and the PLC servers behind the same three methods (Publish,
// Name, Close), and it must never slow them down: Publish only puts the
// result on a bounded queue and returns; a background writer commits
// batches in transactions. When the store is slow, full, read-only or
// broken, results that do not fit in the queue are dropped and counted, and
// Health says why; inspection and the other outputs go on (the MQTT outbox
// stays the delivery guarantee).
//
// The same Store answers queries (filters, cursor pagination, export),
// records labels (good or bad, with a history), and applies retention by
// age, rows and bytes, keeping labelled results. See docs/history.md.
package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segad-edge/segad-edge/result"
)

// Backends.
const (
	BackendSQLite   = "sqlite"
	BackendPostgres = "postgres"
)

// Defaults and ranges of Config; docs/history.md lists them as config keys.
const (
	DefaultQueueSize     = 10000
	DefaultBatchSize     = 100
	DefaultBatchInterval = 200 * time.Millisecond
	DefaultMaxAge        = 90 * 24 * time.Hour
	DefaultMaxRows       = 2_000_000
	DefaultMaxBytes      = 2 << 30
	DefaultPruneInterval = time.Minute
	DefaultCloseTimeout  = 5 * time.Second
	DefaultBusyTimeout   = 5 * time.Second
)

// Config configures a Store. Zero values take the defaults above.
type Config struct {
	// Backend is "sqlite" (default) or "postgres".
	Backend string
	// Path is the SQLite database file (backend sqlite).
	Path string
	// URL is the PostgreSQL connection URL (backend postgres),
	// postgres://user:password@host:port/db?sslmode=...
	URL string
	// MaxAge, MaxRows and MaxBytes bound the history; the oldest unlabelled
	// results go first. A negative value turns that bound off.
	MaxAge   time.Duration
	MaxRows  int64
	MaxBytes int64
	// QueueSize is how many results may wait for the writer (100..1,000,000).
	QueueSize int
	// BatchSize (1..10,000) and BatchInterval (10ms..10s): the writer commits
	// when a batch is full or the interval has passed.
	BatchSize     int
	BatchInterval time.Duration
	// PruneInterval is how often retention runs (1s..24h).
	PruneInterval time.Duration
	// CloseTimeout bounds how long Close flushes the queue (0..5m).
	CloseTimeout time.Duration
	// BusyTimeout is how long SQLite waits for another writer (a `segad
	// results label` while the daemon writes) before failing (1ms..1m).
	BusyTimeout time.Duration
	// ReadOnly opens for queries only: no writer, no retention, no
	// migration (the CLI's query, show and export; safe while the daemon
	// writes). Publish and Label refuse with ErrReadOnly.
	ReadOnly bool
	// Passive opens without the background writer and retention: queries
	// and labels only (the CLI's label command). Publish refuses.
	Passive bool
	// OnPrune, when set, is called from the writer with the IDs of the
	// results that retention deleted (so the audit store can delete their
	// images). It must return quickly.
	OnPrune func(ids []string)
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// maxPageCount, when set, caps the SQLite file (tests: a full disk).
	maxPageCount int
}

// withDefaults fills zero values and checks ranges.
func (c Config) withDefaults() (Config, error) {
	if c.Backend == "" {
		c.Backend = BackendSQLite
		if c.Path == "" && c.URL != "" {
			c.Backend = BackendPostgres
		}
	}
	switch c.Backend {
	case BackendSQLite:
		if c.Path == "" {
			return c, errors.New("history: backend sqlite needs a path (history.path)")
		}
	case BackendPostgres:
		if !isPostgresURL(c.URL) {
			return c, fmt.Errorf("history: backend postgres needs a postgres:// or postgresql:// URL (history.url), got %q", redactURL(c.URL))
		}
	default:
		return c, fmt.Errorf("history: backend %q: use sqlite or postgres", c.Backend)
	}
	def := func(v *int, d, lo, hi int, key string) error {
		if *v == 0 {
			*v = d
		}
		if *v < lo || *v > hi {
			return fmt.Errorf("history.%s: %d is outside %d..%d", key, *v, lo, hi)
		}
		return nil
	}
	defD := func(v *time.Duration, d, lo, hi time.Duration, key string) error {
		if *v == 0 {
			*v = d
		}
		if *v < lo || *v > hi {
			return fmt.Errorf("history.%s: %v is outside %v..%v", key, *v, lo, hi)
		}
		return nil
	}
	for _, err := range []error{
		def(&c.QueueSize, DefaultQueueSize, 100, 1_000_000, "queue_size"),
		def(&c.BatchSize, DefaultBatchSize, 1, 10_000, "batch_size"),
		defD(&c.BatchInterval, DefaultBatchInterval, 10*time.Millisecond, 10*time.Second, "batch_interval"),
		defD(&c.PruneInterval, DefaultPruneInterval, time.Second, 24*time.Hour, "retention.interval"),
		defD(&c.BusyTimeout, DefaultBusyTimeout, time.Millisecond, time.Minute, "busy_timeout"),
	} {
		if err != nil {
			return c, err
		}
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.CloseTimeout < 0 || c.CloseTimeout > 5*time.Minute {
		return c, fmt.Errorf("history.close_timeout: %v is outside 0..5m", c.CloseTimeout)
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxAge > 0 && c.MaxAge < time.Hour {
		return c, fmt.Errorf("history.retention.max_age: %v is under 1h (negative turns it off)", c.MaxAge)
	}
	if c.MaxRows == 0 {
		c.MaxRows = DefaultMaxRows
	}
	if c.MaxRows > 0 && c.MaxRows < 1000 {
		return c, fmt.Errorf("history.retention.max_rows: %d is under 1000 (negative turns it off)", c.MaxRows)
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxBytes > 0 && c.MaxBytes < 1<<20 {
		return c, fmt.Errorf("history.retention.max_bytes: %d is under 1 MiB (negative turns it off)", c.MaxBytes)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Kind says why a result was made. Only production results describe the
// line's parts: golden-sample challenges and shadow-model verdicts are
// recorded beside them but never count as production (queries return
// production results unless asked otherwise).
type Kind string

// Kinds.
const (
	KindProduction Kind = "production"
	KindGolden     Kind = "golden"
	KindShadow     Kind = "shadow"
)

func (k Kind) valid() bool {
	return k == KindProduction || k == KindGolden || k == KindShadow
}

// Extra is what the history records beside a result.Result, for data the
// result type does not carry. The zero value is a production result with
// nothing extra.
type Extra struct {
	// Kind defaults to production.
	Kind Kind
	// Contributions is the per-segment explanation as JSON, stored as
	// given (opaque to this package). Invalid JSON is stored as NULL and
	// logged. When empty, the result's own Explain is stored (all its
	// tables: segments, detectors and features).
	Contributions json.RawMessage
	// AuditPath is where the audit store kept this part's image, if it did.
	AuditPath string
}

// entry is one queued result: a copy of the Result header (its maps and
// slices are shared with the caller, who must not change them after
// Publish, as for every output).
type entry struct {
	r result.Result
	x Extra
}

// Store is the result history. Publish, Name and Close make it a daemon
// output; the other methods are for the HTTP API, the CLI and the audit
// pruner. All methods are safe for concurrent use.
type Store struct {
	cfg   Config
	log   *slog.Logger
	db    *database // nil until the first successful open (degraded start)
	dbMu  sync.RWMutex
	queue chan entry

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	flushReq chan chan struct{}

	enqueued atomic.Uint64
	written  atomic.Uint64
	dropped  atomic.Uint64 // queue full, or left in the queue at Close
	failed   atomic.Uint64 // refused by the database (bad data) or lost at Close
	pruned   atomic.Uint64
	// lastDrop is the unix nanoseconds of the last drop; dropLog of the
	// last drop log line. Atomics: the drop path runs on the caller's.
	lastDrop atomic.Int64
	dropLog  atomic.Int64

	stMu      sync.Mutex
	lastErr   error
	lastClass string
	lastErrAt time.Time
	lastOK    time.Time
	logLimit  map[string]time.Time
}

// ErrReadOnly is returned by Publish and Label on a store opened ReadOnly
// (and by Publish on a Passive one).
var ErrReadOnly = errors.New("history: opened read-only")

// ErrUnavailable is returned by queries while the database cannot be opened.
var ErrUnavailable = errors.New("history: database not available")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("history: closed")

// Open opens (creating and migrating when needed) the history database and,
// unless cfg.ReadOnly or cfg.Passive, starts the background writer and
// retention.
//
// Open fails on a bad configuration and on a database it must not touch (a
// newer schema version, a file that is not a history database). A database
// that cannot be written right now (read-only file or folder, full disk,
// PostgreSQL unreachable) does not stop the daemon: Open returns a store
// that keeps trying in the background, drops what does not fit in its
// queue, and says why in Health. ReadOnly and Passive stores (the CLI)
// return every error.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, log: cfg.Logger, queue: make(chan entry, cfg.QueueSize),
		stop: make(chan struct{}), done: make(chan struct{}), flushReq: make(chan chan struct{}),
		logLimit: map[string]time.Time{}}
	db, err := openDatabase(ctx, cfg, s.log)
	if err != nil {
		if cfg.ReadOnly || cfg.Passive || permanent(err) {
			return nil, err
		}
		s.noteError(err)
		s.log.Error("history: database not available; results are queued and the store keeps trying",
			"backend", cfg.Backend, "target", s.target(), "err", err, "reason", classify(err))
	} else {
		s.db = db
		s.lastOK = time.Now()
	}
	if cfg.ReadOnly || cfg.Passive {
		close(s.done)
		return s, nil
	}
	go s.run()
	return s, nil
}

func (s *Store) target() string {
	if s.cfg.Backend == BackendPostgres {
		return redactURL(s.cfg.URL)
	}
	return s.cfg.Path
}

// Name is the output's name in logs and health: "history".
func (s *Store) Name() string { return "history" }

// RecordsAside says the history records results that decide nothing on
// the line too (golden challenges, shadow models: Result.Kind), as their
// kind (daemon.AsideRecorder).
func (s *Store) RecordsAside() bool { return true }

// Publish queues r to be recorded, as a production result unless r.Kind
// says otherwise. It never blocks
// and never fails because of the database: when the queue is full the
// result is dropped and counted (Health). It fails only on a read-only or
// closed store. r's maps and slices must not be changed afterwards.
func (s *Store) Publish(ctx context.Context, r result.Result) error {
	return s.PublishWith(ctx, r, Extra{})
}

// PublishWith is Publish with the data the result type does not carry:
// kind (golden, shadow), per-segment contributions, audit image path. A
// daemon output that knows about history calls it through an interface
// of its own (interface{ PublishWith(context.Context, result.Result,
// history.Extra) error }); one that does not calls Publish.
func (s *Store) PublishWith(_ context.Context, r result.Result, x Extra) error {
	if x.Kind == "" && r.Kind != "" {
		x.Kind = Kind(r.Kind)
	}
	if s.cfg.ReadOnly || s.cfg.Passive {
		return ErrReadOnly
	}
	select {
	case <-s.stop:
		return ErrClosed
	default:
	}
	select {
	case s.queue <- entry{r, x}:
		s.enqueued.Add(1)
	default:
		s.dropped.Add(1)
		s.noteDrop()
	}
	return nil
}

// Flush waits until every result queued before the call has been committed
// (or counted as not recorded). Tests and the CLI use it; the daemon does
// not need to.
func (s *Store) Flush(ctx context.Context) error {
	if s.cfg.ReadOnly || s.cfg.Passive {
		return nil
	}
	ch := make(chan struct{})
	select {
	case s.flushReq <- ch:
	case <-s.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close flushes the queue for at most Config.CloseTimeout, stops the writer
// and closes the database. Results it could not commit in time are counted
// as not recorded and named in the error.
func (s *Store) Close() error {
	var err error
	s.stopOnce.Do(func() {
		close(s.stop)
		if !(s.cfg.ReadOnly || s.cfg.Passive) {
			// The writer commits what it can before the deadline and counts
			// the rest; give it a little more than the deadline to finish
			// the commit in flight.
			select {
			case <-s.done:
			case <-time.After(s.cfg.CloseTimeout + 2*s.cfg.BusyTimeout):
				err = fmt.Errorf("history: writer still committing after %v; closing anyway", s.cfg.CloseTimeout)
			}
		}
		// Results that raced with Close into the queue after the writer's
		// last look.
		if n := len(s.queue); n > 0 && !(s.cfg.ReadOnly || s.cfg.Passive) {
			s.dropped.Add(uint64(n))
		}
		if n := s.dropped.Load() + s.failed.Load(); n > 0 && err == nil {
			h := s.Health()
			if h.Reason != "" {
				err = errors.New(h.Reason)
			} else {
				err = fmt.Errorf("history: %d results not recorded", n)
			}
		}
		s.dbMu.Lock()
		if s.db != nil {
			if cerr := s.db.close(); cerr != nil && err == nil {
				err = cerr
			}
		}
		s.dbMu.Unlock()
	})
	return err
}

// Health is the store's state for /healthz, metrics and logs.
type Health struct {
	// OK is false while the last write failed, or results were dropped in
	// the last minute.
	OK bool `json:"ok"`
	// Reason says why when not OK, e.g. "history: disk full: database or
	// disk is full: 123 results not recorded".
	Reason  string `json:"reason,omitempty"`
	Backend string `json:"backend"`
	// Queued is how many results wait for the writer, of QueueCap.
	Queued   int `json:"queued"`
	QueueCap int `json:"queue_cap"`
	// Written counts results committed since Open (a result published
	// twice counts once).
	Written uint64 `json:"written"`
	// NotRecorded = Dropped (queue full, or still queued at Close) + Failed
	// (refused by the database).
	NotRecorded uint64 `json:"not_recorded"`
	Dropped     uint64 `json:"dropped"`
	Failed      uint64 `json:"failed"`
	// Pruned counts results deleted by retention since Open.
	Pruned uint64 `json:"pruned"`
	// LastError is the last write or open error and when it happened.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Health returns the current state.
func (s *Store) Health() Health {
	h := Health{OK: true, Backend: s.cfg.Backend, Queued: len(s.queue), QueueCap: cap(s.queue),
		Written: s.written.Load(), Dropped: s.dropped.Load(), Failed: s.failed.Load(), Pruned: s.pruned.Load()}
	h.NotRecorded = h.Dropped + h.Failed
	s.stMu.Lock()
	defer s.stMu.Unlock()
	if s.lastErr != nil {
		h.LastError = s.lastErr.Error()
		h.LastErrorAt = s.lastErrAt
	}
	failing := s.lastErr != nil && s.lastErrAt.After(s.lastOK)
	last := s.lastDrop.Load()
	recentDrop := last != 0 && time.Since(time.Unix(0, last)) < time.Minute
	switch {
	case failing:
		h.OK = false
		h.Reason = fmt.Sprintf("history: %s: %s: %d results not recorded", s.lastClass,
			strings.TrimPrefix(s.lastErr.Error(), "history: "), h.NotRecorded)
	case recentDrop:
		h.OK = false
		h.Reason = fmt.Sprintf("history: too slow: queue of %d full: %d results not recorded", h.QueueCap, h.NotRecorded)
	}
	return h
}

func (s *Store) noteError(err error) {
	s.stMu.Lock()
	s.lastErr, s.lastClass, s.lastErrAt = err, classify(err), time.Now()
	s.stMu.Unlock()
}

func (s *Store) noteOK() {
	s.stMu.Lock()
	s.lastOK = time.Now()
	s.stMu.Unlock()
}

// noteDrop records a drop and logs at most once per 10 s. It runs on the
// caller's path only when the queue is full.
func (s *Store) noteDrop() {
	now := time.Now().UnixNano()
	s.lastDrop.Store(now)
	if l := s.dropLog.Load(); now-l >= int64(10*time.Second) && s.dropLog.CompareAndSwap(l, now) {
		h := s.Health()
		s.log.Warn("history: queue full, results not recorded", "reason", h.Reason, "not_recorded", h.NotRecorded)
	}
}

// logLimited runs f at most once per 10 s per key.
func (s *Store) logLimited(key string, f func()) {
	s.stMu.Lock()
	now := time.Now()
	if t, ok := s.logLimit[key]; ok && now.Sub(t) < 10*time.Second {
		s.stMu.Unlock()
		return
	}
	s.logLimit[key] = now
	s.stMu.Unlock()
	f()
}

// current returns the open database or ErrUnavailable.
func (s *Store) current() (*database, error) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		select {
		case <-s.stop:
			return nil, ErrClosed
		default:
		}
		s.stMu.Lock()
		defer s.stMu.Unlock()
		if s.lastErr != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, s.lastErr)
		}
		return nil, ErrUnavailable
	}
	return s.db, nil
}

// run is the writer: it batches queued results, commits them, retries on
// errors of the environment (without consuming more of the queue, which
// then fills and drops), and runs retention.
func (s *Store) run() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.BatchInterval)
	defer tick.Stop()
	batch := make([]entry, 0, s.cfg.BatchSize)
	var retryAt time.Time // while set, the store is backing off
	backoff := time.Duration(0)
	nextPrune := time.Now().Add(s.cfg.PruneInterval)
	var flushers []chan struct{}

	// attempt commits the batch (opening the database first if needed) and
	// reports whether the batch is done with (committed or refused).
	attempt := func() bool {
		if len(batch) == 0 {
			return true
		}
		db, err := s.ensureOpen()
		if err == nil {
			err = s.commit(db, batch)
			if err != nil && !db.pg {
				err = diagnose(s.cfg.Path, err)
			}
		}
		if err != nil {
			s.noteError(err)
			if backoff == 0 {
				backoff = 500 * time.Millisecond
			} else if backoff < 30*time.Second {
				backoff *= 2
			}
			retryAt = time.Now().Add(backoff)
			s.logLimited("write", func() {
				s.log.Error("history: cannot write results; retrying", "reason", classify(err), "err", err,
					"retry_in", backoff, "queued", len(s.queue), "not_recorded", s.dropped.Load()+s.failed.Load())
			})
			return false
		}
		if !retryAt.IsZero() {
			s.log.Info("history: writing again", "not_recorded", s.dropped.Load()+s.failed.Load())
		}
		retryAt, backoff = time.Time{}, 0
		batch = batch[:0]
		return true
	}
	// fill takes queued results up to a batch without waiting.
	fill := func() {
		for len(batch) < cap(batch) {
			select {
			case e := <-s.queue:
				batch = append(batch, e)
			default:
				return
			}
		}
	}
	// drain commits everything queued now; used by Flush.
	drain := func() {
		for {
			fill()
			if len(batch) == 0 || !attempt() {
				return
			}
		}
	}

	for {
		if !retryAt.IsZero() {
			// Backing off: consume nothing, so the queue buffers and then
			// drops (counted); retry when due.
			wait := time.Until(retryAt)
			select {
			case <-s.stop:
				s.shutdown(&batch)
				for _, f := range flushers {
					close(f)
				}
				return
			case ch := <-s.flushReq:
				// Cannot write: answer now rather than hang the caller.
				close(ch)
			case <-time.After(wait):
				if attempt() {
					drain()
				}
			}
			continue
		}
		select {
		case e := <-s.queue:
			batch = append(batch, e)
			if len(batch) >= cap(batch) {
				attempt()
			}
		case <-tick.C:
			attempt()
			if retryAt.IsZero() && time.Now().After(nextPrune) {
				s.prune()
				nextPrune = time.Now().Add(s.cfg.PruneInterval)
			}
		case ch := <-s.flushReq:
			if attempt() {
				drain()
			}
			close(ch)
		case <-s.stop:
			s.shutdown(&batch)
			return
		}
	}
}

// shutdown commits what is queued until the close deadline and counts the
// rest as not recorded.
func (s *Store) shutdown(batch *[]entry) {
	deadline := time.Now().Add(s.cfg.CloseTimeout)
	for time.Now().Before(deadline) {
		for len(*batch) < cap(*batch) {
			select {
			case e := <-s.queue:
				*batch = append(*batch, e)
				continue
			default:
			}
			break
		}
		if len(*batch) == 0 {
			return
		}
		db, err := s.ensureOpen()
		if err == nil {
			err = s.commit(db, *batch)
		}
		if err != nil {
			s.noteError(err)
			break
		}
		*batch = (*batch)[:0]
	}
	lost := uint64(len(*batch) + len(s.queue))
	if lost > 0 {
		s.dropped.Add(lost)
		s.lastDrop.Store(time.Now().UnixNano())
		s.log.Error("history: closing with results not recorded", "count", lost, "err", s.lastErr)
	}
}

// ensureOpen returns the database, opening it if the first open failed.
func (s *Store) ensureOpen() (*database, error) {
	s.dbMu.RLock()
	db := s.db
	s.dbMu.RUnlock()
	if db != nil {
		return db, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := openDatabase(ctx, s.cfg, s.log)
	if err != nil {
		return nil, err
	}
	s.dbMu.Lock()
	s.db = db
	s.dbMu.Unlock()
	s.log.Info("history: database opened", "backend", s.cfg.Backend, "target", s.target())
	return db, nil
}

// commit writes one batch in one transaction. Rows the database refuses as
// data (not the environment) are isolated by writing row by row; those are
// counted as failed and the batch is done.
func (s *Store) commit(db *database, batch []entry) error {
	rows := make([]row, len(batch))
	for i := range batch {
		rows[i] = s.toRow(&batch[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := db.insert(ctx, rows)
	if err == nil {
		s.written.Add(uint64(n))
		s.noteOK()
		return nil
	}
	if environmental(err) {
		return err
	}
	// Bad data somewhere in the batch: write row by row.
	for i := range rows {
		n, err := db.insert(ctx, rows[i:i+1])
		if err != nil {
			if environmental(err) {
				return err
			}
			s.failed.Add(1)
			s.noteError(err)
			s.logLimited("row", func() {
				s.log.Error("history: result refused by the database", "id", rows[i].ID, "err", err)
			})
			continue
		}
		s.written.Add(uint64(n))
	}
	return nil
}

// toRow encodes one entry for the database (in the writer, off the
// caller's path).
func (s *Store) toRow(e *entry) row {
	r := &e.r
	if r.ID == "" {
		t := r.DecidedAt
		if t.IsZero() {
			t = time.Now()
		}
		r.ID = result.NewID(t)
	}
	if r.DecidedAt.IsZero() {
		r.DecidedAt = time.Now()
	}
	out := row{
		ID: clean(r.ID), Station: clean(r.Station), Seq: int64(r.Seq), PartID: clean(r.PartID),
		CapturedAt: r.CapturedAt, DecidedAt: r.DecidedAt, Verdict: clean(string(r.Verdict)), Warn: r.Warn,
		Threshold: r.Threshold, ReasonCode: clean(r.ReasonCode), Reason: clean(r.Reason), Bundle: clean(r.Bundle),
		Kind: string(e.x.Kind), AuditPath: clean(e.x.AuditPath),
	}
	if out.Kind == "" {
		out.Kind = string(KindProduction)
	} else if !e.x.Kind.valid() {
		s.logLimited("kind", func() { s.log.Warn("history: unknown result kind, recorded as shadow", "kind", e.x.Kind) })
		out.Kind = string(KindShadow)
	}
	if math.IsNaN(r.Threshold) || math.IsInf(r.Threshold, 0) {
		out.Threshold = 0
	}
	if r.Score != nil && !math.IsNaN(*r.Score) && !math.IsInf(*r.Score, 0) {
		v := *r.Score
		out.Score = &v
	}
	if len(r.MapMax) > 0 {
		b, _ := json.Marshal(finiteMap(r.MapMax))
		out.MapMax = string(b)
	}
	if len(r.Features) > 0 {
		b, _ := json.Marshal(wireFeatures(r.Features))
		out.Features = string(b)
	}
	contrib := e.x.Contributions
	if len(contrib) == 0 && r.Explain != nil {
		// The result's own explanation, every table in full (the MQTT
		// payload carries only its top three).
		if b, err := json.Marshal(r.Explain); err == nil {
			contrib = b
		}
	}
	if len(contrib) > 0 {
		if json.Valid(contrib) && !strings.Contains(string(contrib), `\u0000`) {
			out.Contributions = string(contrib)
		} else {
			s.logLimited("contrib", func() {
				s.log.Warn("history: contributions are not valid JSON; recorded without them", "id", out.ID)
			})
		}
	}
	return out
}

// clean makes a string storable everywhere: valid UTF-8 without NUL
// (PostgreSQL refuses NUL in text).
func clean(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] >= 0x80 {
			return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
		}
	}
	return s
}

func finiteMap(m map[string]float64) map[string]*float64 {
	out := make(map[string]*float64, len(m))
	for k, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			out[clean(k)] = nil
		} else {
			out[clean(k)] = &v
		}
	}
	return out
}

type wireFeature struct {
	Name  string   `json:"name"`
	Value *float64 `json:"value"`
}

func wireFeatures(fs []result.Feature) []wireFeature {
	out := make([]wireFeature, len(fs))
	for i, f := range fs {
		out[i].Name = clean(f.Name)
		if !math.IsNaN(f.Value) && !math.IsInf(f.Value, 0) {
			v := f.Value
			out[i].Value = &v
		}
	}
	return out
}

// prune applies retention and reports the pruned IDs.
func (s *Store) prune() {
	db, err := s.current()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := db.prune(ctx, s.cfg, time.Now(), func(ids []string) {
		s.pruned.Add(uint64(len(ids)))
		if s.cfg.OnPrune != nil {
			s.cfg.OnPrune(ids)
		}
	})
	if err != nil {
		s.logLimited("prune", func() { s.log.Warn("history: retention failed", "err", err) })
		return
	}
	if n > 0 {
		s.log.Info("history: retention deleted old results", "count", n)
	}
}

// Prune runs retention now and returns how many results it deleted (the
// writer runs it every Config.PruneInterval; the CLI and tests call it).
func (s *Store) Prune(ctx context.Context) (int, error) {
	if s.cfg.ReadOnly {
		return 0, ErrReadOnly
	}
	db, err := s.current()
	if err != nil {
		return 0, err
	}
	return db.prune(ctx, s.cfg, time.Now(), func(ids []string) {
		s.pruned.Add(uint64(len(ids)))
		if s.cfg.OnPrune != nil {
			s.cfg.OnPrune(ids)
		}
	})
}
