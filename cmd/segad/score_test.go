package main

import (
	"bytes"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/result"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/npy"
	"github.com/segad-edge/segad-edge/segad"
)

// TestScoreCommand: `segad score` prints the daemon's result JSON with the
// features in the model's order (NaN as null), the forest's margin and the
// verdict at the threshold; a map with a NaN pixel fails closed with a
// reason; bad arguments are errors.
func TestScoreCommand(t *testing.T) {
	dir := t.TempDir()
	mask := segad.VADTemplate(64, 64, segad.DefaultVADGeometry())
	maskPath := filepath.Join(dir, "mask.png")
	if err := mask.WritePNG(maskPath); err != nil {
		t.Fatal(err)
	}
	if err := segad.WriteNames(segad.SidecarPath(maskPath), mask.Names); err != nil {
		t.Fatal(err)
	}
	// A map that is constant on the background (NaN skew/kurtosis there).
	m := make([]float32, 64*64)
	for i := range m {
		if mask.Labels[i] != 0 {
			m[i] = float32(i%17) / 17
		}
	}
	mapPath := filepath.Join(dir, "map.npy")
	if err := npy.WriteFloat32(mapPath, []int{64, 64}, m); err != nil {
		t.Fatal(err)
	}
	modelPath := filepath.Join(dir, "brf.json")
	testenv.TrainForest(t, modelPath, 29)
	model, err := brf.Load(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := segad.NewExtractor(mask, []string{"det"}, "")
	if err != nil {
		t.Fatal(err)
	}
	row := make([]float32, ex.NumFeatures())
	if err := ex.Extract(row, [][]float32{m}, 0); err != nil {
		t.Fatal(err)
	}
	want := model.Margin(row)

	for _, tc := range []struct {
		thr     float64
		verdict string
	}{{want - 0.5, "fail"}, {want + 0.5, "pass"}, {want, "fail"}} {
		var out bytes.Buffer
		err := runScore(&out, scoreOptions{mask: maskPath, model: modelPath, maps: []string{"det=" + mapPath}, threshold: tc.thr})
		if err != nil {
			t.Fatal(err)
		}
		var got result.Result
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out.String())
		}
		if got.Score == nil || math.Abs(*got.Score-want) > 1e-9 || string(got.Verdict) != tc.verdict || got.Threshold != tc.thr {
			t.Errorf("threshold %v: score %v verdict %s, want %v %s", tc.thr, got.Score, got.Verdict, want, tc.verdict)
		}
		var order []string
		for _, f := range got.Features {
			order = append(order, f.Name)
		}
		if strings.Join(order, ",") != strings.Join(ex.Names(), ",") {
			t.Fatalf("feature order %v, want %v", order, ex.Names())
		}
		for i, f := range got.Features {
			if math.IsNaN(float64(row[i])) != math.IsNaN(f.Value) || (!math.IsNaN(f.Value) && float32(f.Value) != row[i]) {
				t.Errorf("feature %s = %v, want %v", f.Name, f.Value, row[i])
			}
		}
		if !strings.Contains(out.String(), `{"name":"background.det.skew","value":null}`) {
			t.Errorf("constant background: skew should be null (NaN)")
		}
	}

	// NaN in the map: fail closed (verdict error, as on the line), exit
	// status 0, reason names the detector.
	m[100] = float32(math.NaN())
	nanPath := filepath.Join(dir, "nan.npy")
	if err := npy.WriteFloat32(nanPath, []int{64, 64}, m); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runScore(&out, scoreOptions{mask: maskPath, model: modelPath, maps: []string{"det=" + nanPath}, threshold: 1e9}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"verdict":"error"`) || !strings.Contains(out.String(), `"score":null`) || !strings.Contains(out.String(), "det") {
		t.Errorf("NaN map: %s", out.String())
	}

	// Bad arguments.
	for name, o := range map[string]scoreOptions{
		"map without name":  {mask: maskPath, model: modelPath, maps: []string{mapPath}},
		"missing map":       {mask: maskPath, model: modelPath, maps: []string{"det=" + filepath.Join(dir, "nope.npy")}},
		"wrong model width": {mask: maskPath, model: modelPath, maps: []string{"a=" + mapPath, "b=" + mapPath}},
		"not a model":       {mask: maskPath, model: mapPath, maps: []string{"det=" + mapPath}},
	} {
		if err := runScore(&bytes.Buffer{}, o); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}
