package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/assurance/golden"
	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/result"
)

// TestGoldenE2EDaemonProcess is the golden-sample acceptance through a
// real `segad run` with a real Mosquitto and the SQLite history: the lamp
// has darkened (gain 0.6 on the golden images the station captured), so
// the start-up challenge fails: /readyz is 503 naming the failing images,
// the health topic says degraded, the retained golden topic carries the
// summary, and with action fail_closed a good production part gets
// golden_failed. The lamp fixed, a challenge asked for over HTTP passes,
// the daemon becomes ready and the next part gets its own verdict; a
// challenge asked for on the MQTT command topic runs too. Golden results
// are in the history with kind golden and never in the parts counters.
func TestGoldenE2EDaemonProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	st := goldenDemoStation(t)
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	watch, gold := filepath.Join(dir, "drop"), filepath.Join(dir, "golden")
	os.MkdirAll(watch, 0o755)
	goldenCopy(t, st, gold, darkened)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base := "http://" + addr
	cfg := goldenModelYAML(testenv.ORTLib(t), st.Dir, goldenVariant{threshold: st.Threshold, watch: watch}) + fmt.Sprintf(`mqtt:
  broker: %s
  outbox: {path: %q}
  status_interval: 200ms
http: {listen: %q, token: %q}
history: {path: %q}
assurance:
  golden: {dir: %q, action: fail_closed}
`, broker.URL(), filepath.Join(dir, "outbox.db"), addr, histToken, filepath.Join(dir, "history.db"), gold)
	cfgPath := filepath.Join(dir, "segad.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/golden/+")
	p := startSegad(t, cfgPath)
	waitFor(t, "the start-up challenge to fail", 60*time.Second, func() bool {
		return strings.Contains(p.logs.String(), "start-up golden-sample challenge failed")
	})
	if strings.Contains(p.logs.String(), "ready: inspecting") {
		t.Error("the daemon logged ready after a failed start-up challenge")
	}

	// Not ready, with the failing images named.
	code, body := histReq(t, "GET", base+"/readyz", "", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "golden-sample challenge failed") {
		t.Fatalf("/readyz %d %q, want 503 naming the failed challenge", code, body)
	}
	for _, f := range st.Good { // a darker part is anomalous everywhere: every good image fails
		if !strings.Contains(string(body), f) {
			t.Errorf("/readyz does not name %s: %q", f, body)
		}
	}
	var last golden.Summary
	code, body = histReq(t, "GET", base+"/api/golden", histToken, nil)
	if code != 200 || json.Unmarshal(body, &last) != nil || last.Passed || last.Trigger != "start" || len(last.Failing) < len(st.Good) {
		t.Fatalf("GET /api/golden: %d %s", code, body)
	}
	if code, _ := histReq(t, "GET", base+"/api/golden", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /api/golden without the token: %d, want 401", code)
	}
	if code, _ := histReq(t, "POST", base+"/api/golden/run", "wrong-token-wrong-token", nil); code != http.StatusUnauthorized {
		t.Errorf("POST /api/golden/run with a wrong token: %d, want 401", code)
	}
	retained := goldenRetained(t, broker.Port)
	if retained.Passed || retained.At.IsZero() || len(retained.Failing) != len(last.Failing) {
		t.Errorf("retained golden summary %+v, want the failed start-up one", retained)
	}
	waitFor(t, "a degraded health report", 10*time.Second, func() bool {
		hs := sub.Health()
		return len(hs) > 0 && hs[len(hs)-1].Status == "degraded" && strings.Contains(hs[len(hs)-1].StatusReason, st.Good[0])
	})

	// fail_closed: a good production part (a copy of an undarkened golden
	// image) is failed closed with golden_failed.
	part, err := os.ReadFile(filepath.Join(st.GoldDir, filepath.FromSlash(st.Good[0])))
	if err != nil {
		t.Fatal(err)
	}
	histDrop(t, watch, map[string][]byte{"P-1.png": part})
	rs := sub.WaitResults(1, 30*time.Second)
	if len(rs) != 1 || rs[0].Verdict != result.VerdictError || rs[0].ReasonCode != result.ReasonGolden || !strings.Contains(rs[0].Reason, "inspected: pass") {
		t.Fatalf("production part while the challenge fails: %+v, want error golden_failed (inspected: pass)", rs)
	}

	// The lamp fixed: a challenge on request passes and the line is ready.
	goldenCopy(t, st, gold, nil)
	code, body = histReq(t, "POST", base+"/api/golden/run?wait=true", histToken, nil)
	if code != 200 || json.Unmarshal(body, &last) != nil || !last.Passed || last.Trigger != "http" {
		t.Fatalf("POST /api/golden/run?wait=true: %d %s", code, body)
	}
	if code, body := histReq(t, "GET", base+"/readyz", "", nil); code != 200 {
		t.Fatalf("/readyz after a passing challenge: %d %q", code, body)
	}
	histDrop(t, watch, map[string][]byte{"P-2.png": part})
	rs = sub.WaitResults(2, 30*time.Second)
	if len(rs) != 2 || rs[1].Verdict != result.VerdictPass || rs[1].ReasonCode != "" {
		t.Fatalf("production part after a passing challenge: %+v, want pass", rs[len(rs)-1])
	}

	// The MQTT command topic runs a challenge (a retained command would not).
	if out, err := testenv.RunClient(t, context.Background(), "mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(broker.Port), "-t", "segad/golden/golden/run", "-q", "1", "-m", "run"); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	waitFor(t, "the challenge asked for over MQTT", 60*time.Second, func() bool {
		_, m := histReq(t, "GET", base+"/metrics", histToken, nil)
		v, _ := histMetric(string(m), `segad_golden_runs_total{result="passed",trigger="mqtt"}`)
		return v == 1
	})
	if s := goldenRetained(t, broker.Port); !s.Passed || s.Trigger != "mqtt" {
		t.Errorf("retained golden summary after the MQTT challenge: passed %v trigger %q", s.Passed, s.Trigger)
	}

	// Three challenges of the whole set in the history as kind golden;
	// the production parts alone in the default query and the counters.
	n := len(st.Good) + len(st.Bad)
	waitFor(t, "the golden results in the history", 10*time.Second, func() bool {
		rows, _ := histPages(t, base, "kind=golden", 100)
		return len(rows) == 3*n
	})
	rows, _ := histPages(t, base, "kind=golden", 100)
	for _, r := range rows {
		if r.Kind != history.KindGolden || !strings.HasPrefix(r.PartID, "golden:") {
			t.Errorf("golden history row: kind %q part %q", r.Kind, r.PartID)
			break
		}
	}
	if prod, _ := histPages(t, base, "", 100); len(prod) != 2 {
		t.Errorf("production history rows: %d, want the 2 parts", len(prod))
	}
	_, m := histReq(t, "GET", base+"/metrics", histToken, nil)
	for name, want := range map[string]float64{
		"segad_frames_total":                                       2,
		`segad_verdicts_total{verdict="pass"}`:                     1,
		`segad_verdicts_total{verdict="error"}`:                    1,
		`segad_verdicts_total{verdict="fail"}`:                     0,
		"segad_golden_pass":                                        1,
		"segad_golden_failing_images":                              0,
		`segad_golden_runs_total{result="failed",trigger="start"}`: 1,
	} {
		if v, ok := histMetric(string(m), name); !ok || v != want {
			t.Errorf("metric %s = %v (found %v), want %v", name, v, ok, want)
		}
	}
	if v, _ := histMetric(string(m), "segad_golden_last_run_timestamp_seconds"); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("segad_golden_last_run_timestamp_seconds %v is not recent", v)
	}
	if v, _ := histMetric(string(m), fmt.Sprintf(`segad_golden_image_failures_total{file=%q}`, st.Good[0])); v != 1 {
		t.Errorf("per-image failures of %s: %v, want 1", st.Good[0], v)
	}
	if err, took := p.stop(t, 20*time.Second); err != nil {
		t.Errorf("stop: %v after %s\n%s", err, took, lastLines(p.logs.String(), 20))
	}
}

