package main

import (
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

// buildBinary builds segad once per test binary run.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func segadBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "segad-e2e-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "segad")
		out, err := exec.Command("go", "build", "-o", buildOnce.path, ".").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// e2eVideo writes an MJPG video of textured parts at 10 frames/s.
func e2eVideo(t *testing.T, path string, n int) {
	t.Helper()
	vw, err := gocv.VideoWriterFile(path, "MJPG", 10, 320, 240, true)
	if err != nil {
		t.Fatal(err)
	}
	defer vw.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < n; i++ {
		m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 110, 120, 0), 240, 320, gocv.MatTypeCV8UC3)
		gocv.Circle(&m, image.Pt(160+rng.IntN(5), 120), 80, color.RGBA{150, 150, 150, 0}, -1)
		if i%4 == 3 {
			gocv.Circle(&m, image.Pt(150, 110), 10, color.RGBA{255, 255, 255, 0}, -1)
		}
		if err := vw.Write(m); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEndToEndDaemonProcess is the daemon issue's acceptance test: `segad
// run` as a real process with a real Mosquitto, fed by a video file through
// a GStreamer pipeline (real-time paced, like a camera). While it runs, the
// YAML threshold is edited (verdicts change from the next frame on), a
// broken file plus SIGHUP is rejected (the old config stays, the health
// topic says why), then SIGTERM stops it cleanly with every frame's result
// on the broker: sequence numbers 1..N without a gap.
func TestEndToEndDaemonProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end process test")
	}
	bin := segadBinary(t)
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	video := filepath.Join(dir, "parts.avi")
	e2eVideo(t, video, 40)
	testenv.TrainForest(t, filepath.Join(dir, "brf.json"), 29)
	root := testenv.RepoRoot(t)
	cfgText := fmt.Sprintf(`station: e2e
onnxruntime:
  library: %q
capture:
  kind: gstreamer
  pipeline: "filesrc location=%s ! avidemux ! jpegdec ! videoconvert ! video/x-raw,format=BGR ! appsink sync=true"
  reconnect: {initial: 100ms, max: 1s}
detectors:
  - name: ms
    model: %q
segad:
  mask: builtin:vad
  model: brf.json
  threshold: -1000
mqtt:
  broker: %s
  outbox: {path: outbox.db}
  status_interval: 200ms
http:
  listen: "off"
pipeline:
  queue: 4
  overflow: block
  warmup: 1
`, testenv.ORTLib(t), video, filepath.Join(root, "infer", "testdata", "meanstd_blur.onnx"), broker.URL())
	cfgPath := filepath.Join(dir, "segad.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}

	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/e2e/#")

	var logs testenv.SyncBuffer
	// Play systemd: a notify socket and a 1 s watchdog.
	sockPath := filepath.Join(dir, "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	var notes testenv.SyncBuffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			notes.Write(append(buf[:n:n], '\n'))
		}
	}()
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=1000000")
	cmd.Stderr = &logs
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	}()

	// 1. Results flow, all failing at threshold -1000; systemd heard READY
	// and the watchdog is fed while parts are inspected.
	waitFor(t, "5 results", 60*time.Second, func() bool { return len(sub.Results()) >= 5 })
	waitFor(t, "READY=1 and WATCHDOG=1 on the notify socket", 10*time.Second, func() bool {
		n := notes.String()
		return strings.Contains(n, "READY=1") && strings.Contains(n, "WATCHDOG=1")
	})
	// 2. Edit the threshold the way editors do (write a new file, rename it over).
	edited := strings.Replace(cfgText, "threshold: -1000", "threshold: 1000", 1)
	tmp := cfgPath + ".swp"
	if err := os.WriteFile(tmp, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, cfgPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a pass after the threshold edit", 30*time.Second, func() bool {
		r := sub.Results()
		return len(r) > 0 && r[len(r)-1].Verdict == result.VerdictPass
	})
	// 3. A broken file and SIGHUP: rejected, the old config (1000) stays.
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(edited, "threshold: 1000", "threshold: [broken", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "health to report the config error", 30*time.Second, func() bool {
		hs := sub.Health()
		return len(hs) > 0 && strings.Contains(hs[len(hs)-1].LastConfigError, "segad.yaml")
	})
	before := sub.Results()
	waitFor(t, "more results after the broken edit", 30*time.Second, func() bool { return len(sub.Results()) >= len(before)+3 })
	// 4. SIGTERM: clean exit.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("daemon exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30s of SIGTERM")
	}
	for _, want := range []string{"RELOADING=1", "STOPPING=1"} {
		if !strings.Contains(notes.String(), want) {
			t.Errorf("systemd was not told %s; notify messages:\n%s", want, notes.String())
		}
	}
	// Every frame has a result: seq 1..N with no gap, each once or more
	// (at-least-once), verdicts switched once from fail to pass and never back.
	time.Sleep(500 * time.Millisecond)
	results := sub.Results()
	seen := map[uint64]result.Result{}
	var maxSeq uint64
	for _, r := range results {
		seen[r.Seq] = r
		maxSeq = max(maxSeq, r.Seq)
	}
	for s := uint64(1); s <= maxSeq; s++ {
		if _, ok := seen[s]; !ok {
			t.Errorf("no result for frame %d of %d", s, maxSeq)
		}
	}
	switched := false
	for s := uint64(1); s <= maxSeq; s++ {
		r := seen[s]
		switch {
		case r.Verdict == result.VerdictPass:
			switched = true
		case switched:
			t.Errorf("frame %d: verdict %s after the threshold went to 1000 (broken edit applied?)", s, r.Verdict)
		case r.Verdict != result.VerdictFail:
			t.Errorf("frame %d: verdict %s (%s), want fail at threshold -1000", s, r.Verdict, r.Reason)
		}
	}
	for _, want := range []string{"config changed", "segad.threshold", "config change rejected", "stopped cleanly"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("daemon log lacks %q", want)
		}
	}
	t.Logf("%d frames, %d results received (%d duplicates)", maxSeq, len(results), len(results)-len(seen))
}
