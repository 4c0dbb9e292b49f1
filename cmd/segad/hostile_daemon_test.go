package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"net"
	"net/http"
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
	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

// The hostile-daemon suite runs the real `segad run` process against what a
// plant's worst day sends it: error frames with the audit on, trigger floods
// on a camera that cannot serve them, slow and oversized HTTP clients,
// reloads to sources that cannot deliver, and peers that hang at shutdown.
// Every case checks that the process stays up (or stops in bounded time),
// that refusals are clear, and that every part gets exactly one result.

// segadProc is a running `segad run`.
type segadProc struct {
	cmd    *exec.Cmd
	logs   *testenv.SyncBuffer
	exited chan error
}

// startSegad starts `segad run --config cfgPath`; the test kills it if it
// is still running at the end and prints its log when the test failed.
func startSegad(t *testing.T, cfgPath string) *segadProc {
	t.Helper()
	p := &segadProc{logs: &testenv.SyncBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(segadBinary(t), "run", "--config", cfgPath)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.alive() {
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", p.logs.String())
		}
	})
	return p
}

func (p *segadProc) alive() bool {
	return p.cmd.ProcessState == nil && p.cmd.Process.Signal(syscall.Signal(0)) == nil
}

// rss is the process's resident set size in bytes.
func (p *segadProc) rss(t *testing.T) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", p.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc statm: %v", err)
	}
	pages, _ := strconv.ParseInt(strings.Fields(string(b))[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// stop sends SIGTERM and waits for the exit, failing after within.
func (p *segadProc) stop(t *testing.T, within time.Duration) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		return err, time.Since(start)
	case <-time.After(within):
		t.Fatalf("segad did not stop within %s of SIGTERM", within)
	}
	return nil, 0
}

// hostileConfig writes a config in dir: the fixture detector, the VAD mask,
// a trained forest, threshold 1000 (every readable part passes), the given
// capture section, MQTT broker and extra top-level sections.
func hostileConfig(t *testing.T, dir, captureYAML, broker, extra string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "brf.json")); err != nil {
		testenv.TrainForest(t, filepath.Join(dir, "brf.json"), 29)
	}
	root := testenv.RepoRoot(t)
	cfg := fmt.Sprintf(`station: hostile
onnxruntime:
  library: %q
capture:
%s
detectors:
  - name: ms
    model: %q
segad:
  mask: builtin:vad
  model: brf.json
  threshold: 1000
mqtt:
  broker: %s
  outbox: {path: outbox.db}
  status_interval: 200ms
pipeline:
  queue: 4
  overflow: block
  warmup: 1
  shutdown_timeout: 2s
%s`, testenv.ORTLib(t), captureYAML, filepath.Join(root, "infer", "testdata", "meanstd_blur.onnx"), broker, extra)
	p := filepath.Join(dir, "segad.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// partPNG is an encoded part image of w x h (noise makes it big when asked).
func partPNG(t *testing.T, w, h int, noise bool) []byte {
	t.Helper()
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 110, 120, 0), h, w, gocv.MatTypeCV8UC3)
	defer m.Close()
	if noise {
		gocv.RandU(&m, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
	}
	gocv.Circle(&m, image.Pt(w/2, h/2), min(w, h)/3, color.RGBA{150, 150, 150, 0}, -1)
	buf, err := gocv.IMEncode(gocv.PNGFileExt, m)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...)
}

// auditRecords reads the audit folder: result ID -> which files it has.
func auditRecords(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			ext := filepath.Ext(p)
			id := strings.TrimSuffix(filepath.Base(p), ext)
			out[id] = append(out[id], ext)
		}
		return nil
	})
	return out
}

// checkAudited: every error result has its JSON record and no image.
func checkAudited(t *testing.T, auditDir string, results []result.Result) {
	t.Helper()
	waitFor(t, "audit records", 5*time.Second, func() bool {
		recs := auditRecords(t, auditDir)
		for _, r := range results {
			if r.Verdict == result.VerdictError && len(recs[r.ID]) == 0 {
				return false
			}
		}
		return true
	})
	recs := auditRecords(t, auditDir)
	for _, r := range results {
		if r.Verdict != result.VerdictError {
			continue
		}
		if got := strings.Join(recs[r.ID], ","); got != ".json" {
			t.Errorf("audit of error result %s (part %q): files %q, want the JSON record only", r.ID, r.PartID, got)
		}
	}
}

