package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/assurance/golden"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/result"
)

// How a station's faults are emulated on the golden images: the golden
// parts are shown to the station's camera, so what the camera does to the
// production parts it does to them too. The tests apply it to the golden
// set's files: a Gaussian blur (sigma 3 px on the 512 px frame) is a camera
// knocked out of focus, a gain of 0.6 a lamp that has lost 40 % of its
// light.
func blurred(m gocv.Mat) gocv.Mat {
	out := gocv.NewMat()
	gocv.GaussianBlur(m, &out, image.Pt(0, 0), 3, 3, gocv.BorderReflect101)
	return out
}

func darkened(m gocv.Mat) gocv.Mat {
	out := gocv.NewMat()
	m.ConvertToWithParams(&out, gocv.MatTypeCV8UC3, 0.6, 0)
	return out
}

// goldenCopy writes the station's golden set into dir, every image through
// camera (nil: as captured), and returns dir.
func goldenCopy(t *testing.T, st *goldenStation, dir string, camera func(gocv.Mat) gocv.Mat) string {
	t.Helper()
	for _, f := range append(append([]string{}, st.Good...), st.Bad...) {
		src := filepath.Join(st.GoldDir, filepath.FromSlash(f))
		dst := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		m := gocv.IMRead(src, gocv.IMReadColor)
		if m.Empty() {
			t.Fatalf("read %s", src)
		}
		if camera != nil {
			n := camera(m)
			m.Close()
			m = n
		}
		if !gocv.IMWrite(dst, m) {
			t.Fatalf("write %s", dst)
		}
		m.Close()
	}
	return dir
}

// relabelledMask writes the station's mask with its segment labels in
// another order (label l becomes l+3 mod the segment count): a mask exported
// by another tool or for another variant of the part, which has the right
// size and segment count, so nothing but the verdicts can tell.
func relabelledMask(t *testing.T, st *goldenStation, dir string) string {
	t.Helper()
	m := gocv.IMRead(filepath.Join(st.Dir, "data", "fit", "mask.png"), gocv.IMReadGrayScale)
	if m.Empty() {
		t.Fatal("read mask")
	}
	defer m.Close()
	const segments = 7
	b, err := m.DataPtrUint8()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range b {
		if l < segments {
			b[i] = (l + 3) % segments
		}
	}
	p := filepath.Join(dir, "wrong-mask.png")
	if !gocv.IMWrite(p, m) {
		t.Fatal("write mask")
	}
	return p
}

