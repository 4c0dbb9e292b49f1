package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/mqtttest/raw"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/result"
)

// TestHostileDaemonEmbeddedBrokerFlood floods the trigger topic of the real
// daemon's embedded broker with QoS-1 messages (the finding: the daemon's
// own link wedged, no PUBACKs, /readyz still 200, SIGTERM ignored) while
// parts arrive in its watch folder. Every part must still reach the PLC,
// the flooder must be answered, /readyz must say ready afterwards, the log
// must stay bounded and SIGTERM must stop the process promptly.
func TestHostileDaemonEmbeddedBrokerFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	dir := t.TempDir()
	watch := filepath.Join(dir, "drop")
	os.MkdirAll(watch, 0o755)
	port := testenv.FreePort(t)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	broker := fmt.Sprintf(`embedded
  embedded:
    listen: 127.0.0.1:%d
    users:
      - {username: plc, password: plc-secret-1234}
      - {username: flooder, password: flood-secret-1234, acl: [{topic: "segad/hostile/trigger", access: write}]}`, port)
	cfg := hostileConfig(t, dir, fmt.Sprintf("  kind: watch\n  path: %q", watch), broker,
		fmt.Sprintf("http: {listen: %q}\n", httpAddr))
	p := startSegad(t, cfg)
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	ready := func() (int, string) {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b := make([]byte, 512)
		n, _ := resp.Body.Read(b)
		return resp.StatusCode, string(b[:n])
	}
	waitFor(t, "the daemon to be ready", 60*time.Second, func() bool { c, _ := ready(); return c == 200 })
	sub := mqtttest.Subscribe(t, url, "plc", "plc-secret-1234", "segad/hostile/result")

	const floodN, parts = 5000, 10
	flood := make(chan raw.FloodResult, 1)
	go func() {
		r, err := raw.Flood(fmt.Sprintf("127.0.0.1:%d", port), "flooder", "flooder", "flood-secret-1234",
			"segad/hostile/trigger", 1, floodN, func(i int) []byte { return []byte(fmt.Sprintf("F-%d", i)) },
			10*time.Second, 20*time.Second)
		if err != nil {
			t.Errorf("flood: %v", err)
		}
		flood <- r
	}()
	for i := 0; i < parts; i++ {
		os.WriteFile(filepath.Join(watch, fmt.Sprintf(".part-%02d.tmp", i)), partPNG(t, 64, 64, false), 0o644)
		os.Rename(filepath.Join(watch, fmt.Sprintf(".part-%02d.tmp", i)), filepath.Join(watch, fmt.Sprintf("part-%02d.png", i)))
		time.Sleep(50 * time.Millisecond)
	}
	fr := <-flood
	if fr.Sent != floodN || fr.Acked != fr.Sent {
		t.Errorf("flooder: %d sent, %d PUBACKed; want all %d answered (the broker must not wedge)", fr.Sent, fr.Acked, floodN)
	}
	// Every part from the watch folder reaches the PLC exactly once; the
	// flood's triggers (unservable: the source is not on-demand) are
	// answered with capture_error results, never with a part's verdict.
	deadline := time.Now().Add(60 * time.Second)
	var partIDs map[string]int
	for {
		partIDs = map[string]int{}
		for _, r := range sub.Results() {
			if strings.HasPrefix(r.PartID, "part-") {
				partIDs[r.PartID]++
				if r.Verdict != "pass" {
					t.Fatalf("part %s: verdict %s (%s), want pass", r.PartID, r.Verdict, r.Reason)
				}
			} else if r.Verdict != "error" || r.ReasonCode != "capture_error" {
				t.Fatalf("flood trigger %q answered with %s/%s, want error/capture_error", r.PartID, r.Verdict, r.ReasonCode)
			}
		}
		if len(partIDs) == parts || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(partIDs) != parts {
		t.Fatalf("%d of %d parts reached the PLC during the flood", len(partIDs), parts)
	}
	for id, n := range partIDs {
		if n != 1 {
			t.Errorf("part %s: %d results, want 1", id, n)
		}
	}
	if c, why := ready(); c != 200 {
		t.Errorf("/readyz after the flood: %d %s, want 200", c, why)
	}
	if !p.alive() {
		t.Fatal("daemon died during the flood")
	}
	if n := strings.Count(p.logs.String(), "\n"); n > 400 {
		t.Errorf("%d log lines during a %d-message flood: want the log bounded (rate-limited)", n, floodN)
	}
	if _, took := p.stop(t, 20*time.Second); took > 15*time.Second {
		t.Errorf("SIGTERM took %s after the flood", took)
	}
}