// TestHostileDaemonAuditErrorFrames: with audit.dir set, error frames used
// to crash the process in Audit.Save (SIGSEGV on an empty Mat). A watch
// folder gets a zero-byte file, a corrupt PNG, an unsupported file and a
// good part; the process stays up, each file gets exactly one result, and
// each error result is audited as a JSON record without an image.
func TestHostileDaemonAuditErrorFrames(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	watch, auditDir := filepath.Join(dir, "drop"), filepath.Join(dir, "audit")
	os.MkdirAll(watch, 0o755)
	cfg := hostileConfig(t, dir, fmt.Sprintf("  kind: watch\n  path: %q\n  watch: {poll: 50ms, grace: 500ms}", watch),
		broker.URL(), fmt.Sprintf("audit: {dir: %q}\nhttp: {listen: \"off\"}\n", auditDir))
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/hostile/#")
	p := startSegad(t, cfg)
	waitFor(t, "the daemon to start", 30*time.Second, func() bool { return strings.Contains(p.logs.String(), "ready: inspecting") })

	good := partPNG(t, 320, 240, false)
	corrupt := append(append([]byte(nil), good[:60]...), bytes.Repeat([]byte{0x55}, 400)...)
	corrupt = append(corrupt, good[len(good)-12:]...) // PNG magic and IEND: only OpenCV can tell
	files := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"zero.png", nil, false},
		{"corrupt.png", corrupt, false},
		{"garbage.jpg", []byte("this is not an image at all"), false},
		{"good.png", good, true},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(watch, f.name), f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := sub.WaitResults(len(files), 30*time.Second)
	time.Sleep(300 * time.Millisecond) // a double would arrive now
	got = sub.Results()
	if !p.alive() {
		t.Fatalf("the daemon died on error frames with the audit on")
	}
	byPart := map[string][]result.Result{}
	for _, r := range got {
		byPart[r.PartID] = append(byPart[r.PartID], r)
	}
	for _, f := range files {
		part := strings.TrimSuffix(f.name, filepath.Ext(f.name))
		rs := byPart[part]
		if len(rs) != 1 {
			t.Errorf("%s: %d results, want exactly 1", f.name, len(rs))
			continue
		}
		if ok := rs[0].Verdict == result.VerdictPass; ok != f.ok || (!f.ok && rs[0].ReasonCode != "capture_error") {
			t.Errorf("%s: %s/%s %q", f.name, rs[0].Verdict, rs[0].ReasonCode, rs[0].Reason)
		}
	}
	checkAudited(t, auditDir, got)
	if err, el := p.stop(t, 20*time.Second); err != nil {
		t.Errorf("exit after %s: %v", el, err)
	}
}

