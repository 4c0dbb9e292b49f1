package history

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/result"
)

// backend makes a fresh, empty database config per call.
type backend struct {
	name string
	cfg  func(t *testing.T) Config
}

// quietLog keeps expected warnings out of the test output unless -v.
func quietLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// forEachBackend runs f against a real SQLite file and a real PostgreSQL
// started for the test (one server, a new database per call of cfg).
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	t.Run("sqlite", func(t *testing.T) {
		f(t, backend{"sqlite", func(t *testing.T) Config {
			return Config{Path: filepath.Join(t.TempDir(), "history.db"), Logger: quietLog(t)}
		}})
	})
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.StartPostgres(t)
		n := 0
		var mu sync.Mutex
		f(t, backend{"postgres", func(t *testing.T) Config {
			mu.Lock()
			n++
			name := fmt.Sprintf("h%d", n)
			mu.Unlock()
			return Config{Backend: BackendPostgres, URL: pg.CreateDB(t, name), Logger: quietLog(t)}
		}})
	})
}

func open(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func flush(t testing.TB, s *Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// t0 is an hour ago, inside every default retention bound.
var t0 = time.Now().UTC().Truncate(time.Second).Add(-time.Hour)

// mkResult makes result i, decided i milliseconds after t0.
func mkResult(i int) result.Result {
	at := t0.Add(time.Duration(i) * time.Millisecond)
	score := float64(i%100) / 10
	r := result.Result{Schema: 1, ID: result.NewID(at), Station: "st1", Source: "cam0", Seq: uint64(i),
		PartID: fmt.Sprintf("P%06d", i), CapturedAt: at.Add(-3 * time.Millisecond), DecidedAt: at,
		Verdict: result.VerdictPass, Score: &score, Threshold: 5, Bundle: "b1",
		MapMax:   map[string]float64{"ms": 0.5 + float64(i%7), "pc": 1.25},
		Features: []result.Feature{{Name: "ms.seg0.mean", Value: 0.25}, {Name: "ms.seg0.skew", Value: math.NaN()}, {Name: "pc.seg1.max", Value: float64(i)}},
	}
	if score >= 5 {
		r.Verdict, r.ReasonCode, r.Reason = result.VerdictFail, result.ReasonAnomaly, "score over threshold"
	}
	return r
}

func publishN(t testing.TB, s *Store, from, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := from; i < from+n; i++ {
		r := mkResult(i)
		if err := s.Publish(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

// TestStore is the one store suite, run against both backends.
func TestStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, b) })
		t.Run("Filters", func(t *testing.T) { testFilters(t, b) })
		t.Run("CursorUnderConcurrentInserts", func(t *testing.T) { testCursor(t, b) })
		t.Run("Labels", func(t *testing.T) { testLabels(t, b) })
		t.Run("Retention", func(t *testing.T) { testRetention(t, b) })
		t.Run("HostileQueries", func(t *testing.T) { testHostile(t, b) })
		t.Run("Migrations", func(t *testing.T) { testMigrations(t, b) })
		t.Run("Export", func(t *testing.T) { testExport(t, b) })
		t.Run("ReadOnlyWhileWriting", func(t *testing.T) { testReadOnly(t, b) })
		t.Run("FullSpeed", func(t *testing.T) { testFullSpeed(t, b) })
	})
}

