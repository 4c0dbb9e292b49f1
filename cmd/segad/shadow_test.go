package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/assurance/shadow"
	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/result"
)

// shadowPart writes a part image: the demo-like disc, and for a bad part a
// bright blob of a random size (small blobs are the borderline parts two
// forests trained on different data judge differently).
func shadowPart(t *testing.T, path string, rng *rand.Rand, defect bool) {
	t.Helper()
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 110, 120, 0), 240, 320, gocv.MatTypeCV8UC3)
	defer m.Close()
	gocv.Circle(&m, image.Pt(160+rng.IntN(5), 120+rng.IntN(5)), 80, color.RGBA{150, 150, 150, 0}, -1)
	if defect {
		v := uint8(170 + rng.IntN(80))
		gocv.Circle(&m, image.Pt(120+rng.IntN(80), 80+rng.IntN(80)), 4+rng.IntN(12), color.RGBA{v, v, v, 0}, -1)
	}
	if !gocv.IMWrite(path, m) {
		t.Fatalf("write %s", path)
	}
}

// shadowParts writes nGood good and nBad bad parts under dir (good/ and
// bad/blob/, or flat with g/b name prefixes when flat).
func shadowParts(t *testing.T, dir string, seed uint64, nGood, nBad int, flat bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad", "blob")
	if flat {
		good, bad = dir, dir
	}
	for _, d := range []string{good, bad} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < nGood+nBad; i++ {
		isBad := i%(nGood+nBad) >= nGood
		if flat {
			isBad = rng.IntN(nGood+nBad) < nBad
		}
		name := fmt.Sprintf("g%03d.png", i)
		d := good
		if isBad {
			name, d = fmt.Sprintf("b%03d.png", i), bad
		}
		shadowPart(t, filepath.Join(d, name), rng, isBad)
	}
}

// shadowBundles trains two bundles on different part sets (different
// seeds and good/bad mixes): live (A) and candidate (B), in dir.
func shadowBundles(t *testing.T, dir string) (cfgA, cfgB string) {
	t.Helper()
	det := filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx")
	write := func(name, bundleDir string) string {
		p := filepath.Join(dir, name+".yaml")
		body := fmt.Sprintf(`onnxruntime: {library: %q}
capture: {kind: folder, path: line}
detectors:
  - name: ms
    model: %q
segad:
  mask: builtin:vad
  bundle: %s
fit: {trees: 3, rounds: 1, threads: 1}
`, testenv.ORTLib(t), det, bundleDir)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, b := range []struct {
		name       string
		seed       uint64
		good, bad  int
		configFile *string
	}{{"A", 31, 14, 8, &cfgA}, {"B", 77, 8, 14, &cfgB}} {
		train := filepath.Join(dir, "train"+b.name)
		shadowParts(t, train, b.seed, b.good, b.bad, false)
		*b.configFile = write("bundle"+b.name, "bundle"+b.name)
		if out, err := execFit(t, "--config", *b.configFile, "--good", filepath.Join(train, "good"), "--bad", filepath.Join(train, "bad"),
			"-o", filepath.Join(dir, "bundle"+b.name), "-q"); err != nil {
			t.Fatalf("fit %s: %v\n%s", b.name, err, out)
		}
	}
	return cfgA, cfgB
}

// inspectVerdicts runs `segad inspect` (the direct scoring) with cfg on
// every image of dir: results by part ID.
func inspectVerdicts(t *testing.T, cfg, dir string) map[string]result.Result {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.png"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no parts in %s: %v", dir, err)
	}
	out, err := execRoot(t, append([]string{"inspect", "--config", cfg}, files...)...)
	if err != nil {
		t.Fatalf("inspect %s: %v\n%s", cfg, err, out)
	}
	got := map[string]result.Result{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r result.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("inspect line %q: %v", line, err)
		}
		got[r.PartID] = r
	}
	if len(got) != len(files) {
		t.Fatalf("inspect %s: %d results for %d parts", cfg, len(got), len(files))
	}
	return got
}

