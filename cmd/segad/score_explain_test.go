package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/npy"
	"github.com/segad-edge/segad-edge/result"
	"github.com/segad-edge/segad-edge/segad"
)

// xgbContribs runs python3-xgboost's predict(pred_contribs=True), exact or
// approx_contribs, on one row (nil = NaN) of an XGBoost JSON model.
const xgbContribs = `
import json, sys
import numpy as np, xgboost as xgb
model, rows = sys.argv[1], json.load(sys.stdin)
b = xgb.Booster(model_file=model)
d = xgb.DMatrix(np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float32), missing=np.nan)
print(json.dumps({"exact": b.predict(d, pred_contribs=True).tolist(),
                  "approx": b.predict(d, pred_contribs=True, approx_contribs=True).tolist(),
                  "margin": b.predict(d, output_margin=True).tolist()}))
`

// TestScoreExplain: `segad score --explain exact|path` prints the result
// with its explanation, equal to xgboost's pred_contribs (exact) and
// approx_contribs (path) within 1e-4 on the row it scored, with the
// committed golden forest (brf/testdata/xgb_logitraw.json, 7 segments x 1
// detector + max, as the VAD template); bias + contributions = score.
// Without --explain there is none; an unknown method is an error.
func TestScoreExplain(t *testing.T) {
	dir := t.TempDir()
	mask := segad.VADTemplate(64, 64, segad.DefaultVADGeometry())
	maskPath := filepath.Join(dir, "mask.png")
	if err := mask.WritePNG(maskPath); err != nil {
		t.Fatal(err)
	}
	if err := segad.WriteNames(segad.SidecarPath(maskPath), mask.Names); err != nil {
		t.Fatal(err)
	}
	// Hot on the wires, constant on the background (NaN skew/kurtosis).
	m := make([]float32, 64*64)
	for i := range m {
		switch mask.Labels[i] {
		case 0:
		case 4:
			m[i] = 2 + float32(i%13)/3
		default:
			m[i] = float32(i%17) / 17
		}
	}
	mapPath := filepath.Join(dir, "map.npy")
	if err := npy.WriteFloat32(mapPath, []int{64, 64}, m); err != nil {
		t.Fatal(err)
	}
	modelPath := filepath.Join(testenv.RepoRoot(t), "brf", "testdata", "xgb_logitraw.json")
	opts := scoreOptions{mask: maskPath, model: modelPath, maps: []string{"wires=" + mapPath}, threshold: 0}

	run := func(o scoreOptions) result.Result {
		t.Helper()
		var out bytes.Buffer
		if err := runScore(&out, o); err != nil {
			t.Fatal(err)
		}
		var r result.Result
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out.String())
		}
		return r
	}
	if r := run(opts); r.Explain != nil {
		t.Fatalf("explain without --explain: %+v", r.Explain)
	}
	byMethod := map[string]result.Result{}
	for _, method := range []string{"exact", "path"} {
		o := opts
		o.explain = method
		byMethod[method] = run(o)
	}
	r := byMethod["exact"]
	if r.Score == nil || r.Explain == nil || r.Explain.Method != "exact" || byMethod["path"].Explain.Method != "path" {
		t.Fatalf("score %v explain %+v", r.Score, r.Explain)
	}
	// The row as printed (float32 values, NaN as null), in xgboost.
	row := make([]*float64, len(r.Features))
	for i, f := range r.Features {
		if !math.IsNaN(f.Value) {
			v := f.Value
			row[i] = &v
		}
	}
	if row[1] != nil {
		t.Fatalf("background skew %v: the row should have NaN features", *row[1])
	}
	in, _ := json.Marshal([][]*float64{row})
	cmd := exec.Command(testenv.Python(), "-c", xgbContribs, modelPath)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("python3-xgboost for the reference contributions: %v", err)
	}
	var ref struct {
		Exact, Approx [][]float64
		Margin        []float64
	}
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	if math.Abs(*r.Score-ref.Margin[0]) > 1e-5 {
		t.Fatalf("score %v, xgboost margin %v", *r.Score, ref.Margin[0])
	}
	n := len(r.Features)
	for method, want := range map[string][]float64{"exact": ref.Exact[0], "path": ref.Approx[0]} {
		x := byMethod[method].Explain
		tol := func(w float64) float64 { return 1e-4 * max(1, math.Abs(w)) }
		if math.Abs(x.Bias-want[n]) > tol(want[n]) {
			t.Errorf("%s: bias %v, xgboost %v", method, x.Bias, want[n])
		}
		got := map[string]float64{}
		for _, c := range x.Features {
			got[c.Name] = c.Value
		}
		seg := map[string]float64{}
		nonzero := 0
		for j, f := range r.Features {
			if math.Abs(got[f.Name]-want[j]) > tol(want[j]) {
				t.Errorf("%s: %s = %v, xgboost %v", method, f.Name, got[f.Name], want[j])
			}
			if want[j] != 0 {
				nonzero++
			}
			s := brf.WholeMap
			if p := strings.Split(f.Name, "."); len(p) == 3 {
				s = p[0]
			}
			seg[s] += want[j]
		}
		if nonzero < 5 {
			t.Errorf("%s: only %d features contribute: a weak check", method, nonzero)
		}
		sum := x.Bias
		for _, c := range x.Segments {
			sum += c.Value
			if math.Abs(c.Value-seg[c.Name]) > 1e-4 {
				t.Errorf("%s: segment %s = %v, xgboost's features sum to %v", method, c.Name, c.Value, seg[c.Name])
			}
		}
		if math.Abs(sum-*r.Score) > 1e-4 {
			t.Errorf("%s: bias + segments = %v, score %v", method, sum, *r.Score)
		}
		t.Logf("%s: top segment %s %+.3f, bias %.3f, score %.3f", method, x.Segments[0].Name, x.Segments[0].Value, x.Bias, *r.Score)
	}

	// An unknown method is an error.
	o := opts
	o.explain = "shapley-ish"
	if err := runScore(&bytes.Buffer{}, o); err == nil || !strings.Contains(err.Error(), "--explain") {
		t.Fatalf("unknown method: %v", err)
	}
}
