package bundle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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
		Features: []string{"a", "b"}, Detectors: dets,
		Mask:      Mask{Source: "mask.png", Hash: "abcdef0123456789", Width: 8, Height: 8, Segments: []string{"s0"}},
		Params:    map[string]string{"eta": "0.3"},
		Rounds:    10,
		Data:      Counts{Good: 3, Bad: 2, BadTypes: map[string]int{"cut": 2}},
		Threshold: Threshold{Suggested: 1.5, Recall: 0.95, Calibration: "training", Points: []OperatingPoint{{0.95, 1.5, 0.1}, {0.99, 1.0, 0.3}}},
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

	cases := []struct {
		name, dir, want string
	}{
		{"missing folder", filepath.Join(dir, "nope"), "no such file"},
		{"file not folder", file, "not a folder"},
		{"no model", noModel, "model.json"},
		{"corrupt manifest", badJSON, "parse"},
		{"newer format", future, "upgrade segad"},
		{"incomplete manifest", empty, "no detectors"},
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