// execShadow runs `segad shadow ARGS...` on a fresh command, so no flag
// value carries over from an earlier run.
func execShadow(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newShadowCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

func sameScore(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return math.Abs(*a-*b) <= 1e-9*math.Max(1, math.Abs(*a))
}

// TestShadowReportMatchesDirectScoring is the shadow acceptance test: a
// `segad run` line (in process, real Mosquitto, SQLite history) with bundle
// A live and bundle B (trained on other parts) as the shadow candidate
// inspects a folder of parts; `segad shadow report --json` then gives, part
// by part, the verdicts and scores that `segad inspect` gives with A and
// with B alone on the same images: the same agreement, the same parts in
// each disagreement list, the same operating points on the labelled
// parts. No shadow result reaches the MQTT result topic.
func TestShadowReportMatchesDirectScoring(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two bundles and runs a line")
	}
	dir := t.TempDir()
	cfgA, cfgB := shadowBundles(t, dir)
	line := filepath.Join(dir, "line")
	shadowParts(t, line, 5, 24, 16, true)
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/shadowline/#")
	base, err := os.ReadFile(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "segad.yaml")
	text := strings.Replace(string(base), "  bundle: bundleA\n", "  bundle: bundleA\n  shadow: {bundle: bundleB}\n", 1) +
		fmt.Sprintf("station: shadowline\nmqtt: {broker: %s, outbox: {path: outbox.db}}\nhttp: {listen: \"off\"}\npipeline: {overflow: block, warmup: 1}\n", broker.URL())
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := runDaemon(ctx, cfgPath); err != nil {
		t.Fatalf("segad run: %v", err)
	}
	live := sub.WaitResults(40, 30*time.Second)

	// Label the live results (good/bad by the file's name) in the history.
	st, err := history.Open(ctx, history.Config{Path: filepath.Join(dir, "history.db")})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{}
	for _, r := range live {
		if r.Kind != "" || strings.HasSuffix(r.ID, shadow.IDSuffix) {
			t.Errorf("result %s (kind %q) on the MQTT result topic: shadow results must stay off it", r.ID, r.Kind)
		}
		l := "good"
		if strings.HasPrefix(r.PartID, "b") {
			l = "bad"
		}
		labels[r.PartID] = l
		if _, err := st.Label(ctx, r.ID, history.Label{Label: l, Who: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	out, err := execShadow(t, "report", "--config", cfgPath, "--json")
	if err != nil {
		t.Fatalf("shadow report: %v\n%s", err, out)
	}
	var rep shadowReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, out)
	}
	a, b := inspectVerdicts(t, cfgA, line), inspectVerdicts(t, cfgB, line)
	if rep.Pairs != len(a) || rep.Unpaired != 0 {
		t.Fatalf("report pairs %d (unpaired %d), want every one of the %d parts", rep.Pairs, rep.Unpaired, len(a))
	}
	// The direct scoring's view, part by part.
	var wantRejects, wantPasses []string
	agree := 0
	var wantLive, wantCand shadow.Point
	for id, ra := range a {
		rb := b[id]
		switch {
		case ra.Rejected() == rb.Rejected():
			agree++
		case rb.Rejected():
			wantRejects = append(wantRejects, id)
		default:
			wantPasses = append(wantPasses, id)
		}
		for _, x := range []struct {
			p *shadow.Point
			r result.Result
		}{{&wantLive, ra}, {&wantCand, rb}} {
			if labels[id] == "bad" {
				x.p.Bad++
				if x.r.Rejected() {
					x.p.BadRejected++
				}
			} else {
				x.p.Good++
				if x.r.Rejected() {
					x.p.GoodRejected++
				}
			}
		}
	}
	if rep.Agree != agree {
		t.Errorf("report agreement %d/%d, direct scoring %d/%d", rep.Agree, rep.Pairs, agree, len(a))
	}
	check := func(name string, got []shadow.Part, want []string) {
		ids := map[string]bool{}
		for _, p := range got {
			ids[p.PartID] = true
			ra, rb := a[p.PartID], b[p.PartID]
			if p.LiveVerdict != ra.Verdict || p.CandidateVerdict != rb.Verdict || !sameScore(p.LiveScore, ra.Score) || !sameScore(p.CandidateScore, rb.Score) {
				t.Errorf("%s: part %s live %s %v candidate %s %v; direct scoring A %s %v, B %s %v", name, p.PartID,
					p.LiveVerdict, scoreText(p.LiveScore), p.CandidateVerdict, scoreText(p.CandidateScore), ra.Verdict, scoreText(ra.Score), rb.Verdict, scoreText(rb.Score))
			}
			if p.ShadowID != p.LiveID+shadow.IDSuffix || p.Label != labels[p.PartID] {
				t.Errorf("%s: part %s IDs %s/%s label %q", name, p.PartID, p.LiveID, p.ShadowID, p.Label)
			}
		}
		for _, id := range want {
			if !ids[id] {
				t.Errorf("%s: part %s missing from the report", name, id)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: report lists %d parts, direct scoring %d (%v)", name, len(got), len(want), want)
		}
	}
	check("candidate rejects", rep.CandidateRejects, wantRejects)
	check("candidate passes", rep.CandidatePasses, wantPasses)
	if rep.LivePoint != wantLive || rep.CandidatePoint != wantCand {
		t.Errorf("operating points: report live %+v candidate %+v, direct %+v / %+v", rep.LivePoint, rep.CandidatePoint, wantLive, wantCand)
	}
	if len(wantRejects)+len(wantPasses) == 0 {
		t.Errorf("the two bundles agree on every part: the fixture no longer exercises disagreements")
	}
	t.Logf("%d parts: agreement %d, candidate rejects %d, candidate passes %d; live %+v, candidate %+v",
		rep.Pairs, rep.Agree, len(rep.CandidateRejects), len(rep.CandidatePasses), rep.LivePoint, rep.CandidatePoint)
	// The text report says the same.
	txt, err := execShadow(t, "report", "--config", cfgPath)
	if err != nil || !strings.Contains(txt, fmt.Sprintf("%d parts judged by both", rep.Pairs)) {
		t.Errorf("text report: %v\n%s", err, txt)
	}
}