// goldenDaemon starts a daemon in-process on cfgText (results counted,
// not published) with the golden set the configuration names.
func goldenDaemon(t *testing.T, dir, cfgText string) *daemon.Daemon {
	t.Helper()
	p := filepath.Join(dir, "segad.yaml")
	if err := os.WriteFile(p, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	set, err := golden.Load(cfg.Assurance.Golden.Dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, daemon.Options{Logger: quietLogger(), Publisher: &countingPublisher{}, Golden: set})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func readyz(t *testing.T, d *daemon.Daemon) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	d.Handler("").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, string(body)
}

// TestGoldenChallengeCatchesStationFaults is the golden-sample acceptance
// run through the real model in-process: a wrong mask, a blurred camera, a
// forest trained for other detectors and a darkened lamp each make the
// start-up challenge fail, with the failing images named in /readyz (503)
// and in the health's degraded status; the right configuration passes.
func TestGoldenChallengeCatchesStationFaults(t *testing.T) {
	st := goldenDemoStation(t)
	lib := os.Getenv("SEGAD_ONNXRUNTIME_LIB")
	cases := []struct {
		name    string
		variant func(dir string) goldenVariant
		camera  func(gocv.Mat) gocv.Mat
		pass    bool
	}{
		{"right configuration", func(string) goldenVariant { return goldenVariant{} }, nil, true},
		{"wrong mask", func(dir string) goldenVariant {
			return goldenVariant{mask: relabelledMask(t, st, dir), plain: true, threshold: st.Threshold}
		}, nil, false},
		{"blurred camera", func(string) goldenVariant { return goldenVariant{} }, blurred, false},
		{"forest for other detectors", func(string) goldenVariant {
			return goldenVariant{swapped: true, plain: true, threshold: st.Threshold}
		}, nil, false},
		{"darkened lamp", func(string) goldenVariant { return goldenVariant{} }, darkened, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			gold := goldenCopy(t, st, filepath.Join(dir, "golden"), c.camera)
			v := c.variant(dir)
			v.threshold = st.Threshold
			cfg := goldenModelYAML(lib, st.Dir, v) + fmt.Sprintf("assurance:\n  golden: {dir: %q}\n", gold)
			d := goldenDaemon(t, dir, cfg)
			if code, body := readyz(t, d); code != http.StatusServiceUnavailable || !strings.Contains(body, "start-up golden-sample challenge has not passed") {
				t.Errorf("before the challenge: /readyz %d %q, want 503 saying the challenge has not passed", code, body)
			}
			s, ran := d.StartGolden(context.Background())
			if !ran || len(s.Images) != len(st.Good)+len(st.Bad) {
				t.Fatalf("challenge ran %v with %d images, want %d", ran, len(s.Images), len(st.Good)+len(st.Bad))
			}
			for _, ir := range s.Images {
				t.Logf("%-34s expected %-4s got %-5s score %s", ir.File, ir.Expected, ir.Verdict, fmtScore(ir.Score))
			}
			code, body := readyz(t, d)
			if c.pass {
				if !s.Passed || len(s.Failing) != 0 || strings.Contains(body, "golden") {
					t.Fatalf("right configuration: passed %v, failing %v, /readyz %d %q", s.Passed, s.Failing, code, body)
				}
				return
			}
			if s.Passed || len(s.Failing) == 0 {
				t.Fatalf("challenge passed (%d images) on a faulty station", len(s.Images))
			}
			if code != http.StatusServiceUnavailable {
				t.Errorf("/readyz %d, want 503", code)
			}
			for _, f := range s.Failing {
				if !strings.Contains(body, f) && len(s.Failing) <= 5 {
					t.Errorf("/readyz does not name failing image %s: %q", f, body)
				}
			}
			for _, ir := range s.Images {
				wrong := ir.Verdict != ir.Expected
				if ir.OK == wrong {
					t.Errorf("%s: expected %s, verdict %s, but ok=%v", ir.File, ir.Expected, ir.Verdict, ir.OK)
				}
			}
			if h := d.HealthReport(); h.Status != "degraded" || !strings.Contains(h.StatusReason, s.Failing[0]) || h.Golden == nil || h.Golden.Passed {
				t.Errorf("health: status %q reason %q golden %+v, want degraded naming %s", h.Status, h.StatusReason, h.Golden, s.Failing[0])
			}
			t.Logf("%s: %s", c.name, s.Brief())
		})
	}
}

// recordingPublisher keeps every result the line publishes.
type recordingPublisher struct {
	mu sync.Mutex
	rs []result.Result
}

func (p *recordingPublisher) Publish(_ context.Context, r result.Result) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rs = append(p.rs, r)
	return nil
}
func (p *recordingPublisher) Close(context.Context) error { return nil }
func (p *recordingPublisher) Stats() mqtt.Stats           { return mqtt.Stats{} }

// goldenLine is a daemon on the demo station whose source repeats one
// production part n times; edit changes the loaded configuration (what a
// YAML file could not say, such as a sub-minute schedule).
func goldenLine(t *testing.T, st *goldenStation, gold string, part []byte, n int, edit func(*config.Config)) (*daemon.Daemon, *recordingPublisher) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "segad.yaml")
	text := goldenModelYAML(os.Getenv("SEGAD_ONNXRUNTIME_LIB"), st.Dir, goldenVariant{threshold: st.Threshold}) +
		fmt.Sprintf("assurance:\n  golden: {dir: %q}\n", gold)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	set, err := golden.Load(gold)
	if err != nil {
		t.Fatal(err)
	}
	src, err := newRepeatSource(part, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.original.Close() })
	pub := &recordingPublisher{}
	d, err := daemon.New(cfg, daemon.Options{Logger: quietLogger(), Publisher: pub, Source: src.open, Golden: set})
	if err != nil {
		t.Fatal(err)
	}
	return d, pub
}

