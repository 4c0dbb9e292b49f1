package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Postgres is a real PostgreSQL server started by a test: a fresh cluster in
// a temporary data folder, listening on 127.0.0.1 and a free port, with its
// Unix socket inside the data folder so it never touches /var/run. initdb
// and postgres refuse to run as root, so when the test runs as root both run
// as the `postgres` user (the account Debian's package creates), which owns
// the data folder. The server is stopped and the folder removed when the
// test ends.
type Postgres struct {
	t    testing.TB
	Port int
	// Dir is the data folder (also the socket folder).
	Dir  string
	bin  string
	cred *syscall.Credential
	cmd  *exec.Cmd
	done chan struct{}
	log  SyncBuffer
}

// postgresBin returns the folder of initdb and postgres: the newest
// /usr/lib/postgresql/<version>/bin (Debian's layout, not on PATH), else the
// folder of an initdb on PATH; "" when PostgreSQL is not installed.
func postgresBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if fileExists(filepath.Join(d, "initdb")) && fileExists(filepath.Join(d, "postgres")) {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if fileExists(filepath.Join(d, "postgres")) {
			return d
		}
	}
	return ""
}

// StartPostgres initialises and starts a server and stops it when the test
// ends. It skips the test, saying which package to install, when the
// PostgreSQL binaries are absent.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	bin := postgresBin()
	if bin == "" {
		tb.Skip("PostgreSQL not installed (apt-get install postgresql): initdb and postgres not found under /usr/lib/postgresql/*/bin or on PATH")
	}
	p := &Postgres{t: tb, Port: FreePort(tb), bin: bin}
	// Not tb.TempDir(): its parent folders are private to root, and the
	// postgres user must be able to reach its data folder.
	dir, err := os.MkdirTemp("", "segad-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	p.Dir = dir
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Skipf("running as root and there is no postgres user to run PostgreSQL as (Debian's postgresql package creates it): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatal(err)
		}
		// What `runuser -u postgres` does, without a PAM session in between,
		// so signals reach the server itself.
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	data := filepath.Join(dir, "data")
	out, err := p.command("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput()
	if err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	p.Start()
	tb.Cleanup(p.Stop)
	return p
}

func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Dir = p.Dir
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd
}

// Start starts (or restarts) the server and waits until it accepts
// connections.
func (p *Postgres) Start() {
	p.t.Helper()
	// Durability off: test data is thrown away, and fsync on a shared CI
	// disk would dominate the run time.
	p.cmd = p.command("postgres", "-D", filepath.Join(p.Dir, "data"), "-p", strconv.Itoa(p.Port),
		"-k", p.Dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "shared_buffers=32MB", "-c", "max_connections=40")
	p.cmd.Stdout = &p.log
	p.cmd.Stderr = &p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start postgres: %v", err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.done)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		// Listening is not enough (the server answers "starting up" for a
		// moment): pg_isready asks for a real session.
		if c, err := net.DialTimeout("tcp", p.addr(), 100*time.Millisecond); err == nil {
			c.Close()
			if p.command("pg_isready", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "postgres").Run() == nil {
				return
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("postgres exited at start:\n%s", p.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.t.Fatalf("postgres did not accept connections on %d within 30s:\n%s", p.Port, p.log.String())
}

func (p *Postgres) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.Port) }

// Stop stops the server (fast shutdown: SIGINT) and waits for it.
func (p *Postgres) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// CreateDB creates an empty database and returns its URL for a client
// (user postgres, no password, no TLS).
func (p *Postgres) CreateDB(tb testing.TB, name string) string {
	tb.Helper()
	out, err := p.command("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "postgres", name).CombinedOutput()
	if err != nil {
		tb.Fatalf("createdb %s: %v\n%s", name, err, out)
	}
	return p.URL(name)
}

// URL is the connection URL of database name on this server.
func (p *Postgres) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.addr(), name)
}

// Log returns what the server wrote so far.
func (p *Postgres) Log() string { return p.log.String() }
