package history

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/result"
)

// The attack tests re-execute the test binary as a child process (a writer
// to kill, or a store running as an unprivileged user); TestMain routes the
// child to its job.
const childEnv = "SEGAD_HISTORY_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "writer":
		childWriter(os.Getenv("SEGAD_HISTORY_DB"))
	case "unwritable":
		childUnwritable(os.Getenv("SEGAD_HISTORY_DB"))
	default:
		fmt.Fprintln(os.Stderr, "unknown child", os.Getenv(childEnv))
		os.Exit(2)
	}
}

// childWriter publishes results with consecutive sequence numbers at full
// speed, never dropping (it waits while the queue is half full), until it
// is killed.
func childWriter(path string) {
	s, err := Open(context.Background(), Config{Path: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		for len(s.queue) > cap(s.queue)/2 {
			time.Sleep(100 * time.Microsecond)
		}
		_ = s.Publish(context.Background(), mkResult(i))
	}
}

// childReport is what the unwritable child prints.
type childReport struct {
	Health    Health
	Publish   latencies
	Published int
	OpenErr   string
}

// childUnwritable opens a store on a database it cannot write, publishes
// 20,000 results and reports Health and its slowest Publish.
func childUnwritable(path string) {
	var rep childReport
	s, err := Open(context.Background(), Config{Path: path, QueueSize: 1000, BatchInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		rep.OpenErr = err.Error()
	} else {
		for i := range 20000 {
			start := time.Now()
			_ = s.Publish(context.Background(), mkResult(i))
			rep.Publish = append(rep.Publish, time.Since(start))
			rep.Published++
			if i%1000 == 0 {
				time.Sleep(5 * time.Millisecond) // let the writer try
			}
		}
		rep.Health = s.Health()
		s.cfg.CloseTimeout = 100 * time.Millisecond
		_ = s.Close()
	}
	_ = json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

// TestSIGKILLMidWrite kills a writing process and checks that the
// database is consistent (integrity check), holds an unbroken prefix of
// what was published (batches are atomic and in order), and that a new
// store continues from there.
func TestSIGKILLMidWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	for round := range 2 {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=writer", "SEGAD_HISTORY_DB="+path)
		var stderr testenv.SyncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until it has committed a few thousand rows, then kill it
		// mid-stream.
		deadline := time.Now().Add(60 * time.Second)
		for {
			if n := countRows(t, path); n >= committed+3000 {
				committed = n
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("writer committed too little in 60s: %s", stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if round == 1 {
			break
		}
	}
	// The killed writer left its WAL behind; opening recovers it.
	db, err := sql.Open("sqlite3", sqliteDSN(path, "_busy_timeout=5000"))
	if err != nil {
		t.Fatal(err)
	}
	var check string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q, %v", check, err)
	}
	var n, minSeq, maxSeq int64
	if err := db.QueryRow(`SELECT COUNT(*), MIN(seq), MAX(seq) FROM results`).Scan(&n, &minSeq, &maxSeq); err != nil {
		t.Fatal(err)
	}
	// Two writers each started at seq 0 (new IDs, so seq repeats): each
	// writer's rows must be an unbroken prefix 0..k, so the seqs are
	// 0..max without a hole and those seen twice are 0..k2.
	var distinct, twice, twiceMax int64
	if err := db.QueryRow(`SELECT COUNT(DISTINCT seq) FROM results`).Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT COUNT(*), COALESCE(MAX(seq), -1) FROM (SELECT seq FROM results GROUP BY seq HAVING COUNT(*) = 2)`).Scan(&twice, &twiceMax); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if distinct != maxSeq+1 || twice != twiceMax+1 || n != distinct+twice {
		t.Fatalf("not two unbroken prefixes: %d rows, seq %d..%d, %d distinct, %d seen twice (max %d)", n, minSeq, maxSeq, distinct, twice, twiceMax)
	}
	t.Logf("after two SIGKILLs: %d rows, seq %d..%d", n, minSeq, maxSeq)
	if minSeq != 0 || n < 6000 {
		t.Fatalf("rows %d, seq %d..%d", n, minSeq, maxSeq)
	}
	s := open(t, Config{Path: path, Logger: quietLog(t)})
	publishN(t, s, 1_000_000, 1000)
	flush(t, s)
	if got := countRows(t, path); got != n+1000 {
		t.Fatalf("new store: %d rows, want %d + 1000", got, n)
	}
	if h := s.Health(); !h.OK || h.Written != 1000 {
		t.Fatalf("health of the continuing store: %+v", h)
	}
}

// countRows counts results through a read-only connection (0 before the
// table exists).
func countRows(t *testing.T, path string) int64 {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return 0
	}
	db, err := sql.Open("sqlite3", sqliteDSN(path, "mode=ro&_busy_timeout=5000"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(`SELECT COUNT(*) FROM results`).Scan(&n); err != nil {
		return 0
	}
	return n
}

// TestUnwritableDisk runs a store on a read-only database file and in a
// read-only folder as an unprivileged user (root writes anyway), and
// checks that Publish stays non-blocking and Health says why.
func TestUnwritableDisk(t *testing.T) {
	var cred *syscall.Credential
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Skipf("root, and no user nobody to run the store as: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	for _, c := range []struct {
		name string
		// prepare makes dir/history.db unwritable for the child.
		prepare func(t *testing.T, dir, path string)
		want    string
	}{
		{"ReadOnlyFile", func(t *testing.T, dir, path string) {
			mustChmod(t, path, 0o444)
		}, "read-only"},
		{"ReadOnlyFolder", func(t *testing.T, dir, path string) {
			mustChmod(t, dir, 0o555)
		}, "folder"},
		{"ReadOnlyFolderNewFile", func(t *testing.T, dir, path string) {
			_ = os.Remove(path)
			mustChmod(t, dir, 0o555)
		}, "folder"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A folder every user can reach (t.TempDir's parents are
			// private to the test's user).
			top, err := os.MkdirTemp("", "segad-hist-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(filepath.Join(top, "db"), 0o755); _ = os.RemoveAll(top) })
			mustChmod(t, top, 0o755)
			exe := filepath.Join(top, "history.test")
			copyFile(t, mustExe(t), exe)
			mustChmod(t, exe, 0o755)
			dir := filepath.Join(top, "db")
			path := filepath.Join(dir, "history.db")
			s := open(t, Config{Path: path, Logger: quietLog(t)})
			publishN(t, s, 0, 10)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{dir, path} {
				if err := os.Chown(p, uid, gid); err != nil {
					t.Fatal(err)
				}
			}
			c.prepare(t, dir, path)
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=unwritable", "SEGAD_HISTORY_DB="+path)
			cmd.Dir = top
			if cred != nil {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
			}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			var rep childReport
			if err := json.Unmarshal(out, &rep); err != nil {
				t.Fatalf("child said %s: %v", out, err)
			}
			t.Logf("health: %+v; %v", rep.Health, rep.Publish)
			if rep.OpenErr != "" {
				t.Fatalf("Open refused an unwritable database instead of degrading: %s", rep.OpenErr)
			}
			h := rep.Health
			if h.OK || !strings.Contains(h.Reason, c.want) || !strings.Contains(h.Reason, "results not recorded") || h.NotRecorded < 15000 {
				t.Fatalf("health %+v: want not OK, reason naming %q and the count", h, c.want)
			}
			if rep.Published != 20000 {
				t.Fatalf("published %d", rep.Published)
			}
			if err := rep.Publish.check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// latencies records Publish call times. A Publish that waited for the
// database would take at least the writer's backoff (500 ms) or busy
// timeout (seconds) in every call made meanwhile; a scheduler or GC pause
// on a shared machine makes a rare single call slow. So the bound is on the
// 99.9th percentile, with a loose cap on the maximum.
type latencies []time.Duration

func (l latencies) check() error {
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	p999, mx := s[len(s)*999/1000], s[len(s)-1]
	if p999 > 5*time.Millisecond || mx > time.Second {
		return fmt.Errorf("Publish waited: 99.9th percentile %v, slowest %v", p999, mx)
	}
	return nil
}

func (l latencies) String() string {
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return fmt.Sprintf("Publish: median %v, 99.9%% %v, slowest %v", s[len(s)/2], s[len(s)*999/1000], s[len(s)-1])
}

func mustChmod(t *testing.T, p string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}

func mustExe(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDiskFull caps the database (SQLite's max_page_count: the same
// SQLITE_FULL a full disk gives) and checks that Publish stays
// non-blocking, Health says "disk full" with the count, and retention
// (deleting old results frees pages for new ones) lets writing resume.
func TestDiskFull(t *testing.T) {
	cfg := Config{Path: filepath.Join(t.TempDir(), "history.db"), QueueSize: 1000, BatchInterval: 10 * time.Millisecond,
		Logger: quietLog(t), maxPageCount: 100}
	s := open(t, cfg)
	ctx := context.Background()
	var lat latencies
	for i := range 20000 {
		start := time.Now()
		_ = s.Publish(ctx, mkResult(i))
		lat = append(lat, time.Since(start))
		if i%1000 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond)
	h := s.Health()
	t.Logf("health: %+v; %v", h, lat)
	if h.OK || !strings.HasPrefix(h.Reason, "history: disk full: ") || !strings.HasSuffix(h.Reason, " results not recorded") || h.Written == 0 || h.NotRecorded == 0 {
		t.Fatalf("health %+v", h)
	}
	if err := lat.check(); err != nil {
		t.Fatal(err)
	}
	// Make room: retention deletes the oldest half.
	s.cfg.MaxAge, s.cfg.MaxBytes, s.cfg.MaxRows = -1, -1, int64(h.Written/2)
	if n, err := s.Prune(ctx); err != nil || n == 0 {
		t.Fatalf("prune on a full database: %d, %v", n, err)
	}
	before := s.Health().Written
	deadline := time.Now().Add(40 * time.Second)
	for s.Health().Written == before {
		if time.Now().After(deadline) {
			t.Fatalf("no write after room was made: %+v", s.Health())
		}
		_ = s.Publish(ctx, mkResult(30000+int(time.Now().UnixNano()%1000000)))
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSlowStoreNeverBlocks holds SQLite's write lock from another
// connection (a long `segad results label`, a backup) so the writer waits
// its busy timeout and fails: Publish must not wait with it.
func TestSlowStoreNeverBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	s := open(t, Config{Path: path, QueueSize: 500, BatchInterval: 10 * time.Millisecond, BusyTimeout: 2 * time.Second, Logger: quietLog(t)})
	ctx := context.Background()
	publishN(t, s, 0, 10)
	flush(t, s)
	locker, err := sql.Open("sqlite3", sqliteDSN(path, "_txlock=immediate&_busy_timeout=5000"))
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	tx, err := locker.Begin()
	if err != nil {
		t.Fatal(err)
	}
	var lat latencies
	start := time.Now()
	for i := 10; i < 20010; i++ {
		t1 := time.Now()
		_ = s.Publish(ctx, mkResult(i))
		lat = append(lat, time.Since(t1))
		if i%2000 == 0 {
			time.Sleep(200 * time.Millisecond) // across a busy timeout
		}
	}
	took := time.Since(start)
	time.Sleep(2500 * time.Millisecond)
	h := s.Health()
	t.Logf("20000 Publish calls in %v, %v; health %+v", took, lat, h)
	if err := lat.check(); err != nil {
		t.Fatal(err)
	}
	if h.OK || !strings.Contains(h.Reason, "busy") || h.NotRecorded < 10000 {
		t.Fatalf("health %+v", h)
	}
	_ = tx.Rollback()
	deadline := time.Now().Add(40 * time.Second)
	for s.Health().Written <= 10 {
		if time.Now().After(deadline) {
			t.Fatalf("writer did not resume after the lock was released: %+v", s.Health())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPostgresDown stops the server under a running store: Publish stays
// non-blocking, Health says the database is unreachable, and writing
// resumes (the queued results included) when the server is back.
func TestPostgresDown(t *testing.T) {
	pg := testenv.StartPostgres(t)
	s := open(t, Config{Backend: BackendPostgres, URL: pg.CreateDB(t, "down"), QueueSize: 2000, BatchInterval: 10 * time.Millisecond, Logger: quietLog(t)})
	ctx := context.Background()
	publishN(t, s, 0, 100)
	flush(t, s)
	pg.Stop()
	var lat latencies
	for i := 100; i < 5100; i++ {
		t1 := time.Now()
		_ = s.Publish(ctx, mkResult(i))
		lat = append(lat, time.Since(t1))
		if i%500 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond)
	h := s.Health()
	t.Logf("server down: health %+v, %v", h, lat)
	if h.OK || !strings.Contains(h.Reason, "unreachable") || h.NotRecorded == 0 {
		t.Fatalf("health %+v", h)
	}
	if err := lat.check(); err != nil {
		t.Fatal(err)
	}
	pg.Start()
	deadline := time.Now().Add(60 * time.Second)
	for s.Health().Written < 100+2000 {
		if time.Now().After(deadline) {
			t.Fatalf("queued results not written after the server came back: %+v", s.Health())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkPublish is the caller's cost of recording a result (the daemon's
// hot path): a copy onto the queue. The writer runs meanwhile; a run that
// outpaces it measures the drop path too, which is as cheap.
func BenchmarkPublish(b *testing.B) {
	s, err := Open(context.Background(), Config{Path: filepath.Join(b.TempDir(), "history.db"), QueueSize: 1_000_000, Logger: quietLog(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := mkResult(1)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Seq = uint64(i)
		_ = s.Publish(ctx, r)
	}
	b.StopTimer()
	// 2 ms is a frame at 500 parts/s; the ratio is the share of it.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/2e6, "frame-ratio")
}

// BenchmarkWrite is the end-to-end rate: b.N results published and
// committed (SQLite, the default batch of 100).
func BenchmarkWrite(b *testing.B) {
	s, err := Open(context.Background(), Config{Path: filepath.Join(b.TempDir(), "history.db"), QueueSize: 1_000_000, Logger: quietLog(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rs := make([]result.Result, min(b.N, 100000))
	for i := range rs {
		rs[i] = mkResult(i)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := rs[i%len(rs)]
		if i >= len(rs) {
			r.ID = result.NewID(r.DecidedAt)
		}
		_ = s.Publish(ctx, r)
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
