package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/plc"
	"github.com/segad-edge/segad-edge/plc/opcua"
	"github.com/segad-edge/segad-edge/plc/opcua/opcuatest"
	"github.com/segad-edge/segad-edge/result"
)

// The PLC acceptance tests of issue #16 against the real `segad run`
// process: independent peers (pymodbus as the PLC, node-opcua as the OPC UA
// client) on one side, Mosquitto with a subscriber on the other, and every
// result checked on both.

// plcPartImages writes n demo-like part images part00.png.. into dir (every
// other one with a bright defect spot) and returns the multifilesrc
// location pattern.
func plcPartImages(t *testing.T, dir string, n int) string {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("part%02d.png", i)), plcPartPNG(t, i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "part%02d.png")
}

// plcPartPNG is part image i: a grey disc on a textured background, a
// white defect spot on odd i.
func plcPartPNG(t *testing.T, i int) []byte {
	t.Helper()
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 110, 120, 0), 240, 320, gocv.MatTypeCV8UC3)
	defer m.Close()
	gocv.Circle(&m, image.Pt(158+i%5, 120), 80, color.RGBA{150, 150, 150, 0}, -1)
	if i%2 == 1 {
		gocv.Circle(&m, image.Pt(150, 110), 10+i, color.RGBA{255, 255, 255, 0}, -1)
	}
	buf, err := gocv.IMEncode(gocv.PNGFileExt, m)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...)
}

// plcLineResult is one result as plc.py read it from the registers.
type plcLineResult struct {
	ID        int     `json:"id"`
	Code      int     `json:"code"`
	Reason    int     `json:"reason"`
	Flags     int     `json:"flags"`
	Seq       int     `json:"seq"`
	Score     float64 `json:"score"`
	Threshold float64 `json:"threshold"`
	Part      string  `json:"part"`
	Seen      float64 `json:"seen"` // wall time ResultValid was seen, s since the epoch
}

type plcCounters struct {
	Parts     uint32 `json:"parts"`
	Fails     uint32 `json:"fails"`
	Errors    uint32 `json:"errors"`
	Overruns  uint32 `json:"overruns"`
	Triggers  uint32 `json:"triggers"`
	Refused   uint32 `json:"refused"`
	ConnLost  uint32 `json:"conn_lost"`
	ConnRefus uint32 `json:"conn_refused"`
}

type plcLineRun struct {
	Cycles   int             `json:"cycles"`
	Drained  int             `json:"drained"`
	Answered []plcLineResult `json:"answered"`
	Free     []plcLineResult `json:"free"`
	Seconds  float64         `json:"seconds"`
	Counters plcCounters     `json:"counters"`
}

// plcScriptCmd is plc/modbus/testdata/plc.py (Debian's python3-pymodbus)
// against the daemon's Modbus port.
func plcScriptCmd(t *testing.T, ctx context.Context, port int, args ...string) *exec.Cmd {
	t.Helper()
	py, err := testenv.Pymodbus()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(testenv.RepoRoot(t), "plc", "modbus", "testdata", "plc.py")
	return exec.CommandContext(ctx, py, append(append([]string{script}, args...), "--port", fmt.Sprint(port))...)
}

// runPLCScript runs plc.py to its end and decodes its JSON summary.
func runPLCScript(t *testing.T, port int, timeout time.Duration, out any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := plcScriptCmd(t, ctx, port, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("plc.py %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), out); err != nil {
		t.Fatalf("plc.py %v: output %q: %v", args, stdout.String(), err)
	}
}

// mqttTrigger publishes MQTT triggers for the given part IDs.
func mqttTrigger(t *testing.T, broker, topic string, parts ...string) {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("trig-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt trigger client: %v", tok.Error())
	}
	defer c.Disconnect(100)
	for _, p := range parts {
		if tok := c.Publish(topic, 1, false, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("trigger %s: %v", p, tok.Error())
		}
	}
}