// TestGoldenFlagKeepsVerdicts: with action flag, a failed challenge leaves
// every production verdict and score as the model gave them and marks the
// result warn with the challenge's failure in its reason; the line is
// still not ready.
func TestGoldenFlagKeepsVerdicts(t *testing.T) {
	st := goldenDemoStation(t)
	gold := goldenCopy(t, st, filepath.Join(t.TempDir(), "golden"), darkened)
	part, err := os.ReadFile(filepath.Join(st.GoldDir, filepath.FromSlash(st.Good[0])))
	if err != nil {
		t.Fatal(err)
	}
	d, pub := goldenLine(t, st, gold, part, 3, func(c *config.Config) { c.Assurance.Golden.Action = config.GoldenFlag })
	if s, ran := d.StartGolden(context.Background()); !ran || s.Passed {
		t.Fatalf("darkened challenge: ran %v passed %v", ran, s.Passed)
	}
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(pub.rs) != 3 {
		t.Fatalf("%d results for 3 parts", len(pub.rs))
	}
	for _, r := range pub.rs {
		if r.Verdict != result.VerdictPass || r.Score == nil || *r.Score >= st.Threshold || r.ReasonCode != "" {
			t.Errorf("flagged part %d: verdict %s score %s code %q, want the model's own pass", r.Seq, r.Verdict, fmtScore(r.Score), r.ReasonCode)
		}
		if !r.Warn || !strings.Contains(r.Reason, "unverified") || !strings.Contains(r.Reason, "golden-sample challenge failed") || !strings.Contains(r.Reason, st.Good[0]) {
			t.Errorf("part %d not marked: warn %v reason %q", r.Seq, r.Warn, r.Reason)
		}
	}
	if code, body := readyz(t, d); code != http.StatusServiceUnavailable || !strings.Contains(body, st.Good[0]) {
		t.Errorf("/readyz %d %q, want 503 naming %s", code, body, st.Good[0])
	}
}

