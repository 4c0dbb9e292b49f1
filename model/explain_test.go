package model

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/brf/xgboost"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/result"
	"github.com/segad-edge/segad-edge/segad"
)

// mapDetectors is K detectors without ONNX Runtime whose maps vary by
// pixel and detector (and by run), so every segment has its own statistics.
type mapDetectors struct {
	size, k int
	run     int
}

func (d *mapDetectors) Run([]infer.Image) (*infer.SetOutput, error) {
	d.run++
	rng := rand.New(rand.NewPCG(uint64(d.run), 3))
	out := &infer.SetOutput{}
	for k := 0; k < d.k; k++ {
		m := make([]float32, d.size*d.size)
		for i := range m {
			x, y := i%d.size, i/d.size
			m[i] = float32(rng.Float64()*0.2) + float32((x*(k+1)+y)%11)/11
		}
		out.Detectors = append(out.Detectors, infer.Output{Map: m})
	}
	return out, nil
}
func (d *mapDetectors) RunEach([]infer.Image) error { return nil }
func (d *mapDetectors) InputSizes() []infer.Size {
	return []infer.Size{{Width: d.size, Height: d.size}}
}
func (d *mapDetectors) Warmup(int) error { return nil }
func (d *mapDetectors) Close() error     { return nil }

// explainedModel is a model of k fake detectors on the VAD template whose
// forest is a real XGBoost forest (testenv.TrainForest) loaded as an
// explainer.
func explainedModel(t *testing.T, size, k int) (*Model, *brf.Explainer) {
	t.Helper()
	mask := segad.VADTemplate(size, size, segad.DefaultVADGeometry())
	names := []string{"wires", "stain", "tone"}[:k]
	ex, err := segad.NewExtractor(mask, names, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "brf.json")
	testenv.TrainForest(t, path, ex.NumFeatures())
	e, err := brf.LoadExplainer(path)
	if err != nil {
		t.Fatal(err)
	}
	return New(&mapDetectors{size: size, k: k}, names, mask, ex, e), e
}

func sumOf(t []result.Contribution) float64 {
	s := 0.0
	for _, c := range t {
		s += c.Value
	}
	return s
}