// testRoundTrip: every column comes back as written, NaN as null, a nil
// score as null, extras stored; a result published twice is one row.
func testRoundTrip(t *testing.T, b backend) {
	s := open(t, b.cfg(t))
	ctx := context.Background()
	r := mkResult(7)
	r.PartID = "part\x00with\xffbad bytes"
	contrib := json.RawMessage(`{"segments":{"wires":1.9,"body":-0.2},"bias":-1.5}`)
	if err := s.PublishWith(ctx, r, Extra{Contributions: contrib, AuditPath: "/audit/x.png"}); err != nil {
		t.Fatal(err)
	}
	_ = s.Publish(ctx, r) // duplicate: ignored
	errR := mkResult(8)
	errR.Score = nil
	errR.Verdict, errR.ReasonCode, errR.Reason = result.VerdictError, result.ReasonCapture, "camera timeout"
	errR.MapMax, errR.Features = nil, nil
	_ = s.PublishWith(ctx, errR, Extra{Kind: KindGolden})
	flush(t, s)
	if h := s.Health(); h.Written != 2 || !h.OK || h.NotRecorded != 0 {
		t.Fatalf("health after 2 results (one duplicate): %+v", h)
	}
	got, err := s.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Station != "st1" || got.Seq != 7 || got.PartID != "part\uFFFDwith\uFFFDbad bytes" || !got.DecidedAt.Equal(r.DecidedAt) ||
		!got.CapturedAt.Equal(r.CapturedAt) || got.Verdict != r.Verdict || *got.Score != *r.Score || got.Threshold != 5 ||
		got.Bundle != "b1" || got.AuditPath != "/audit/x.png" || got.Kind != KindProduction || got.Label != nil {
		t.Fatalf("row: %+v", got)
	}
	var c map[string]any
	if err := json.Unmarshal(got.Contributions, &c); err != nil || c["bias"] != -1.5 {
		t.Fatalf("contributions %s: %v", got.Contributions, err)
	}
	back := got.Result()
	if back.MapMax["ms"] != r.MapMax["ms"] || len(back.Features) != 3 || !math.IsNaN(back.Features[1].Value) || back.Features[2].Value != 7 {
		t.Fatalf("map max / features: %+v %+v", back.MapMax, back.Features)
	}
	g, err := s.Get(ctx, errR.ID)
	if err != nil {
		t.Fatal(err)
	}
	if g.Score != nil || g.Kind != KindGolden || g.Verdict != result.VerdictError || g.ReasonCode != result.ReasonCapture || g.MapMax != nil {
		t.Fatalf("error row: %+v", g)
	}
	if _, err := s.Get(ctx, "01NOTTHERE"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

// testFilters: each filter selects what it says; golden rows are not
// production.
func testFilters(t *testing.T, b backend) {
	s := open(t, b.cfg(t))
	ctx := context.Background()
	ids := publishN(t, s, 0, 200)
	gold := mkResult(500)
	gold.PartID = "GOLD"
	_ = s.PublishWith(ctx, gold, Extra{Kind: KindGolden})
	flush(t, s)
	if _, err := s.Label(ctx, ids[3], Label{Label: "bad", DefectType: "scratch", Who: "ann"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Label(ctx, ids[4], Label{Label: "good", Who: "ann"}); err != nil {
		t.Fatal(err)
	}
	count := func(q Query) int {
		t.Helper()
		n := 0
		for {
			p, err := s.Query(ctx, q)
			if err != nil {
				t.Fatalf("%+v: %v", q, err)
			}
			n += len(p.Results)
			if p.Next == "" {
				return n
			}
			q.Cursor = p.Next
		}
	}
	for _, c := range []struct {
		name string
		q    Query
		want int
	}{
		{"all production", Query{}, 200},
		{"all kinds", Query{Kind: KindAll}, 201},
		{"golden", Query{Kind: KindGolden}, 1},
		{"fail", Query{Verdict: result.VerdictFail}, 100},
		{"pass", Query{Verdict: result.VerdictPass}, 100},
		{"part", Query{PartID: "P000042"}, 1},
		{"since", Query{Since: t0.Add(150 * time.Millisecond)}, 50},
		{"since until", Query{Since: t0.Add(10 * time.Millisecond), Until: t0.Add(20 * time.Millisecond)}, 10},
		{"bad", Query{Label: "bad"}, 1},
		{"labelled", Query{Label: "labelled"}, 2},
		{"unlabelled", Query{Label: "unlabelled"}, 198},
		{"station", Query{Station: "other"}, 0},
		{"page of 7", Query{Limit: 7}, 200},
	} {
		if got := count(c.q); got != c.want {
			t.Errorf("%s: %d results, want %d", c.name, got, c.want)
		}
	}
	p, err := s.Query(ctx, Query{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Results) != 3 || p.Results[0].ID != ids[199] || p.Results[2].ID != ids[197] || p.Next == "" {
		t.Fatalf("newest first: %v", p.Results)
	}
	if p.Results[0].Label != nil {
		t.Fatal("unlabelled row has a label")
	}
}

// testCursor pages through the history while results are written
// concurrently, newer ones and late ones inside the paged range (another
// station's delayed batch): every result present at the start is seen
// exactly once, and none twice.
func testCursor(t *testing.T, b backend) {
	cfg := b.cfg(t)
	cfg.BatchInterval = 10 * time.Millisecond
	s := open(t, cfg)
	ctx := context.Background()
	before := publishN(t, s, 0, 600)
	flush(t, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 600; i++ {
			_ = s.Publish(ctx, mkResult(600+i)) // newer
			late := mkResult(i)                 // same decided_at range, new ID
			late.ID = result.NewID(time.Now())
			_ = s.Publish(ctx, late)
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	seen := map[string]int{}
	q := Query{Limit: 37}
	pages := 0
	for {
		p, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range p.Results {
			seen[r.ID]++
		}
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
		time.Sleep(2 * time.Millisecond)
	}
	<-done
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s seen %d times", id, n)
		}
	}
	for _, id := range before {
		if seen[id] != 1 {
			t.Fatalf("%s present before paging was skipped", id)
		}
	}
	flush(t, s)
	t.Logf("%d pages, %d results seen (%d of those written while paging; %d written)", pages, len(seen), len(seen)-len(before), s.Health().Written)
}

// testLabels: validation, newest wins, history kept, IsLabelled, unknown
// ID, a result still queued.
func testLabels(t *testing.T, b backend) {
	s := open(t, b.cfg(t))
	ctx := context.Background()
	ids := publishN(t, s, 0, 3)
	// Not flushed: Label flushes the queue when the ID is not there yet.
	if _, err := s.Label(ctx, ids[0], Label{Label: "good", Who: "ann", Note: "looked fine"}); err != nil {
		t.Fatalf("label a queued result: %v", err)
	}
	if _, err := s.Label(ctx, ids[0], Label{Label: "bad", DefectType: "crack", Who: "bob", Note: "hairline crack, left edge"}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if r.Label == nil || r.Label.Label != "bad" || r.Label.Who != "bob" || r.Label.DefectType != "crack" || len(r.Labels) != 2 ||
		r.Labels[0].Label != "good" || r.Labels[0].Note != "looked fine" || r.Label.At.IsZero() {
		t.Fatalf("labels: %+v %+v", r.Label, r.Labels)
	}
	if ok, err := s.IsLabelled(ctx, ids[0]); err != nil || !ok {
		t.Fatalf("IsLabelled(labelled) = %v, %v", ok, err)
	}
	if ok, err := s.IsLabelled(ctx, ids[1]); err != nil || ok {
		t.Fatalf("IsLabelled(unlabelled) = %v, %v", ok, err)
	}
	if _, err := s.Label(ctx, "01HZZZZZZZZZZZZZZZZZZZZZZZ", Label{Label: "good", Who: "ann"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("label unknown: %v", err)
	}
	for _, c := range []struct {
		l     Label
		param string
	}{
		{Label{Label: "ok", Who: "a"}, "label"},
		{Label{Label: "GOOD", Who: "a"}, "label"},
		{Label{Label: "good"}, "who"},
		{Label{Label: "good", Who: "  "}, "who"},
		{Label{Label: "good", Who: "a\nb"}, "who"},
		{Label{Label: "good", Who: strings.Repeat("w", 65)}, "who"},
		{Label{Label: "good", DefectType: "scratch", Who: "a"}, "defect_type"},
		{Label{Label: "bad", DefectType: "x'; DROP TABLE results;--", Who: "a"}, "defect_type"},
		{Label{Label: "bad", DefectType: strings.Repeat("d", 65), Who: "a"}, "defect_type"},
		{Label{Label: "bad", Note: strings.Repeat("n", 1001), Who: "a"}, "note"},
		{Label{Label: "bad", Note: "bell\a", Who: "a"}, "note"},
		{Label{Label: "bad", Note: "\xff", Who: "a"}, "note"},
	} {
		_, err := s.Label(ctx, ids[1], c.l)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != c.param {
			t.Errorf("label %+v: %v, want a refusal of %s", c.l, err, c.param)
		}
	}
}

// testRetention: age, rows and bytes delete the oldest unlabelled results;
// labelled ones stay; OnPrune hears every deleted ID.
func testRetention(t *testing.T, b backend) {
	var mu sync.Mutex
	var pruned []string
	cfg := b.cfg(t)
	cfg.OnPrune = func(ids []string) {
		mu.Lock()
		pruned = append(pruned, ids...)
		mu.Unlock()
	}
	cfg.PruneInterval = 24 * time.Hour // only the explicit calls below
	s := open(t, cfg)
	ctx := context.Background()
	// 3000 results 1 ms apart; relabel decided_at by age: the first 1000
	// are 100 days old.
	now := time.Now()
	for i := range 3000 {
		r := mkResult(i)
		if i < 1000 {
			r.DecidedAt = now.Add(-100*24*time.Hour + time.Duration(i)*time.Millisecond)
		} else {
			r.DecidedAt = now.Add(-time.Hour + time.Duration(i)*time.Millisecond)
		}
		r.ID = result.NewID(r.DecidedAt)
		_ = s.Publish(ctx, r)
	}
	flush(t, s)
	all := func() []Row {
		var out []Row
		q := Query{Limit: MaxLimit, Kind: KindAll}
		for {
			p, err := s.Query(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p.Results...)
			if p.Next == "" {
				return out
			}
			q.Cursor = p.Next
		}
	}
	rows := all()
	oldest := rows[len(rows)-1] // newest first
	keepOld := rows[len(rows)-10]
	keepNew := rows[len(rows)-1500]
	for _, id := range []string{oldest.ID, keepOld.ID, keepNew.ID} {
		if _, err := s.Label(ctx, id, Label{Label: "bad", DefectType: "dent", Who: "qa"}); err != nil {
			t.Fatal(err)
		}
	}
	// Age: 90 days.
	s.cfg.MaxAge, s.cfg.MaxRows, s.cfg.MaxBytes = 90*24*time.Hour, -1, -1
	n, err := s.Prune(ctx)
	if err != nil || n != 998 {
		t.Fatalf("prune by age: %d, %v; want 998 (1000 old less 2 labelled)", n, err)
	}
	// Rows: 1500.
	s.cfg.MaxAge, s.cfg.MaxRows = -1, 1500
	if n, err = s.Prune(ctx); err != nil || n != 502 {
		t.Fatalf("prune by rows: %d, %v; want 502", n, err)
	}
	// Bytes: half of what is used now.
	size, err := s.db.size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.cfg.MaxRows, s.cfg.MaxBytes = -1, size/2
	if n, err = s.Prune(ctx); err != nil || n < 600 || n > 900 {
		t.Fatalf("prune by bytes (%d -> %d): %d, %v; want about half of 1500", size, size/2, n, err)
	}
	rest := all()
	mu.Lock()
	defer mu.Unlock()
	if len(rest)+len(pruned) != 3000 {
		t.Fatalf("%d left + %d reported pruned != 3000", len(rest), len(pruned))
	}
	left := map[string]bool{}
	for _, r := range rest {
		left[r.ID] = true
	}
	for _, id := range []string{oldest.ID, keepOld.ID, keepNew.ID} {
		if !left[id] {
			t.Fatalf("labelled result %s was pruned", id)
		}
	}
	// Oldest first: every unlabelled survivor is newer than every pruned one.
	prunedSet := map[string]bool{}
	for _, id := range pruned {
		prunedSet[id] = true
	}
	var newestPruned time.Time
	for _, r := range rows {
		if prunedSet[r.ID] && r.DecidedAt.After(newestPruned) {
			newestPruned = r.DecidedAt
		}
	}
	for _, r := range rest {
		if r.Label == nil && !r.DecidedAt.After(newestPruned) {
			t.Fatalf("unlabelled %s (%v) kept while a newer one (%v) was pruned", r.ID, r.DecidedAt, newestPruned)
		}
	}
	if h := s.Health(); h.Pruned != uint64(len(pruned)) {
		t.Fatalf("health pruned %d, reported %d", h.Pruned, len(pruned))
	}
}

// testHostile: bad parameters are refused with the parameter named; SQL
// metacharacters are just data.
func testHostile(t *testing.T, b backend) {
	s := open(t, b.cfg(t))
	ctx := context.Background()
	publishN(t, s, 0, 20)
	flush(t, s)
	for _, c := range []struct {
		q     Query
		param string
	}{
		{Query{Limit: 1001}, "limit"},
		{Query{Limit: 1 << 40}, "limit"},
		{Query{Limit: -1}, "limit"},
		{Query{Cursor: "garbage!"}, "cursor"},
		{Query{Cursor: "MXwxfA"}, "cursor"}, // "1|1|": no ID
		{Query{Cursor: strings.Repeat("A", 10000)}, "cursor"},
		{Query{Verdict: "pass' OR '1'='1"}, "verdict"},
		{Query{Label: "x"}, "label"},
		{Query{Kind: "prod"}, "kind"},
		{Query{PartID: strings.Repeat("p", 129)}, "part_id"},
		{Query{PartID: "a\x00b"}, "part_id"},
		{Query{Since: t0, Until: t0}, "until"},
	} {
		_, err := s.Query(ctx, c.q)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != c.param {
			t.Errorf("query %+v: %v, want a refusal of %s", c.q, err, c.param)
		}
	}
	for _, pid := range []string{"'; DROP TABLE results; --", `" OR 1=1 --`, "%", "_", "P00001%", `\`, "?"} {
		p, err := s.Query(ctx, Query{PartID: pid})
		if err != nil || len(p.Results) != 0 {
			t.Fatalf("part_id %q: %d results, %v", pid, len(p.Results), err)
		}
	}
	if p, err := s.Query(ctx, Query{}); err != nil || len(p.Results) != 20 {
		t.Fatalf("after hostile part IDs: %d results, %v", len(p.Results), err)
	}
	for _, c := range []struct {
		v     string
		param string
	}{
		{"limit=1000000", "limit"},
		{"limit=abc", "limit"},
		{"limit=0", "limit"},
		{"since=yesterday", "since"},
		{"since=-5h", "since"},
		{"verdit=pass", "verdit"},
		{"verdict=pass&verdict=fail", "verdict"},
	} {
		v, _ := url.ParseQuery(c.v)
		_, err := ParseQuery(v, time.Now())
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != c.param {
			t.Errorf("ParseQuery(%s): %v, want a refusal of %s", c.v, err, c.param)
		}
	}
	v, _ := url.ParseQuery("since=7d&until=2030-01-02&verdict=fail&part_id=P1&label=bad&kind=all&limit=10")
	q, err := ParseQuery(v, t0)
	if err != nil || !q.Since.Equal(t0.Add(-7*24*time.Hour)) || q.Limit != 10 || q.Kind != KindAll || q.Until.Year() != 2030 {
		t.Fatalf("ParseQuery: %+v, %v", q, err)
	}
}

// testMigrations: reopening is idempotent; a newer schema is refused with
// both versions named; someone else's database is refused.
func testMigrations(t *testing.T, b backend) {
	cfg := b.cfg(t)
	s := open(t, cfg)
	publishN(t, s, 0, 5)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, cfg)
	if p, err := s2.Query(context.Background(), Query{}); err != nil || len(p.Results) != 5 {
		t.Fatalf("reopen: %d, %v", len(p.Results), err)
	}
	var versions int
	if err := s2.db.w.QueryRow(`SELECT COUNT(*) FROM schema_version`).Scan(&versions); err != nil || versions != SchemaVersion {
		t.Fatalf("schema_version rows %d (%v), want %d", versions, err, SchemaVersion)
	}
	if _, err := s2.db.w.Exec(s2.db.q(`INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)`), 99, "future", nowText()); err != nil {
		t.Fatal(err)
	}
	_ = s2.Close()
	for _, ro := range []bool{false, true} {
		c := cfg
		c.ReadOnly = ro
		_, err := Open(context.Background(), c)
		if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), "version 99") || !strings.Contains(err.Error(), "upgrade segad") {
			t.Fatalf("newer schema (read-only %v): %v", ro, err)
		}
	}
	// Someone else's database.
	other := b.cfg(t)
	raw, err := openDatabase(context.Background(), Config{Backend: other.Backend, Path: other.Path, URL: other.URL, BusyTimeout: time.Second, ReadOnly: false}, quietLog(t))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = raw.w.Exec(`DROP TABLE results`)
	_, _ = raw.w.Exec(`DROP TABLE labels`)
	_, _ = raw.w.Exec(`DROP TABLE schema_version`)
	if _, err := raw.w.Exec(`CREATE TABLE invoices (n INTEGER)`); err != nil {
		t.Fatal(err)
	}
	_ = raw.close()
	if _, err := Open(context.Background(), other); err == nil || !strings.Contains(err.Error(), "not a segad history database") {
		t.Fatalf("foreign database: %v", err)
	}
}

// testExport: CSV and JSONL hold every matching row, formulas defused.
func testExport(t *testing.T, b backend) {
	s := open(t, b.cfg(t))
	ctx := context.Background()
	publishN(t, s, 0, 2500)
	evil := mkResult(9999)
	evil.PartID = "=HYPERLINK(\"http://x\")"
	_ = s.Publish(ctx, evil)
	flush(t, s)
	var buf bytes.Buffer
	n, err := s.Export(ctx, Query{}, FormatCSV, &buf)
	if err != nil || n != 2501 {
		t.Fatalf("csv: %d, %v", n, err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(recs) != 2502 || recs[0][0] != "id" {
		t.Fatalf("csv back: %d records, %v", len(recs), err)
	}
	if recs[1][3] != "'"+evil.PartID {
		t.Fatalf("formula not defused: %q", recs[1][3])
	}
	buf.Reset()
	n, err = s.Export(ctx, Query{Verdict: result.VerdictFail}, FormatJSONL, &buf)
	if err != nil || n != 1251 {
		t.Fatalf("jsonl: %d, %v", n, err)
	}
	sc := bufio.NewScanner(&buf)
	lines := 0
	for sc.Scan() {
		var r Row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Verdict != result.VerdictFail {
			t.Fatalf("line %d: %v %+v", lines, err, r)
		}
		lines++
	}
	if lines != 1251 {
		t.Fatalf("%d lines", lines)
	}
	if _, err := s.Export(ctx, Query{}, "xml", io.Discard); err == nil {
		t.Fatal("xml accepted")
	}
}

// testReadOnly: a read-only store (the CLI) queries while the daemon's
// store writes, and refuses to write.
func testReadOnly(t *testing.T, b backend) {
	cfg := b.cfg(t)
	w := open(t, cfg)
	publishN(t, w, 0, 100)
	flush(t, w)
	rc := cfg
	rc.ReadOnly = true
	r := open(t, rc)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 100; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = w.Publish(ctx, mkResult(i))
			if i%100 == 0 {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
	for range 50 {
		if _, err := r.Query(ctx, Query{Limit: 50}); err != nil {
			t.Fatalf("read while writing: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	if err := r.Publish(ctx, mkResult(1)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("publish on read-only: %v", err)
	}
	if _, err := r.Label(ctx, "x", Label{Label: "good", Who: "a"}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("label on read-only: %v", err)
	}
}

// testFullSpeed: 50,000 results (5,000 with -short) published as fast as
// the caller can, all recorded; logs rows per second.
func testFullSpeed(t *testing.T, b backend) {
	n := 50000
	if testing.Short() {
		n = 5000
	}
	cfg := b.cfg(t)
	cfg.QueueSize = n
	s := open(t, cfg)
	rs := make([]result.Result, n)
	for i := range rs {
		rs[i] = mkResult(i)
	}
	ctx := context.Background()
	start := time.Now()
	for i := range rs {
		_ = s.Publish(ctx, rs[i])
	}
	pub := time.Since(start)
	flush(t, s)
	el := time.Since(start)
	h := s.Health()
	if h.Written != uint64(n) || h.NotRecorded != 0 {
		t.Fatalf("%d written, %d not recorded of %d: %+v", h.Written, h.NotRecorded, n, h)
	}
	t.Logf("%s: %d results: publish %v (%.0f ns each), committed in %v: %.0f rows/s", b.name, n, pub,
		float64(pub.Nanoseconds())/float64(n), el, float64(n)/el.Seconds())
}
