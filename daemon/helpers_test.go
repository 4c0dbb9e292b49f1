package daemon

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/result"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

// fixtureDetector is the ONNX detector fixture of the infer stage (a
// per-pixel mean/std difference model with a blur, 256x256 map).
func fixtureDetector(tb testing.TB, name string) string {
	return filepath.Join(testenv.RepoRoot(tb), "infer", "testdata", name)
}

// writeVideo writes n MJPG frames of a textured part; every third frame has
// a bright blob (a "defect").
func writeVideo(tb testing.TB, path string, n int) {
	tb.Helper()
	vw, err := gocv.VideoWriterFile(path, "MJPG", 25, 320, 240, true)
	if err != nil {
		tb.Fatalf("video writer: %v", err)
	}
	defer vw.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < n; i++ {
		m := partImage(rng, i%3 == 2)
		if err := vw.Write(m); err != nil {
			tb.Fatalf("write frame: %v", err)
		}
		m.Close()
	}
}

func partImage(rng *rand.Rand, defect bool) gocv.Mat {
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 110, 120, 0), 240, 320, gocv.MatTypeCV8UC3)
	gocv.Circle(&m, image.Pt(160, 120), 80, color.RGBA{150, 150, 150, 0}, -1)
	for k := 0; k < 40; k++ {
		x, y := rng.IntN(320), rng.IntN(240)
		gocv.Circle(&m, image.Pt(x, y), 2, color.RGBA{uint8(rng.IntN(60) + 100), 120, 120, 0}, -1)
	}
	if defect {
		gocv.Circle(&m, image.Pt(140+rng.IntN(40), 100+rng.IntN(40)), 12, color.RGBA{255, 255, 255, 0}, -1)
	}
	return m
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testConfig writes a daemon config for a video of n frames, one fixture
// detector, the built-in VAD mask and a freshly trained forest, publishing
// to an embedded broker on a free port. It returns the config path and the
// broker's port.
func testConfig(tb testing.TB, dir string, n int, detector string, threshold string, extra string) (string, int) {
	tb.Helper()
	video := filepath.Join(dir, "parts.avi")
	if _, err := os.Stat(video); err != nil {
		writeVideo(tb, video, n)
	}
	model := filepath.Join(dir, "brf.json")
	if _, err := os.Stat(model); err != nil {
		testenv.TrainForest(tb, model, 7*4+1)
	}
	port := freePort(tb)
	cfg := fmt.Sprintf(`station: t1
onnxruntime:
  library: %q
capture:
  kind: video
  path: parts.avi
detectors:
  - name: ms
    model: %q
segad:
  mask: builtin:vad
  model: brf.json
  threshold: %s
mqtt:
  broker: embedded
  publish_features: true
  outbox:
    path: outbox.db
  embedded:
    listen: 127.0.0.1:%d
    users:
      - username: tester
        password: pw
        acl:
          - {topic: "segad/#", access: readwrite}
http:
  listen: "off"
pipeline:
  queue: 4
  overflow: block
  warmup: 1
%s`, testenv.ORTLib(tb), fixtureDetector(tb, detector), threshold, port, extra)
	p := filepath.Join(dir, "segad.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p, port
}

// subscribe follows the embedded broker's station topics as the test user.
func subscribe(tb testing.TB, port int) *mqtttest.Subscriber {
	return mqtttest.Subscribe(tb, fmt.Sprintf("tcp://127.0.0.1:%d", port), "tester", "pw", "segad/#")
}

// newTestDaemon writes a test config (see testConfig), lets edit adjust the
// loaded configuration, and builds the daemon on it. It returns the daemon,
// the config path and the embedded broker's port.
func newTestDaemon(tb testing.TB, n int, detector, threshold string, edit func(*config.Config)) (*Daemon, string, int) {
	tb.Helper()
	cfgPath, port := testConfig(tb, tb.TempDir(), n, detector, threshold, "")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		tb.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	d, err := New(cfg, Options{Logger: quietLog()})
	if err != nil {
		tb.Fatal(err)
	}
	return d, cfgPath, port
}

// runToEnd subscribes to the broker, runs the daemon over its finite source
// and returns the n results that arrive (fewer fails the test).
func runToEnd(tb testing.TB, d *Daemon, port, n int) []result.Result {
	tb.Helper()
	sub := subscribe(tb, port)
	if err := d.Run(context.Background()); err != nil {
		tb.Fatalf("Run: %v", err)
	}
	got := sub.WaitResults(n, 10*time.Second)
	if len(got) != n {
		tb.Fatalf("got %d results, want %d", len(got), n)
	}
	return got
}

func newRand() *rand.Rand { return rand.New(rand.NewPCG(9, 9)) }

// sourceOf is Options.Source for a source the test made itself.
func sourceOf(s capture.Source) func(capture.PreprocessConfig) (capture.Source, error) {
	return func(capture.PreprocessConfig) (capture.Source, error) { return s, nil }
}
