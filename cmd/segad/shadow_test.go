package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/assurance/shadow"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/result"
)

// shadowPart writes a part image: the demo-like disc, and for a bad part a
// bright blob of a random size (small blobs are the borderline parts two
// forests trained on different data judge differently).
func shadowPart(t testing.TB, path string, rng *rand.Rand, defect bool) {
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
func shadowParts(t testing.TB, dir string, seed uint64, nGood, nBad int, flat bool) {
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
func shadowBundles(t testing.TB, dir string) (cfgA, cfgB string) {
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
		if out, err := execCmd(newFitCmd(), "--config", *b.configFile, "--good", filepath.Join(train, "good"), "--bad", filepath.Join(train, "bad"),
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

// execShadow runs `segad shadow ARGS...` on a fresh command.
func execShadow(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return execCmd(newShadowCmd(), args...)
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
	t.Logf("text report:\n%s", txt)
}

// TestShadowPromoteRollbackRunningDaemon: a real `segad run` process
// inspects parts dropped into a watch folder without pause while `segad
// shadow promote` makes the candidate (B) live and `segad rollback` returns
// to A. Every part gets exactly one live result on MQTT (counted by seq:
// none missing, none doubled), judged by A, then B, then A again (the
// forest hash in each result, in three runs), no shadow result is on the
// result topic, the config file keeps its comments, and both switches are
// recorded in FILE.promotions.jsonl. The history holds each part's
// shadow result beside it, by the candidate of its moment (B, then A).
func TestShadowPromoteRollbackRunningDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process test")
	}
	dir := t.TempDir()
	shadowBundles(t, dir)
	watch := filepath.Join(dir, "in")
	if err := os.MkdirAll(watch, 0o755); err != nil {
		t.Fatal(err)
	}
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/promo/#")
	det := filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx")
	cfgPath := filepath.Join(dir, "segad.yaml")
	text := fmt.Sprintf(`# the line's configuration: promote must keep this comment
station: promo
onnxruntime: {library: %q}
capture:
  kind: watch
  path: in
  watch: {poll: 20ms, grace: 100ms}
detectors:
  - name: ms
    model: %q
segad:
  mask: builtin:vad
  bundle: bundleA   # the live bundle
  shadow:
    bundle: "bundleB"   # the candidate
mqtt: {broker: %s, outbox: {path: outbox.db}}
http: {listen: "off"}
pipeline: {overflow: block, warmup: 1, queue: 4}
`, testenv.ORTLib(t), det, broker.URL())
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startSegad(t, cfgPath)
	waitFor(t, "the daemon to start", 60*time.Second, func() bool { return strings.Contains(p.logs.String(), "ready: inspecting") })

	// The feeder drops a part every 15 ms until told to stop.
	stop, fed := make(chan struct{}), make(chan int, 1)
	go func() {
		rng := rand.New(rand.NewPCG(9, 10))
		n := 0
		defer func() { fed <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(15 * time.Millisecond):
			}
			name := fmt.Sprintf("p%05d.png", n)
			tmp := filepath.Join(dir, name)
			shadowPart(t, tmp, rng, n%3 == 0)
			if err := os.Rename(tmp, filepath.Join(watch, name)); err != nil {
				t.Error(err)
				return
			}
			n++
		}
	}()
	forestOf := func(name string) string {
		b, err := bundle.Load(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return forestHash(b)
	}
	hashA, hashB := forestOf("bundleA"), forestOf("bundleB")
	lastBundle := func() string {
		r := sub.Results()
		if len(r) == 0 {
			return ""
		}
		return r[len(r)-1].Bundle
	}
	waitFor(t, "10 results by A", 60*time.Second, func() bool { return len(sub.Results()) >= 10 && lastBundle() == hashA })
	if out, err := execShadow(t, "promote", "--config", cfgPath, "--who", "tester"); err != nil {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	waitFor(t, "results by B after the promotion", 60*time.Second, func() bool { return lastBundle() == hashB })
	n := len(sub.Results())
	waitFor(t, "10 more results by B", 60*time.Second, func() bool { return len(sub.Results()) >= n+10 })
	rb := newRollbackCmd()
	rb.SetArgs([]string{"--config", cfgPath, "--who", "tester"})
	var rbOut bytes.Buffer
	rb.SetOut(&rbOut)
	if err := rb.Execute(); err != nil {
		t.Fatalf("rollback: %v\n%s", err, rbOut.String())
	}
	waitFor(t, "results by A after the rollback", 60*time.Second, func() bool { return lastBundle() == hashA })
	n = len(sub.Results())
	waitFor(t, "10 more results by A", 60*time.Second, func() bool { return len(sub.Results()) >= n+10 })
	close(stop)
	total := <-fed
	sub.WaitResults(total, 60*time.Second)
	time.Sleep(300 * time.Millisecond) // a double would arrive now
	if err, _ := p.stop(t, 30*time.Second); err != nil {
		t.Errorf("segad run exited with %v", err)
	}

	// Exactly one live result per part, in three runs A, B, A.
	results := sub.Results()
	bySeq := map[uint64]int{}
	var runs []string
	for _, r := range results {
		bySeq[r.Seq]++
		if r.Kind != "" || strings.HasSuffix(r.ID, shadow.IDSuffix) {
			t.Errorf("shadow result %s (kind %q) on the MQTT result topic", r.ID, r.Kind)
		}
		if len(runs) == 0 || runs[len(runs)-1] != r.Bundle {
			runs = append(runs, r.Bundle)
		}
	}
	if len(results) != total {
		t.Errorf("%d live results for %d parts", len(results), total)
	}
	for s := uint64(1); s <= uint64(total); s++ {
		if bySeq[s] != 1 {
			t.Errorf("seq %d has %d live results, want exactly 1", s, bySeq[s])
		}
	}
	if fmt.Sprint(runs) != fmt.Sprint([]string{hashA, hashB, hashA}) {
		t.Errorf("live forests in order %v, want A %s, B %s, A", runs, hashA, hashB)
	}

	// The file kept its comments; both switches are recorded.
	after, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# the line's configuration: promote must keep this comment", "  bundle: bundleA   # the live bundle\n", "    bundle: bundleB   # the candidate\n"} {
		if !strings.Contains(string(after), want) {
			t.Errorf("config after promote and rollback lacks %q:\n%s", want, after)
		}
	}
	recs, err := readPromotions(promotionsFile(cfgPath))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Action != "promote" || recs[0].NewBundle != "bundleB" || recs[0].OldBundle != "bundleA" ||
		recs[0].NewForest != hashB || recs[0].Who != "tester" || recs[1].Action != "rollback" || recs[1].NewBundle != "bundleA" {
		t.Errorf("promotion records: %+v", recs)
	}
	// A second rollback has nothing to roll back.
	rb2 := newRollbackCmd()
	rb2.SetArgs([]string{"--config", cfgPath})
	rb2.SetOut(&rbOut)
	rb2.SetErr(&rbOut)
	if err := rb2.Execute(); err == nil || !strings.Contains(err.Error(), "no promotion to roll back") {
		t.Errorf("second rollback: %v", err)
	}

	// The history: every live part has its shadow beside it, by the
	// candidate of its moment (the bundle not live).
	st, err := history.Open(context.Background(), history.Config{Path: filepath.Join(dir, "history.db"), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q := history.Query{Kind: history.KindAll, Limit: history.MaxLimit}
	var rows []history.Row
	for {
		page, err := st.Query(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, page.Results...)
		if q.Cursor = page.Next; q.Cursor == "" {
			break
		}
	}
	live := map[string]history.Row{}
	for _, r := range rows {
		if r.Kind == history.KindProduction {
			live[r.ID] = r
		}
	}
	shadows := 0
	for _, r := range rows {
		if r.Kind != history.KindShadow {
			continue
		}
		shadows++
		l, ok := live[shadow.LiveID(r.ID)]
		switch {
		case !ok:
			t.Errorf("shadow %s has no live result", r.ID)
		case l.Seq != r.Seq || l.PartID != r.PartID:
			t.Errorf("shadow %s seq %d part %s, live seq %d part %s", r.ID, r.Seq, r.PartID, l.Seq, l.PartID)
		case l.Bundle == r.Bundle || (r.Bundle != hashA && r.Bundle != hashB):
			t.Errorf("seq %d: live forest %s, shadow forest %s: the shadow must be the other bundle", r.Seq, l.Bundle, r.Bundle)
		}
	}
	// The frames in flight at each switch (queue 4, three between the
	// stages) may meet a candidate equal to their live forest: those are
	// not compared, every other part is.
	if inFlight := 2 * (4 + 3); len(live) != total || shadows > total || shadows < total-inFlight {
		t.Errorf("history: %d live and %d shadow results for %d parts", len(live), shadows, total)
	}
	t.Logf("%d parts, live forests %v, %d shadow results", total, runs, shadows)
}

// TestShadowHostileCandidates: a candidate that cannot be used stops `segad
// run` at start with the reason and what to do (a shadow that silently
// records nothing would make every report lie); a candidate trained for
// other detectors runs when it is given its own (segad.shadow.detectors),
// and then records a shadow result for every part.
func TestShadowHostileCandidates(t *testing.T) {
	if testing.Short() {
		t.Skip("trains bundles and runs a line")
	}
	dir := t.TempDir()
	cfgA, _ := shadowBundles(t, dir)
	// A bundle for a detector named ms2 (the same model under another
	// name: the bundle manifest names its detectors).
	base, err := os.ReadFile(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(other, []byte(strings.Replace(strings.Replace(string(base), "name: ms", "name: ms2", 1), "bundle: bundleA", "bundle: bundleC", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := execFit(t, "--config", other, "--good", filepath.Join(dir, "trainA", "good"), "--bad", filepath.Join(dir, "trainA", "bad"),
		"-o", filepath.Join(dir, "bundleC"), "-q"); err != nil {
		t.Fatalf("fit C: %v\n%s", err, out)
	}
	corrupt := filepath.Join(dir, "corrupt")
	if err := os.CopyFS(corrupt, os.DirFS(filepath.Join(dir, "bundleB"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(corrupt, "model.json"), []byte(`{"learner": {"gradient_booster": `), 0o644); err != nil {
		t.Fatal(err)
	}
	det := filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx")
	line := filepath.Join(dir, "line")
	shadowParts(t, line, 5, 6, 4, true)
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	for _, tc := range []struct {
		name, shadowYAML string
		want             []string // in the error; nil: runs
	}{
		{"missing", "{bundle: nowhere}", []string{"segad.shadow", "nowhere", "segad fit -o"}},
		{"corrupt", "{bundle: corrupt}", []string{"segad.shadow", "corrupt", "model.json", "retrain"}},
		{"other detectors", "{bundle: bundleC}", []string{"segad.shadow", "bundleC", "ms2", "segad.shadow.detectors"}},
		{"share out of range", "{bundle: bundleB, share: 1.5}", []string{"segad.shadow.share", "1.5"}},
		{"no bundle", "{share: 0.5}", []string{"segad.shadow.bundle", "missing"}},
		{"own detectors", fmt.Sprintf("{bundle: bundleC, share: 0.5, detectors: [{name: ms2, model: %q}]}", det), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgPath := filepath.Join(dir, "segad.yaml")
			text := strings.Replace(string(base), "  bundle: bundleA\n", "  bundle: bundleA\n  shadow: "+tc.shadowYAML+"\n", 1) +
				fmt.Sprintf("station: hostileshadow\nmqtt: {broker: %s, outbox: {path: outbox.db}}\nhttp: {listen: \"off\"}\npipeline: {overflow: block, warmup: 1}\n", broker.URL())
			if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			os.RemoveAll(filepath.Join(dir, "history.db"))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			err := runDaemon(ctx, cfgPath)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				out, err := execShadow(t, "report", "--config", cfgPath, "--json")
				if err != nil {
					t.Fatalf("report: %v\n%s", err, out)
				}
				var rep shadowReport
				if err := json.Unmarshal([]byte(out), &rep); err != nil {
					t.Fatal(err)
				}
				// share 0.5: exactly the frames shadow.Sampled picks by seq.
				var want []uint64
				for s := uint64(1); s <= 10; s++ {
					if shadow.Sampled(s, 0.5) {
						want = append(want, s)
					}
				}
				var seqs []uint64
				for _, p := range append(append([]shadow.Part(nil), rep.CandidateRejects...), rep.CandidatePasses...) {
					seqs = append(seqs, p.Seq)
				}
				for _, s := range seqs {
					if !shadow.Sampled(s, 0.5) {
						t.Errorf("seq %d scored by the candidate but not in the share", s)
					}
				}
				if rep.Pairs != len(want) || rep.CandidateErrors != 0 {
					t.Log(out)
					t.Errorf("own detectors: %d pairs, %d candidate errors; want %d (seqs %v) and 0", rep.Pairs, rep.CandidateErrors, len(want), want)
				}
				return
			}
			if err == nil {
				t.Fatal("segad run started with the candidate")
			}
			t.Logf("refused: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if el := time.Since(start); el > 20*time.Second {
				t.Errorf("refused after %s", el)
			}
		})
	}
}

// TestShadowReload: a change of segad.shadow alone rebuilds the candidate,
// not the live model; a candidate that cannot be built rejects the reload
// and keeps both models in force; removing the section removes the
// candidate.
func TestShadowReload(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two bundles")
	}
	dir := t.TempDir()
	cfgA, _ := shadowBundles(t, dir)
	base, err := os.ReadFile(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "segad.yaml")
	write := func(shadowYAML string) {
		text := string(base)
		if shadowYAML != "" {
			text = strings.Replace(text, "  bundle: bundleA\n", "  bundle: bundleA\n  shadow: "+shadowYAML+"\n", 1)
		}
		if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("{bundle: bundleB, share: 1}")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	img, err := testPartPNG()
	if err != nil {
		t.Fatal(err)
	}
	src, err := newRepeatSource(img, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer src.original.Close()
	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r := shadow.New(log)
	d, err := daemon.New(cfg, daemon.Options{Logger: log, Source: src.open, Publisher: &collector{}, Shadow: r})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	live := d.Model()
	steps := []struct {
		name, shadow string
		err          string // "" the reload applies
		active       bool
		logs         string
	}{
		{"share only", "{bundle: bundleB, share: 0.5}", "", true, "share=0.5"},
		{"broken candidate", "{bundle: nowhere, share: 0.5}", "nowhere", true, ""},
		{"removed", "", "", false, "shadow candidate removed"},
		{"back", "{bundle: bundleB}", "", true, "share=1"},
	}
	for _, s := range steps {
		mark := len(logs.String())
		write(s.shadow)
		err := d.Reload()
		switch {
		case s.err == "" && err != nil:
			t.Errorf("%s: reload: %v", s.name, err)
		case s.err != "" && (err == nil || !strings.Contains(err.Error(), s.err) || !strings.Contains(err.Error(), "segad.shadow")):
			t.Errorf("%s: reload error %v, want one naming segad.shadow and %s", s.name, err, s.err)
		}
		if r.Active() != s.active {
			t.Errorf("%s: candidate active %v, want %v", s.name, r.Active(), s.active)
		}
		// Health names a candidate that could not be built, until one is.
		if h := r.Health(); (s.err != "") != strings.Contains(h, "segad.shadow") {
			t.Errorf("%s: health %q", s.name, h)
		}
		out := logs.String()[mark:]
		if s.logs != "" && !strings.Contains(out, s.logs) {
			t.Errorf("%s: log lacks %q:\n%s", s.name, s.logs, out)
		}
		if d.Model() != live || strings.Contains(out, "model stage restarted") {
			t.Errorf("%s: the live model was rebuilt for a change of the candidate", s.name)
		}
	}
}

// TestPromoteRollbackFile: promote swaps the two bundle values and nothing
// else in the file, rollback restores it byte for byte, and every refusal
// names what is wrong and leaves the file as it was.
func TestPromoteRollbackFile(t *testing.T) {
	dir := t.TempDir()
	shadowBundles(t, dir)
	cfgPath := filepath.Join(dir, "segad.yaml")
	det := filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx")
	orig := fmt.Sprintf(`# station config
onnxruntime: {library: %q}
capture: {kind: folder, path: line}   # parts
detectors:
  - name: ms
    model: %q
segad:
  mask: builtin:vad
  bundle: bundleA     # live
  shadow:
    share: 0.5
    bundle: bundleB   # candidate
`, testenv.ORTLib(t), det)
	if err := os.WriteFile(cfgPath, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	rec, err := promoteConfig(cfgPath, "alice", false, now)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(cfgPath)
	want := strings.NewReplacer("bundle: bundleA     # live", "bundle: bundleB     # live", "bundle: bundleB   # candidate", "bundle: bundleA   # candidate").Replace(orig)
	if string(got) != want {
		t.Errorf("after promote:\n%s\nwant:\n%s", got, want)
	}
	if st, _ := os.Stat(cfgPath); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v after promote, want 0640", st.Mode().Perm())
	}
	if rec.OldBundle != "bundleA" || rec.NewBundle != "bundleB" || rec.NewShadow != "bundleA" || rec.Who != "alice" || !rec.At.Equal(now) ||
		!strings.HasPrefix(rec.NewForest, "sha256:") || rec.OldForest == rec.NewForest {
		t.Errorf("record %+v", rec)
	}
	if _, err := promoteConfig(cfgPath, "bob", true, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(cfgPath); string(got) != orig {
		t.Errorf("after rollback the file differs from the original:\n%s", got)
	}
	recs, err := readPromotions(promotionsFile(cfgPath))
	if err != nil || len(recs) != 2 || recs[1].Action != "rollback" || recs[1].Who != "bob" || recs[1].NewBundle != "bundleA" || recs[1].NewShadow != "bundleB" {
		t.Errorf("records %+v, %v", recs, err)
	}

	for _, tc := range []struct {
		name     string
		text     string // the config ("" the original)
		records  string // the promotions file's content ("" none)
		rollback bool
		want     []string
	}{
		{"nothing to roll back", "", "", true, []string{"no promotion to roll back"}},
		{"no candidate", strings.Replace(orig, "  shadow:\n    share: 0.5\n    bundle: bundleB   # candidate\n", "", 1), "", false, []string{"segad.shadow is not set"}},
		{"own detectors", strings.Replace(orig, "    share: 0.5\n", fmt.Sprintf("    share: 0.5\n    detectors: [{name: ms2, model: %q}]\n", det), 1), "", false, []string{"own detectors", "segad.shadow.detectors"}},
		{"live is a model file", strings.Replace(strings.Replace(orig, "bundle: bundleA     # live", "model: bundleA/model.json\n  threshold: 0", 1), "", "", 1), "", false, []string{"segad.bundle is not set"}},
		{"live threshold set", strings.Replace(orig, "  mask: builtin:vad\n", "  mask: builtin:vad\n  threshold: 0.3\n", 1), "", false, []string{"segad.threshold", "chosen for the live forest"}},
		{"candidate gone", strings.Replace(orig, "bundle: bundleB   # candidate", "bundle: gone", 1), "", false, []string{"the bundle to make live", "gone"}},
		{"edited since the promotion", "", `{"action":"promote","old_bundle":"bundleX","new_bundle":"bundleZ","who":"carol"}` + "\n", true, []string{"edited since", "bundleZ", "carol"}},
		{"corrupt records", "", "{not json\n", true, []string{"promotions.jsonl:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.text
			if text == "" {
				text = orig
			}
			if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Remove(promotionsFile(cfgPath))
			if tc.records != "" {
				if err := os.WriteFile(promotionsFile(cfgPath), []byte(tc.records), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := promoteConfig(cfgPath, "t", tc.rollback, now)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if got, _ := os.ReadFile(cfgPath); string(got) != text {
				t.Error("the file changed on a refused edit")
			}
		})
	}
}

// TestShadowConfigCheck: `segad config check` builds the candidate as the
// start does, so a candidate for other detectors is refused there too.
func TestShadowConfigCheck(t *testing.T) {
	dir := t.TempDir()
	cfgA, _ := shadowBundles(t, dir)
	base, err := os.ReadFile(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "segad.yaml")
	for _, tc := range []struct {
		shadow, want string
	}{
		{"{bundle: bundleB}", "ok"},
		{"{bundle: bundleB, detectors: [{name: other, model: " + filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx") + "}]}", "other"},
	} {
		text := strings.Replace(string(base), "  bundle: bundleA\n", "  bundle: bundleA\n  shadow: "+tc.shadow+"\n", 1)
		if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err := runConfigCheck(&out, cfgPath, false)
		if tc.want == "ok" {
			if err != nil || !strings.Contains(out.String(), "ok") {
				t.Errorf("check %s: %v %s", tc.shadow, err, out.String())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "segad.shadow") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("check %s: %v", tc.shadow, err)
		}
	}
}