// TestInspectExplains: a daemon-free inspection with a real forest carries
// its path attribution: bias + contributions = score (each table), the
// segment and detector sums are the sums of their features, the tables
// are sorted by |value| and equal brf's own on the same row; the JSON
// round-trips; a model whose forest is not an explainer carries none.
func TestInspectExplains(t *testing.T) {
	m, e := explainedModel(t, 32, 2)
	defer m.Close()
	if !m.Explainable() {
		t.Fatal("an XGBoost JSON forest is not explainable")
	}
	insp := NewInspector(m, Settings{Threshold: 0, Warn: math.NaN(), PublishFeatures: true})
	for frame := 0; frame < 5; frame++ {
		f := grayFrame(32)
		r := insp.Inspect(f, false).Result
		f.Close()
		x := r.Explain
		if r.Score == nil || x == nil {
			t.Fatalf("frame %d: score %v explain %v (%s)", frame, r.Score, x, r.Reason)
		}
		if x.Method != "path" || len(x.Segments) != 8 || len(x.Detectors) != 2 || len(x.Features) != len(r.Features) {
			t.Fatalf("frame %d: method %s, %d segments, %d detectors, %d features", frame, x.Method, len(x.Segments), len(x.Detectors), len(x.Features))
		}
		score := *r.Score
		for name, table := range map[string][]result.Contribution{"segments": x.Segments, "detectors": x.Detectors, "features": x.Features} {
			if got := x.Bias + sumOf(table); math.Abs(got-score) > 1e-4 {
				t.Errorf("frame %d: bias + %s = %v, score %v", frame, name, got, score)
			}
			for i := 1; i < len(table); i++ {
				if math.Abs(table[i].Value) > math.Abs(table[i-1].Value) {
					t.Errorf("frame %d: %s not sorted by |value|: %v", frame, name, table)
				}
			}
		}
		// Segment and detector sums from the feature table.
		seg, det := map[string]float64{}, map[string]float64{}
		for _, c := range x.Features {
			p := strings.Split(c.Name, ".")
			if len(p) == 3 {
				seg[p[0]] += c.Value
				det[p[1]] += c.Value
			} else {
				seg[brf.WholeMap] += c.Value
				det[p[0]] += c.Value
			}
		}
		for _, c := range x.Segments {
			if math.Abs(seg[c.Name]-c.Value) > 1e-9 {
				t.Errorf("frame %d: segment %s = %v, its features sum to %v", frame, c.Name, c.Value, seg[c.Name])
			}
		}
		for _, c := range x.Detectors {
			if math.Abs(det[c.Name]-c.Value) > 1e-9 {
				t.Errorf("frame %d: detector %s = %v, its features sum to %v", frame, c.Name, c.Value, det[c.Name])
			}
		}
		// The same as brf's path contributions on the row scored.
		row := make([]float32, len(r.Features))
		for i, ft := range r.Features {
			row[i] = float32(ft.Value)
		}
		want := make([]float64, len(row)+1)
		if err := e.PathContribs(row, want); err != nil {
			t.Fatal(err)
		}
		byName := map[string]float64{}
		for _, c := range x.Features {
			byName[c.Name] = c.Value
		}
		for i, ft := range r.Features {
			if byName[ft.Name] != want[i] {
				t.Errorf("frame %d: feature %s contribution %v, brf %v", frame, ft.Name, byName[ft.Name], want[i])
			}
		}
		if x.Bias != e.Bias() || math.Abs(e.Margin(row)-score) > 1e-12 {
			t.Errorf("frame %d: bias %v (brf %v), score %v (brf %v)", frame, x.Bias, e.Bias(), score, e.Margin(row))
		}
		// JSON round trip.
		js, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back result.Result
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatal(err)
		}
		if back.Explain == nil || back.Explain.Bias != x.Bias || len(back.Explain.Features) != len(x.Features) || back.Explain.Segments[0] != x.Segments[0] {
			t.Fatalf("frame %d: explain after a JSON round trip: %+v", frame, back.Explain)
		}
	}

	// The same forest as a plain scorer (its embedded Model): no explanation.
	plain := New(&mapDetectors{size: 32, k: 2}, m.Names, m.Mask, m.Extractor, e.Model)
	defer plain.Close()
	f := grayFrame(32)
	defer f.Close()
	if r := NewInspector(plain, Settings{Threshold: 0, Warn: math.NaN()}).Inspect(f, false).Result; r.Explain != nil || r.Score == nil || plain.Explainable() {
		t.Fatalf("plain forest: explain %+v, score %v", r.Explain, r.Score)
	}
	js, _ := json.Marshal(result.Result{})
	if strings.Contains(string(js), "explain") {
		t.Fatalf("a result without an explanation has one in JSON: %s", js)
	}
}