// TestHostileDaemonEmbeddedBrokerKeepsQueuedForOfflinePLC is the embedded
// broker's no-loss promise on the real daemon (the finding: messages queued
// for an offline persistent PLC session were gone after a restart, 0 of 10
// delivered, and SIGKILLs lost results). A PLC subscribes with a persistent
// session and goes offline; parts are inspected; the daemon is SIGKILLed
// (and, in a second round, stopped with SIGTERM) and restarted; when the PLC
// reconnects it gets every result of both rounds.
func TestHostileDaemonEmbeddedBrokerKeepsQueuedForOfflinePLC(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	dir := t.TempDir()
	watch := filepath.Join(dir, "drop")
	os.MkdirAll(watch, 0o755)
	port := testenv.FreePort(t)
	broker := fmt.Sprintf(`embedded
  embedded:
    listen: 127.0.0.1:%d
    users:
      - {username: plc, password: plc-secret-1234}`, port)
	cfg := hostileConfig(t, dir, fmt.Sprintf("  kind: watch\n  path: %q\n  watch: {poll: 50ms, grace: 300ms}", watch), broker,
		"http: {listen: \"off\"}\n")
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)

	var mu sync.Mutex
	got := map[string]int{}
	plc := func() paho.Client {
		o := paho.NewClientOptions().AddBroker(url).SetClientID("plc-line1").SetUsername("plc").
			SetPassword("plc-secret-1234").SetCleanSession(false).SetAutoReconnect(false)
		o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			var r result.Result
			if json.Unmarshal(m.Payload(), &r) == nil {
				mu.Lock()
				got[r.PartID]++
				mu.Unlock()
			}
		})
		c := paho.NewClient(o)
		deadline := time.Now().Add(60 * time.Second)
		for {
			tok := c.Connect()
			if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("PLC cannot connect to the embedded broker: %v", tok.Error())
			}
			time.Sleep(100 * time.Millisecond)
		}
		return c
	}
	// Inspect n parts while the PLC is offline: every file leaves the
	// watch folder only once its result is stored.
	inspect := func(round string, n int) {
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("%s-%02d.png", round, i)
			os.WriteFile(filepath.Join(watch, "."+name), partPNG(t, 64, 64, false), 0o644)
			os.Rename(filepath.Join(watch, "."+name), filepath.Join(watch, name))
		}
		waitFor(t, round+" parts inspected", 60*time.Second, func() bool {
			left, _ := filepath.Glob(filepath.Join(watch, round+"-*.png"))
			return len(left) == 0
		})
	}

	p := startSegad(t, cfg)
	c := plc()
	if tok := c.Subscribe("segad/hostile/result", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("PLC subscribe: %v", tok.Error())
	}
	c.Disconnect(100) // offline; the persistent session stays on the broker

	inspect("killed", 10)
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p = startSegad(t, cfg)
	inspect("stopped", 5)
	if _, took := p.stop(t, 30*time.Second); took > 20*time.Second {
		t.Errorf("SIGTERM took %s", took)
	}
	startSegad(t, cfg)

	c = plc() // the same client ID and session: the queued results arrive
	defer c.Disconnect(100)
	want := map[string]bool{}
	for i := 0; i < 10; i++ {
		want[fmt.Sprintf("killed-%02d", i)] = true
	}
	for i := 0; i < 5; i++ {
		want[fmt.Sprintf("stopped-%02d", i)] = true
	}
	waitFor(t, "every queued result at the PLC", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id := range want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	for id := range got {
		if !want[id] {
			t.Errorf("unexpected result for part %q", id)
		}
	}
}
