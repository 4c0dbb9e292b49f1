package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/segad-edge/segad-edge/internal/mqtttest/raw"
)

// guardConfig is an embedded broker with a PLC user (read the station,
// write triggers) and a dashboard user (read health only).
func guardConfig(t *testing.T, station string) (Config, string) {
	port := freePort(t)
	cfg := testConfig(t, Embedded, station)
	cfg.Embedded.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.Embedded.Users = []User{
		{Username: "plc", Password: "plcpw", ACL: []ACLRule{
			{Topic: "segad/" + station + "/#", Access: "read"}, {Topic: "segad/" + station + "/trigger", Access: "write"}}},
		{Username: "dash", Password: "dashpw", ACL: []ACLRule{{Topic: "segad/" + station + "/health", Access: "read"}}},
	}
	return cfg, fmt.Sprintf("127.0.0.1:%d", port)
}

// TestClientIDGuard: nobody can connect with the daemon's own client ID,
// and a client ID belongs to the user whose session it is: another user
// can neither kick that client off nor resume its session and read the
// messages queued for it (before the fix: 18 of 20 triggers lost, and
// queued results read by a user whose ACL forbids them). The same user may
// resume its own session, as MQTT intends.
func TestClientIDGuard(t *testing.T) {
	cfg, addr := guardConfig(t, "ids")
	p := newPublisher(t, cfg)
	waitConnected(t, p)
	var triggers atomic.Int64
	p.OnTrigger(func(Trigger) { triggers.Add(1) })

	tests := []struct {
		name, id, user, pass string
		want                 byte // CONNACK return code
	}{
		{"daemon's own client ID", cfg.ClientIDOrDefault(), "plc", "plcpw", 2},
		{"mochi's inline client ID", "inline", "plc", "plcpw", 2},
		{"daemon's ID, wrong password", cfg.ClientIDOrDefault(), "plc", "nope", 2},
		{"ordinary ID", "plc-other", "plc", "plcpw", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, code, err := raw.Connect(addr, "", tc.id, tc.user, tc.pass)
			if err != nil {
				t.Fatal(err)
			}
			if c != nil {
				c.Close()
			}
			if code != tc.want {
				t.Errorf("CONNACK code %d, want %d", code, tc.want)
			}
		})
	}

	// plc1 is the PLC's persistent session, online.
	url := "tcp://" + addr
	plc := newPLC(t, url, "plc1", "plc", "plcpw", "segad/ids/result")
	plc.connect(true)
	defer plc.disconnect()
	// The dashboard user tries to take it over.
	if c, code, err := raw.Connect(addr, "", "plc1", "dash", "dashpw"); err != nil || code == 0 {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dash took over plc1's session: code %d err %v", code, err)
	}
	if err := p.Publish(context.Background(), result.Result{ID: "ids-live", Verdict: result.VerdictPass}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the PLC, still connected, gets the result", 5*time.Second, func() bool { return plc.count() == 1 })
	// Triggers from the PLC still reach the daemon (it was not kicked off).
	tc, code, err := raw.Connect(addr, "", "plc-trig", "plc", "plcpw")
	if err != nil || code != 0 {
		t.Fatalf("trigger client: code %d err %v", code, err)
	}
	for i := 0; i < 20; i++ {
		if err := tc.Publish("segad/ids/trigger", 0, []byte(fmt.Sprintf("T-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	tc.Close()
	waitFor(t, "20 of 20 triggers", 5*time.Second, func() bool { return triggers.Load() == 20 })

	// Offline: results queue for plc1; dash cannot resume the session to read them.
	plc.disconnect()
	for i := 0; i < 3; i++ {
		if err := p.Publish(context.Background(), result.Result{ID: fmt.Sprintf("ids-q%d", i), Verdict: result.VerdictPass}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "queued", 5*time.Second, func() bool { return p.Stats().Backlog == 0 })
	thief := newPLC(t, url, "plc1", "dash", "dashpw", "segad/ids/result")
	thief.opts.SetConnectRetry(false).SetAutoReconnect(false)
	if tok := paho.NewClient(thief.opts).Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		t.Fatal("dash resumed plc1's session")
	}
	time.Sleep(200 * time.Millisecond)
	if thief.count() != 0 {
		t.Fatalf("dash received %d results queued for plc1", thief.count())
	}
	// The owner resumes it and gets everything.
	plc.connect(false)
	waitFor(t, "the owner gets its 3 queued results", 5*time.Second, func() bool { return plc.count() == 4 })
	if s := p.Stats().Broker; s.RefusedClientIDs < 5 {
		t.Errorf("RefusedClientIDs = %d, want at least 5", s.RefusedClientIDs)
	}
}

// TestQueuedMessagesRespectACL: a session's queued and retained messages
// are re-checked against its user's ACL when it resumes (here the ACL was
// narrowed while the PLC was offline, across a daemon restart): nothing on
// a topic the user may not read is delivered.
func TestQueuedMessagesRespectACL(t *testing.T) {
	cfg, addr := guardConfig(t, "acl")
	p := newPublisher(t, cfg)
	waitConnected(t, p)
	plc := newPLC(t, "tcp://"+addr, "plc1", "plc", "plcpw", "segad/acl/#")
	plc.connect(true)
	plc.disconnect()
	// What the first connection got (the retained status and health, while
	// the ACL still allowed them) is not what this test is about.
	plc.mu.Lock()
	clear(plc.topics)
	plc.mu.Unlock()
	for i := 0; i < 3; i++ { // each fail result queues a reject and a result
		if err := p.Publish(context.Background(), result.Result{ID: fmt.Sprintf("acl-%d", i), Verdict: result.VerdictFail}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "queued", 5*time.Second, func() bool { return p.Stats().Backlog == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cfg.Embedded.Users[0].ACL = []ACLRule{{Topic: "segad/acl/reject", Access: "read"}}
	p2 := newPublisher(t, cfg)
	waitConnected(t, p2)
	plc.connect(false)
	defer plc.disconnect()
	waitFor(t, "3 rejects", 5*time.Second, func() bool {
		plc.mu.Lock()
		defer plc.mu.Unlock()
		return plc.topics["segad/acl/reject"] == 3
	})
	time.Sleep(300 * time.Millisecond) // anything else queued would have arrived with them
	plc.mu.Lock()
	defer plc.mu.Unlock()
	for topic, n := range plc.topics {
		if topic != "segad/acl/reject" {
			t.Errorf("received %d messages on %s, which the ACL forbids", n, topic)
		}
	}
	// The 3 results, plus status and health queued while it was offline.
	if n := p2.Stats().Broker.ACLDroppedQueued; n < 3 {
		t.Errorf("ACLDroppedQueued = %d, want at least the 3 queued results", n)
	}
}

// TestLoginBruteForce: failed logins are limited per address, and per
// user from addresses that failed themselves; a blocked login is refused
// without checking the password; the log stays small. (Before: 300 wrong
// passwords in 1.2 s, each checked and logged.)
func TestLoginBruteForce(t *testing.T) {
	tests := []struct {
		name string
		// attack is a list of source addresses, one wrong-password login each.
		attack []string
		// then the right password from these addresses: want accepted?
		then map[string]bool
	}{
		{"one address guessing", repeat("127.0.0.1", 300), map[string]bool{"127.0.0.1": false, "127.0.0.2": true}},
		{"many addresses guessing one user", []string{"127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15"},
			map[string]bool{"127.0.0.15": false, "127.0.0.20": true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, addr := guardConfig(t, "brute")
			log, logs := testLogger(t)
			p, err := New(cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(context.Background())
			start := time.Now()
			for i, from := range tc.attack {
				c, code, err := raw.Connect(addr, from, fmt.Sprintf("guess%d", i), "plc", fmt.Sprintf("guess%d", i))
				if err != nil {
					t.Fatal(err)
				}
				if c != nil || code == 0 {
					t.Fatalf("wrong password %d accepted", i)
				}
			}
			t.Logf("%d wrong logins in %v", len(tc.attack), time.Since(start))
			for from, want := range tc.then {
				c, code, err := raw.Connect(addr, from, "plc-"+from, "plc", "plcpw")
				if err != nil {
					t.Fatal(err)
				}
				if c != nil {
					c.Close()
				}
				if (code == 0) != want {
					t.Errorf("right password from %s: code %d, want accepted=%v", from, code, want)
				}
			}
			s := p.Stats().Broker
			if s.AuthFailures > uint64(cfg.Embedded.AuthFailuresLimit()+1) {
				t.Errorf("%d passwords checked and failed, want at most %d before the block", s.AuthFailures, cfg.Embedded.AuthFailuresLimit()+1)
			}
			if s.AuthBlocked == 0 {
				t.Error("no login refused by the block")
			}
			p.Close(context.Background())
			out := logs.String()
			if n := strings.Count(out, "\n"); n > 30 {
				t.Errorf("%d log lines for %d attempts", n, len(tc.attack))
			}
			if !strings.Contains(out, "blocks logins after repeated failures") {
				t.Error("no log line says the login block started")
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestHostilePackets: a denied 1 MB publish, an over-size packet and a
// topic of 60,000 bytes leave short log lines and a working broker.
// (Before: the denied publish became a 3.6 MB log line.)
func TestHostilePackets(t *testing.T) {
	cfg, addr := guardConfig(t, "hostile")
	log, logs := testLogger(t)
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	waitConnected(t, p)
	tests := []struct {
		name    string
		topic   string
		payload []byte
	}{
		{"denied 1 MB publish", "segad/hostile/result", bytes.Repeat([]byte("A"), 1000000)},
		{"packet over max_packet_size", "segad/hostile/trigger", bytes.Repeat([]byte("B"), 2<<20)},
		{"60,000-byte denied topic", strings.Repeat("t", 60000), []byte("x")},
		{"20 KB trigger", "segad/hostile/trigger", bytes.Repeat([]byte("C"), 20000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, code, err := raw.Connect(addr, "", "hostile", "plc", "plcpw")
			if err != nil || code != 0 {
				t.Fatalf("connect: code %d err %v", code, err)
			}
			_ = c.Publish(tc.topic, 1, tc.payload)
			// The broker answers by closing the connection (or ignores it).
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Read(make([]byte, 16))
			c.Close()
		})
	}
	// Still serving: a result reaches the PLC.
	plc := newPLC(t, "tcp://"+addr, "plc1", "plc", "plcpw", "segad/hostile/result")
	plc.connect(true)
	defer plc.disconnect()
	if err := p.Publish(context.Background(), result.Result{ID: "after", Verdict: result.VerdictPass}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a result after hostile packets", 5*time.Second, func() bool { return plc.count() == 1 })
	if s := p.Stats(); s.TriggersIgnored == 0 {
		t.Error("the 20 KB trigger was not counted as ignored")
	}
	out := logs.String()
	if len(out) > 64<<10 {
		t.Errorf("log is %d bytes after 4 hostile packets", len(out))
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 2048 {
			t.Errorf("log line of %d bytes: %.200s...", len(line), line)
		}
	}
}

// TestBoundedConnections: connections beyond max_clients are closed at
// once, and a connection that never sends CONNECT is closed after
// connect_timeout (before, it held a goroutine and buffers forever).
func TestBoundedConnections(t *testing.T) {
	cfg, addr := guardConfig(t, "conns")
	cfg.Embedded.MaxClients = 3
	cfg.ConnectTimeout = 500 * time.Millisecond
	p := newPublisher(t, cfg)
	waitConnected(t, p)
	var idle []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	time.Sleep(100 * time.Millisecond)
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("connection beyond max_clients not closed at once: %v", err)
	}
	start := time.Now()
	for _, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("idle connection without CONNECT not closed: %v", err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle connections closed after %v, want about connect_timeout (500ms)", d)
	}
	waitFor(t, "a client gets in once the idle ones are gone", 5*time.Second, func() bool {
		c, code, err := raw.Connect(addr, "", "late", "plc", "plcpw")
		if c != nil {
			c.Close()
		}
		return err == nil && code == 0
	})
	if p.Stats().Broker.RefusedConnections == 0 {
		t.Error("RefusedConnections not counted")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestAnonymousWarning: anonymous access on a non-loopback address is
// allowed (a cell network may want it) but warned about loudly at start.
func TestAnonymousWarning(t *testing.T) {
	tests := []struct {
		listen string
		warn   bool
	}{
		{"0.0.0.0:0", true},
		{"127.0.0.1:0", false},
	}
	for _, tc := range tests {
		t.Run(tc.listen, func(t *testing.T) {
			cfg := testConfig(t, Embedded, "anon")
			cfg.Embedded.Listen = tc.listen
			cfg.Embedded.AllowAnonymous = true
			log, logs := testLogger(t)
			p, err := New(cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(context.Background())
			if got := strings.Contains(logs.String(), "EMBEDDED BROKER IS OPEN"); got != tc.warn {
				t.Errorf("warning logged: %v, want %v", got, tc.warn)
			}
		})
	}
}

// TestBrokerStateDamaged: a damaged broker state file is refused with an
// error that names it and says what to do; with quarantine_corrupt it is
// moved aside and the broker starts empty.
func TestBrokerStateDamaged(t *testing.T) {
	for _, quarantine := range []bool{false, true} {
		t.Run(fmt.Sprintf("quarantine=%v", quarantine), func(t *testing.T) {
			cfg, _ := guardConfig(t, "state")
			cfg.Outbox.QuarantineCorrupt = quarantine
			p := newPublisher(t, cfg)
			waitConnected(t, p)
			if err := p.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			path := cfg.StorePath()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Both meta pages (bbolt's page size here is 4096).
			b[16] ^= 0xff
			b[4096+16] ^= 0xff
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			p2, err := New(cfg, nil)
			if !quarantine {
				if err == nil {
					p2.Close(context.Background())
					t.Fatal("started on a damaged broker state file")
				}
				for _, want := range []string{path, "mv " + path, "quarantine_corrupt"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error does not say %q: %v", want, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("with quarantine_corrupt: %v", err)
			}
			defer p2.Close(context.Background())
			if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 1 {
				t.Errorf("damaged state file not moved aside: %v", m)
			}
		})
	}
}