// TestLoadForestExplainer: Build's loader keeps one XGBoost JSON forest as
// scorer and explainer; a LightGBM forest scores without explanations and
// without an error; ExplainRow then says why it cannot.
func TestLoadForestExplainer(t *testing.T) {
	dir := t.TempDir()
	m := fakeModel(t, &fakeDetectors{size: 32}, 0)
	defer m.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := &config.Config{}
	cfg.SegAD.Model = filepath.Join(dir, "brf.json")
	testenv.TrainForest(t, cfg.SegAD.Model, m.Extractor.NumFeatures())
	if _, err := m.loadForest(cfg, nil, log); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Scorer.(*brf.Explainer); !ok || !m.Explainable() {
		t.Fatalf("XGBoost JSON: scorer %T, explainable %v", m.Scorer, m.Explainable())
	}

	n := m.Extractor.NumFeatures()
	fn := make([]string, n)
	infos := make([]string, n)
	for i := range fn {
		fn[i], infos[i] = "f"+string(rune('a'+i%26))+string(rune('a'+i/26)), "[0:1]"
	}
	lg := strings.NewReplacer("max_feature_idx=2", "max_feature_idx="+itoa(n-1),
		"feature_names=a b c", "feature_names="+strings.Join(fn, " "),
		"feature_infos=[0:1] [-1:1] [0:2]", "feature_infos="+strings.Join(infos, " ")).Replace(lgModel)
	cfg.SegAD.Model = filepath.Join(dir, "model.txt")
	if err := os.WriteFile(cfg.SegAD.Model, []byte(lg), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.loadForest(cfg, nil, log); err != nil {
		t.Fatalf("LightGBM: %v", err)
	}
	if m.Scorer == nil || m.Explainable() {
		t.Fatalf("LightGBM: scorer %T, explainable %v", m.Scorer, m.Explainable())
	}
	f := grayFrame(32)
	defer f.Close()
	r := NewInspector(m, Settings{Threshold: 10, Warn: math.NaN(), PublishFeatures: true}).Inspect(f, false).Result
	if r.Verdict != result.VerdictPass || r.Explain != nil {
		t.Fatalf("LightGBM: verdict %s (%s), explain %+v", r.Verdict, r.Reason, r.Explain)
	}
	if _, err := m.ExplainRow(r.Features, "exact"); !errors.Is(err, brf.ErrNotExplainable) {
		t.Fatalf("ExplainRow on LightGBM: %v", err)
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// lgModel is brf's hand-written two-tree LightGBM text model; its feature
// count is set by the test.
var lgModel = func() string {
	b, err := os.ReadFile("../brf/testdata/lightgbm_small.txt")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// goldenContribs is brf/testdata/explain_golden.json's per-model part.
type goldenContribs struct {
	RowIndices []int `json:"row_indices"`
	Models     map[string]struct {
		Exact  [][]float64 `json:"exact"`
		Approx [][]float64 `json:"approx"`
	} `json:"models"`
}

// TestExplainRowGolden: ExplainRow on the committed golden rows (as a
// history row: SegAD's names, NaN missing) with the committed 200-tree
// forest equals xgboost's pred_contribs (exact) and approx_contribs (path)
// within 1e-4, in every table; mismatched rows are refused by name.
func TestExplainRowGolden(t *testing.T) {
	root := testenv.RepoRoot(t)
	var g goldenContribs
	readJSON(t, filepath.Join(root, "brf", "testdata", "explain_golden.json"), &g)
	var rows struct {
		Rows [][]*float64 `json:"rows"`
	}
	readJSON(t, filepath.Join(root, "brf", "testdata", "golden_rows.json"), &rows)
	e, err := brf.LoadExplainer(filepath.Join(root, "brf", "testdata", "xgb_logitraw.json"))
	if err != nil {
		t.Fatal(err)
	}
	mask := segad.VADTemplate(32, 32, segad.DefaultVADGeometry())
	ex, err := segad.NewExtractor(mask, []string{"wires"}, "")
	if err != nil {
		t.Fatal(err)
	}
	m := New(&mapDetectors{size: 32, k: 1}, []string{"wires"}, mask, ex, e)
	defer m.Close()
	names := ex.Names()
	want := g.Models["xgb_logitraw.json"]
	for k, ri := range g.RowIndices {
		feats := make([]result.Feature, len(names))
		for j, n := range names {
			feats[j] = result.Feature{Name: n, Value: math.NaN()}
			if v := rows.Rows[ri][j]; v != nil {
				feats[j].Value = *v
			}
		}
		for _, tc := range []struct {
			method string
			want   []float64
		}{{"exact", want.Exact[k]}, {"path", want.Approx[k]}, {"", want.Exact[k]}} {
			x, err := m.ExplainRow(feats, tc.method)
			if err != nil {
				t.Fatal(err)
			}
			if tc.method != "" && x.Method != tc.method {
				t.Fatalf("method %q, want %q", x.Method, tc.method)
			}
			tol := func(w float64) float64 { return 1e-4 * max(1, math.Abs(w)) }
			if math.Abs(x.Bias-tc.want[len(names)]) > tol(tc.want[len(names)]) {
				t.Errorf("row %d %s: bias %v, xgboost %v", ri, tc.method, x.Bias, tc.want[len(names)])
			}
			byName := map[string]float64{}
			for _, c := range x.Features {
				byName[c.Name] = c.Value
			}
			seg := map[string]float64{}
			for j, n := range names {
				if d := math.Abs(byName[n] - tc.want[j]); d > tol(tc.want[j]) {
					t.Errorf("row %d %s: %s = %v, xgboost %v", ri, tc.method, n, byName[n], tc.want[j])
				}
				s := brf.WholeMap
				if p := strings.Split(n, "."); len(p) == 3 {
					s = p[0]
				}
				seg[s] += tc.want[j]
			}
			for _, c := range x.Segments {
				if math.Abs(c.Value-seg[c.Name]) > 1e-4 {
					t.Errorf("row %d %s: segment %s = %v, xgboost's features sum to %v", ri, tc.method, c.Name, c.Value, seg[c.Name])
				}
			}
			row := make([]float32, len(feats))
			for j, f := range feats {
				row[j] = float32(f.Value)
			}
			if d := math.Abs(x.Bias + sumOf(x.Features) - e.Margin(row)); d > 1e-4 {
				t.Errorf("row %d %s: bias + contributions - margin = %v", ri, tc.method, d)
			}
		}
	}

	// Refused: other names, order, length, no row, unknown method.
	good := make([]result.Feature, len(names))
	for j, n := range names {
		good[j] = result.Feature{Name: n, Value: 0.5}
	}
	swapped := append([]result.Feature(nil), good...)
	swapped[0].Name, swapped[1].Name = swapped[1].Name, swapped[0].Name
	renamed := append([]result.Feature(nil), good...)
	renamed[3].Name = "lead.wires.mean"
	for name, tc := range map[string]struct {
		feats []result.Feature
		want  string
	}{
		"swapped":  {swapped, `feature 0 is "` + names[1] + `"`},
		"renamed":  {renamed, `"lead.wires.mean" in the row`},
		"short":    {good[:10], "it has 10 features, the model 29"},
		"long":     {append(append([]result.Feature(nil), good...), result.Feature{Name: "x.max"}), "30 features"},
		"no row":   {nil, "no feature row"},
		"a method": {good, "explanation method"},
	} {
		method := "exact"
		if name == "a method" {
			method = "shapley-ish"
		}
		_, err := m.ExplainRow(tc.feats, method)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (name != "a method" && !errors.Is(err, ErrFeatureMismatch)) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// BenchmarkScore costs the second stage (features, forest, verdict) of one
// 64x64 frame with the paper's 2000-tree BRF (200 parallel trees x 10
// rounds, trained here), with and without the explanation every frame
// carries; the difference is the explanation's cost. Run with -cpu 1:
//
//	go test ./model -run '^$' -bench Score -cpu 1
func BenchmarkScore(b *testing.B) {
	const size = 64
	mask := segad.VADTemplate(size, size, segad.DefaultVADGeometry())
	names := []string{"wires"}
	ex, err := segad.NewExtractor(mask, names, "")
	if err != nil {
		b.Fatal(err)
	}
	n := ex.NumFeatures()
	// Training rows: the features of generated frames, labelled by a
	// threshold on a few of them, so the trees split on many features.
	det := &mapDetectors{size: size, k: 1}
	const rows = 400
	x, y := make([]float32, rows*n), make([]float32, rows)
	for i := 0; i < rows; i++ {
		out, _ := det.Run(nil)
		mp := out.Detectors[0].Map
		for j := range mp {
			mp[j] *= float32(1 + (i%5)*(j%3))
		}
		if err := ex.Extract(x[i*n:(i+1)*n], [][]float32{mp}, 0); err != nil {
			b.Fatal(err)
		}
	}
	s := make([]float32, rows)
	for i := range s {
		s[i] = x[i*n] + x[i*n+5] + x[i*n+11]
	}
	med := slices.Clone(s)
	slices.Sort(med)
	for i := range y {
		if s[i] > med[rows/2] {
			y[i] = 1
		}
	}
	p := xgboost.DefaultParams()
	if p.ScalePosWeight, err = xgboost.ScalePosWeight(y); err != nil {
		b.Fatal(err)
	}
	js, err := xgboost.Train(x, rows, n, y, p, xgboost.DefaultRounds)
	if err != nil {
		b.Skipf("train the 2000-tree forest: %v", err)
	}
	e, err := brf.NewExplainer(js)
	if err != nil {
		b.Fatal(err)
	}
	// The parts on one row: the margin, brf's path contributions, and the
	// result's explanation (contributions, group sums, sorted tables).
	xp, err := newExplainer(e, ex.Names())
	if err != nil {
		b.Fatal(err)
	}
	row := x[:n]
	var sink float64
	b.Run("row/margin", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink += e.Margin(row)
		}
	})
	b.Run("row/path-contribs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = e.PathContribs(row, xp.contribs)
		}
	})
	b.Run("row/explanation", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink += xp.pathExplain(row).Bias
		}
	})
	_ = sink
	for _, tc := range []struct {
		name string
		sc   Scorer
	}{{"frame/explain=off", e.Model}, {"frame/explain=path", e}} {
		b.Run(tc.name, func(b *testing.B) {
			m := New(&mapDetectors{size: size, k: 1}, names, mask, ex, tc.sc)
			defer m.Close()
			insp := NewInspector(m, Settings{Threshold: 0, Warn: math.NaN()})
			f := &capture.Frame{Source: "bench", Image: grayFrame(size).Image, Color: capture.ColorBGR}
			defer f.Close()
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				in := insp.Infer(f)
				b.StartTimer()
				if r := insp.Score(in, false).Result; (r.Explain != nil) != (tc.sc == Scorer(e)) {
					b.Fatalf("explain %v", r.Explain)
				}
			}
		})
	}
}
