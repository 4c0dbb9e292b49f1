package brf

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tinyTree: x0 < 0.1000000025 (a float32 0.1000000015 after parsing) goes
// left to -1, else right to 2; NaN goes left.
const tinyTree = `{"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0],` +
	`"split_conditions":[0.1000000025,-1,2],"default_left":[1,0,0],"split_type":[0,0,0],"categories":[]}`

// modelJSON builds a minimal XGBoost JSON model; r replaces placeholders.
func modelJSON(r ...string) []byte {
	s := `{"learner":{"gradient_booster":{"model":{"gbtree_model_param":{"num_parallel_tree":"1","num_trees":"2"},` +
		`"tree_info":[0,0],"trees":[TREE,TREE2]},"name":"BOOSTER"},` +
		`"learner_model_param":{"base_score":"BASE","num_class":"0","num_feature":"NF","num_target":"1"},` +
		`"objective":{"name":"OBJ"}},"version":[1,7,4]}`
	def := map[string]string{"TREE2": `{"left_children":[-1],"right_children":[-1],"split_indices":[0],"split_conditions":[0.25],"default_left":[0]}`,
		"TREE": tinyTree, "BOOSTER": "gbtree", "BASE": "5E-1", "NF": "3", "OBJ": "binary:logitraw"}
	for i := 0; i+1 < len(r); i += 2 {
		def[r[i]] = r[i+1]
	}
	for _, k := range []string{"TREE2", "TREE", "BOOSTER", "BASE", "NF", "OBJ"} {
		s = strings.ReplaceAll(s, k, def[k])
	}
	return []byte(s)
}

// f32sum adds in float32, left to right, as XGBoost accumulates a margin.
func f32sum(v ...float32) float32 {
	var s float32
	for _, x := range v {
		s += x
	}
	return s
}

func TestTinyModelSemantics(t *testing.T) {
	nan := float32(math.NaN())
	logit03 := float32(-math.Log(1/0.3 - 1))
	tests := []struct {
		name string
		json []byte
		row  []float32
		want float32
	}{
		{"left", modelJSON(), []float32{0.05, 0, 0}, f32sum(0.5, -1, 0.25)},
		// Equal to the float32 threshold goes right; a float64 comparison
		// against 0.1000000025 would wrongly go left.
		{"float32 equality goes right", modelJSON(), []float32{0.1000000015, 0, 0}, f32sum(0.5, 2, 0.25)},
		{"NaN default left", modelJSON(), []float32{nan, 0, 0}, f32sum(0.5, -1, 0.25)},
		{"NaN default right", modelJSON("TREE", strings.Replace(tinyTree, `"default_left":[1,`, `"default_left":[0,`, 1)), []float32{nan, 0, 0}, f32sum(0.5, 2, 0.25)},
		{"default_left as booleans", modelJSON("TREE", strings.Replace(tinyTree, `"default_left":[1,0,0]`, `"default_left":[true,false,false]`, 1)), []float32{nan, 0, 0}, f32sum(0.5, -1, 0.25)},
		{"+Inf goes right", modelJSON(), []float32{float32(math.Inf(1)), 0, 0}, f32sum(0.5, 2, 0.25)},
		{"base_score vector form (3.x)", modelJSON("BASE", "[4.775E-1]"), []float32{0, 0, 0}, f32sum(0.4775, -1, 0.25)},
		{"base_score plain", modelJSON("BASE", "0.125"), []float32{0, 0, 0}, f32sum(0.125, -1, 0.25)},
		{"logistic adds logit(base_score)", modelJSON("OBJ", "binary:logistic", "BASE", "3E-1"), []float32{0, 0, 0}, f32sum(logit03, -1, 0.25)},
		{"longer row is fine", modelJSON(), []float32{5, 0, 0, 9}, f32sum(0.5, 2, 0.25)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := LoadBytes(tc.json)
			if err != nil {
				t.Fatal(err)
			}
			// float32 sums in tree order, as XGBoost.
			if got := m.Margin(tc.row); float32(got) != tc.want {
				t.Errorf("Margin = %v, want %v", got, tc.want)
			}
		})
	}
	m, _ := LoadBytes(modelJSON())
	if got := m.Margin([]float32{0, 0}); !math.IsNaN(got) {
		t.Errorf("short row: Margin = %v, want NaN (fail closed)", got)
	}
}

