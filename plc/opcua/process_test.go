package opcua

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/plc"
	"github.com/segad-edge/segad-edge/plc/opcua/opcuatest"
)

// childEnv makes the test binary the OPC UA server process (TestMain).
const childEnv = "SEGAD_OPCUA_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(ServeChild(os.Stdin, os.Stdout, func(level, format string) *slog.Logger {
			return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}))
	}
	os.Exit(m.Run())
}

// startProcess starts a Process whose server process is this test binary
// (TestMain runs ServeChild), on a free loopback port.
func startProcess(t testing.TB, cfg Config, status func() plc.Status, opts ProcessOptions) (*Process, *testenv.SyncBuffer) {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	}
	logs := &testenv.SyncBuffer{}
	opts.Options = Options{StateDir: t.TempDir(), Status: status, Version: "test",
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	opts.Command = []string{os.Args[0]}
	opts.Env = append(os.Environ(), childEnv+"=1")
	opts.Stderr = logs
	p, err := StartProcess(cfg, opts)
	if err != nil {
		t.Fatalf("StartProcess: %v", err)
	}
	t.Cleanup(func() {
		p.Close()
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	return p, logs
}

// procClient reads the server process's variables with gopcua.
type procClient struct {
	t  *testing.T
	p  *Process
	ns uint16
}

// read reads keys (namespace 1, as in this server) in one Read request.
func (c procClient) read(keys ...string) ([]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := newTestClient(ctx, c.p.Endpoint())
	if err != nil {
		return nil, err
	}
	defer cl.Close(context.Background())
	return opcuatest.ReadKeys(ctx, cl, 1, keys...)
}

func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
	}
}

// TestProcessPublishRestart: the server runs in a child process; results
// and the line status published in the parent show in it; after the child
// is killed, the parent logs it with the child's last output, counts the
// restart, starts it again within the backoff, and the restarted server
// shows the latest result (published while it was down) with the parent's
// counters. Close stops the child gracefully and Publish then returns
// ErrClosed.
func TestProcessPublishRestart(t *testing.T) {
	status := plc.Status{Online: true, Ready: true, Bundle: "b1"}
	p, logs := startProcess(t, Config{Limits: Limits{StatusInterval: 20 * time.Millisecond}}, func() plc.Status { return status },
		ProcessOptions{Backoff: 300 * time.Millisecond})
	c := procClient{t: t, p: p}
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		if err := p.Publish(ctx, testResult(i)); err != nil {
			t.Fatal(err)
		}
	}
	var vals []any
	waitUntil(t, "5 results in the server process", 10*time.Second, func() bool {
		var err error
		vals, err = c.read(KeyResultCounter, KeyResultID, KeySystemState, KeyHealthBundle)
		return err == nil && vals[0] == uint64(5) && vals[2] == StateOperational
	})
	if vals[1] != "r000005" || vals[2] != StateOperational || vals[3] != "b1" {
		t.Fatalf("read %v", vals)
	}
	st := p.ProcessStats()
	if !st.Up || st.Pid == 0 || st.Pid == os.Getpid() || st.Restarts != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Kill the server process; publish while it is down.
	syscall.Kill(st.Pid, syscall.SIGKILL)
	waitUntil(t, "the parent to see the exit", 5*time.Second, func() bool { return !p.ProcessStats().Up })
	for i := 6; i <= 8; i++ {
		start := time.Now()
		if err := p.Publish(ctx, testResult(i)); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Fatalf("Publish with the server process down took %v", d)
		}
	}
	waitUntil(t, "the restarted server process to show result 8", 10*time.Second, func() bool {
		var err error
		vals, err = c.read(KeyResultCounter, KeyResultID, KeyParts, KeyPasses, KeyFails, KeyErrors)
		return err == nil && vals[0] == uint64(8)
	})
	// testResult: i%5 == 3 fail, == 4 error: 1..8 -> 5 passes, 2 fails (3, 8), 1 error (4).
	if vals[1] != "r000008" || vals[2] != uint64(8) || vals[3] != uint64(5) || vals[4] != uint64(2) || vals[5] != uint64(1) {
		t.Fatalf("after the restart: %v, want r000008, parts 8, passes 5, fails 2, errors 1", vals)
	}
	st2 := p.ProcessStats()
	if !st2.Up || st2.Restarts != 1 || st2.Pid == st.Pid || !strings.Contains(st2.LastExit, "killed") {
		t.Fatalf("stats after the restart %+v", st2)
	}
	if l := logs.String(); !strings.Contains(l, "the OPC UA server process ended") || !strings.Contains(l, "OPC UA server process restarted") {
		t.Fatalf("log:\n%s", l)
	}
	// Results keep flowing to the new process.
	p.Publish(ctx, testResult(9))
	waitUntil(t, "result 9", 5*time.Second, func() bool {
		vals, err := c.read(KeyResultCounter)
		return err == nil && vals[0] == uint64(9)
	})
	pid := st2.Pid
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("server process %d still runs after Close", pid)
	}
	if !strings.Contains(logs.String(), "opcua: server listening") || strings.Contains(logs.String(), "did not stop in time") {
		t.Fatalf("log:\n%s", logs.String())
	}
	if err := p.Publish(ctx, testResult(10)); err != ErrClosed {
		t.Fatalf("Publish after Close: %v", err)
	}
}