// TestHostileDaemonTriggersOnStalledCamera: an on-demand camera that never
// delivers (its pipeline cannot open) gets a burst of MQTT triggers, more
// than its trigger queue holds. Triggers it queued time out into error
// frames; the ones it refused are answered by the daemon. With the audit
// on, the process stays up, every part ID gets exactly one capture_error
// result, and every one is audited as a JSON record.
func TestHostileDaemonTriggersOnStalledCamera(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	auditDir := filepath.Join(dir, "audit")
	cfg := hostileConfig(t, dir, "  kind: gstreamer\n  pipeline: \"nosuchelement ! appsink\"\n  trigger: {mode: on-demand, timeout: 50ms}\n  reconnect: {initial: 100ms, max: 200ms}",
		broker.URL(), fmt.Sprintf("audit: {dir: %q}\nhttp: {listen: \"off\"}\n", auditDir))
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/hostile/#")
	p := startSegad(t, cfg)
	waitFor(t, "the daemon to start", 30*time.Second, func() bool { return strings.Contains(p.logs.String(), "ready: inspecting") })

	plc := paho.NewClient(paho.NewClientOptions().AddBroker(broker.URL()).SetClientID("plc"))
	if tok := plc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("plc connect: %v", tok.Error())
	}
	defer plc.Disconnect(100)
	// "ready" does not mean the trigger subscription is in place on a fresh
	// broker (triggers published before it are the broker's to drop): probe
	// until a trigger is answered, then send the burst.
	waitFor(t, "the daemon to answer a trigger", 30*time.Second, func() bool {
		plc.Publish("segad/hostile/trigger", 1, false, "probe").WaitTimeout(time.Second)
		for _, r := range sub.Results() {
			if r.PartID == "probe" {
				return true
			}
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
	const n = 100 // more than the camera's 64 waiting triggers
	for i := 0; i < n; i++ {
		tok := plc.Publish("segad/hostile/trigger", 1, false, fmt.Sprintf("T-%03d", i))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("trigger %d: %v", i, tok.Error())
		}
	}
	triggered := func() []result.Result {
		var out []result.Result
		for _, r := range sub.Results() {
			if strings.HasPrefix(r.PartID, "T-") {
				out = append(out, r)
			}
		}
		return out
	}
	waitFor(t, fmt.Sprintf("%d trigger results", n), 60*time.Second, func() bool { return len(triggered()) >= n })
	time.Sleep(300 * time.Millisecond)
	got := triggered()
	if !p.alive() {
		t.Fatal("the daemon died on triggers it could not serve with the audit on")
	}
	count := map[string]int{}
	var timedOut, refused int
	for _, r := range got {
		count[r.PartID]++
		if r.Verdict != result.VerdictError || r.ReasonCode != "capture_error" {
			t.Errorf("trigger %s: %s/%s, want error/capture_error", r.PartID, r.Verdict, r.ReasonCode)
		}
		switch {
		case strings.Contains(r.Reason, "no fresh frame"):
			timedOut++
		case strings.Contains(r.Reason, "trigger not served"):
			refused++
		}
	}
	for i := 0; i < n; i++ {
		if id := fmt.Sprintf("T-%03d", i); count[id] != 1 {
			t.Errorf("trigger %s: %d results, want exactly 1", id, count[id])
		}
	}
	if timedOut == 0 || refused == 0 {
		t.Errorf("%d timed out, %d refused: the burst did not exercise both kinds of unserved trigger", timedOut, refused)
	}
	checkAudited(t, auditDir, got)
	t.Logf("%d triggers: %d timed out in the camera, %d refused and answered by the daemon", n, timedOut, refused)
	if err, el := p.stop(t, 20*time.Second); err != nil {
		t.Errorf("exit after %s: %v", el, err)
	}
}

// TestHostileDaemonHTTP: the real daemon's HTTP API under hostile clients
// (all on loopback, bounded): a slowloris client is cut off after the
// header timeout; an oversize body gets 413 naming the limit whether its
// size is announced or not; bad part IDs get 400; 50 concurrent large
// uploads are answered (200 or 503 with Retry-After) while the daemon's
// RSS stays bounded, and the memory goes back afterwards; /inspect answers
// carry the schema and a result ID.
func TestHostileDaemonHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	watch := filepath.Join(dir, "drop")
	os.MkdirAll(watch, 0o755)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := hostileConfig(t, dir, fmt.Sprintf("  kind: watch\n  path: %q", watch), broker.URL(),
		fmt.Sprintf("http: {listen: %q, max_body: 16777216}\n", addr))
	p := startSegad(t, cfg)
	base := "http://" + addr
	waitFor(t, "the HTTP API", 30*time.Second, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	lim := daemon.DefaultHTTPLimits()
	lim.MaxBody = 16 << 20 // from the config: http.max_body is wired through

	// A slowloris client trickles its headers, in the background.
	slow := make(chan time.Duration, 1)
	go func() {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			slow <- -1
			return
		}
		defer conn.Close()
		start := time.Now()
		io.WriteString(conn, "POST /inspect HTTP/1.1\r\nHost: x\r\n")
		for time.Since(start) < lim.ReadHeaderTimeout+5*time.Second {
			time.Sleep(200 * time.Millisecond)
			if _, err := io.WriteString(conn, "X-Slow: 1\r\n"); err != nil {
				break
			}
			conn.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := conn.Read(make([]byte, 512)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
		}
		slow <- time.Since(start)
	}()

	post := func(path string, body io.Reader, size int64) (int, http.Header, string) {
		req, _ := http.NewRequest("POST", base+path, body)
		req.ContentLength = size
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}

	// Oversize bodies.
	over := lim.MaxBody + 1<<20
	want413 := fmt.Sprintf("up to %d bytes (%d MiB)", lim.MaxBody, lim.MaxBody>>20)
	for _, c := range []struct {
		name string
		size int64
	}{{"announced", over}, {"chunked", -1}} {
		code, _, body := post("/inspect", io.LimitReader(zeros{}, over), c.size)
		if code != 413 || !strings.Contains(body, want413) {
			t.Errorf("%s oversize body: %d %q, want 413 naming the limit", c.name, code, body)
		}
	}
	// Part IDs the PLC must never see.
	for _, bad := range []string{"A%00B", "A%0AB", strings.Repeat("x", 10000), "A%FFB"} {
		for _, path := range []string{"/inspect", "/trigger"} {
			code, _, body := post(path+"?part_id="+bad, bytes.NewReader(partPNG(t, 64, 64, false)), -1)
			if code != 400 || !strings.HasPrefix(body, "part_id refused: ") {
				t.Errorf("%s part_id %.20q: %d %q, want 400 with the reason", path, bad, code, body)
			}
		}
	}
	// A normal upload: a stamped result.
	code, _, body := post("/inspect?part_id=P-1", bytes.NewReader(partPNG(t, 320, 240, false)), -1)
	var r result.Result
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 200 || r.Schema != result.SchemaVersion || r.ID == "" || r.PartID != "P-1" {
		t.Errorf("inspect: %d schema %d id %q part %q (%v)", code, r.Schema, r.ID, r.PartID, err)
	}

	// 50 concurrent large uploads.
	large := partPNG(t, 2400, 1800, true)
	baseline := p.rss(t)
	var peak int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak = max(peak, p.rss(t))
			select {
			case <-stopSampling:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, hdr, body := post("/inspect", bytes.NewReader(large), int64(len(large)))
			mu.Lock()
			defer mu.Unlock()
			codes[code]++
			if code == 503 && (hdr.Get("Retry-After") == "" || !strings.Contains(body, "busy")) {
				t.Errorf("503 without Retry-After or reason: %q", body)
			}
			if code != 200 && code != 503 {
				t.Errorf("large upload: %d %q", code, body)
			}
		}()
	}
	wg.Wait()
	close(stopSampling)
	<-sampled
	const bound = 200 << 20
	t.Logf("50 uploads of %d bytes: %v; RSS %d MiB before, peak %d MiB", len(large), codes, baseline>>20, peak>>20)
	if codes[200] == 0 {
		t.Error("no large upload was inspected")
	}
	if peak-baseline > bound {
		t.Errorf("RSS grew by %d MiB under 50 concurrent uploads, bound %d MiB", (peak-baseline)>>20, bound>>20)
	}
	waitFor(t, "memory handed back after the burst", 10*time.Second, func() bool { return p.rss(t)-baseline < 64<<20 })

	if d := <-slow; d < 0 || d > lim.ReadHeaderTimeout+2*time.Second {
		t.Errorf("slowloris client held for %s, want cut after the %s header timeout", d, lim.ReadHeaderTimeout)
	}
	if !p.alive() {
		t.Fatal("the daemon died under hostile HTTP clients")
	}
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after the attack: %v", err)
	}
	if err, el := p.stop(t, 20*time.Second); err != nil {
		t.Errorf("exit after %s: %v", el, err)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// TestHostileDaemonReloadToDeadSource: while a live camera runs, the
// config is edited to GStreamer pipelines that cannot deliver (a missing
// element; one that ends at once). Each reload is refused after a bounded
// probe, health reports it, the running camera keeps delivering, and at
// the end every frame has exactly one result, sequence numbers without a
// gap.
func TestHostileDaemonReloadToDeadSource(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	live := "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 ! videoconvert ! appsink"
	section := func(pipeline string) string {
		return fmt.Sprintf("  kind: gstreamer\n  pipeline: %q\n  open_timeout: 2s\n  watchdog: 1s", pipeline)
	}
	cfg := hostileConfig(t, dir, section(live), broker.URL(), "http: {listen: \"off\"}\n")
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/hostile/#")
	p := startSegad(t, cfg)
	sub.WaitResults(3, 30*time.Second)
	for i, bad := range []string{"nosuchelement ! appsink", "videotestsrc num-buffers=0 ! appsink"} {
		hostileConfig(t, dir, section(bad), broker.URL(), "http: {listen: \"off\"}\n")
		p.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, "health to report the refused source", 20*time.Second, func() bool {
			hs := sub.Health()
			return len(hs) > 0 && strings.Contains(hs[len(hs)-1].LastConfigError, "the running source stays")
		})
		before := len(sub.Results())
		if got := sub.WaitResults(before+5, 20*time.Second); len(got) < before+5 {
			t.Fatalf("reload %d (%q): the running camera stopped delivering", i, bad)
		}
	}
	if !strings.Contains(p.logs.String(), "new capture source not switched to") {
		t.Error("the log does not say the new source was refused")
	}
	if err, el := p.stop(t, 20*time.Second); err != nil {
		t.Errorf("exit after %s: %v", el, err)
	}
	time.Sleep(500 * time.Millisecond)
	ids := map[uint64]map[string]bool{}
	var maxSeq uint64
	for _, r := range sub.Results() {
		if ids[r.Seq] == nil {
			ids[r.Seq] = map[string]bool{}
		}
		ids[r.Seq][r.ID] = true
		maxSeq = max(maxSeq, r.Seq)
	}
	for s := uint64(1); s <= maxSeq; s++ {
		if len(ids[s]) != 1 {
			t.Errorf("frame %d has %d distinct results, want exactly 1", s, len(ids[s]))
		}
	}
	t.Logf("%d frames, each with one result", maxSeq)
}