// goldenRetained reads the retained golden summary as a late subscriber
// (a dashboard connecting after the challenge) gets it.
func goldenRetained(t *testing.T, port int) golden.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := testenv.RunClient(t, ctx, "mosquitto_sub", "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-t", "segad/golden/golden", "-C", "1", "-W", "5")
	if err != nil {
		t.Fatalf("mosquitto_sub: %v %s", err, out)
	}
	var s golden.Summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("retained golden summary: %v: %q", err, out)
	}
	return s
}

// hugePNG is a PNG whose header declares a 60000 x 60000 image (3.6
// gigapixels) over a few bytes: a decoder that believed it would allocate
// gigabytes.
func hugePNG() []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], 60000)
	binary.BigEndian.PutUint32(ihdr[4:], 60000)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk := func(typ string, data []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
		b = append(append(b, typ...), data...)
		return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	}
	out := []byte("\x89PNG\r\n\x1a\n")
	out = append(out, chunk("IHDR", ihdr)...)
	return append(out, chunk("IDAT", []byte{0x78, 0x9c, 0, 0})...)
}

// TestGoldenHostileSetRefusedAtStart: a golden folder that cannot make a
// challenge (missing, empty, a corrupt image, an image whose header claims
// gigapixels, a manifest pointing outside the folder) stops `segad run` at
// start with an error naming the folder or file and what to do, never a
// crash or a challenge that fails for a reason no camera could cause.
func TestGoldenHostileSetRefusedAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	cases := []struct {
		name  string
		files map[string][]byte // relative to the golden folder; nil map: no folder
		want  []string
	}{
		{"missing folder", nil, []string{"golden set", "no such file", "assurance.golden.dir"}},
		{"empty folder", map[string][]byte{}, []string{"holds no images", "good/"}},
		{"only non-images", map[string][]byte{"good/README.txt": []byte("golden parts")}, []string{"holds no images"}},
		{"corrupt image", map[string][]byte{"good/ok.png": partPNG(t, 64, 64, false), "bad/crack/broken.png": append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0x55}, 300)...)},
			[]string{"bad/crack/broken.png", "cannot be read"}},
		{"huge header", map[string][]byte{"good/huge.png": hugePNG()}, []string{"good/huge.png", "refused before decoding"}},
		{"manifest outside the folder", map[string][]byte{"golden.yaml": []byte("images:\n  - {file: ../../etc/passwd, expect: pass}\n")}, []string{"golden.yaml", "outside the golden folder"}},
		{"manifest bad expectation", map[string][]byte{"golden.yaml": []byte("images:\n  - {file: a.png, expect: maybe}\n")}, []string{"golden.yaml", `expect "maybe"`, "pass or fail"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, cfg := hostileDir(t)
			gold := filepath.Join(dir, "golden")
			if c.files != nil {
				os.MkdirAll(gold, 0o755)
			}
			for f, data := range c.files {
				p := filepath.Join(gold, filepath.FromSlash(f))
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfg += fmt.Sprintf("assurance:\n  golden: {dir: %q}\n", gold)
			cfgPath := filepath.Join(dir, "segad.yaml")
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			if chk := runBinary(t, 60*time.Second, "config", "check", cfgPath); chk.err == nil || !strings.Contains(chk.out, c.want[0]) {
				t.Errorf("segad config check: err %v, output does not say %q:\n%s", chk.err, c.want[0], clipOut(chk.out))
			}
			r := runBinary(t, 60*time.Second, "run", "--config", cfgPath)
			if r.err == nil {
				t.Fatalf("segad run started with a hostile golden set:\n%s", clipOut(r.out))
			}
			if strings.Contains(r.out, "panic") || strings.Contains(r.out, "goroutine ") || strings.Contains(r.out, "SIGSEGV") {
				t.Fatalf("crash:\n%s", clipOut(r.out))
			}
			for _, w := range c.want {
				if !strings.Contains(r.out, w) || testing.Verbose() && w == c.want[0] {
					if !strings.Contains(r.out, w) {
						t.Errorf("error does not say %q:\n%s", w, clipOut(r.out))
					} else {
						t.Log(lastLines(r.out, 1))
					}
				}
			}
			if r.maxRSS > 600<<20 {
				t.Errorf("peak RSS %d MiB refusing the set", r.maxRSS>>20)
			}
		})
	}
}

