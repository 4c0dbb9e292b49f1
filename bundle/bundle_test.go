package bundle

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testFeatures are the feature names of detectors patchcore and
// efficientad on one segment s0 (segad.FeatureNames' layout).
var testFeatures = []string{
	"s0.patchcore.q995", "s0.patchcore.skew", "s0.patchcore.kurtosis", "s0.patchcore.mean",
	"s0.efficientad.q995", "s0.efficientad.skew", "s0.efficientad.kurtosis", "s0.efficientad.mean",
	"patchcore.max", "efficientad.max",
}

func testManifest(t *testing.T, dir string) (*Manifest, []string) {
	t.Helper()
	var paths []string
	var dets []Detector
	for _, n := range []string{"patchcore", "efficientad"} {
		p := filepath.Join(dir, n+".onnx")
		if err := os.WriteFile(p, []byte("model "+n), 0o644); err != nil {
			t.Fatal(err)
		}
		sum, err := FileSHA256(p)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		dets = append(dets, Detector{Name: n, Model: filepath.Base(p), SHA256: sum})
	}
	return &Manifest{
		Tool: "segad", ToolVersion: "test", Created: time.Unix(1700000000, 0).UTC(),
		Features: append([]string(nil), testFeatures...), Detectors: dets,
		Mask:      Mask{Source: "mask.png", Hash: "abcdef0123456789", Width: 8, Height: 8, Segments: []string{"s0"}},
		Params:    map[string]string{"eta": "0.3"},
		Rounds:    10,
		Data:      Counts{Good: 3, Bad: 2, BadTypes: map[string]int{"cut": 2}},
		Threshold: Threshold{Suggested: 1.5, Recall: 0.95, Calibration: "training", Points: []OperatingPoint{{Recall: 0.95, Threshold: 1.5, FPR: 0.1}, {Recall: 0.99, Threshold: 1.0, FPR: 0.3}}},
	}, paths
}

func TestWriteLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m, _ := testManifest(t, dir)
	out := filepath.Join(dir, "bundle")
	if err := Write(out, []byte(`{"learner":{}}`), m); err != nil {
		t.Fatal(err)
	}
	b, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if b.Threshold != 1.5 || b.ModelPath != filepath.Join(out, ModelFile) {
		t.Errorf("threshold %v model %s", b.Threshold, b.ModelPath)
	}
	if b.Manifest.Format != FormatVersion || b.Manifest.Data.BadTypes["cut"] != 2 || len(b.Manifest.Threshold.Points) != 2 {
		t.Errorf("manifest did not round-trip: %+v", b.Manifest)
	}
	if _, err := os.Stat(filepath.Join(out, ModelFile+".tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	m, _ := testManifest(t, dir)
	good := filepath.Join(dir, "good")
	if err := Write(good, []byte("{}"), m); err != nil {
		t.Fatal(err)
	}
	noModel := filepath.Join(dir, "nomodel")
	if err := Write(noModel, []byte("{}"), m); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(noModel, ModelFile))
	badJSON := filepath.Join(dir, "badjson")
	os.MkdirAll(badJSON, 0o755)
	os.WriteFile(filepath.Join(badJSON, ManifestFile), []byte("{not json"), 0o644)
	future := filepath.Join(dir, "future")
	os.MkdirAll(future, 0o755)
	os.WriteFile(filepath.Join(future, ManifestFile), []byte(`{"format": 99}`), 0o644)
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)
	os.WriteFile(filepath.Join(empty, ManifestFile), []byte(`{"format": 1}`), 0o644)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	// Hand-edited manifests: a feature list that cannot come from the
	// manifest's own detectors and segments, and a duplicated name.
	edited := func(name string, edit func(*Manifest)) string {
		mm, _ := testManifest(t, dir)
		edit(mm)
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o755)
		js, _ := json.Marshal(mm)
		os.WriteFile(filepath.Join(d, ManifestFile), js, 0o644)
		os.WriteFile(filepath.Join(d, ModelFile), []byte("{}"), 0o644)
		return d
	}
	shortList := edited("short", func(m *Manifest) { m.Features = m.Features[:9] })
	dupList := edited("dup", func(m *Manifest) { m.Features[9] = m.Features[8] })
	manifestDir := filepath.Join(dir, "manifestdir")
	os.MkdirAll(filepath.Join(manifestDir, ManifestFile), 0o755)

	cases := []struct {
		name, dir, want string
	}{
		{"missing folder", filepath.Join(dir, "nope"), "no such file"},
		{"file not folder", file, "not a folder"},
		{"no model", noModel, "model.json"},
		{"corrupt manifest", badJSON, "parse"},
		{"newer format", future, "upgrade segad"},
		{"incomplete manifest", empty, "no detectors"},
		{"feature count", shortList, "lists 9 features, but 2 detectors and 1 segments give 10"},
		{"duplicate feature", dupList, `feature 9 "patchcore.max" is also feature 8`},
		{"manifest is a folder", manifestDir, "is not a regular file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
	if _, err := Load(good); err != nil {
		t.Fatalf("valid bundle: %v", err)
	}
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	m, paths := testManifest(t, dir)
	changed := filepath.Join(dir, "changed.onnx")
	os.WriteFile(changed, []byte("retrained"), 0o644)
	cases := []struct {
		name  string
		names []string
		paths []string
		mask  string
		want  string // "" = no error
	}{
		{"match", []string{"patchcore", "efficientad"}, paths, m.Mask.Hash, ""},
		{"match without files", []string{"patchcore", "efficientad"}, nil, m.Mask.Hash, ""},
		{"swapped order", []string{"efficientad", "patchcore"}, paths, m.Mask.Hash, `detector 1 is "patchcore" in the bundle but "efficientad" in the config`},
		{"one fewer", []string{"patchcore"}, paths[:1], m.Mask.Hash, "2 detectors (patchcore, efficientad) but the config has 1"},
		{"model changed", []string{"patchcore", "efficientad"}, []string{paths[0], changed}, m.Mask.Hash, "detector efficientad model file changed"},
		{"model missing", []string{"patchcore", "efficientad"}, []string{paths[0], filepath.Join(dir, "gone.onnx")}, m.Mask.Hash, "gone.onnx"},
		{"mask changed", []string{"patchcore", "efficientad"}, paths, "ffff", "mask differs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(m, c.names, c.paths, c.mask)
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

// TestThresholdPresence: a manifest without threshold.suggested (absent,
// an empty threshold object, or null) gives no threshold: Load still reads
// it (a config may set segad.threshold itself), but SuggestedThreshold
// refuses, naming manifest.json and what to do, instead of returning 0.
func TestThresholdPresence(t *testing.T) {
	dir := t.TempDir()
	m, _ := testManifest(t, dir)
	full, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(full, &generic); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		thr  any // the "threshold" value; nil: key removed
		has  bool
		want float64
	}{
		{"complete", generic["threshold"], true, 1.5},
		{"suggested 0 is a threshold", map[string]any{"suggested": 0.0}, true, 0},
		{"no threshold key", nil, false, 0},
		{"empty threshold object", map[string]any{}, false, 0},
		{"suggested null", map[string]any{"suggested": nil, "recall": 0.95}, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := map[string]any{}
			for k, v := range generic {
				g[k] = v
			}
			if c.thr == nil {
				delete(g, "threshold")
			} else {
				g["threshold"] = c.thr
			}
			js, _ := json.Marshal(g)
			d := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			os.MkdirAll(d, 0o755)
			os.WriteFile(filepath.Join(d, ManifestFile), js, 0o644)
			os.WriteFile(filepath.Join(d, ModelFile), []byte("{}"), 0o644)
			b, err := Load(d)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got, err := b.SuggestedThreshold()
			if c.has {
				if err != nil || got != c.want || !b.HasThreshold {
					t.Fatalf("SuggestedThreshold = %v, %v; want %v", got, err, c.want)
				}
				return
			}
			if err == nil || b.HasThreshold {
				t.Fatalf("SuggestedThreshold = %v, nil: a missing threshold became a number", got)
			}
			for _, w := range []string{filepath.Join(d, ManifestFile), "no threshold.suggested", "re-run `segad fit`", "set segad.threshold"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestVerifyFeatures: the running configuration's feature names must equal
// the manifest's, in order; the error names the first difference.
func TestVerifyFeatures(t *testing.T) {
	m, _ := testManifest(t, t.TempDir())
	with := func(edit func([]string) []string) []string {
		return edit(append([]string(nil), testFeatures...))
	}
	cases := []struct {
		name  string
		names []string
		want  string // "" = match
	}{
		{"match", testFeatures, ""},
		{"segment renamed", with(func(f []string) []string {
			for i := 0; i < 8; i++ {
				f[i] = strings.Replace(f[i], "s0.", "body.", 1)
			}
			return f
		}), `feature 0 is "s0.patchcore.q995" in the manifest but "body.patchcore.q995" in this configuration`},
		{"maxima swapped", with(func(f []string) []string { f[8], f[9] = f[9], f[8]; return f }),
			`feature 8 is "patchcore.max" in the manifest but "efficientad.max"`},
		{"classifier added", with(func(f []string) []string { return append(f, "classifier") }),
			`the manifest lists 10 features, this configuration computes 11: the first extra one is feature 10 "classifier"`},
		{"one fewer", with(func(f []string) []string { return f[:9] }),
			`the first missing one is feature 9 "efficientad.max"`},
		{"none", nil, "computes 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := VerifyFeatures(m, c.names)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}
