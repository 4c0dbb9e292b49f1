package mqtt

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestGoldenTopicsEmbedded: on the embedded broker, a PLC whose ACL grants
// write on the command topic starts a challenge, a retained command does
// not (it would start one at every reconnect), a user without write on it
// cannot, and the summary is retained on the golden topic for a client
// that subscribes later.
func TestGoldenTopicsEmbedded(t *testing.T) {
	cfg := testConfig(t, Embedded, "cell")
	cfg.Embedded.Listen = "127.0.0.1:0"
	cfg.Embedded.Users = []User{
		{Username: "plc", Password: "plcpw", ACL: []ACLRule{{Topic: "segad/cell/#", Access: "read"}, {Topic: "segad/cell/golden/run", Access: "write"}}},
		{Username: "viewer", Password: "viewpw", ACL: []ACLRule{{Topic: "segad/cell/#", Access: "read"}}},
	}
	p := newPublisher(t, cfg)
	waitConnected(t, p)
	if p.GoldenTopic() != "segad/cell/golden" || p.GoldenRunTopic() != "segad/cell/golden/run" {
		t.Fatalf("topics %s %s", p.GoldenTopic(), p.GoldenRunTopic())
	}
	var runs atomic.Int32
	p.OnGoldenRun(func() { runs.Add(1) })
	host, port := hostPort(p.Broker().URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub := func(user, pass string, extra ...string) {
		t.Helper()
		args := append([]string{"-h", host, "-p", port, "-u", user, "-P", pass, "-t", p.GoldenRunTopic(), "-q", "1", "-m", "run"}, extra...)
		if out, err := runClient(t, ctx, "mosquitto_pub", args...); err != nil {
			t.Fatalf("mosquitto_pub %v: %v: %s", extra, err, out)
		}
	}
	pub("plc", "plcpw")
	waitFor(t, "the challenge request", 5*time.Second, func() bool { return runs.Load() == 1 })
	pub("plc", "plcpw", "-r")
	// ACL: no write on the command topic; the broker refuses the publish.
	if out, err := runClient(t, ctx, "mosquitto_pub", "-h", host, "-p", port, "-u", "viewer", "-P", "viewpw", "-t", p.GoldenRunTopic(), "-q", "1", "-m", "run"); err == nil {
		t.Errorf("a user without write on %s published to it: %s", p.GoldenRunTopic(), out)
	}
	time.Sleep(300 * time.Millisecond)
	if n := runs.Load(); n != 1 {
		t.Errorf("%d challenges after a retained command and one without ACL write, want still 1", n)
	}

	if err := p.PublishGolden([]byte(`{"passed":true,"failing":[]}`)); err != nil {
		t.Fatal(err)
	}
	out, err := runClient(t, ctx, "mosquitto_sub", "-h", host, "-p", port, "-u", "viewer", "-P", "viewpw", "-t", p.GoldenTopic(), "-C", "1", "-W", "5")
	if err != nil || out != `{"passed":true,"failing":[]}`+"\n" {
		t.Fatalf("late subscriber got %q (%v), want the retained summary", out, err)
	}
}
