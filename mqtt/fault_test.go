package mqtt

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/segad-edge/segad-edge/internal/testenv"
)

// faultProc is one run of the faultpub helper binary.
type faultProc struct {
	cmd     *exec.Cmd
	ready   chan struct{}  // closed at "ready" (-await)
	stdin   io.WriteCloser // a line here starts publishing (-await)
	lastOK  chan int       // every "ok <seq>" line
	drained chan struct{}
	exited  chan error
	stderr  *testenv.SyncBuffer
}

// waitSeq waits until the publisher reports seq as stored (its "ok <seq>"
// lines), failing the test if it exits or stalls for a minute.
func (fp *faultProc) waitSeq(t *testing.T, seq int) int {
	t.Helper()
	timeout := time.After(60 * time.Second)
	last := -1
	for last < seq {
		select {
		case n := <-fp.lastOK:
			last = n
		case err := <-fp.exited:
			t.Fatalf("faultpub exited early (%v) at %d: %s", err, last, fp.stderr.String())
		case <-timeout:
			t.Fatalf("faultpub stuck at %d: %s", last, fp.stderr.String())
		}
	}
	return last
}

func startFaultpub(t *testing.T, bin, broker, outboxPath string, from, to int, extra ...string) *faultProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-broker", broker, "-outbox", outboxPath, "-station", "fault",
		"-from", strconv.Itoa(from), "-to", strconv.Itoa(to)}, extra...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	fp := &faultProc{stdin: stdin, cmd: cmd, ready: make(chan struct{}), lastOK: make(chan int, 20000), drained: make(chan struct{}), exited: make(chan error, 1), stderr: &testenv.SyncBuffer{}}
	cmd.Stderr = fp.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start faultpub: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if line == "drained" {
				close(fp.drained)
				continue
			}
			if line == "ready" {
				close(fp.ready)
				continue
			}
			if n, err := strconv.Atoi(strings.TrimPrefix(line, "ok ")); err == nil {
				fp.lastOK <- n
			}
		}
		fp.exited <- cmd.Wait()
	}()
	return fp
}

