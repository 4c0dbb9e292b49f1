package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/assurance/drift"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

// driftPart writes a 320x240 part image: a grey disc on a tinted
// background with per-part jitter, lit at gain (1: as trained), and a
// bright spot when bad.
func driftPart(t *testing.T, path string, rng *rand.Rand, gain float64, bad bool) {
	t.Helper()
	g := func(v float64) float64 { return min(255, v*gain*(0.95+0.1*rng.Float64())) }
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(g(90), g(110), g(120), 0), 240, 320, gocv.MatTypeCV8UC3)
	defer m.Close()
	disc := uint8(g(150))
	gocv.Circle(&m, image.Pt(160+rng.IntN(7)-3, 120+rng.IntN(7)-3), 75+rng.IntN(10), color.RGBA{disc, disc, disc, 0}, -1)
	for i := 0; i < 6; i++ {
		v := uint8(g(60 + 60*rng.Float64()))
		gocv.Circle(&m, image.Pt(40+rng.IntN(240), 30+rng.IntN(180)), 2+rng.IntN(4), color.RGBA{v, v, v, 0}, -1)
	}
	if bad {
		gocv.Circle(&m, image.Pt(120+rng.IntN(80), 90+rng.IntN(60)), 8+rng.IntN(6), color.RGBA{255, 255, 255, 0}, -1)
	}
	if !gocv.IMWrite(path, m) {
		t.Fatalf("write %s", path)
	}
}

// TestDriftEndToEnd runs `segad fit` (which writes drift.json) and `segad
// run` as real processes with a real Mosquitto: steady parts, then parts
// under a brighter lamp, dropped into a watch folder. The retained health
// topic turns degraded naming segment, detector and statistic, the
// metrics and /api/drift show the alarm, and /readyz stays ready.
func TestDriftEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end process test")
	}
	bin := segadBinary(t)
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(18, 1))
	for _, d := range []string{"fit/good", "fit/bad/spot", "in"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 120; i++ {
		driftPart(t, filepath.Join(dir, "fit/good", fmt.Sprintf("g%03d.png", i)), rng, 1, false)
	}
	for i := 0; i < 30; i++ {
		driftPart(t, filepath.Join(dir, "fit/bad/spot", fmt.Sprintf("b%03d.png", i)), rng, 1, true)
	}
	port := testenv.FreePort(t)
	root := testenv.RepoRoot(t)
	cfg := fmt.Sprintf(`station: drift
onnxruntime: {library: %q}
capture:
  kind: watch
  path: in
  watch: {poll: 50ms, stable_polls: 1}
detectors:
  - {name: ms, model: %q}
segad:
  mask: builtin:vad
  bundle: bundle
  threshold: 1000               # every part passes: the feature window sees all of them
mqtt:
  broker: %s
  outbox: {path: outbox.db}
  status_interval: 200ms
http: {listen: "127.0.0.1:%d"}
history: {enabled: false}
pipeline: {queue: 4, overflow: block, warmup: 1}
assurance:
  drift: {window: 50, min_parts: 20}
`, testenv.ORTLib(t), filepath.Join(root, "infer", "testdata", "meanstd_blur.onnx"), broker.URL(), port)
	cfgPath := filepath.Join(dir, "segad.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	fitCmd := exec.Command(bin, "fit", "-c", cfgPath, "--good", filepath.Join(dir, "fit/good"), "--bad", filepath.Join(dir, "fit/bad"),
		"-o", filepath.Join(dir, "bundle"), "--trees", "10", "--rounds", "2", "-q")
	if out, err := fitCmd.CombinedOutput(); err != nil {
		t.Fatalf("segad fit: %v\n%s", err, out)
	}
	ref, err := bundle.LoadDrift(filepath.Join(dir, "bundle"))
	if err != nil {
		t.Fatalf("segad fit wrote no usable drift reference: %v", err)
	}
	if ref.Good != 120 {
		t.Errorf("reference from %d good parts, want 120", ref.Good)
	}

	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/drift/#")
	var logs testenv.SyncBuffer
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Stderr, cmd.Stdout = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	}()
	drop := func(prefix string, n int, gain float64) {
		for i := 0; i < n; i++ {
			// Written beside, then renamed in: the watch folder sees whole files.
			tmp := filepath.Join(dir, fmt.Sprintf("%s%03d.png", prefix, i))
			driftPart(t, tmp, rng, gain, false)
			if err := os.Rename(tmp, filepath.Join(dir, "in", filepath.Base(tmp))); err != nil {
				t.Fatal(err)
			}
		}
	}
	drop("a", 30, 1)
	waitFor(t, "30 results of steady parts", 90*time.Second, func() bool { return len(sub.Results()) >= 30 })
	drop("b", 60, 1.5)
	waitFor(t, "90 results", 90*time.Second, func() bool { return len(sub.Results()) >= 90 })
	reason := regexp.MustCompile(`^drift: (background|outer_half_circle|piezo_border|solder_dots|wires|pins|piezo_middle): ms (mean|q995) drifted, PSI \d+\.\d\d`)
	waitFor(t, "health status degraded naming the drifted feature", 10*time.Second, func() bool {
		hs := sub.Health()
		return len(hs) > 0 && hs[len(hs)-1].Status == "degraded" && reason.MatchString(hs[len(hs)-1].StatusReason)
	})
	hs := sub.Health()
	t.Logf("health: status %s, %s", hs[len(hs)-1].Status, hs[len(hs)-1].StatusReason)

	// Degraded, yet ready: the line keeps inspecting.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz %d while degraded by drift, want 200", resp.StatusCode)
	}
	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	body := new(bytes.Buffer)
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^segad_drift_alarm\{kind="feature"\} 1$`).MatchString(body.String()) ||
		!regexp.MustCompile(`(?m)^segad_drift_psi\{detector="ms",segment="\w+",stat="(mean|q995)"\} `).MatchString(body.String()) {
		t.Errorf("metrics lack the drift alarm or PSI:\n%s", grepLines(body.String(), "segad_drift"))
	}
	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/drift", port))
	if err != nil {
		t.Fatal(err)
	}
	var st drift.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || !st.FeatureAlarm || st.Window != 50 || len(st.Features) != 14 || st.Features[0].PSI-st.Features[0].Floor < 0.25 {
		t.Errorf("/api/drift: %v %+v", err, st)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("segad run did not stop cleanly: %v", err)
	}
}

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
