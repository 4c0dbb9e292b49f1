package detector

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

func TestZZProfile(t *testing.T) {
	p := fitSmallPatchCore(t, PatchCoreConfig{Seed: 1, CoresetRatio: 2151.0 / (40 * 1024)})
	in, _ := LoadInput(checkImages(t)[1], 256)
	for _, v := range []struct {
		m    string
		d, k int
	}{{SearchExact, 0, 0}, {SearchTwoStage, 32, 8}}[1:] {
		q, err := p.withSearch(v.m, v.d, v.k, 16, 4)
		if err != nil {
			t.Fatal(err)
		}
		model, _ := q.ONNX()
		opts, _ := ort.NewSessionOptions()
		opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll)
		opts.SetIntraOpNumThreads(1)
		dir := t.TempDir()
		opts.EnableProfiling(filepath.Join(dir, "prof"))
		inT, _ := ort.NewTensor(ort.NewShape(1, 3, 256, 256), in)
		s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, []string{"input"}, []string{"anomaly_map"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			outs := []ort.Value{nil}
			if err := s.Run([]ort.Value{inT}, outs); err != nil {
				t.Fatal(err)
			}
			outs[0].Destroy()
		}
		s.Destroy()
		files, _ := filepath.Glob(filepath.Join(dir, "prof*"))
		if len(files) == 0 {
			files, _ = filepath.Glob("prof*.json")
		}
		t.Log(files)
		data, _ := os.ReadFile(files[0])
		var ev []struct {
			Cat  string         `json:"cat"`
			Name string         `json:"name"`
			Dur  float64        `json:"dur"`
			Args map[string]any `json:"args"`
		}
		json.Unmarshal(data, &ev)
		agg := map[string]float64{}
		for _, e := range ev {
			if e.Cat == "Node" && len(e.Name) > 13 && e.Name[len(e.Name)-13:] == "_kernel_time" {
				op, _ := e.Args["op_name"].(string)
				agg[op+" "+e.Name[:len(e.Name)-12]] += e.Dur / 30
			}
		}
		type kv struct {
			k string
			v float64
		}
		var l []kv
		for k, v := range agg {
			l = append(l, kv{k, v})
		}
		sort.Slice(l, func(a, b int) bool { return l[a].v > l[b].v })
		for _, x := range l[:min(14, len(l))] {
			t.Logf("%s %s: %.0f us", v.m, x.k, x.v)
		}
		os.WriteFile("/tmp/jexp/prof_"+v.m+".json", data, 0o644)
	}
}