func TestLoadRejects(t *testing.T) {
	tree := func(old, new string) []byte { return modelJSON("TREE", strings.Replace(tinyTree, old, new, 1)) }
	tests := []struct {
		name string
		data []byte
		want string // substring of the error
	}{
		{"empty", nil, "empty"},
		{"xgboost binary", []byte("binf\x00\x00\x00?\x05\x00\x00\x00"), "re-save it as JSON"},
		{"xgboost base64 binary", []byte("bs64AAAA"), "re-save it as JSON"},
		{"ubjson", []byte("{L\x00\x00\x00\x00\x00\x00\x00\x07learner{"), "re-save it as JSON"},
		{"other binary", []byte{0x80, 0x04, 0x95, 0x00, 0x01}, "unrecognised binary"},
		{"other text", []byte("hello"), "unrecognised model format"},
		{"json not a model", []byte(`{"a": 1}`), "no \"learner\""},
		{"truncated json", modelJSON()[:100], "parse XGBoost JSON"},
		{"gblinear", modelJSON("BOOSTER", "gblinear"), "gblinear"},
		{"unknown booster", modelJSON("BOOSTER", "forest9"), "not supported"},
		{"objective", modelJSON("OBJ", "reg:squarederror"), "objective \"reg:squarederror\""},
		{"multiclass", []byte(strings.Replace(string(modelJSON()), `"num_class":"0"`, `"num_class":"3"`, 1)), "num_class=3"},
		{"base_score", modelJSON("BASE", "abc"), "base_score"},
		{"logistic base_score 1", modelJSON("OBJ", "binary:logistic", "BASE", "1"), "probability"},
		{"num_feature", modelJSON("NF", "-1"), "num_feature"},
		{"split index out of range", tree(`"split_indices":[0,`, `"split_indices":[3,`), "feature 3"},
		{"child out of range", tree(`"left_children":[1,`, `"left_children":[7,`), "outside"},
		{"negative child", tree(`"right_children":[2,`, `"right_children":[-5,`), "outside"},
		{"cycle", tree(`"left_children":[1,`, `"left_children":[0,`), "reached twice"},
		{"shared child", tree(`"right_children":[2,`, `"right_children":[1,`), "reached twice"},
		{"categorical", tree(`"split_type":[0,`, `"split_type":[1,`), "categorical"},
		{"categories", tree(`"categories":[]`, `"categories":[1]`), "categorical"},
		{"array lengths", tree(`"split_conditions":[0.1000000025,-1,2]`, `"split_conditions":[0.1]`), "split_conditions has 1"},
		{"NaN threshold", tree(`"split_conditions":[0.1000000025,`, `"split_conditions":["x",`), "parse"},
		{"bad default_left", tree(`"default_left":[1,`, `"default_left":[2,`), "default_left"},
		{"no trees", []byte(strings.Replace(strings.Replace(string(modelJSON()), `"trees":[`+tinyTree+`,{"left_children":[-1],"right_children":[-1],"split_indices":[0],"split_conditions":[0.25],"default_left":[0]}]`, `"trees":[]`, 1), `"tree_info":[0,0]`, `"tree_info":[]`, 1)), "no trees"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := LoadBytes(tc.data)
			if err == nil {
				t.Fatalf("loaded (%s), want an error mentioning %q", m.Kind(), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestLoadFiles(t *testing.T) {
	tests := []struct {
		file       string
		wantBinary bool
	}{
		{"xgb_binary.model", true},
		{"xgb_model.ubj", true},
		{"xgb_logitraw.json", false},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			_, err := Load(path)
			if tc.wantBinary {
				if !errors.Is(err, ErrXGBoostBinary) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v; want ErrXGBoostBinary naming %s", err, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: err = %v", err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: err = %v", err)
	}
}

func TestCheckFeatures(t *testing.T) {
	m, err := LoadBytes(modelJSON("NF", "29"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n  int
		ok bool
	}{{29, true}, {28, false}, {30, false}}
	for _, tc := range tests {
		err := CheckFeatures(m, tc.n)
		if (err == nil) != tc.ok {
			t.Errorf("CheckFeatures(29-feature model, %d) = %v", tc.n, err)
		}
		if err != nil && !strings.Contains(err.Error(), "expects 29 features") {
			t.Errorf("unclear message: %v", err)
		}
	}
	if CheckFeatures(nil, 1) == nil {
		t.Error("nil model passed")
	}
}

func TestMarginZeroAllocs(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "xgb_logitraw.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, rows := loadGolden(t)
	for name, m := range layouts(t, data) {
		if n := testing.AllocsPerRun(100, func() { m.Margin(rows[0]); m.Margin(rows[len(rows)-1]) }); n != 0 {
			t.Errorf("%s: %v allocations per Margin", name, n)
		}
	}
}

// TestONNXModelIsNamed: a detector's ONNX file configured as the forest is
// recognised and named as such, not reported as an XGBoost binary.
func TestONNXModelIsNamed(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "infer", "testdata", "meanstd_blur.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = LoadBytes(data)
	if err == nil || !strings.Contains(err.Error(), "ONNX model") || errors.Is(err, ErrXGBoostBinary) {
		t.Fatalf("ONNX file as a forest: %v", err)
	}
}
