package mqtt

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"
)

// TestMalformedTriggers sends good and malformed trigger payloads with
// mosquitto_pub: good ones reach OnTrigger, bad ones are counted and logged,
// and the publisher keeps working.
func TestMalformedTriggers(t *testing.T) {
	m := startMosquitto(t, mosqOpts{})
	cfg := testConfig(t, m.URL(), "trig")
	log, logs := testLogger(t)
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	}()
	var mu sync.Mutex
	var got []string
	p.OnTrigger(func(tr Trigger) {
		mu.Lock()
		got = append(got, tr.PartID)
		mu.Unlock()
	})
	waitConnected(t, p)
	host, port := hostPort(m.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The subscription is made in the connect handler: probe until a
	// trigger gets through, then start counting from there.
	waitFor(t, "trigger subscription", 5*time.Second, func() bool {
		_, _ = runClient(t, ctx, "mosquitto_pub", "-h", host, "-p", port, "-t", p.Topics().Trigger, "-m", "probe")
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	waitFor(t, "probes drained", 2*time.Second, func() bool { return len(p.trigCh) == 0 })
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	got = nil
	mu.Unlock()
	base := p.Stats().TriggersIgnored
	payloads := []struct {
		payload string
		good    bool
	}{
		{`{"part_id": "A-1"}`, true},
		{"B-2", true},
		{"", true},
		{`{"part_id": 5}`, false},
		{`{not json`, false},
		{"\x01\x02binary", false},
		{strings.Repeat("x", 300), false},
		{`{"other": 1}`, true},
		{strings.Repeat("y", 20000), false}, // over 16 KiB: not even parsed
	}
	for _, pl := range payloads {
		args := []string{"-h", host, "-p", port, "-t", p.Topics().Trigger, "-q", "1"}
		if pl.payload == "" {
			args = append(args, "-n")
		} else {
			args = append(args, "-m", pl.payload)
		}
		if out, err := runClient(t, ctx, "mosquitto_pub", args...); err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
	}
	// The counter moves just before the log line is written: wait for both.
	waitFor(t, "4 triggers handled and 5 ignored", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 4 && p.Stats().TriggersIgnored-base == 5 &&
			strings.Count(logs.String(), "ignored malformed trigger") >= 5
	})
	mu.Lock()
	if strings.Join(got, "|") != "A-1|B-2||" {
		t.Errorf("part IDs %q, want A-1, B-2 and two empty", got)
	}
	mu.Unlock()
	if n := strings.Count(logs.String(), "ignored malformed trigger"); n != 5 {
		t.Errorf("%d log lines for malformed triggers, want 5", n)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if len(line) > 1024 {
			t.Errorf("log line of %d bytes: %.200s...", len(line), line)
		}
	}
	// Still alive: a result goes through.
	if err := p.Publish(context.Background(), result.Result{Verdict: result.VerdictPass}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "PUBACK after bad triggers", 5*time.Second, func() bool { return p.Stats().Published == 1 })
}

// TestEmbeddedBroker runs the daemon's own broker: mosquitto_sub (a PLC
// with a user and ACL) receives results, triggers flow in, and clients
// without credentials or with a wrong password are refused.
func TestEmbeddedBroker(t *testing.T) {
	cfg := testConfig(t, Embedded, "cell")
	cfg.Embedded.Listen = "127.0.0.1:0"
	cfg.Embedded.Users = []User{{Username: "plc", Password: "plcpw", ACL: []ACLRule{
		{Topic: "segad/cell/#", Access: "read"}, {Topic: "segad/cell/trigger", Access: "write"}}}}
	p := newPublisher(t, cfg)
	waitConnected(t, p)
	url := p.Broker().URL()
	host, port := hostPort(url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Refused: anonymous, wrong password.
	for _, creds := range [][]string{nil, {"-u", "plc", "-P", "nope"}} {
		args := append([]string{"-h", host, "-p", port, "-t", "segad/cell/result", "-C", "1", "-W", "2"}, creds...)
		out, err := runClient(t, ctx, "mosquitto_sub", args...)
		if err == nil || !strings.Contains(strings.ToLower(out), "not authori") {
			t.Errorf("mosquitto_sub %v: err %v output %q, want a not-authorised refusal", creds, err, out)
		}
	}
	// Denied by ACL: the PLC may not subscribe outside segad/cell.
	out, _ := runClient(t, ctx, "mosquitto_sub", "-h", host, "-p", port, "-u", "plc", "-P", "plcpw", "-t", "other/#", "-E", "-W", "2")
	if !strings.Contains(strings.ToLower(out), "denied") {
		t.Errorf("mosquitto_sub outside the ACL said %q, want a denied subscription", out)
	}

	// The PLC subscribes (persistent session), then results flow.
	auth := []string{"-u", "plc", "-P", "plcpw"}
	args := append([]string{"-h", host, "-p", port, "-i", "plc1", "-c", "-q", "1", "-E", "-t", "segad/cell/result"}, auth...)
	if out, err := runClient(t, ctx, "mosquitto_sub", args...); err != nil {
		t.Fatalf("register PLC session: %v: %s", err, out)
	}
	var trig sync.WaitGroup
	trig.Add(1)
	var once sync.Once
	var part string
	p.OnTrigger(func(tr Trigger) { once.Do(func() { part = tr.PartID; trig.Done() }) })
	if err := p.Publish(ctx, result.Result{Verdict: result.VerdictFail, Seq: 7, PartID: "X9"}); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"-h", host, "-p", port, "-i", "plc1", "-c", "-q", "1", "-C", "1", "-W", "5", "-t", "segad/cell/result"}, auth...)
	out, err := runClient(t, ctx, "mosquitto_sub", args...)
	if err != nil {
		t.Fatalf("PLC receive: %v: %s", err, out)
	}
	var r result.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Seq != 7 || r.PartID != "X9" || r.Verdict != result.VerdictFail {
		t.Fatalf("PLC got %q (%v)", out, err)
	}
	if out, err := runClient(t, ctx, "mosquitto_pub", append([]string{"-h", host, "-p", port, "-t", "segad/cell/trigger", "-q", "1", "-m", "T-77"}, auth...)...); err != nil {
		t.Fatalf("PLC trigger: %v: %s", err, out)
	}
	done := make(chan struct{})
	go func() { trig.Wait(); close(done) }()
	select {
	case <-done:
		if part != "T-77" {
			t.Fatalf("trigger part %q, want T-77", part)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("trigger from the PLC never reached OnTrigger")
	}
}

func TestFilterCovers(t *testing.T) {
	tests := []struct {
		filter, sub string
		want        bool
	}{
		{"segad/#", "segad/a/result", true},
		{"segad/+/result", "segad/a/result", true},
		{"segad/+/result", "segad/a/reject", false},
		{"segad/+/result", "segad/+/result", true},
		{"segad/a/result", "segad/+/result", false},
		{"segad/a", "segad/a/b", false},
		{"#", "anything/at/all", true},
		{"segad/+", "segad/#", false},
	}
	for _, tc := range tests {
		if got := filterCovers(tc.filter, tc.sub); got != tc.want {
			t.Errorf("filterCovers(%q, %q) = %v, want %v", tc.filter, tc.sub, got, tc.want)
		}
	}
}