// TestHostileDaemonStopWithHungPeers: SIGTERM ends the process within
// shutdown_timeout + daemon.ShutdownSlack while the broker accepts TCP but
// never answers MQTT and the camera hangs in Read (a GStreamer element
// that holds each buffer for a minute). Nothing is killed from outside.
func TestHostileDaemonStopWithHungPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	// A broker that accepts and then says nothing.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	var conns []net.Conn
	var connsMu sync.Mutex
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
		}
	}()
	defer func() {
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
	}()
	dir := t.TempDir()
	pipeline := "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=10/1 ! identity sleep-time=60000000 ! videoconvert ! appsink"
	cfg := hostileConfig(t, dir, fmt.Sprintf("  kind: gstreamer\n  pipeline: %q\n  watchdog: 30s", pipeline),
		"tcp://"+hung.Addr().String(), "http: {listen: \"off\"}\n")
	p := startSegad(t, cfg)
	waitFor(t, "the daemon to start", 30*time.Second, func() bool { return strings.Contains(p.logs.String(), "ready: inspecting") })
	time.Sleep(2 * time.Second) // the camera is inside its first Read, the broker has not answered
	const shutdownTimeout = 2 * time.Second
	bound := shutdownTimeout + daemon.ShutdownSlack
	err, el := p.stop(t, bound+5*time.Second)
	t.Logf("stopped in %s (bound %s): %v\n%s", el.Round(time.Millisecond), bound, err, lastLines(p.logs.String(), 6))
	if el > bound {
		t.Errorf("stop took %s, bound %s", el, bound)
	}
	if st := p.cmd.ProcessState; st == nil || !st.Exited() {
		t.Errorf("the process did not exit by itself: %v", st)
	}
}

// lastLines is the end of a log, for test output.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