// TestGoldenE2EPassesAtStart: with the right configuration the start-up
// challenge of `segad run` passes before the daemon says it is ready, and
// /readyz, the health topic and the retained summary say so.
func TestGoldenE2EPassesAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	st := goldenDemoStation(t)
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	watch, gold := filepath.Join(dir, "drop"), goldenCopy(t, st, filepath.Join(dir, "golden"), nil)
	os.MkdirAll(watch, 0o755)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := goldenModelYAML(testenv.ORTLib(t), st.Dir, goldenVariant{threshold: st.Threshold, watch: watch}) + fmt.Sprintf(`mqtt:
  broker: %s
  outbox: {path: %q}
  status_interval: 200ms
http: {listen: %q, token: %q}
assurance:
  golden: {dir: %q}
`, broker.URL(), filepath.Join(dir, "outbox.db"), addr, histToken, gold)
	cfgPath := filepath.Join(dir, "segad.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/golden/health")
	p := startSegad(t, cfgPath)
	waitFor(t, "the daemon to be ready", 60*time.Second, func() bool { return strings.Contains(p.logs.String(), "ready: inspecting") })
	logs := p.logs.String()
	if i, j := strings.Index(logs, "golden-sample challenge passed"), strings.Index(logs, "ready: inspecting"); i < 0 || i > j {
		t.Errorf("the challenge did not pass before the daemon said it was ready:\n%s", lastLines(logs, 10))
	}
	if code, body := histReq(t, "GET", "http://"+addr+"/readyz", "", nil); code != 200 {
		t.Errorf("/readyz %d %q", code, body)
	}
	if s := goldenRetained(t, broker.Port); !s.Passed || s.Trigger != "start" || len(s.Images) != len(st.Good)+len(st.Bad) {
		t.Errorf("retained summary: passed %v trigger %q images %d", s.Passed, s.Trigger, len(s.Images))
	}
	waitFor(t, "a health report with the challenge", 10*time.Second, func() bool {
		hs := sub.Health()
		return len(hs) > 0 && hs[len(hs)-1].Status == "ok" && hs[len(hs)-1].Golden != nil && hs[len(hs)-1].Golden.Passed
	})
	if err, took := p.stop(t, 20*time.Second); err != nil {
		t.Errorf("stop: %v after %s", err, took)
	}
}
