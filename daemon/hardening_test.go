package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/mqtt"
)

// fakePublisher records results in order (the daemon's Publisher
// interface); stats is its Stats answer (the link it reports); hang makes
// Publish and Close ignore their context and block (a wedged outbox).
type fakePublisher struct {
	mu      sync.Mutex
	results []result.Result
	stats   mqtt.Stats
	hang    chan struct{}
}

func (p *fakePublisher) Stats() mqtt.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

func (p *fakePublisher) Publish(ctx context.Context, r result.Result) error {
	if p.hang != nil {
		<-p.hang
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.results = append(p.results, r)
	return nil
}

func (p *fakePublisher) Close(context.Context) error {
	if p.hang != nil {
		<-p.hang
	}
	return nil
}

func (p *fakePublisher) got() []result.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]result.Result(nil), p.results...)
}

func (p *fakePublisher) wait(t *testing.T, n int) []result.Result {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.got()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return p.got()
}

// fakeSource is an on-demand camera stand-in (capture.Source and
// capture.Triggerer): frames are fed by the test, Trigger answers trigErr.
// With hang set, Next ignores cancellation and Close blocks (a driver stuck
// in a call).
type fakeSource struct {
	frames  chan *capture.Frame
	trigErr error
	hang    chan struct{}
}

func (s *fakeSource) Name() string { return "fake" }

