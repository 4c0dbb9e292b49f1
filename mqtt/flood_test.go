package mqtt

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"

	"github.com/segad-edge/segad-edge/internal/mqtttest/raw"
)

// TestTriggerFlood floods the trigger topic with 20,000 QoS 1 triggers from
// a raw client that never waits for a PUBACK, against the embedded broker
// and against mosquitto, while the daemon publishes results and its trigger
// handler is slower than the flood. The link must keep working (every
// result PUBACKed during the flood, the flooder acknowledged), no trigger
// may vanish (each is handled, handled as overflowed, or counted as lost),
// the log stays small, readiness stays true and Close returns promptly.
// Before the fix the embedded broker's own link wedged: 6 of 20 results
// acknowledged, the flooder stuck after 788 PUBACKs.
func TestTriggerFlood(t *testing.T) {
	const floodN = 20000
	for _, broker := range []string{"embedded", "mosquitto"} {
		t.Run(broker, func(t *testing.T) {
			var cfg Config
			var addr, user, pass string
			if broker == "mosquitto" {
				m := startMosquitto(t, mosqOpts{})
				cfg = testConfig(t, m.URL(), "flood")
				addr = fmt.Sprintf("127.0.0.1:%d", m.Port)
			} else {
				cfg = testConfig(t, Embedded, "flood")
				cfg.Embedded.Listen = "127.0.0.1:0"
				cfg.Embedded.Users = []User{{Username: "plc", Password: "plcpw"}}
				user, pass = "plc", "plcpw"
			}
			log, logs := testLogger(t)
			p, err := New(cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					defer cancel()
					_ = p.Close(ctx)
				}
			}()
			if p.Broker() != nil {
				addr = p.Broker().Addr()
			}
			var normal, over atomic.Int64
			p.OnTrigger(func(tr Trigger) {
				if tr.Overflow {
					over.Add(1) // the daemon answers these at once, without a capture
					return
				}
				normal.Add(1)
				time.Sleep(2 * time.Millisecond) // a capture: slower than the flood
			})
			waitConnected(t, p)
			topic := p.Topics().Trigger
			// The external subscription is made in the connect handler:
			// probe until a trigger gets through.
			waitFor(t, "trigger subscription", 10*time.Second, func() bool {
				_, _ = raw.Flood(addr, "probe", user, pass, topic, 1, 1, func(int) []byte { return []byte("probe") }, time.Second, time.Second)
				time.Sleep(20 * time.Millisecond)
				return normal.Load() > 0
			})
			time.Sleep(100 * time.Millisecond)
			s0 := p.Stats()
			h0 := normal.Load() + over.Load()
			logs0 := len(logs.String())

			floodDone := make(chan raw.FloodResult, 1)
			go func() {
				r, err := raw.Flood(addr, "flooder", user, pass, topic, 1, floodN,
					func(i int) []byte { return []byte(fmt.Sprintf("F-%05d", i)) }, 5*time.Second, 15*time.Second)
				if err != nil {
					t.Error(err)
				}
				floodDone <- r
			}()
			for i := 0; i < 20; i++ {
				if err := p.Publish(context.Background(), result.Result{Verdict: result.VerdictPass, Seq: uint64(i)}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			waitFor(t, "20 results PUBACKed during the flood", 15*time.Second, func() bool { return p.Stats().Published-s0.Published >= 20 })
			fr := <-floodDone
			t.Logf("flood: %d sent in %v, %d PUBACKed", fr.Sent, fr.Elapsed, fr.Acked)
			if fr.Sent != floodN || fr.Acked != floodN {
				t.Errorf("flooder sent %d and got %d PUBACKs, want %d: the broker stopped serving it", fr.Sent, fr.Acked, floodN)
			}
			waitFor(t, "every trigger accounted for", 30*time.Second, func() bool {
				s := p.Stats()
				return s.TriggersReceived+s.TriggersOverflowed+s.TriggersDropped-
					(s0.TriggersReceived+s0.TriggersOverflowed+s0.TriggersDropped) == floodN
			})
			s := p.Stats()
			waitFor(t, "every kept trigger handed to the handler", 30*time.Second, func() bool {
				return normal.Load()+over.Load()-h0 == int64(s.TriggersReceived+s.TriggersOverflowed-s0.TriggersReceived-s0.TriggersOverflowed)
			})
			t.Logf("triggers: %d queued, %d overflowed (answered at once), %d lost (counted)",
				s.TriggersReceived-s0.TriggersReceived, s.TriggersOverflowed-s0.TriggersOverflowed, s.TriggersDropped-s0.TriggersDropped)
			if s.TriggersOverflowed == s0.TriggersOverflowed {
				t.Error("no trigger overflowed although the handler was slower than the flood")
			}
			if s.Stalled || !s.Connected {
				t.Errorf("after the flood: stalled %v (%s), connected %v", s.Stalled, s.StalledReason, s.Connected)
			}
			if err := p.Publish(context.Background(), result.Result{Verdict: result.VerdictFail, Seq: 99}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a result after the flood", 10*time.Second, func() bool { return p.Stats().Backlog == 0 })
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.Close(ctx); err != nil {
				t.Errorf("Close: %v", err)
			}
			closed = true
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Close took %v after a flood", d)
			}
			floodLog := logs.String()[logs0:]
			if n := strings.Count(floodLog, "\n"); n > 40 {
				t.Errorf("%d log lines for one flood, want a bounded few:\n%s", n, floodLog[:min(len(floodLog), 3000)])
			}
			if !strings.Contains(floodLog, "suppressed=") {
				t.Error("no log line reports how many trigger lines were suppressed")
			}
		})
	}
}

// TestStalled: Stats().Stalled (the daemon's readiness) turns true when the
// broker is gone and when a broker stops acknowledging, and says why.
func TestStalled(t *testing.T) {
	tests := []struct {
		name       string
		wantReason string
	}{
		{"broker stopped", "not connected to MQTT broker"},
		{"broker never acknowledges", "none acknowledged"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cfg Config
			var stop, start func()
			if tc.name == "broker stopped" {
				m := startMosquitto(t, mosqOpts{})
				cfg = testConfig(t, m.URL(), "stall")
				stop, start = m.Stop, m.Start
			} else {
				sb, err := raw.StartSilentBroker()
				if err != nil {
					t.Fatal(err)
				}
				defer sb.Close()
				cfg = testConfig(t, sb.URL(), "stall")
				cfg.AckTimeout = time.Second
			}
			p := newPublisher(t, cfg)
			waitConnected(t, p)
			waitFor(t, "ready while idle", 5*time.Second, func() bool { return !p.Stats().Stalled })
			if stop != nil {
				stop()
			}
			if err := p.Publish(context.Background(), result.Result{Verdict: result.VerdictPass}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "Stalled", 10*time.Second, func() bool { return p.Stats().Stalled })
			if r := p.Stats().StalledReason; !strings.Contains(r, tc.wantReason) {
				t.Errorf("StalledReason %q, want it to say %q", r, tc.wantReason)
			}
			if start != nil {
				start()
				waitFor(t, "ready again after the broker is back", 15*time.Second, func() bool {
					s := p.Stats()
					return !s.Stalled && s.Backlog == 0
				})
			}
		})
	}
}