// TestGoldenSchedule: with on_start off the line is ready at once; the
// schedule runs challenges every period (a sub-minute period set in the
// loaded configuration, which YAML refuses) and stops with its context.
func TestGoldenSchedule(t *testing.T) {
	st := goldenDemoStation(t)
	gold := goldenCopy(t, st, filepath.Join(t.TempDir(), "golden"), nil)
	part, err := os.ReadFile(filepath.Join(st.GoldDir, filepath.FromSlash(st.Good[0])))
	if err != nil {
		t.Fatal(err)
	}
	off := false
	d, _ := goldenLine(t, st, gold, part, 1, func(c *config.Config) {
		c.Assurance.Golden.OnStart = &off
		c.Assurance.Golden.Every = 300 * time.Millisecond
	})
	t.Cleanup(func() { d.Close() })
	if code, body := readyz(t, d); strings.Contains(body, "golden") {
		t.Fatalf("on_start off: /readyz %d %q mentions golden before any challenge", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if _, ran := d.StartGolden(ctx); ran {
		t.Fatal("a start-up challenge ran with on_start off")
	}
	runs := func() float64 {
		rec := httptest.NewRecorder()
		d.Handler("").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		v, _ := histMetric(rec.Body.String(), `segad_golden_runs_total{result="passed",trigger="schedule"}`)
		return v
	}
	waitFor(t, "two scheduled challenges", 30*time.Second, func() bool { return runs() >= 2 })
	if s, ok := d.GoldenSummary(); !ok || !s.Passed || s.Trigger != "schedule" {
		t.Errorf("last summary: %+v", s)
	}
	cancel()
	time.Sleep(400 * time.Millisecond) // a challenge in flight ends
	n := runs()
	time.Sleep(time.Second)
	if m := runs(); m != n {
		t.Errorf("the schedule ran on after its context ended: %v -> %v challenges", n, m)
	}
}

// TestGoldenAfterReload: a reload that changes what judges the parts (here
// the threshold, as a retrained model would change its scores) vouches for
// nothing until a new challenge passes: the line is not ready at once, the
// challenge re-runs by itself, fails for a threshold that fails every good
// part, and passes again once the threshold is put back.
func TestGoldenAfterReload(t *testing.T) {
	st := goldenDemoStation(t)
	dir := t.TempDir()
	gold := goldenCopy(t, st, filepath.Join(dir, "golden"), nil)
	cfgText := func(threshold float64) string {
		return goldenModelYAML(os.Getenv("SEGAD_ONNXRUNTIME_LIB"), st.Dir, goldenVariant{threshold: threshold}) +
			fmt.Sprintf("assurance:\n  golden: {dir: %q}\n", gold)
	}
	d := goldenDaemon(t, dir, cfgText(st.Threshold))
	if s, _ := d.StartGolden(context.Background()); !s.Passed {
		t.Fatalf("start-up challenge failed: %s", s.Brief())
	}
	reload := func(threshold float64) golden.Summary {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "segad.yaml"), []byte(cfgText(threshold)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := d.Reload(); err != nil {
			t.Fatal(err)
		}
		if code, body := readyz(t, d); code != http.StatusServiceUnavailable || !strings.Contains(body, "segad.threshold changed") {
			t.Errorf("right after the reload: /readyz %d %q, want 503 saying the challenge re-runs", code, body)
		}
		var s golden.Summary
		waitFor(t, "the challenge after the reload", 30*time.Second, func() bool {
			var ok bool
			s, ok = d.GoldenSummary()
			return ok && s.Trigger == "reload" && s.Error == ""
		})
		return s
	}
	if s := reload(-50); s.Passed || len(s.Failing) != len(st.Good) {
		t.Errorf("threshold -50: passed %v failing %v, want every good image failing", s.Passed, s.Failing)
	}
	if s := reload(st.Threshold); !s.Passed {
		t.Errorf("threshold put back: %s", s.Brief())
	}
	if code, body := readyz(t, d); strings.Contains(body, "golden") {
		t.Errorf("after the passing re-challenge: /readyz %d %q", code, body)
	}
}

// BenchmarkGoldenChallengePerImage is what a challenge costs per golden
// image on the demo station, beside the named baseline: the same image
// through POST /inspect (the path a challenge reuses: guarded read, the
// model's preprocessing, Inspector.Inspect), side by side in one process.
func BenchmarkGoldenChallengePerImage(b *testing.B) {
	st := goldenDemoStation(b)
	dir := b.TempDir()
	gold := filepath.Join(dir, "golden")
	for _, f := range append(append([]string{}, st.Good...), st.Bad...) {
		data, err := os.ReadFile(filepath.Join(st.GoldDir, filepath.FromSlash(f)))
		if err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(gold, filepath.FromSlash(f))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, data, 0o644)
	}
	p := filepath.Join(dir, "segad.yaml")
	text := goldenModelYAML(os.Getenv("SEGAD_ONNXRUNTIME_LIB"), st.Dir, goldenVariant{threshold: st.Threshold}) +
		fmt.Sprintf("assurance:\n  golden: {dir: %q}\n", gold)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		b.Fatal(err)
	}
	set, err := golden.Load(gold)
	if err != nil {
		b.Fatal(err)
	}
	d, err := daemon.New(cfg, daemon.Options{Logger: quietLogger(), Publisher: &countingPublisher{}, Golden: set})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	images := make([][]byte, len(set.Images))
	for i, im := range set.Images {
		images[i], _ = os.ReadFile(im.Path)
	}
	h := d.Handler("")
	b.Run("baseline_http_inspect", func(b *testing.B) {
		i := 0
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/inspect", bytes.NewReader(images[i%len(images)])))
			if rec.Code != 200 {
				b.Fatal(rec.Code)
			}
			i++
		}
	})
	b.Run("golden_challenge", func(b *testing.B) {
		for b.Loop() {
			if s, err := d.RunGolden(context.Background(), "bench"); err != nil || !s.Passed {
				b.Fatal(err, s.Brief())
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(images)), "ns/image")
	})
}

