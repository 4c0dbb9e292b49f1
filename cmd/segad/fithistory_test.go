package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/fit"
	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/result"
)

// execFit runs `segad fit ARGS...` on a fresh command (newFitCmd), as the
// root command runs it.
func execFit(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return execCmd(newFitCmd(), args...)
}

// execCmd runs a fresh command with args, as the root command runs it (a
// fresh one, so no flag value carries over from an earlier run), and
// returns what it wrote to stdout and stderr together.
func execCmd(cmd *cobra.Command, args ...string) (string, error) {
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

// fitHistoryConfig writes a configuration with one detector named det and
// the bundle folder bundleDir.
func fitHistoryConfig(t *testing.T, dir, det, bundleDir string) string {
	t.Helper()
	p := filepath.Join(dir, det+".yaml")
	body := fmt.Sprintf(`onnxruntime: {library: %q}
capture: {kind: folder, path: %q}
detectors:
  - name: %s
    model: %q
segad:
  mask: builtin:vad
  bundle: %q
fit: {trees: 3, rounds: 2, threads: 1}
`, testenv.ORTLib(t), dir, det, filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx"), bundleDir)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// part is one inspected part: its real feature row and map maxima.
type part struct {
	bad   bool
	typ   string
	names []string
	row   []float32
	max   map[string]float64
}

// realParts writes part images (dir/good, dir/bad/<type>) and computes
// their feature rows with the line's own code (fit.Featurizer: the model
// the daemon runs).
func realParts(t *testing.T, cfgPath, dir string, nGood int, bad map[string]int) []part {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fit.NewFeaturizer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(31, 32))
	var out []part
	add := func(isBad bool, typ string, i int) {
		sub := filepath.Join(dir, "good")
		if isBad {
			sub = filepath.Join(dir, "bad", typ)
		}
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(sub, fmt.Sprintf("p%03d.png", len(out)))
		writePart(t, p, rng, isBad)
		fr, err := f.Decode(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fr.Close()
		pt := part{bad: isBad, typ: typ, names: f.Features, row: make([]float32, len(f.Features)), max: map[string]float64{}}
		mx := make([]float32, len(f.Detectors))
		if err := f.FrameRow(fr, pt.row, mx); err != nil {
			t.Fatal(err)
		}
		for k, d := range f.Detectors {
			pt.max[d] = float64(mx[k])
		}
		out = append(out, pt)
	}
	for i := 0; i < nGood; i++ {
		add(false, "", i)
	}
	for _, typ := range sortedBundles(bad) {
		for i := 0; i < bad[typ]; i++ {
			add(true, typ, i)
		}
	}
	return out
}

// publishParts records parts as production results decided at `at` (one
// millisecond apart), scored by forest with score(i), and labels the first
// `label` of them (all when < 0) as a person would. It returns the IDs.
func publishParts(t *testing.T, st *history.Store, parts []part, at time.Time, forest string, score func(p part) float64, label int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for i, p := range parts {
		ts := at.Add(time.Duration(i) * time.Millisecond)
		s := score(p)
		r := result.Result{ID: result.NewID(ts), Station: "st1", Seq: uint64(i), DecidedAt: ts, CapturedAt: ts,
			Verdict: result.VerdictPass, Score: &s, Threshold: 0, Bundle: forest, MapMax: p.max}
		for j, n := range p.names {
			r.Features = append(r.Features, result.Feature{Name: n, Value: float64(p.row[j])})
		}
		if err := st.Publish(ctx, r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if label >= 0 && i >= label {
			break
		}
		l := history.Label{Label: "good", Who: "qa"}
		if parts[i].bad {
			l = history.Label{Label: "bad", DefectType: parts[i].typ, Who: "qa"}
		}
		if _, err := st.Label(ctx, id, l); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestFitHistory: `segad fit --history` trains from the labelled results'
// recorded feature rows of a real SQLite history (no images), refuses too
// few labelled parts saying how many there are and are needed, refuses a
// configuration whose feature order differs, honours --since, and records
// the source in the manifest; the bundle loads in the line's model. Then
// `segad threshold suggest --history` on the same database gives the same
// table as fit.SuggestFromLabelled on the same scores.
func TestFitHistory(t *testing.T) {
	dir := t.TempDir()
	imgs := filepath.Join(dir, "img")
	bundleDir := filepath.Join(dir, "bundle")
	cfgPath := fitHistoryConfig(t, dir, "ms", bundleDir)
	// Recent parts (a day ago) and old ones (ten days ago).
	recent := realParts(t, cfgPath, filepath.Join(imgs, "recent"), 12, map[string]int{"blob": 4, "spot": 3})
	old := realParts(t, cfgPath, filepath.Join(imgs, "old"), 4, map[string]int{"blob": 3})
	dbPath := filepath.Join(dir, "history.db")
	st, err := history.Open(context.Background(), history.Config{Path: dbPath})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	maxScore := func(p part) float64 { return p.max["ms"] }
	// First only the first 3 recent results (good parts) are labelled:
	// too few.
	recentIDs := publishParts(t, st, recent, now.Add(-24*time.Hour), "sha256:0ld", maxScore, 3)
	publishParts(t, st, old, now.Add(-240*time.Hour), "sha256:0ld", maxScore, -1)
	out := filepath.Join(dir, "out")
	_, err = execFit(t, "--config", cfgPath, "--history", dbPath, "--since", "7d", "-o", out, "-q")
	if err == nil || !strings.Contains(err.Error(), "holds 3 good and 0 bad labelled") || !strings.Contains(err.Error(), "at least 10 good and 5 bad") {
		t.Fatalf("too few labels: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused fit wrote %s", out)
	}
	ctx := context.Background()
	for i, id := range recentIDs[3:] {
		p := recent[3+i]
		l := history.Label{Label: "good", Who: "qa"}
		if p.bad {
			l = history.Label{Label: "bad", DefectType: p.typ, Who: "qa"}
		}
		if _, err := st.Label(ctx, id, l); err != nil {
			t.Fatal(err)
		}
	}
	// A golden-sample challenge labelled bad never trains.
	s := 9.0
	g := result.Result{ID: result.NewID(now.Add(-time.Hour)), DecidedAt: now.Add(-time.Hour), Verdict: result.VerdictFail, Score: &s, Bundle: "sha256:0ld"}
	for j, n := range recent[0].names {
		g.Features = append(g.Features, result.Feature{Name: n, Value: float64(recent[0].row[j])})
	}
	if err := st.PublishWith(ctx, g, history.Extra{Kind: history.KindGolden}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Label(ctx, g.ID, history.Label{Label: "bad", DefectType: "golden", Who: "qa"}); err != nil {
		t.Fatal(err)
	}

	// All of the history: 16 good, 10 bad; the --since 7d subset: 12, 7.
	sumOut, err := execFit(t, "--config", cfgPath, "--history", dbPath, "-o", bundleDir, "-q")
	if err != nil {
		t.Fatalf("fit --history: %v\n%s", err, sumOut)
	}
	b, err := bundle.Load(bundleDir)
	if err != nil {
		t.Fatal(err)
	}
	h := b.Manifest.History
	if h == nil || h.Path != dbPath || h.Since != nil || h.Good != 16 || h.Bad != 10 || h.BadTypes["blob"] != 7 || h.BadTypes["spot"] != 3 ||
		h.Bundles["sha256:0ld"] != 26 || h.Oldest.After(now.Add(-239*time.Hour)) {
		t.Fatalf("manifest history %+v", h)
	}
	if d := b.Manifest.Data; d.Good != 16 || d.Bad != 10 || d.BadTypes["golden"] != 0 {
		t.Errorf("manifest data %+v", d)
	}
	if th := b.Manifest.Threshold; th.Calibration != fit.CalibrationOutOfFold || th.Folds != 5 || th.Good != 16 || th.Bad != 10 {
		t.Errorf("calibration %s, %d folds, %d good %d bad", th.Calibration, th.Folds, th.Good, th.Bad)
	}
	if !reflect.DeepEqual(b.Manifest.Features, recent[0].names) {
		t.Errorf("features %v", b.Manifest.Features)
	}
	var sum fit.Summary
	if err := json.Unmarshal([]byte(sumOut), &sum); err != nil || sum.History == nil || sum.History.Good != 16 {
		t.Errorf("summary %v: %s", err, sumOut)
	}

	if _, err := execFit(t, "--config", cfgPath, "--history", dbPath, "--since", "7d", "-o", filepath.Join(dir, "recent"), "-q"); err != nil {
		t.Fatal(err)
	}
	rb, err := bundle.Load(filepath.Join(dir, "recent"))
	if err != nil {
		t.Fatal(err)
	}
	if h := rb.Manifest.History; h == nil || h.Since == nil || now.Sub(*h.Since) < 7*24*time.Hour-time.Hour || h.Good != 12 || h.Bad != 7 {
		t.Fatalf("--since 7d: %+v", h)
	}

	// History and images together: the old parts' images and the recent
	// labelled results.
	if _, err := execFit(t, "--config", cfgPath, "--good", filepath.Join(imgs, "old", "good"), "--bad", filepath.Join(imgs, "old", "bad"),
		"--history", dbPath, "--since", "7d", "-o", filepath.Join(dir, "mixed"), "-q"); err != nil {
		t.Fatal(err)
	}
	mb, err := bundle.Load(filepath.Join(dir, "mixed"))
	if err != nil {
		t.Fatal(err)
	}
	if h, d := mb.Manifest.History, mb.Manifest.Data; h == nil || h.Good != 12 || h.Bad != 7 || d.Good != 16 || d.Bad != 10 || d.BadTypes["blob"] != 7 {
		t.Fatalf("images and history: history %+v, data %+v", h, d)
	}
	// --since without --history is refused.
	if _, err := execFit(t, "--config", cfgPath, "--good", filepath.Join(imgs, "old", "good"), "--since", "7d", "-o", filepath.Join(dir, "x"), "-q"); err == nil ||
		!strings.Contains(err.Error(), "go with --history") {
		t.Errorf("--since alone: %v", err)
	}

	// The bundle loads in the line's model (detectors, mask and features
	// verified), which scores the parts: the line's new results.
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := model.Build(cfg, model.Options{})
	if err != nil {
		t.Fatalf("the line refuses the bundle: %v", err)
	}
	margin := func(p part) float64 { return m.Scorer.Margin(p.row) }
	fresh := realParts(t, cfgPath, filepath.Join(imgs, "fresh"), 10, map[string]int{"blob": 4, "spot": 2})
	forest := m.ForestHash
	m.Close()
	publishParts(t, st, fresh, now.Add(-2*time.Hour), forest, margin, -1)

	// A configuration with another feature order is refused, naming the
	// first difference.
	other := fitHistoryConfig(t, dir, "ms2", filepath.Join(dir, "b3"))
	if _, err := execFit(t, "--config", other, "--history", dbPath, "-o", filepath.Join(dir, "b3"), "-q"); err == nil ||
		!strings.Contains(err.Error(), fmt.Sprintf("feature 0 is %q in the history", recent[0].names[0])) || !strings.Contains(err.Error(), "in the configuration") {
		t.Fatalf("other feature order: %v", err)
	}

	// threshold suggest --history --bundle: the bundle's forest's scores
	// only, the same table as fit.SuggestFromLabelled on them.
	suggest := func(args ...string) thresholdSuggestion {
		t.Helper()
		o, err := runThresholdCmd(t, append([]string{"suggest", "--history", dbPath}, args...)...)
		if err != nil {
			t.Fatalf("suggest %v: %v", args, err)
		}
		var res thresholdSuggestion
		if err := json.Unmarshal([]byte(o), &res); err != nil {
			t.Fatalf("%v: %s", err, o)
		}
		return res
	}
	table := func(ps []part, score func(part) float64, budget bundle.Budget) *fit.Table {
		t.Helper()
		var sc []float64
		var bad []bool
		for _, p := range ps {
			sc, bad = append(sc, score(p)), append(bad, p.bad)
		}
		tb, err := fit.SuggestFromLabelled(sc, bad, budget)
		if err != nil {
			t.Fatal(err)
		}
		return tb
	}
	same := func(what string, got, want *fit.Table) {
		t.Helper()
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if string(gj) != string(wj) {
			t.Errorf("%s: table\n%s\nwant\n%s", what, gj, wj)
		}
	}
	res := suggest("--bundle", bundleDir, "--since", "7d")
	if res.Forest != forest || res.LeftOut != 19 || res.Good != 10 || res.Bad != 6 || res.Current == nil {
		t.Errorf("--bundle: forest %s (want %s), left out %d, %d good %d bad", res.Forest, forest, res.LeftOut, res.Good, res.Bad)
	}
	same("--bundle --since 7d", res.Table, table(fresh, margin, *b.Manifest.Threshold.Budget))
	// Without --bundle: every labelled score since 7d (both forests, a
	// warning), recall 0.95 by default.
	r95 := bundle.Budget{Kind: bundle.BudgetRecall, Value: 0.95}
	res = suggest("--since", "7d")
	var sc []float64
	var bad []bool
	for _, p := range recent {
		sc, bad = append(sc, maxScore(p)), append(bad, p.bad)
	}
	for _, p := range fresh {
		sc, bad = append(sc, margin(p)), append(bad, p.bad)
	}
	want, err := fit.SuggestFromLabelled(sc, bad, r95)
	if err != nil {
		t.Fatal(err)
	}
	want.Warnings = append(want.Warnings, "the labelled results were scored by 2 forests (see bundles): their scores are on different scales; give --bundle to keep only one forest's")
	same("--since 7d", res.Table, want)
	if res.Bundles[forest] != 16 || res.Bundles["sha256:0ld"] != 19 {
		t.Errorf("bundles %v", res.Bundles)
	}
	// --since filters: all of it adds the old parts.
	if res = suggest(); res.Good != 26 || res.Bad != 16 {
		t.Errorf("all of the history: %d good %d bad", res.Good, res.Bad)
	}
	// A bundle whose forest scored none of them: refused, naming the
	// forests that did.
	if _, err := runThresholdCmd(t, "suggest", "--history", dbPath, "--bundle", filepath.Join(dir, "recent")); err == nil ||
		!strings.Contains(err.Error(), "none of the 42 labelled results was scored by the bundle's forest") || !strings.Contains(err.Error(), forest+" (16)") {
		t.Errorf("foreign bundle: %v", err)
	}
}
