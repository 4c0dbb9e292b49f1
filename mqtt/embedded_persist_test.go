package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/segad-edge/segad-edge/internal/testenv"
)

// plc is a PLC-side client with a persistent session (clean session off,
// QoS 1) that records the result IDs it receives.
type plc struct {
	t      testing.TB
	opts   *paho.ClientOptions
	client paho.Client
	topic  string
	mu     sync.Mutex
	ids    map[string]int // result ID -> arrivals
	topics map[string]int // topic -> arrivals
}

func newPLC(t testing.TB, url, id, user, pass, topic string) *plc {
	p := &plc{t: t, topic: topic, ids: map[string]int{}, topics: map[string]int{}}
	p.opts = paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(50 * time.Millisecond).SetMaxReconnectInterval(200 * time.Millisecond).
		SetKeepAlive(2 * time.Second).SetOrderMatters(false)
	p.opts.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		var r struct {
			ID       string `json:"id"`
			ResultID string `json:"result_id"`
		}
		_ = json.Unmarshal(m.Payload(), &r)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.topics[m.Topic()]++
		if r.ID != "" {
			p.ids[r.ID]++
		}
	})
	return p
}

// connect connects; with subscribe it (re)subscribes to the topic.
func (p *plc) connect(subscribe bool) {
	p.t.Helper()
	p.client = paho.NewClient(p.opts)
	if tok := p.client.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		p.t.Fatalf("PLC connect: %v", tok.Error())
	}
	if subscribe {
		if tok := p.client.Subscribe(p.topic, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			p.t.Fatalf("PLC subscribe %s: %v", p.topic, tok.Error())
		}
	}
}

func (p *plc) disconnect() {
	if p.client != nil {
		p.client.Disconnect(100)
	}
}

func (p *plc) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

func (p *plc) missing(ids []string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, id := range ids {
		if p.ids[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// TestEmbeddedBrokerKeepsQueuedAcrossRestart: results queued for an
// offline persistent PLC session survive a daemon restart (before the fix:
// 0 of 10 delivered).
func TestEmbeddedBrokerKeepsQueuedAcrossRestart(t *testing.T) {
	port := freePort(t)
	cfg := testConfig(t, Embedded, "keep")
	cfg.Embedded.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.Embedded.Users = []User{{Username: "plc", Password: "plcpw"}}
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)

	p := newPublisher(t, cfg)
	waitConnected(t, p)
	plc := newPLC(t, url, "plc1", "plc", "plcpw", "segad/keep/result")
	plc.connect(true)
	plc.disconnect()
	var ids []string
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("keep-%02d", i)
		ids = append(ids, id)
		if err := p.Publish(context.Background(), result.Result{ID: id, Verdict: result.VerdictPass, Seq: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "results handed to the broker", 10*time.Second, func() bool { return p.Stats().Backlog == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := filepath.Glob(filepath.Join(filepath.Dir(cfg.Outbox.Path), "embedded-broker.db")); err != nil {
		t.Fatal(err)
	}
	p2 := newPublisher(t, cfg)
	waitConnected(t, p2)
	plc.connect(false) // the session, and its subscription, come from the state file
	defer plc.disconnect()
	waitFor(t, "all 10 queued results at the PLC after the restart", 10*time.Second, func() bool { return plc.count() == 10 })
	if m := plc.missing(ids); len(m) > 0 {
		t.Fatalf("lost across the restart: %v", m)
	}
}

// TestEmbeddedBrokerNoLossUnderSIGKILL is the embedded broker's no-loss
// test: the process hosting the broker and the publisher (faultpub) is
// SIGKILLed twice, once while the PLC is connected and once while it is
// offline, and restarted where it stopped; the persistent PLC session must
// receive every result ID (duplicates allowed). Before the fix 96 of 180
// IDs never reached the PLC.
func TestEmbeddedBrokerNoLossUnderSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a helper binary")
	}
	const total = 300
	root := testenv.RepoRoot(t)
	bin := filepath.Join(t.TempDir(), "faultpub")
	build := exec.Command("go", "build", "-o", bin, "./mqtt/internal/faultpub")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build faultpub: %v: %s", err, out)
	}
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	outboxPath := filepath.Join(t.TempDir(), "outbox.db")
	extra := []string{"-listen", listen, "-user", "plc:plcpw", "-every", "3ms"}
	var ids []string
	for i := 0; i < total; i++ {
		ids = append(ids, fmt.Sprintf("fault-%06d", i))
	}
	kill := func(fp *faultProc, last int) int {
		t.Helper()
		if err := fp.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-fp.exited
		for {
			select {
			case n := <-fp.lastOK:
				last = n
			default:
				return last
			}
		}
	}

	fp := startFaultpub(t, bin, Embedded, outboxPath, 0, total, append(extra, "-await")...)
	select {
	case <-fp.ready:
	case err := <-fp.exited:
		t.Fatalf("faultpub: %v: %s", err, fp.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("faultpub never ready")
	}
	plc := newPLC(t, "tcp://"+listen, "plc-kill", "plc", "plcpw", "segad/fault/result")
	plc.connect(true)
	defer plc.disconnect()
	if _, err := fp.stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	// Kill 1: the PLC is connected (messages in flight to it).
	last := kill(fp, fp.waitSeq(t, total/3))
	t.Logf("SIGKILLed after seq %d (PLC connected)", last)
	fp = startFaultpub(t, bin, Embedded, outboxPath, last+1, total, extra...)
	fp.waitSeq(t, last+20)
	// Kill 2: the PLC is offline, so results queue in its session.
	plc.disconnect()
	last = kill(fp, fp.waitSeq(t, 2*total/3))
	t.Logf("SIGKILLed after seq %d (PLC offline)", last)
	fp = startFaultpub(t, bin, Embedded, outboxPath, last+1, total, extra...)
	fp.waitSeq(t, total-1)
	select {
	case <-fp.drained:
	case err := <-fp.exited:
		t.Fatalf("faultpub exited before draining (%v): %s", err, fp.stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("faultpub did not drain its outbox: %s", fp.stderr.String())
	}
	// The last run exits after draining (a clean restart in between): the
	// PLC comes back to a fresh process with nothing new to publish, held
	// open by -await, and must get its queued results from the state file.
	if err := <-fp.exited; err != nil {
		t.Fatalf("faultpub: %v: %s", err, fp.stderr.String())
	}
	fp = startFaultpub(t, bin, Embedded, outboxPath, total, total, append(extra, "-await")...)
	<-fp.ready
	plc.connect(false)
	deadline := time.Now().Add(20 * time.Second)
	for plc.count() < total && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if m := plc.missing(ids); len(m) > 0 {
		t.Fatalf("%d of %d result IDs never reached the PLC, e.g. %v", len(m), total, m[:min(len(m), 10)])
	}
	plc.mu.Lock()
	arrivals := 0
	for _, n := range plc.ids {
		arrivals += n
	}
	plc.mu.Unlock()
	t.Logf("all %d IDs reached the PLC through 2 SIGKILLs: %d arrivals, %d duplicates", total, arrivals, arrivals-total)
	_, _ = fp.stdin.Write([]byte("go\n"))
}