// byPart indexes MQTT results by part ID.
func byPart(rs []result.Result) map[string][]result.Result {
	m := map[string][]result.Result{}
	for _, r := range rs {
		m[r.PartID] = append(m[r.PartID], r)
	}
	return m
}

// percentiles of ms values: p50, p99, max.
func percentiles(ms []float64) (p50, p99, mx float64) {
	if len(ms) == 0 {
		return
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	at := func(q float64) float64 { return s[min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1)] }
	return at(0.50), at(0.99), s[len(s)-1]
}

// TestPLCModbusDaemon: pymodbus drives the Modbus handshake like a PLC
// against `segad run` (an on-demand GStreamer camera looping demo-like part
// images, Mosquitto as the broker):
//
//  1. N trigger/result cycles (150; 1,000 with SEGAD_LONG=1), with MQTT
//     triggers' results waiting in the buffer before the PLC connects:
//     every InspectionID is answered once, in order, and the result code,
//     reason number, score, threshold and part ID in the registers are
//     those MQTT published for the same part; the decision to ResultValid
//     latency is measured against the MQTT result's decided_at.
//  2. A PLC that does not acknowledge: the overrun flag, ErrorCode 2, the
//     lost InspectionID, the buffered results in order, and every result
//     on MQTT.
//  3. The PLC killed mid-cycle: the daemon logs and counts the lost
//     connection, keeps inspecting (MQTT triggers are answered), and a
//     PLC that reconnects continues the handshake.
func TestPLCModbusDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	n := 150
	if os.Getenv("SEGAD_LONG") == "1" {
		n = 1000
	}
	const resultBuffer = 8
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	imgs := filepath.Join(dir, "parts")
	os.MkdirAll(imgs, 0o755)
	loc := plcPartImages(t, imgs, 6)
	pipeline := fmt.Sprintf("multifilesrc location=%s loop=true caps=image/png,framerate=30/1 ! pngdec ! videoconvert ! video/x-raw,format=BGR ! appsink", loc)
	port := testenv.FreePort(t)
	capture := fmt.Sprintf("  kind: gstreamer\n  pipeline: %q\n  trigger: {mode: on-demand, timeout: 2s}", pipeline)
	extra := fmt.Sprintf("http: {listen: \"off\"}\nplc:\n  modbus: {enabled: true, listen: \"127.0.0.1:%d\", result_buffer: %d}\n", port, resultBuffer)
	cfg := hostileConfig(t, dir, capture, broker.URL(), extra)
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/hostile/#")
	p := startSegad(t, cfg)
	waitFor(t, "the daemon to start", 60*time.Second, func() bool {
		l := p.logs.String()
		return strings.Contains(l, "ready: inspecting") && strings.Contains(l, "Modbus TCP server listening")
	})

	// Calibration through MQTT triggers: the threshold goes between the
	// lowest and highest score of the images, so the PLC sees passes and
	// fails. These results wait in the Modbus buffer for the PLC.
	var cal []string
	for i := 0; i < 6; i++ {
		cal = append(cal, fmt.Sprintf("cal-%d", i))
	}
	mqttTrigger(t, broker.URL(), "segad/hostile/trigger", cal...)
	calRes := sub.WaitResults(len(cal), 30*time.Second)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range calRes {
		if r.Score == nil || r.Verdict == result.VerdictError {
			t.Fatalf("calibration result %s: %s/%s %q", r.PartID, r.Verdict, r.ReasonCode, r.Reason)
		}
		lo, hi = min(lo, *r.Score), max(hi, *r.Score)
	}
	threshold := (lo + hi) / 2
	text, _ := os.ReadFile(cfg)
	edited := strings.Replace(string(text), "threshold: 1000", fmt.Sprintf("threshold: %g", threshold), 1)
	if err := os.WriteFile(cfg+".tmp", []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Rename(cfg+".tmp", cfg)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the threshold reload", 20*time.Second, func() bool { return strings.Contains(p.logs.String(), "config changed") })
	t.Logf("calibration scores %.4f..%.4f: threshold %.4f", lo, hi, threshold)

	// 1. N cycles.
	var run plcLineRun
	start := time.Now()
	runPLCScript(t, port, 5*time.Minute, &run, "line", fmt.Sprint(n), "--prefix", "P")
	wall := time.Since(start)
	if run.Cycles != n || len(run.Answered) != n {
		t.Fatalf("%d cycles, %d answered; want %d", run.Cycles, len(run.Answered), n)
	}
	if run.Drained+len(run.Free) != len(cal) {
		t.Errorf("the PLC saw %d drained + %d free results, want the %d MQTT-triggered ones", run.Drained, len(run.Free), len(cal))
	}
	want := len(cal) + n
	got := byPart(sub.WaitResults(want, 30*time.Second))
	var lat []float64
	verdicts := map[int]int{}
	for i, a := range run.Answered {
		if a.ID != i+1 {
			t.Errorf("cycle %d answered InspectionID %d, want %d (in order, once)", i+1, a.ID, i+1)
		}
		rs := got[a.Part]
		if len(rs) != 1 {
			t.Errorf("InspectionID %d, part %q: %d MQTT results, want 1", a.ID, a.Part, len(rs))
			continue
		}
		m := rs[0]
		verdicts[a.Code]++
		if a.Code != int(plc.ResultCode(m.Verdict)) || a.Reason != int(plc.ReasonNumber(m.ReasonCode)) {
			t.Errorf("part %s: registers code %d reason %d, MQTT %s/%s", a.Part, a.Code, a.Reason, m.Verdict, m.ReasonCode)
		}
		if m.Score == nil || float32(*m.Score) != float32(a.Score) || float32(m.Threshold) != float32(a.Threshold) {
			t.Errorf("part %s: registers score %v threshold %v, MQTT %v %v", a.Part, a.Score, a.Threshold, m.Score, m.Threshold)
		}
		lat = append(lat, (a.Seen-float64(m.DecidedAt.UnixNano())/1e9)*1000)
	}
	if t.Failed() {
		t.FailNow()
	}
	if run.Counters.Triggers != uint32(n) || run.Counters.Refused != 0 || run.Counters.Overruns != 0 {
		t.Errorf("counters %+v", run.Counters)
	}
	p50, p99, mx := percentiles(lat)
	if os.Getenv("SEGAD_PLC_DEBUG") != "" {
		t.Logf("latencies by cycle: %.1f", lat)
	}
	t.Logf("%d cycles in %.1fs (%.1f ms/cycle; process %.1fs), verdict codes %v; decision -> ResultValid seen by pymodbus: p50 %.2f ms, p99 %.2f ms, max %.2f ms",
		n, run.Seconds, 1000*run.Seconds/float64(n), wall.Seconds(), verdicts, p50, p99, mx)

	// 2. No ResultAck: the overrun flag, no lost results.
	const k = resultBuffer + 4
	var na struct {
		TriggerIDs []int `json:"trigger_ids"`
		Before     struct {
			Status    int         `json:"status"`
			ErrorCode int         `json:"error_code"`
			Buffered  int         `json:"buffered"`
			OverrunID int         `json:"overrun_id"`
			Counters  plcCounters `json:"counters"`
		} `json:"before"`
		Results [][]any `json:"results"`
		After   int     `json:"status_after_reset"`
	}
	runPLCScript(t, port, 2*time.Minute, &na, "linenoack", fmt.Sprint(k), "--prefix", "N")
	const errorBit, overrunBit = 1 << 5, 1 << 6
	if na.Before.Status&overrunBit == 0 || na.Before.Status&errorBit == 0 || na.Before.ErrorCode != 2 {
		t.Errorf("after %d results without ResultAck: status %#x error code %d, want ResultBufferOverrun, Error, code 2", k, na.Before.Status, na.Before.ErrorCode)
	}
	if na.Before.Counters.Overruns != k-resultBuffer || na.Before.Buffered != resultBuffer || na.Before.OverrunID != na.TriggerIDs[k-1] {
		t.Errorf("overruns %d buffered %d overrun InspectionID %d; want %d, %d, %d", na.Before.Counters.Overruns, na.Before.Buffered, na.Before.OverrunID, k-resultBuffer, resultBuffer, na.TriggerIDs[k-1])
	}
	if len(na.Results) != resultBuffer {
		t.Errorf("%d buffered results delivered after the PLC acknowledged, want %d", len(na.Results), resultBuffer)
	}
	for i, r := range na.Results {
		if int(r[0].(float64)) != na.TriggerIDs[i] || r[2] != fmt.Sprintf("N%05d", i+1) {
			t.Errorf("buffered result %d: %v, want InspectionID %d part N%05d", i, r, na.TriggerIDs[i], i+1)
		}
	}
	if na.After&overrunBit != 0 {
		t.Errorf("ResultBufferOverrun still set after ResetError: %#x", na.After)
	}
	got = byPart(sub.WaitResults(want+k, 30*time.Second))
	for i := 1; i <= k; i++ {
		if rs := got[fmt.Sprintf("N%05d", i)]; len(rs) != 1 {
			t.Errorf("part N%05d (no ResultAck): %d MQTT results, want 1", i, len(rs))
		}
	}
	t.Logf("no ResultAck: %d results, %d buffered and delivered in order, %d overruns flagged (last InspectionID %d), all %d on MQTT",
		k, len(na.Results), na.Before.Counters.Overruns, na.Before.OverrunID, k)

	// 3. The PLC killed mid-cycle.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kill := plcScriptCmd(t, ctx, port, "line", "100000", "--prefix", "K", "--progress")
	stderr, _ := kill.StderrPipe()
	if err := kill.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	cycles := 0
	for cycles < 20 && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "cycle ") {
			cycles++
		}
	}
	kill.Process.Kill()
	kill.Wait()
	if cycles < 20 {
		t.Fatalf("the PLC to be killed ran %d cycles", cycles)
	}
	waitFor(t, "the lost connection in the log", 10*time.Second, func() bool { return strings.Contains(p.logs.String(), "modbus PLC connection lost") })
	before := len(sub.Results())
	mqttTrigger(t, broker.URL(), "segad/hostile/trigger", "after-kill-1", "after-kill-2", "after-kill-3")
	if rs := sub.WaitResults(before+3, 30*time.Second); len(rs) < before+3 {
		t.Fatal("the daemon stopped inspecting after the PLC connection was lost")
	}
	var again plcLineRun
	runPLCScript(t, port, 2*time.Minute, &again, "line", "10", "--prefix", "R")
	if len(again.Answered) != 10 || again.Counters.ConnLost == 0 {
		t.Errorf("reconnected PLC: %d cycles answered, ConnectionsLost %d", len(again.Answered), again.Counters.ConnLost)
	}
	time.Sleep(300 * time.Millisecond)
	for part, rs := range byPart(sub.Results()) {
		if len(rs) != 1 && (strings.HasPrefix(part, "K") || strings.HasPrefix(part, "R") || strings.HasPrefix(part, "after-kill")) {
			t.Errorf("part %s: %d MQTT results, want 1", part, len(rs))
		}
	}
	for _, a := range again.Answered {
		if rs := byPart(sub.Results())[a.Part]; len(rs) != 1 || a.Code != int(plc.ResultCode(rs[0].Verdict)) {
			t.Errorf("after reconnect, part %s: code %d, MQTT %v", a.Part, a.Code, rs)
		}
	}
	if !p.alive() {
		t.Fatal("the daemon died")
	}
	t.Logf("PLC killed after %d cycles: connection loss logged, daemon kept inspecting, reconnected PLC ran 10 cycles (drained %d, %d free), ConnectionsLost %d",
		cycles, again.Drained, len(again.Free), again.Counters.ConnLost)
	if err, el := p.stop(t, 20*time.Second); err != nil {
		t.Errorf("exit after %s: %v", el, err)
	}
}

