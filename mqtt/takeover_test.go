package mqtt

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	bolt "go.etcd.io/bbolt"
)

// takeoverBroker starts an embedded broker with state file and a PLC user,
// and a persistent PLC session subscribed to topic, now offline.
func takeoverBroker(t *testing.T, station string, autoAck bool) (*Broker, *plc, string) {
	t.Helper()
	port := freePort(t)
	cfg := testConfig(t, Embedded, station)
	cfg.Embedded.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.Embedded.Users = []User{{Username: "plc", Password: "plcpw"}}
	log, _ := testLogger(t)
	b, err := StartBroker(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	topic := "segad/" + station + "/result"
	p := newPLC(t, fmt.Sprintf("tcp://127.0.0.1:%d", port), "plc-"+station, "plc", "plcpw", topic)
	p.opts.SetAutoAckDisabled(!autoAck)
	p.connect(true)
	p.disconnect()
	waitFor(t, "the PLC session offline", 5*time.Second, func() bool {
		cl, ok := b.srv.Clients.Get("plc-" + station)
		return ok && cl.Closed()
	})
	return b, p, topic
}

func resultJSON(id string) []byte { return []byte(`{"id":"` + id + `"}`) }

// TestSessionTakeoverPublishRace: a result published in-process while a
// reconnecting PLC takes its persistent session over must reach it. mochi
// clones the old session's queue into the new connection, clears the old
// one and only then lets publishes find the new connection; a publish in
// between went to the old client: stored and reported done (the outbox
// deletes it), then dropped with the old queue, or left in a dead client
// object. The test publishes from inside that window (the old queue being
// cleared). Before the fix "take-1" never reached the PLC (and its record
// was gone from the state file); the same race lost 16 results in
// TestEmbeddedBrokerNoLossUnderSIGKILL on a loaded machine.
func TestSessionTakeoverPublishRace(t *testing.T) {
	b, p, topic := takeoverBroker(t, "takeover", true)
	defer p.disconnect()
	// Queued for the offline session: the takeover has something to clear.
	if err := b.publish(topic, resultJSON("take-0"), false, 1); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	published := make(chan error, 1)
	hook := func(cl *mochi.Client, _ packets.Packet) {
		if !cl.IsTakenOver() {
			return
		}
		once.Do(func() {
			go func() { published <- b.publish(topic, resultJSON("take-1"), false, 1) }()
			// Before the fix the publish returns at once (into the old
			// client); with it, it waits for the takeover to finish.
			select {
			case err := <-published:
				published <- err
			case <-time.After(time.Second):
			}
		})
	}
	b.store.testDropped.Store(&hook)
	p.connect(false) // takes the stored session over
	select {
	case err := <-published:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("publish during the takeover never returned")
	}
	b.store.testDropped.Store(nil)
	ids := []string{"take-0", "take-1"}
	for i := 2; i < 6; i++ { // reuse packet IDs like a running daemon
		id := fmt.Sprintf("take-%d", i)
		ids = append(ids, id)
		if err := b.publish(topic, resultJSON(id), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(p.missing(ids)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if m := p.missing(ids); len(m) > 0 {
		t.Fatalf("published (and reported done) during the session takeover, never reached the PLC: %v", m)
	}
}

// TestSessionTakeoverKeepsRecords: the messages a reconnecting PLC
// inherits stay in the state file until it acknowledges them. Before the
// fix mochi's clearing of the old client's queue deleted every one of them
// (OnQosDropped), and the resend wrote them again: a crash in between lost
// them, although the outbox had long deleted them.
func TestSessionTakeoverKeepsRecords(t *testing.T) {
	b, p, topic := takeoverBroker(t, "keeprec", false) // the PLC never acknowledges
	defer p.disconnect()
	for i := 0; i < 3; i++ {
		if err := b.publish(topic, resultJSON(fmt.Sprintf("rec-%d", i)), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var deleted []string
	hook := func(key string) {
		if strings.HasPrefix(key, keyInflight) {
			mu.Lock()
			deleted = append(deleted, key)
			mu.Unlock()
		}
	}
	b.store.testDel.Store(&hook)
	defer b.store.testDel.Store(nil)
	// Resume the stored session, then take it over from the live
	// connection: both times the new connection inherits the 3 messages.
	p.connect(false)
	waitFor(t, "the 3 queued results at the PLC", 5*time.Second, func() bool { return p.count() == 3 })
	old := p.client
	p.mu.Lock()
	p.ids = map[string]int{}
	p.mu.Unlock()
	p.connect(false)
	old.Disconnect(0)
	waitFor(t, "the 3 queued results at the PLC again", 5*time.Second, func() bool { return p.count() == 3 })
	mu.Lock()
	defer mu.Unlock()
	if len(deleted) > 0 {
		t.Fatalf("records of unacknowledged messages deleted at the session takeover: %v", deleted)
	}
	var stored int
	if err := b.store.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(brokerBucket).Cursor()
		for k, _ := c.Seek([]byte(keyInflight)); k != nil && strings.HasPrefix(string(k), keyInflight); k, _ = c.Next() {
			stored++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if stored != 3 {
		t.Fatalf("%d queued messages in the state file, want the 3 unacknowledged ones", stored)
	}
}