// TestProcessQueueBound: with the server process stopped (SIGSTOP),
// Publish never waits: the bounded queue fills, further results are
// dropped and counted; once the process runs again it shows the latest
// result (resent after the drops).
func TestProcessQueueBound(t *testing.T) {
	p, logs := startProcess(t, Config{Limits: Limits{StatusInterval: 20 * time.Millisecond}}, nil, ProcessOptions{QueueSize: 16})
	pid := p.ProcessStats().Pid
	syscall.Kill(pid, syscall.SIGSTOP)
	var worst time.Duration
	for i := 1; i <= 3000; i++ {
		start := time.Now()
		p.Publish(context.Background(), testResult(i))
		worst = max(worst, time.Since(start))
	}
	st := p.ProcessStats()
	syscall.Kill(pid, syscall.SIGCONT)
	if worst > 100*time.Millisecond || st.Dropped == 0 {
		t.Fatalf("slowest Publish %v, dropped %d", worst, st.Dropped)
	}
	if !strings.Contains(logs.String(), "results dropped") {
		t.Fatalf("drops not logged:\n%s", logs.String())
	}
	c := procClient{t: t, p: p}
	waitUntil(t, "the latest result after the drops", 10*time.Second, func() bool {
		vals, err := c.read(KeyResultCounter, KeyResultID)
		return err == nil && vals[0] == uint64(3000) && vals[1] == "r003000"
	})
	t.Logf("server process stopped: 3000 Publish calls, slowest %v, %d dropped; the latest shown once it ran again", worst, st.Dropped)
}

// TestProcessStartError: a server that cannot start (its port is taken)
// fails StartProcess with the server's own error, as New would.
func TestProcessStartError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = StartProcess(Config{Listen: ln.Addr().String()}, ProcessOptions{Options: Options{StateDir: t.TempDir()},
		Command: []string{os.Args[0]}, Env: append(os.Environ(), childEnv+"=1"), Stderr: &testenv.SyncBuffer{}})
	if err == nil || !strings.Contains(err.Error(), "plc.opcua.listen") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("StartProcess on a taken port: %v", err)
	}
}

// TestProcessHugeArray: the crafted Read request that makes gopcua
// v0.8.0 allocate an array of 2^31-1 pointers (16 GiB) before reading an
// element. The address-space limit (here 256 MiB above the process's size)
// makes the allocation fail at once inside the server process, whose Go
// runtime ends it ("fatal error: out of memory"); the parent (this test
// process) stays up, logs the exit with the child's last output, restarts
// it, and the restarted server shows the latest result to a new client.
func TestProcessHugeArray(t *testing.T) {
	p, logs := startProcess(t, Config{Limits: Limits{AddressSpaceGrowthMB: 256}}, nil, ProcessOptions{Backoff: 500 * time.Millisecond})
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		p.Publish(ctx, testResult(i))
	}
	c := procClient{t: t, p: p}
	waitUntil(t, "3 results", 10*time.Second, func() bool {
		vals, err := c.read(KeyResultCounter)
		return err == nil && vals[0] == uint64(3)
	})
	pid := p.ProcessStats().Pid
	addr := strings.TrimPrefix(strings.TrimSuffix(p.Endpoint(), "/segad"), "opc.tcp://")
	start := time.Now()
	answer, err := opcuatest.HugeArrayRead(addr, p.Endpoint(), 5*time.Second)
	if err != nil {
		t.Fatalf("sending the crafted request: %v", err)
	}
	waitUntil(t, "the server process to end", 5*time.Second, func() bool { return p.ProcessStats().Restarts == 1 })
	died := time.Since(start)
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("the old server process %d still runs", pid)
	}
	p.Publish(ctx, testResult(4)) // while it restarts
	waitUntil(t, "the restarted server with result 4", 10*time.Second, func() bool {
		vals, err := c.read(KeyResultCounter, KeyResultID)
		return err == nil && vals[0] == uint64(4) && vals[1] == "r000004"
	})
	st := p.ProcessStats()
	l := logs.String()
	// "fatal error: out of memory"; under -race the race runtime's own
	// "fatal error: too many address space collisions".
	if !strings.Contains(l, "fatal error:") || !strings.Contains(st.LastExit, "exit status 2") || !strings.Contains(l, "crash trace not shown") {
		t.Fatalf("stats %+v; log:\n%s", st, l)
	}
	t.Logf("crafted Read (NodesToRead length %d): answer %q, server process ended after %v (%s, %q), restarted and serving the latest result after %v; parent up, stats %+v",
		opcuatest.HugeArrayLength, answer, died.Round(time.Millisecond), st.LastExit, fatalLine(l), time.Since(start).Round(time.Millisecond), st)
}

func newTestClient(ctx context.Context, endpoint string) (*gopcua.Client, error) {
	cl, err := gopcua.NewClient(endpoint, gopcua.SecurityMode(ua.MessageSecurityModeNone), gopcua.SecurityPolicy(ua.SecurityPolicyURINone),
		gopcua.AuthAnonymous(), gopcua.RequestTimeout(3*time.Second), gopcua.AutoReconnect(false))
	if err != nil {
		return nil, err
	}
	if err := cl.Connect(ctx); err != nil {
		return nil, err
	}
	return cl, nil
}

// fatalLine is the first "fatal error:" line of a log.
func fatalLine(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "fatal error:") {
			return l
		}
	}
	return ""
}