func (s *fakeSource) Next(ctx context.Context) (*capture.Frame, error) {
	if s.hang != nil {
		<-s.hang
		return nil, capture.ErrClosed
	}
	select {
	case f := <-s.frames:
		return f, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *fakeSource) State() capture.SourceState {
	return capture.SourceState{Connected: true, LastFrameAge: time.Millisecond}
}

func (s *fakeSource) Close() error {
	if s.hang != nil {
		<-s.hang
	}
	return nil
}

func (s *fakeSource) Trigger(string) error { return s.trigErr }

// newFakeDaemon builds a daemon on the real line (fixture detector, VAD
// mask, trained forest) with a fake source and publisher.
func newFakeDaemon(t *testing.T, src capture.Source, pub Publisher, edit func(*config.Config)) *Daemon {
	t.Helper()
	cfgPath, _ := testConfig(t, t.TempDir(), 1, "meanstd_blur.onnx", "1000", "")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	d, err := New(cfg, Options{Logger: quietLog(), Source: sourceOf(src), Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func partFrame(t *testing.T, d *Daemon, seq uint64, id string) *capture.Frame {
	f := d.frameFromBytes(encodePart(t), id)
	f.Source, f.Seq = "fake", seq
	return f
}

// TestTriggersAlwaysAnswered: every trigger gets exactly one result, in
// queue order with the frames around it: one the MQTT side flagged
// Overflow, one the source refuses (busy), and one with a part ID that
// breaks the part-ID rule (answered without that ID). Each is a
// capture_error with the trigger's part ID, the schema version and its own
// result ID, and is counted.
func TestTriggersAlwaysAnswered(t *testing.T) {
	src := &fakeSource{frames: make(chan *capture.Frame, 4), trigErr: errors.New("3 triggers already waiting")}
	pub := &fakePublisher{}
	d := newFakeDaemon(t, src, pub, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	src.frames <- partFrame(t, d, 1, "F1")
	pub.wait(t, 1)
	d.onTrigger(mqtt.Trigger{PartID: "T-over", Overflow: true})
	d.onTrigger(mqtt.Trigger{PartID: "T-busy"})
	d.onTrigger(mqtt.Trigger{PartID: "T\nbad"})
	src.frames <- partFrame(t, d, 2, "F2")
	got := pub.wait(t, 5)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []struct {
		part, code, reason string
	}{
		{"F1", "", ""},
		{"T-over", result.ReasonCapture, "faster than the line"},
		{"T-busy", result.ReasonCapture, "already waiting"},
		{"", result.ReasonCapture, "part ID was refused"},
		{"F2", "", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(got), len(want), got)
	}
	ids := map[string]bool{}
	for i, w := range want {
		r := got[i]
		if r.PartID != w.part {
			t.Errorf("result %d is part %q, want %q (order or part ID wrong)", i, r.PartID, w.part)
		}
		if w.code != "" && (r.Verdict != result.VerdictError || r.ReasonCode != w.code || !strings.Contains(r.Reason, w.reason)) {
			t.Errorf("result %d: %s/%s %q, want error/%s mentioning %q", i, r.Verdict, r.ReasonCode, r.Reason, w.code, w.reason)
		}
		if r.Schema != result.SchemaVersion || r.ID == "" || ids[r.ID] {
			t.Errorf("result %d: schema %d id %q, want a stamped, unique result", i, r.Schema, r.ID)
		}
		ids[r.ID] = true
	}
	if n := testutilCount(t, d, "segad_triggers_unserved_total"); n != 3 {
		t.Errorf("segad_triggers_unserved_total = %v, want 3", n)
	}
}

// testutilCount reads one counter from the daemon's registry.
func testutilCount(t *testing.T, d *Daemon, name string) float64 {
	t.Helper()
	mfs, err := d.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

// TestFrameQueueWithRejects: trigger answers keep their place between
// frames, do not take frame capacity, are never dropped by drop_oldest,
// and are refused once the queue is closed (the caller answers them).
func TestFrameQueueWithRejects(t *testing.T) {
	for _, policy := range []string{"block", "drop_oldest"} {
		t.Run(policy, func(t *testing.T) {
			q := newFrameQueue(1, policy)
			ctx := context.Background()
			frame := func(id string) *queued { return &queued{f: &capture.Frame{PartID: id}} }
			reject := func(id string) *queued {
				return &queued{f: &capture.Frame{PartID: id}, reject: errors.New("unserved")}
			}
			if _, ok := q.push(ctx, frame("f1")); !ok {
				t.Fatal("push f1")
			}
			for _, id := range []string{"r1", "r2"} {
				if !q.pushReject(reject(id)) {
					t.Fatalf("pushReject %s refused", id)
				}
			}
			if policy == "drop_oldest" {
				// The queue is full with f1: f2 drops f1, never a reject.
				dropped, _ := q.push(ctx, frame("f2"))
				if dropped == nil || dropped.f.PartID != "f1" {
					t.Fatalf("drop_oldest dropped %v, want f1", dropped)
				}
			}
			var order []string
			for q.depth() > 0 {
				it, _ := q.pop()
				tag := it.f.PartID
				if it.dropped {
					tag += "(dropped)"
				}
				order = append(order, tag)
			}
			want := "f1 r1 r2"
			if policy == "drop_oldest" {
				want = "f1(dropped) r1 r2 f2"
			}
			if got := strings.Join(order, " "); got != want {
				t.Errorf("order %q, want %q", got, want)
			}
			if q.live != 0 || q.rejects != 0 {
				t.Errorf("counts after draining: live %d rejects %d", q.live, q.rejects)
			}
			q.close()
			if q.pushReject(reject("late")) {
				t.Error("pushReject accepted after close: nobody would answer it")
			}
			if _, ok := q.push(ctx, frame("late")); ok {
				t.Error("push accepted after close: nobody would answer it")
			}
		})
	}
}

// TestRejectBoundWaits: beyond maxAnswers waiting answers, pushReject waits
// for the line to take one (bounded memory) instead of growing the queue.
func TestRejectBoundWaits(t *testing.T) {
	q := newFrameQueue(1, "block")
	for i := 0; i < maxAnswers; i++ {
		q.pushReject(&queued{f: &capture.Frame{}, reject: errors.New("x")})
	}
	pushed := make(chan bool, 1)
	go func() { pushed <- q.pushReject(&queued{f: &capture.Frame{}, reject: errors.New("x")}) }()
	select {
	case <-pushed:
		t.Fatal("pushReject went past maxAnswers without waiting")
	case <-time.After(100 * time.Millisecond):
	}
	q.pop()
	select {
	case ok := <-pushed:
		if !ok {
			t.Fatal("pushReject refused after room was made")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("pushReject still waiting after a pop")
	}
}

// TestDropBoundWaits: a drop_oldest source faster than the results can be
// published fills the queue with dropped-frame answers; beyond maxAnswers
// of them the push waits for the line (bounded memory, the capture loop
// slows to the pace of the results) instead of growing the queue, and a
// stop or close ends the wait with the frame handed back to be answered.
func TestDropBoundWaits(t *testing.T) {
	for _, stop := range []string{"pop", "cancel", "close"} {
		t.Run(stop, func(t *testing.T) {
			q := newFrameQueue(1, "drop_oldest")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for seq := uint64(1); seq <= maxAnswers+1; seq++ {
				if _, ok := q.push(ctx, item(seq)); !ok {
					t.Fatalf("push %d refused", seq)
				}
			}
			if q.dropped != maxAnswers || q.live != 1 {
				t.Fatalf("dropped %d live %d, want %d and 1", q.dropped, q.live, maxAnswers)
			}
			type pushed struct {
				dropped *queued
				ok      bool
			}
			done := make(chan pushed, 1)
			go func() {
				d, ok := q.push(ctx, item(maxAnswers+2))
				done <- pushed{d, ok}
			}()
			select {
			case <-done:
				t.Fatal("push went past maxAnswers dropped answers without waiting")
			case <-time.After(100 * time.Millisecond):
			}
			switch stop {
			case "pop":
				if it, _ := q.pop(); !it.dropped || it.f.Seq != 1 {
					t.Fatalf("popped frame %d dropped %v, want the dropped frame 1", it.f.Seq, it.dropped)
				}
			case "cancel":
				cancel()
			case "close":
				q.close()
			}
			var got pushed
			select {
			case got = <-done:
			case <-time.After(2 * time.Second):
				t.Fatalf("push still waiting after %s", stop)
			}
			if stop != "pop" {
				if got.ok {
					t.Fatalf("push accepted after %s: nobody would answer it", stop)
				}
				return
			}
			if !got.ok || got.dropped == nil || got.dropped.f.Seq != maxAnswers+1 {
				t.Fatalf("push after room was made: ok %v dropped %v, want the live frame %d dropped", got.ok, got.dropped, maxAnswers+1)
			}
			if q.dropped != maxAnswers || q.live != 1 || q.depth() != maxAnswers+1 {
				t.Errorf("dropped %d live %d depth %d after the push", q.dropped, q.live, q.depth())
			}
		})
	}
}

// TestLinkWatch: the link is stalled only when results wait with none
// acknowledged for linkStallAfter; an empty outbox or an acknowledgement
// resets the clock.
func TestLinkWatch(t *testing.T) {
	t0 := time.Now()
	steps := []struct {
		at      time.Duration
		stats   mqtt.Stats
		stalled bool
	}{
		{0, mqtt.Stats{Backlog: 5, Published: 10, Connected: true}, false},
		{20 * time.Second, mqtt.Stats{Backlog: 9, Published: 10, Connected: true}, false},
		{31 * time.Second, mqtt.Stats{Backlog: 12, Published: 10, Connected: true}, true},
		{32 * time.Second, mqtt.Stats{Backlog: 11, Published: 11, Connected: true}, false}, // an ack
		{50 * time.Second, mqtt.Stats{Backlog: 0, Published: 11}, false},                   // nothing waits
		{51 * time.Second, mqtt.Stats{Backlog: 1, Published: 11, LastError: "connection refused"}, false},
		{79 * time.Second, mqtt.Stats{Backlog: 2, Published: 11, LastError: "connection refused"}, false},
		{82 * time.Second, mqtt.Stats{Backlog: 3, Published: 11, LastError: "connection refused"}, true},
	}
	var w linkWatch
	for i, s := range steps {
		l := w.observe(s.stats, t0.Add(s.at))
		if l.Stalled != s.stalled {
			t.Errorf("step %d (%s): stalled %v, want %v (%s)", i, s.at, l.Stalled, s.stalled, l.Reason)
		}
		if l.Stalled && !strings.Contains(l.Reason, "waiting in the outbox") {
			t.Errorf("step %d: reason %q does not say what waits", i, l.Reason)
		}
	}
	if l := w.last(); !strings.Contains(l.Reason, "connection refused") {
		t.Errorf("reason %q lacks the last error", l.Reason)
	}
}

// TestReadyzReportsStalledLink: /readyz is 503 with the publisher's reason
// while it says it cannot publish, and 200 again once it can.
func TestReadyzReportsStalledLink(t *testing.T) {
	pub := &fakePublisher{stats: mqtt.Stats{Stalled: true, StalledReason: "no PUBACK for 40s"}}
	d := newFakeDaemon(t, &fakeSource{frames: make(chan *capture.Frame)}, pub, nil)
	defer d.Close()
	srv := httptest.NewServer(d.Handler(""))
	defer srv.Close()
	get := func() (int, string) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 503 || !strings.Contains(body, "results cannot be published: no PUBACK for 40s") {
		t.Fatalf("stalled link: %d %q, want 503 with the reason", code, body)
	}
	pub.mu.Lock()
	pub.stats = mqtt.Stats{}
	pub.mu.Unlock()
	if code, body := get(); code != 200 {
		t.Fatalf("healthy link: %d %q", code, body)
	}
}

// TestHTTPLimits: oversize bodies get 413 naming the limit (announced or
// chunked), a second /inspect while one runs gets 503 with Retry-After,
// part IDs that break the rule get 400 with the reason on both endpoints,
// and /inspect answers carry the schema and a result ID.
func TestHTTPLimits(t *testing.T) {
	d := newFakeDaemon(t, &fakeSource{frames: make(chan *capture.Frame), trigErr: errors.New("no")}, &fakePublisher{}, nil)
	defer d.Close()
	d.httpLimits = HTTPLimits{MaxBody: 1 << 20, MaxInspect: 1}
	srv := httptest.NewServer(d.Handler(""))
	defer srv.Close()
	post := func(path string, body io.Reader, size int64) (*http.Response, string) {
		req, _ := http.NewRequest("POST", srv.URL+path, body)
		req.ContentLength = size
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	big := bytes.Repeat([]byte{0x89}, 2<<20)
	for _, c := range []struct {
		name string
		size int64
	}{{"announced", int64(len(big))}, {"chunked", -1}} {
		resp, body := post("/inspect", bytes.NewReader(big), c.size)
		if resp.StatusCode != 413 || !strings.Contains(body, "up to 1048576 bytes (1 MiB)") {
			t.Errorf("%s oversize body: %d %q, want 413 naming the limit", c.name, resp.StatusCode, body)
		}
	}
	// Part IDs.
	for _, bad := range []string{"A%00B", "A%0AB", strings.Repeat("x", 10000), "A%FFB"} {
		for _, path := range []string{"/inspect", "/trigger"} {
			resp, body := post(path+"?part_id="+bad, bytes.NewReader(encodePart(t)), -1)
			if resp.StatusCode != 400 || !strings.HasPrefix(body, "part_id refused: part ID") {
				t.Errorf("%s part_id %.20q: %d %q, want 400 with the reason", path, bad, resp.StatusCode, body)
			}
		}
	}
	// A good upload: stamped result.
	resp, body := post("/inspect?part_id=P-1", bytes.NewReader(encodePart(t)), -1)
	var r result.Result
	if err := json.Unmarshal([]byte(body), &r); err != nil || resp.StatusCode != 200 {
		t.Fatalf("inspect: %d %q %v", resp.StatusCode, body, err)
	}
	if r.Schema != result.SchemaVersion || r.ID == "" || r.PartID != "P-1" {
		t.Errorf("inspect result schema %d id %q part %q, want a stamped result", r.Schema, r.ID, r.PartID)
	}
	// Busy: hold the only slot with an upload that has not finished.
	pr, pw := io.Pipe()
	held := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", srv.URL+"/inspect", pr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			held <- 0
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	pw.Write(encodePart(t)[:100])
	time.Sleep(100 * time.Millisecond)
	resp, body = post("/inspect", bytes.NewReader(encodePart(t)), -1)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "busy: 1 /inspect") {
		t.Errorf("second /inspect while one runs: %d Retry-After %q %q, want 503 busy", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	pw.Close()
	if code := <-held; code != 200 {
		t.Errorf("the held request ended with %d", code)
	}
	if n := testutilCount(t, d, "segad_http_refused_total"); n != 11 {
		t.Errorf("segad_http_refused_total = %v, want 11 (2 too large, 8 part IDs, 1 busy)", n)
	}
}

// TestHTTPServerCutsSlowClients: the server built by ServeHTTP closes a
// connection whose headers trickle in (slowloris) after ReadHeaderTimeout,
// and one whose body trickles after ReadTimeout, with small limits so the
// test is fast (the defaults are checked against the real process).
func TestHTTPServerCutsSlowClients(t *testing.T) {
	d := newFakeDaemon(t, &fakeSource{frames: make(chan *capture.Frame)}, &fakePublisher{}, nil)
	defer d.Close()
	d.httpLimits = HTTPLimits{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 600 * time.Millisecond, MaxConns: 4}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.ServeHTTP(ctx, addr, "", "", ""); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		prefix string
		within time.Duration
	}{
		{"headers", "POST /inspect HTTP/1.1\r\nHost: x\r\n", time.Second},
		{"body", "POST /inspect HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 1500 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			if _, err := io.WriteString(conn, c.prefix); err != nil {
				t.Fatal(err)
			}
			// One byte every 50 ms until the server hangs up (bounded).
			for time.Since(start) < 5*time.Second {
				time.Sleep(50 * time.Millisecond)
				if _, err := conn.Write([]byte("X")); err != nil {
					break
				}
				conn.SetReadDeadline(time.Now().Add(time.Millisecond))
				if _, err := conn.Read(make([]byte, 512)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					break // closed (or answered and closed)
				}
			}
			if el := time.Since(start); el > c.within {
				t.Errorf("slow client held for %s, want cut within %s", el, c.within)
			}
		})
	}
}

// TestReloadKeepsWorkingSource: a capture edit to a source that cannot
// deliver (a missing GStreamer element, a pipeline that ends at once, one
// that cannot negotiate) is refused after a bounded probe; the running
// camera keeps delivering, health says why, and every frame still gets
// exactly one result, in order.
func TestReloadKeepsWorkingSource(t *testing.T) {
	live := "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=20/1 ! videoconvert ! appsink"
	d, cfgPath, port := newTestDaemon(t, 1, "meanstd_blur.onnx", "1000", func(c *config.Config) {
		c.Capture.Kind, c.Capture.Path, c.Capture.Pipeline = capture.KindGStreamer, "", live
		c.Capture.OpenTimeout, c.Capture.Watchdog = 2*time.Second, time.Second
	})
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	capture := func(pipeline string) string {
		return strings.Replace(string(raw), "capture:\n  kind: video\n  path: parts.avi\n",
			fmt.Sprintf("capture:\n  kind: gstreamer\n  pipeline: %q\n  open_timeout: 2s\n  watchdog: 1s\n", pipeline), 1)
	}
	if err := os.WriteFile(cfgPath, []byte(capture(live)), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, port)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	sub.WaitResults(3, 10*time.Second)
	running := d.currentSource()
	for _, bad := range []string{
		"nosuchelement ! appsink",
		"videotestsrc num-buffers=0 ! appsink",
		"fakesrc ! appsink",
	} {
		if err := os.WriteFile(cfgPath, []byte(capture(bad)), 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err := d.Reload()
		if err == nil {
			t.Fatalf("reload to %q accepted", bad)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("probe of %q took %s, want within open_timeout + watchdog", bad, el)
		}
		if d.currentSource() != running {
			t.Fatalf("reload to %q replaced the working source", bad)
		}
		if h := d.health(); !strings.Contains(h.LastConfigError, "the running source stays") {
			t.Errorf("health last_config_error %q does not say the source was kept", h.LastConfigError)
		}
		before := len(sub.Results())
		if got := sub.WaitResults(before+3, 10*time.Second); len(got) < before+3 {
			t.Fatalf("the running source stopped delivering after the refused reload to %q", bad)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	frames := int(d.metrics.frames.Load())
	got := sub.WaitResults(frames, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	got = sub.Results()
	if len(got) != frames {
		t.Fatalf("%d results for %d frames", len(got), frames)
	}
	for i, r := range got {
		if r.Seq != uint64(i+1) {
			t.Fatalf("result %d is frame %d: not exactly one result per frame in order", i, r.Seq)
		}
	}
}

// TestStopIsBounded: a stop ends within shutdown_timeout + ShutdownSlack
// even when a peer hangs: a source whose Next ignores cancellation and
// whose Close never returns, or a publisher (outbox) that never returns
// from Publish or Close.
func TestStopIsBounded(t *testing.T) {
	cases := []struct {
		name string
		hung func(hang chan struct{}) (*fakeSource, *fakePublisher)
	}{
		{"source hangs", func(h chan struct{}) (*fakeSource, *fakePublisher) {
			return &fakeSource{hang: h}, &fakePublisher{}
		}},
		{"publisher hangs", func(h chan struct{}) (*fakeSource, *fakePublisher) {
			return &fakeSource{frames: make(chan *capture.Frame, 2)}, &fakePublisher{hang: h}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hang := make(chan struct{})
			defer close(hang) // let the stuck goroutines go at the end
			src, pub := c.hung(hang)
			d := newFakeDaemon(t, src, pub, func(cfg *config.Config) { cfg.Pipeline.ShutdownTimeout = time.Second })
			if src.frames != nil {
				src.frames <- partFrame(t, d, 1, "P1")
				src.frames <- partFrame(t, d, 2, "P2")
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				el := time.Since(start)
				if el > d.ShutdownBound() {
					t.Errorf("stop took %s, bound %s", el, d.ShutdownBound())
				}
				if err == nil || !strings.Contains(err.Error(), "left to process exit") {
					t.Errorf("Run returned %v, want the close timeout reported", err)
				}
				t.Logf("stopped in %s with %v", el.Round(time.Millisecond), err)
			case <-time.After(d.ShutdownBound() + 2*time.Second):
				t.Fatalf("Run did not return within %s of the stop", d.ShutdownBound())
			}
		})
	}
}
