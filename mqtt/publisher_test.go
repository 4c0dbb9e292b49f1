package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/result"
)

// testLogger writes to the test log so failures show the publisher's story,
// and returns a buffer copy for assertions on log lines.
func testLogger(t testing.TB) (*slog.Logger, *testenv.SyncBuffer) {
	buf := &testenv.SyncBuffer{}
	var w io.Writer = buf
	if testing.Verbose() {
		w = io.MultiWriter(buf, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})), buf
}

// testConfig is a valid config for broker with fast retries and an outbox in a temp dir.
func testConfig(t testing.TB, broker, station string) Config {
	cfg := Defaults()
	cfg.Broker = broker
	cfg.Station = station
	cfg.Outbox.Path = filepath.Join(t.TempDir(), "outbox.db")
	cfg.ConnectRetryInterval = 50 * time.Millisecond
	cfg.MaxReconnectInterval = 200 * time.Millisecond
	cfg.AckTimeout = 3 * time.Second
	cfg.KeepAlive = 2 * time.Second
	cfg.StatusInterval = 200 * time.Millisecond
	return cfg
}

func newPublisher(t testing.TB, cfg Config) *Publisher {
	t.Helper()
	log, _ := testLogger(t)
	p, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

func waitConnected(t testing.TB, p *Publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitConnected(ctx); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// registerSession creates a persistent mosquitto_sub session (clean session
// off, QoS 1) and exits once subscribed (-E), so messages published later
// are queued for it: no sleep-and-hope race with the publisher.
func registerSession(t *testing.T, url, id string, topics ...string) {
	t.Helper()
	host, port := hostPort(url)
	args := []string{"-h", host, "-p", port, "-i", id, "-c", "-q", "1", "-E"}
	for _, tp := range topics {
		args = append(args, "-t", tp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := runClient(t, ctx, "mosquitto_sub", args...); err != nil {
		t.Fatalf("mosquitto_sub -E: %v: %s", err, out)
	}
}

// collect reconnects the persistent session and returns n "topic payload" lines.
func collect(t *testing.T, url, id string, n int, extra ...string) []string {
	t.Helper()
	host, port := hostPort(url)
	args := append([]string{"-h", host, "-p", port, "-i", id, "-c", "-q", "1", "-v", "-C", fmt.Sprint(n), "-W", "10"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := runClient(t, ctx, "mosquitto_sub", args...)
	if err != nil {
		t.Fatalf("mosquitto_sub: %v: %s", err, out)
	}
	return strings.Split(strings.TrimRight(out, "\n"), "\n")
}

func hostPort(url string) (string, string) {
	hp := url[strings.Index(url, "://")+3:]
	i := strings.LastIndex(hp, ":")
	return hp[:i], hp[i+1:]
}

func f64(v float64) *float64 { return &v }

// TestPayloadsViaMosquittoSub checks the documented payloads as an external
// subscriber (mosquitto_sub) sees them on a real mosquitto.
func TestPayloadsViaMosquittoSub(t *testing.T) {
	m := startMosquitto(t, mosqOpts{})
	cfg := testConfig(t, m.URL(), "st1")
	cfg.PublishFeatures = true
	tp := cfg.Resolve()
	registerSession(t, m.URL(), "ext-sub", tp.Result, tp.Reject)
	p := newPublisher(t, cfg)
	waitConnected(t, p)

	cap := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	results := []result.Result{
		{Source: "cam0", Seq: 1, PartID: "P-1", CapturedAt: cap, DecidedAt: cap.Add(20 * time.Millisecond),
			Verdict: result.VerdictPass, Score: f64(-2.5), Threshold: 0.7, MapMax: map[string]float64{"patchcore": 0.31},
			Features:  []result.Feature{{Name: "s0_patchcore_q995", Value: 0.25}, {Name: "s0_patchcore_skew", Value: math.NaN()}},
			LatencyMS: map[string]float64{"infer": 11.5, "total": 19.8}, Bundle: "sha256:abc"},
		{Source: "cam0", Seq: 2, PartID: "P-2", CapturedAt: cap, DecidedAt: cap.Add(21 * time.Millisecond),
			Verdict: result.VerdictFail, Score: f64(3.25), Threshold: 0.7, Bundle: "sha256:abc"},
		{Source: "cam0", Seq: 3, CapturedAt: cap, DecidedAt: cap.Add(22 * time.Millisecond),
			Verdict: result.VerdictError, Threshold: 0.7, Reason: "camera frame older than 2s", ReasonCode: "camera_stale"},
	}
	for _, r := range results {
		if err := p.Publish(context.Background(), r); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	// 3 results + 2 rejects (fail and error).
	lines := collect(t, m.URL(), "ext-sub", 5, "-t", tp.Result, "-t", tp.Reject)
	var gotResults []map[string]any
	var gotRejects []Reject
	for _, l := range lines {
		topic, payload, ok := strings.Cut(l, " ")
		if !ok {
			t.Fatalf("mosquitto_sub line without payload: %q", l)
		}
		switch topic {
		case "segad/st1/result":
			var m map[string]any
			if err := json.Unmarshal([]byte(payload), &m); err != nil {
				t.Fatalf("result payload is not JSON: %v: %s", err, payload)
			}
			gotResults = append(gotResults, m)
		case "segad/st1/reject":
			var r Reject
			dec := json.NewDecoder(strings.NewReader(payload))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("reject payload: %v: %s", err, payload)
			}
			gotRejects = append(gotRejects, r)
		default:
			t.Fatalf("unexpected topic %q", topic)
		}
	}
	if len(gotResults) != 3 || len(gotRejects) != 2 {
		t.Fatalf("got %d results and %d rejects, want 3 and 2: %q", len(gotResults), len(gotRejects), lines)
	}
	ids := map[string]bool{}
	for i, g := range gotResults {
		want := results[i]
		if g["schema"] != float64(result.SchemaVersion) || g["station"] != "st1" || g["seq"] != float64(want.Seq) ||
			g["verdict"] != string(want.Verdict) || g["source"] != "cam0" {
			t.Errorf("result %d: header fields wrong: %v", i, g)
		}
		id, _ := g["id"].(string)
		if len(id) != 26 || ids[id] {
			t.Errorf("result %d: id %q is not a fresh 26-char ULID", i, id)
		}
		ids[id] = true
		if ts, _ := g["captured_at"].(string); ts != "2025-03-01T12:00:00.123456789Z" {
			t.Errorf("result %d: captured_at %q is not RFC3339Nano", i, ts)
		}
		if _, ok := g["score"]; !ok {
			t.Errorf("result %d: score key missing (must be present, null when not computed)", i)
		}
	}
	if gotResults[2]["score"] != nil || gotResults[2]["reason_code"] != "camera_stale" {
		t.Errorf("error result: score %v reason_code %v, want null and camera_stale", gotResults[2]["score"], gotResults[2]["reason_code"])
	}
	feats, _ := gotResults[0]["features"].([]any)
	if len(feats) != 2 || feats[1].(map[string]any)["value"] != nil || feats[0].(map[string]any)["name"] != "s0_patchcore_q995" {
		t.Errorf("features %v: want ordered pairs with NaN as null", feats)
	}
	if gotRejects[0].ReasonCode != result.ReasonAnomaly || gotRejects[0].PartID != "P-2" || gotRejects[0].Seq != 2 ||
		gotRejects[0].ResultID != gotResults[1]["id"] {
		t.Errorf("fail reject %+v does not match result %v", gotRejects[0], gotResults[1]["id"])
	}
	if gotRejects[1].ReasonCode != "camera_stale" || gotRejects[1].Verdict != result.VerdictError {
		t.Errorf("error reject %+v", gotRejects[1])
	}

	// Retained status and health, as a late subscriber sees them.
	host, port := hostPort(m.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.SetHealth(func() Health { return Health{Frames: 3, Fails: 1, Errors: 1, CameraState: "streaming"} })
	waitFor(t, "a health report with the daemon's fields", 5*time.Second, func() bool {
		out, err := runClient(t, ctx, "mosquitto_sub", "-h", host, "-p", port, "-t", tp.Health, "-C", "1", "-W", "2")
		var h Health
		return err == nil && json.Unmarshal([]byte(out), &h) == nil && h.Frames == 3 && h.CameraState == "streaming" &&
			h.Published == 3 && h.Station == "st1"
	})
	out, err := runClient(t, ctx, "mosquitto_sub", "-h", host, "-p", port, "-t", tp.Status, "-C", "1", "-W", "2")
	if err != nil || strings.TrimSpace(out) != "online" {
		t.Fatalf("retained status = %q (%v), want online", out, err)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer ccancel()
	if err := p.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	out, err = runClient(t, ctx, "mosquitto_sub", "-h", host, "-p", port, "-t", tp.Status, "-C", "1", "-W", "2")
	if err != nil || strings.TrimSpace(out) != "offline" {
		t.Fatalf("retained status after Close = %q (%v), want offline", out, err)
	}
}

// TestOutboxFullReported: with the broker unreachable and a small outbox,
// pass results are dropped before fails, and Stats and the health JSON
// report it; Close leaves the rest in the outbox and says so.
func TestOutboxFullReported(t *testing.T) {
	cfg := testConfig(t, fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t)), "full")
	cfg.Outbox.MaxResults = 3
	log, _ := testLogger(t)
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []result.Verdict{result.VerdictFail, result.VerdictPass, result.VerdictPass, result.VerdictError, result.VerdictPass, result.VerdictPass} {
		if err := p.Publish(context.Background(), result.Result{Verdict: v, Seq: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	s := p.Stats()
	if s.Backlog != 3 || s.DroppedPass != 3 || s.DroppedFail != 0 || s.Drops != 3 || s.Connected {
		t.Fatalf("stats %+v; want backlog 3, 3 pass drops, not connected", s)
	}
	if h := p.Health(); h.OutboxDrops != 3 || h.BrokerBacklog != 3 || !strings.Contains(h.LastError, "nothing listens") {
		t.Fatalf("health %+v", h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); err == nil || !strings.Contains(err.Error(), "3 results left in the outbox") {
		t.Fatalf("Close = %v, want it to report 3 results left", err)
	}
	// The next start finds them, fails first as they were appended.
	o, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = o.Close(ctx)
	}()
	if o.Stats().Backlog != 3 {
		t.Fatalf("backlog after restart %d, want 3", o.Stats().Backlog)
	}
}

// TestPublishDirect: the last-resort path (outbox cannot store) still
// reaches a subscriber, and fails with a clear error when disconnected.
func TestPublishDirect(t *testing.T) {
	m := startMosquitto(t, mosqOpts{})
	cfg := testConfig(t, m.URL(), "direct")
	cfg.Outbox.Memory = true
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 2)
	sub := make(chan error, 1)
	go func() {
		out, err := runClient(t, ctx, "mosquitto_sub", "-h", "127.0.0.1", "-p", strconv.Itoa(m.Port), "-t", p.Topics().Reject, "-C", "1", "-W", "5")
		got <- out
		sub <- err
	}()
	time.Sleep(300 * time.Millisecond) // let mosquitto_sub subscribe
	r := result.Result{Station: cfg.Station, Seq: 7, PartID: "P7", Verdict: result.VerdictError, ReasonCode: "capture_error", DecidedAt: time.Now()}
	if err := p.PublishDirect(r); err != nil {
		t.Fatalf("PublishDirect: %v", err)
	}
	if err := <-sub; err != nil {
		t.Fatalf("mosquitto_sub: %v", err)
	}
	if out := <-got; !strings.Contains(out, `"part_id":"P7"`) || !strings.Contains(out, `"reason_code":"capture_error"`) {
		t.Fatalf("reject payload %q", out)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	p.Close(cctx)
	if err := p.PublishDirect(r); err == nil {
		t.Fatal("PublishDirect after Close: want an error")
	}
}

// TestFallbackBroker: with the first broker unreachable, the publisher
// connects to the next one in mqtt.fallback_brokers and delivers there.
func TestFallbackBroker(t *testing.T) {
	m := startMosquitto(t, mosqOpts{})
	dead := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	cfg := testConfig(t, dead, "fb")
	cfg.FallbackBrokers = []string{m.URL()}
	tp := cfg.Resolve()
	registerSession(t, m.URL(), "fb-sub", tp.Result)
	p := newPublisher(t, cfg)
	waitConnected(t, p)
	if err := p.Publish(context.Background(), result.Result{Source: "cam", Seq: 1, Verdict: result.VerdictPass, DecidedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	lines := collect(t, m.URL(), "fb-sub", 1, "-t", tp.Result)
	if len(lines) != 1 || !strings.Contains(lines[0], `"seq":1`) {
		t.Fatalf("result via the fallback broker: %v", lines)
	}
}

// TestWebSocketsBroker: a broker reached over MQTT-over-WebSockets
// (ws://), as some plant brokers only expose, gets the results.
func TestWebSocketsBroker(t *testing.T) {
	m := startMosquitto(t, mosqOpts{WebSockets: true})
	cfg := testConfig(t, fmt.Sprintf("ws://127.0.0.1:%d", m.WSPort), "ws")
	tp := cfg.Resolve()
	registerSession(t, m.URL(), "ws-sub", tp.Result)
	p := newPublisher(t, cfg)
	waitConnected(t, p)
	if err := p.Publish(context.Background(), result.Result{Source: "cam", Seq: 9, Verdict: result.VerdictPass, DecidedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	lines := collect(t, m.URL(), "ws-sub", 1, "-t", tp.Result)
	if len(lines) != 1 || !strings.Contains(lines[0], `"seq":9`) {
		t.Fatalf("result over WebSockets: %v", lines)
	}
}
