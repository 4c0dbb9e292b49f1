package modbus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/plc"
	"github.com/segad-edge/segad-edge/result"
)

// fakeLine stands in for the daemon (which the lead's end-to-end test
// replaces with `segad run` on demo parts): it answers every trigger with
// exactly one result, in order, through Publish, after delay; freeRun adds
// results nobody triggered, as a free-running camera or an MQTT trigger
// would.
type fakeLine struct {
	srv       atomic.Pointer[Server]
	delay     time.Duration
	q         chan string
	busy      atomic.Bool
	refuse    atomic.Bool
	published atomic.Int64
	pubErrs   atomic.Int64
	free      atomic.Int64
	mu        sync.Mutex
	triggered []string
	bundle    atomic.Value
	done      chan struct{}
	wg        sync.WaitGroup
}

func newFakeLine(t testing.TB, delay time.Duration) *fakeLine {
	f := &fakeLine{delay: delay, q: make(chan string, 1024), done: make(chan struct{})}
	f.bundle.Store("demo-bundle-1")
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			select {
			case <-f.done:
				return
			case part := <-f.q:
				f.busy.Store(true)
				if f.delay > 0 {
					time.Sleep(f.delay)
				}
				f.publish(resultFor(part))
				f.busy.Store(len(f.q) > 0)
			}
		}
	}()
	t.Cleanup(func() { close(f.done); f.wg.Wait() })
	return f
}

func (f *fakeLine) publish(r result.Result) {
	f.published.Add(1)
	if err := f.srv.Load().Publish(context.Background(), r); err != nil {
		f.pubErrs.Add(1)
	}
}

// freeRun publishes a result nobody triggered every interval until stop.
func (f *fakeLine) freeRun(every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(every)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tk.C:
				part := ""
				if i%2 == 1 {
					part = fmt.Sprintf("MQ-%d", i) // an MQTT trigger's part
				}
				f.free.Add(1)
				f.publish(resultFor(part))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (f *fakeLine) Trigger(ctx context.Context, partID string) error {
	if f.refuse.Load() {
		return fmt.Errorf("line not ready")
	}
	f.mu.Lock()
	f.triggered = append(f.triggered, partID)
	f.mu.Unlock()
	select {
	case f.q <- partID:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeLine) Status() plc.Status {
	return plc.Status{Online: true, Ready: true, Busy: f.busy.Load(), Bundle: f.bundle.Load().(string)}
}

// resultFor is the verdict rule shared with testdata/plc.py:
// crc32(part) % 10: 0..6 pass, 7..8 fail, 9 error; score (crc % 1000) /
// 100; threshold 7.
func resultFor(part string) result.Result {
	c := crc32.ChecksumIEEE([]byte(part))
	score := float64(c%1000) / 100
	r := result.Result{PartID: part, Verdict: result.VerdictPass, Score: &score, Threshold: 7, DecidedAt: time.Now()}
	switch v := c % 10; {
	case v >= 9:
		r.Verdict, r.ReasonCode = result.VerdictError, result.ReasonInference
	case v >= 7:
		r.Verdict, r.ReasonCode = result.VerdictFail, result.ReasonAnomaly
	}
	return r
}

// testConfig is a loopback config on a free port.
func testConfig(mod func(*Config)) Config {
	c := Defaults()
	c.Enabled = true
	c.Listen = "127.0.0.1:0"
	if mod != nil {
		mod(&c)
	}
	return c
}

// startServer starts a server for line (nil allowed) and closes it at the
// end of the test; its log goes to the test log.
func startServer(t testing.TB, cfg Config, line *fakeLine) *Server {
	t.Helper()
	var l plc.Line
	if line != nil {
		l = line
	}
	s, err := Listen(cfg, l, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if line != nil {
		line.srv.Store(s)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func port(s *Server) string { return strconv.Itoa(s.Addr().(*net.TCPAddr).Port) }

// runPLC runs testdata/plc.py (pymodbus) against s and decodes its JSON
// summary into out.
func runPLC(t *testing.T, s *Server, timeout time.Duration, out any, args ...string) {
	t.Helper()
	if err := plcScript(s, timeout, out, args...); err != nil {
		t.Fatal(err)
	}
}

// plcScript is runPLC for goroutines (it returns the error).
func plcScript(s *Server, timeout time.Duration, out any, args ...string) error {
	py, err := testenv.Pymodbus()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args = append([]string{"testdata/plc.py"}, append(args, "--port", port(s))...)
	cmd := exec.CommandContext(ctx, py, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("plc.py %v: %v\nstderr:\n%s\nstdout:\n%s", args, err, stderr.String(), stdout.String())
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), out); err != nil {
		return fmt.Errorf("plc.py %v: output %q: %v", args, stdout.String(), err)
	}
	return nil
}