// TestFaultInjection publishes 10,000 results from a separate process while
// the broker is stopped and restarted three times and the publishing process
// is SIGKILLed once and restarted: every result must arrive at least once,
// in order (first arrivals), and duplicates are counted.
func TestFaultInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test takes 10-40 s")
	}
	const total = 10000
	root := testenv.RepoRoot(t)
	bin := filepath.Join(t.TempDir(), "faultpub")
	build := exec.Command("go", "build", "-o", bin, "./mqtt/internal/faultpub")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build faultpub: %v: %s", err, out)
	}
	m := startMosquitto(t, mosqOpts{})
	outboxPath := filepath.Join(t.TempDir(), "outbox.db")

	// The subscriber: persistent session (clean session off) at QoS 1, so
	// mosquitto queues (and persists across its own restarts) what arrives
	// while the subscriber reconnects.
	var mu sync.Mutex
	var got []int
	seen := map[int]bool{}
	opts := paho.NewClientOptions().AddBroker(m.URL()).SetClientID("fault-sub").SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond).
		SetMaxReconnectInterval(100 * time.Millisecond).SetKeepAlive(2 * time.Second)
	handler := func(_ paho.Client, msg paho.Message) {
		if !strings.HasSuffix(msg.Topic(), "/result") {
			return
		}
		var r result.Result
		if err := json.Unmarshal(msg.Payload(), &r); err != nil {
			t.Errorf("bad result payload: %v", err)
			return
		}
		want := fmt.Sprintf("fault-%06d", r.Seq)
		if r.ID != want || r.Station != "fault" {
			t.Errorf("result id %q station %q, want %q fault", r.ID, r.Station, want)
		}
		mu.Lock()
		got = append(got, int(r.Seq))
		seen[int(r.Seq)] = true
		mu.Unlock()
	}
	opts.SetDefaultPublishHandler(handler)
	sub := paho.NewClient(opts)
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	if tok := sub.Subscribe("segad/fault/result", 1, handler); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber subscribe: %v", tok.Error())
	}
	defer sub.Disconnect(100)

	restartBroker := func(at int) {
		t.Logf("at seq %d: stopping broker", at)
		m.Stop()
		time.Sleep(300 * time.Millisecond)
		m.Start()
		t.Logf("broker back")
	}

	start := time.Now()
	fp := startFaultpub(t, bin, m.URL(), outboxPath, 0, total)
	restartBroker(fp.waitSeq(t, 1500))
	last := fp.waitSeq(t, 3500)
	// SIGKILL mid-run: results whose Publish returned are in the outbox;
	// the restarted process must deliver them before its own.
	if err := fp.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-fp.exited
	// Drain "ok" lines written before the kill.
	for drained := false; !drained; {
		select {
		case n := <-fp.lastOK:
			last = n
		default:
			drained = true
		}
	}
	t.Logf("SIGKILLed publisher after seq %d; restarting it", last)
	fp = startFaultpub(t, bin, m.URL(), outboxPath, last+1, total)
	restartBroker(fp.waitSeq(t, 5500))
	restartBroker(fp.waitSeq(t, 7500))
	fp.waitSeq(t, total-1)
	select {
	case <-fp.drained:
	case err := <-fp.exited:
		t.Fatalf("faultpub exited before draining (%v): %s", err, fp.stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("faultpub did not drain its outbox: %s", fp.stderr.String())
	}
	if err := <-fp.exited; err != nil {
		t.Fatalf("faultpub: %v: %s", err, fp.stderr.String())
	}
	waitFor(t, "all results at the subscriber", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == total
	})
	mu.Lock()
	defer mu.Unlock()
	// In order: the first arrival of each result comes after the first
	// arrival of every earlier one.
	first := map[int]bool{}
	prev := -1
	for _, s := range got {
		if first[s] {
			continue
		}
		first[s] = true
		if s != prev+1 {
			t.Fatalf("result %d first arrived after %d: out of order or missing", s, prev)
		}
		prev = s
	}
	for s := 0; s < total; s++ {
		if !seen[s] {
			t.Fatalf("result %d lost", s)
		}
	}
	t.Logf("%d results delivered in %v with 3 broker restarts and 1 SIGKILL: %d arrivals, %d duplicates",
		total, time.Since(start).Round(time.Millisecond), len(got), len(got)-total)
	if fi, err := os.Stat(outboxPath); err == nil {
		t.Logf("outbox file size after drain: %d bytes", fi.Size())
	}
}

// TestLastWillOnCrash: when the publishing process dies without a clean
// shutdown (SIGKILL), the broker publishes its Last Will: the retained
// status turns from "online" to "offline", so a PLC or dashboard sees the
// station is gone.
func TestLastWillOnCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a helper binary")
	}
	root := testenv.RepoRoot(t)
	bin := filepath.Join(t.TempDir(), "faultpub")
	build := exec.Command("go", "build", "-o", bin, "./mqtt/internal/faultpub")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build faultpub: %v: %s", err, out)
	}
	m := startMosquitto(t, mosqOpts{})
	var mu sync.Mutex
	var statuses []string
	c := paho.NewClient(paho.NewClientOptions().AddBroker(m.URL()).SetClientID("will-watcher"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Subscribe("segad/willtest/status", 1, func(_ paho.Client, msg paho.Message) {
		mu.Lock()
		statuses = append(statuses, string(msg.Payload()))
		mu.Unlock()
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(statuses) == 0 {
			return ""
		}
		return statuses[len(statuses)-1]
	}
	cmd := exec.Command(bin, "-broker", m.URL(), "-outbox", filepath.Join(t.TempDir(), "outbox.db"),
		"-station", "willtest", "-to", "1000000", "-every", "50ms")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(15 * time.Second)
	for last() != "online" {
		if time.Now().After(deadline) {
			t.Fatalf("no retained online status; got %v", statuses)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline = time.Now().Add(15 * time.Second)
	for last() != "offline" {
		if time.Now().After(deadline) {
			t.Fatalf("no offline Last Will after SIGKILL; statuses %v", statuses)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