// TestGoldenHTTPRequest: GET /api/golden is 404 before any challenge, a
// POST /api/golden/run starts one in the background (202) whose summary
// GET /api/golden then serves; both need the bearer token.
func TestGoldenHTTPRequest(t *testing.T) {
	st, d, _ := goldenOnRequest(t, nil)
	const token = "golden-http-token-0123"
	h := d.Handler(token)
	do := func(method, path, tok string) (int, string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := do("GET", "/api/golden", token); code != http.StatusNotFound {
		t.Errorf("GET /api/golden before any challenge: %d %q, want 404", code, body)
	}
	for _, c := range []struct{ method, path string }{{"GET", "/api/golden"}, {"POST", "/api/golden/run"}, {"POST", "/api/golden/run?wait=true"}} {
		if code, _ := do(c.method, c.path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s %s without the token: %d, want 401", c.method, c.path, code)
		}
	}
	if code, body := do("POST", "/api/golden/run", token); code != http.StatusAccepted {
		t.Fatalf("POST /api/golden/run: %d %q, want 202", code, body)
	}
	var s golden.Summary
	waitFor(t, "the challenge asked for", 30*time.Second, func() bool {
		code, body := do("GET", "/api/golden", token)
		return code == 200 && json.Unmarshal([]byte(body), &s) == nil
	})
	if !s.Passed || s.Trigger != "http" || len(s.Images) != len(st.Good)+len(st.Bad) {
		t.Errorf("summary: passed %v trigger %q images %d", s.Passed, s.Trigger, len(s.Images))
	}
}

// TestGoldenStoppedChallengeKeepsLast: a challenge that is stopped before
// its end (the daemon stopping) is not a failed one: the last summary
// stands, the line stays ready and no part fails closed. A client that
// gives up on `POST /api/golden/run?wait=true` does not stop the challenge.
func TestGoldenStoppedChallengeKeepsLast(t *testing.T) {
	_, d, _ := goldenOnRequest(t, nil)
	first, err := d.RunGolden(context.Background(), "test")
	if err != nil || !first.Passed {
		t.Fatalf("first challenge: %v %+v", err, first)
	}
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	s, err := d.RunGolden(stopped, "test")
	if err != nil {
		t.Fatal(err)
	}
	if s.Passed || s.Error == "" {
		t.Fatalf("a stopped challenge reported %+v, want not passed with the reason", s)
	}
	last, _ := d.GoldenSummary()
	if !last.Passed || !last.At.Equal(first.At) {
		t.Errorf("the stopped challenge replaced the last summary: %+v", last)
	}
	if code, body := readyz(t, d); code != http.StatusOK {
		t.Errorf("/readyz after a stopped challenge: %d %s", code, body)
	}
	// An HTTP client whose request is already cancelled.
	const token = "golden-http-token-0123"
	req := httptest.NewRequest(http.MethodPost, "/api/golden/run?wait=true", nil).WithContext(stopped)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	d.Handler(token).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("challenge for a client that gave up: %d %s, want it run to the end and passed", rec.Code, rec.Body.String())
	}
	if last, _ := d.GoldenSummary(); !last.Passed || !last.At.After(first.At) {
		t.Errorf("last summary after the HTTP challenge: %+v", last)
	}
}

// TestGoldenMarksHTTPInspect: a part judged over `POST /inspect` while the
// last golden challenge failed gets the line's consequence (fail_closed:
// golden_failed), not a plain verdict from a station that misjudged known
// parts; before any challenge (none at start) it gets its own verdict.
func TestGoldenMarksHTTPInspect(t *testing.T) {
	_, d, part := goldenOnRequest(t, darkened)
	const token = "golden-http-token-0123"
	inspect := func() result.Result {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/inspect?part_id=P-1", bytes.NewReader(part))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		d.Handler(token).ServeHTTP(rec, req)
		var r result.Result
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &r) != nil {
			t.Fatalf("/inspect: %d %s", rec.Code, rec.Body.String())
		}
		return r
	}
	if r := inspect(); r.Verdict != result.VerdictPass {
		t.Fatalf("a good part before any challenge: %s %s", r.Verdict, r.Reason)
	}
	if s, err := d.RunGolden(context.Background(), "test"); err != nil || s.Passed {
		t.Fatalf("challenge with a darkened lamp: %v passed=%v", err, s.Passed)
	}
	if r := inspect(); r.Verdict != result.VerdictError || r.ReasonCode != result.ReasonGolden {
		t.Errorf("a good part over HTTP after a failed challenge: %s %s %q, want error golden_failed", r.Verdict, r.ReasonCode, r.Reason)
	}
}

// goldenOnRequest is a demo line whose challenges run only on request (no
// start-up challenge), its golden set captured through camera (nil: as
// is); it returns the station, the daemon and a good part's image.
func goldenOnRequest(t *testing.T, camera func(gocv.Mat) gocv.Mat) (*goldenStation, *daemon.Daemon, []byte) {
	t.Helper()
	st := goldenDemoStation(t)
	gold := goldenCopy(t, st, filepath.Join(t.TempDir(), "golden"), camera)
	part, err := os.ReadFile(filepath.Join(st.GoldDir, filepath.FromSlash(st.Good[0])))
	if err != nil {
		t.Fatal(err)
	}
	off := false
	d, _ := goldenLine(t, st, gold, part, 1, func(c *config.Config) { c.Assurance.Golden.OnStart = &off })
	t.Cleanup(func() { d.Close() })
	return st, d, part
}