// TestPLCOPCUADaemon: node-opcua browses, reads and subscribes to the
// running daemon's OPC UA server, then M parts are dropped into a watch
// folder: ResultCounter reaches M, and each result's ResultId and PartId
// (arriving before its ResultCounter) are the MQTT result ID and part ID of
// the same part. The decision to data change latency is measured against
// the MQTT result's decided_at.
func TestPLCOPCUADaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	const m = 30
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	watch := filepath.Join(dir, "drop")
	os.MkdirAll(watch, 0o755)
	port := testenv.FreePort(t)
	extra := fmt.Sprintf("http: {listen: \"off\"}\nplc:\n  opcua: {enabled: true, listen: \"127.0.0.1:%d\"}\n", port)
	cfg := hostileConfig(t, dir, fmt.Sprintf("  kind: watch\n  path: %q\n  watch: {poll: 50ms, grace: 200ms}", watch), broker.URL(), extra)
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/hostile/#")
	p := startSegad(t, cfg)
	waitFor(t, "the daemon to start", 60*time.Second, func() bool {
		l := p.logs.String()
		return strings.Contains(l, "ready: inspecting") && strings.Contains(l, "OPC UA server listening")
	})

	args, _ := json.Marshal(map[string]any{"endpoint": fmt.Sprintf("opc.tcp://127.0.0.1:%d/segad", port), "ns": opcua.NamespaceURI,
		"pki": t.TempDir(), "expect": m, "timeoutMs": 60000})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := opcuatest.Command(ctx, t, string(args))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	events := make(chan map[string]any, 10000)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var e map[string]any
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
	}()
	defer func() { cancel(); wg.Wait(); cmd.Wait() }()
	var all []map[string]any
	until := func(kinds ...string) map[string]any {
		t.Helper()
		timeout := time.After(90 * time.Second)
		for {
			select {
			case e, ok := <-events:
				if !ok {
					t.Fatalf("node-opcua exited before %v; stderr:\n%s", kinds, stderr.String())
				}
				all = append(all, e)
				if e["event"] == "error" {
					t.Fatalf("node-opcua: %v", e["error"])
				}
				if slices.Contains(kinds, e["event"].(string)) {
					return e
				}
			case <-timeout:
				t.Fatalf("no %v from node-opcua", kinds)
			}
		}
	}
	br := until("browse")
	nodes, _ := br["nodes"].([]any)
	rd := until("read")
	vars, _ := rd["variables"].([]any)
	for _, v := range vars {
		if mv := v.(map[string]any); mv["status"] != "Good" {
			t.Errorf("%v: status %v", mv["path"], mv["status"])
		}
	}
	if w := until("write"); w["status"] != "BadNotWritable" {
		t.Errorf("write answered %v, want BadNotWritable", w["status"])
	}
	until("subscribed")
	for i := 0; i < m; i++ {
		tmp := filepath.Join(dir, "tmp.png")
		if err := os.WriteFile(tmp, plcPartPNG(t, i), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(watch, fmt.Sprintf("U%03d.png", i))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	end := until("done", "timeout")
	if end["event"] != "done" {
		t.Fatalf("node-opcua saw ResultCounter %v of %d", end["counter"], m)
	}
	got := byPart(sub.WaitResults(m, 30*time.Second))
	var lastID, lastPart string
	var lat []float64
	seen := map[string]bool{}
	for _, e := range all {
		if e["event"] != "change" {
			continue
		}
		if e["status"] != "Good" {
			t.Errorf("change %v: status %v", e["key"], e["status"])
		}
		switch e["key"] {
		case "Result.ResultId":
			lastID, _ = e["value"].(string)
		case "Result.PartId":
			lastPart, _ = e["value"].(string)
		case "Result.ResultCounter":
			if c, _ := e["value"].(float64); c == 0 {
				continue
			}
			rs := got[lastPart]
			if len(rs) != 1 || rs[0].ID != lastID {
				t.Errorf("ResultCounter %v: ResultId %q PartId %q; MQTT results of that part %v", e["value"], lastID, lastPart, rs)
				continue
			}
			if !seen[lastID] {
				seen[lastID] = true
				lat = append(lat, e["at"].(float64)-float64(rs[0].DecidedAt.UnixNano())/1e6)
			}
		}
	}
	if len(seen) != m {
		t.Errorf("node-opcua saw %d distinct results, want %d", len(seen), m)
	}
	p50, p99, mx := percentiles(lat)
	t.Logf("node-opcua browsed %d nodes, read %d variables, saw all %d results; decision -> data change at node-opcua: p50 %.2f ms, p99 %.2f ms, max %.2f ms (50 ms publishing interval)",
		len(nodes), len(vars), m, p50, p99, mx)
	if err, el := p.stop(t, 20*time.Second); err != nil {
		t.Errorf("exit after %s: %v", el, err)
	}
}

// opcuaRead reads keys of the server's namespace (index 1) with gopcua in
// one Read request, on a fresh connection.
func opcuaRead(endpoint string, keys ...string) ([]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := gopcua.NewClient(endpoint, gopcua.SecurityMode(ua.MessageSecurityModeNone), gopcua.SecurityPolicy(ua.SecurityPolicyURINone),
		gopcua.AuthAnonymous(), gopcua.RequestTimeout(3*time.Second), gopcua.AutoReconnect(false))
	if err != nil {
		return nil, err
	}
	if err := cl.Connect(ctx); err != nil {
		return nil, err
	}
	defer cl.Close(context.Background())
	return opcuatest.ReadKeys(ctx, cl, 1, keys...)
}

// TestPLCOPCUAIsolation: the crafted OPC UA Read request whose NodesToRead
// declares 2^31-1 elements (gopcua v0.8.0 allocates the 16 GiB array before
// reading one) sent to the real `segad run` with OPC UA on. The server runs
// in its own process (`segad opcua-serve`) with a small address-space limit
// (256 MiB above its size at start, so the machine is never pressed):
// the allocation fails there at once and that process ends; the daemon
// stays up, logs the exit with the server's last output, every part
// dropped before, during and after the restart gets its MQTT result, the
// OPC UA server is back within a few seconds, and a client reads the last
// result and the full counters again.
func TestPLCOPCUAIsolation(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	watch := filepath.Join(dir, "drop")
	os.MkdirAll(watch, 0o755)
	port := testenv.FreePort(t)
	endpoint := fmt.Sprintf("opc.tcp://127.0.0.1:%d/segad", port)
	extra := fmt.Sprintf("http: {listen: \"off\"}\nplc:\n  opcua: {enabled: true, listen: \"127.0.0.1:%d\", limits: {address_space_growth_mb: 256}}\n", port)
	cfg := hostileConfig(t, dir, fmt.Sprintf("  kind: watch\n  path: %q\n  watch: {poll: 50ms, grace: 200ms}", watch), broker.URL(), extra)
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/hostile/#")
	p := startSegad(t, cfg)
	waitFor(t, "the daemon to start", 60*time.Second, func() bool {
		l := p.logs.String()
		return strings.Contains(l, "ready: inspecting") && strings.Contains(l, "OPC UA server listening")
	})
	n := 0
	drop := func(k int) {
		for i := 0; i < k; i++ {
			tmp := filepath.Join(dir, "tmp.png")
			if err := os.WriteFile(tmp, plcPartPNG(t, n), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(watch, fmt.Sprintf("I%03d.png", n))); err != nil {
				t.Fatal(err)
			}
			n++
			time.Sleep(50 * time.Millisecond)
		}
	}
	// lastResult: the MQTT result decided last (IDs sort by decision time).
	lastResult := func() result.Result {
		rs := sub.WaitResults(n, 30*time.Second)
		if len(rs) != n {
			t.Fatalf("%d MQTT results for %d parts", len(rs), n)
		}
		last := rs[0]
		for _, r := range rs {
			if r.ID > last.ID {
				last = r
			}
		}
		return last
	}
	// seesLast waits until an OPC UA client reads the last result and n parts.
	seesLast := func(within time.Duration) time.Duration {
		t.Helper()
		want := lastResult()
		start := time.Now()
		var vals []any
		var err error
		for time.Since(start) < within {
			if vals, err = opcuaRead(endpoint, opcua.KeyResultID, opcua.KeyPartID, opcua.KeyResultCounter, opcua.KeyParts); err == nil &&
				vals[0] == want.ID && vals[2] == uint64(n) {
				if vals[1] != want.PartID || vals[3] != uint64(n) {
					t.Fatalf("OPC UA shows %v; the last MQTT result is %s of part %s, %d parts", vals, want.ID, want.PartID, n)
				}
				return time.Since(start)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("OPC UA shows %v (%v) after %v; the last MQTT result is %s, %d parts", vals, err, within, want.ID, n)
		return 0
	}
	drop(4)
	seesLast(10 * time.Second)

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	sent := time.Now()
	answer, err := opcuatest.HugeArrayRead(addr, endpoint, 3*time.Second)
	if err != nil {
		t.Fatalf("sending the crafted request: %v", err)
	}
	waitFor(t, "the server process's exit in the log", 10*time.Second, func() bool {
		return strings.Contains(p.logs.String(), "the OPC UA server process ended")
	})
	died := time.Since(sent)
	drop(4) // while the server restarts (1 s backoff)
	back := seesLast(15 * time.Second)
	drop(2) // after it
	seesLast(10 * time.Second)
	if !p.alive() {
		t.Fatal("the daemon died")
	}
	l := p.logs.String()
	if !strings.Contains(l, "out of memory") || !strings.Contains(l, "OPC UA server process restarted") || strings.Count(l, "the OPC UA server process ended") != 1 {
		t.Fatalf("log lacks the server process's crash (out of memory) and restart")
	}
	for _, line := range strings.Split(l, "\n") {
		if strings.Contains(line, "the OPC UA server process ended") || strings.HasPrefix(line, "fatal error:") {
			t.Logf("daemon log: %s", line)
		}
	}
	got := byPart(sub.WaitResults(n, 30*time.Second))
	for i := 0; i < n; i++ {
		if rs := got[fmt.Sprintf("I%03d", i)]; len(rs) != 1 {
			t.Errorf("part I%03d: %d MQTT results, want 1", i, len(rs))
		}
	}
	t.Logf("crafted Read (NodesToRead length %d, answer %q): the OPC UA server process ended after %v (out of memory under its address-space limit); the daemon stayed up, all %d parts got their MQTT result, OPC UA showed the last result again %v after the parts dropped during the restart",
		opcuatest.HugeArrayLength, answer, died.Round(time.Millisecond), n, back.Round(time.Millisecond))

	// A stop as systemd does it (SIGTERM to every process of the unit):
	// the server process ignores it and stops when the daemon closes it;
	// no restart, nothing left behind.
	kids := childPIDs(t, p.cmd.Process.Pid)
	if len(kids) != 1 {
		t.Fatalf("the daemon has %d child processes %v, want the OPC UA server process", len(kids), kids)
	}
	syscall.Kill(kids[0], syscall.SIGTERM)
	if err, el := p.stop(t, 20*time.Second); err != nil {
		t.Errorf("exit after %s: %v", el, err)
	}
	if c := strings.Count(p.logs.String(), "the OPC UA server process ended"); c != 1 {
		t.Errorf("the OPC UA server process ended %d times, want once (the crash; not at the stop)", c)
	}
	if syscall.Kill(kids[0], 0) == nil {
		t.Errorf("the OPC UA server process %d outlived the daemon", kids[0])
	}
}

// childPIDs lists the processes whose parent is pid (Linux /proc).
func childPIDs(t *testing.T, pid int) []int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		var me, ppid int
		fmt.Sscan(filepath.Base(filepath.Dir(f)), &me)
		if len(fields) > 1 {
			fmt.Sscan(fields[1], &ppid)
		}
		if ppid == pid {
			out = append(out, me)
		}
	}
	return out
}
