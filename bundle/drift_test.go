package bundle

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testDrift() *DriftReference {
	return &DriftReference{Created: time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC), Good: 300, Bins: 10,
		ExpectedFRR: 0.01, ExpectedFRRHigh: 0.034, FRRSource: "out-of-fold",
		Features: []DriftFeature{
			{Name: "s0.patchcore.mean", Segment: "s0", Detector: "patchcore", Stat: "mean", Edges: []float64{0.1, 0.2}, Shares: []float64{0.3, 0.4, 0.3}},
			{Name: "s0.patchcore.skew", Segment: "s0", Detector: "patchcore", Stat: "skew", Edges: []float64{1}, Shares: []float64{0.45, 0.45}, NaN: 0.1},
			{Name: "patchcore.max", Detector: "patchcore", Stat: "max", Shares: []float64{1}},
		}}
}

// TestDriftRoundTrip writes drift.json and reads back the same reference.
func TestDriftRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := testDrift()
	if err := WriteDrift(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDrift(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want.Format != DriftFormatVersion || !reflect.DeepEqual(got, want) {
		t.Fatalf("read back\n%+v\nwrote\n%+v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, DriftFile+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

// TestLoadDriftMissing: a bundle written before drift references existed
// loads (Load) and says clearly that it has none (ErrNoDrift).
func TestLoadDriftMissing(t *testing.T) {
	dir := t.TempDir()
	m, _ := testManifest(t, dir)
	if err := Write(dir, []byte(`{"learner":{}}`), m); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err != nil {
		t.Fatalf("a bundle without drift.json must load: %v", err)
	}
	_, err := LoadDrift(dir)
	if !errors.Is(err, ErrNoDrift) || !strings.Contains(err.Error(), "segad fit") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("want ErrNoDrift naming the bundle and the fix, got %v", err)
	}
}

// TestDriftRefused: damaged or inconsistent references are refused with
// what is wrong, on write and on load.
func TestDriftRefused(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(r *DriftReference)
		raw    string // written as drift.json instead, when set
		reason string
		load   string // the reader's reason when it differs (JSON holds no NaN)
	}{
		{name: "no features", edit: func(r *DriftReference) { r.Features = nil }, reason: "no features"},
		{name: "no good count", edit: func(r *DriftReference) { r.Good = 0 }, reason: "good is 0"},
		{name: "rate above one", edit: func(r *DriftReference) { r.ExpectedFRRHigh = 1.5 }, reason: "not a share"},
		{name: "NaN rate", edit: func(r *DriftReference) { r.ExpectedFRR = math.NaN() }, reason: "not a share", load: "parse"},
		{name: "edges descending", edit: func(r *DriftReference) { r.Features[0].Edges = []float64{0.2, 0.1} }, reason: "strictly ascending"},
		{name: "infinite edge", edit: func(r *DriftReference) { r.Features[0].Edges = []float64{0.1, math.Inf(1)} }, reason: "finite", load: "parse"},
		{name: "shares count", edit: func(r *DriftReference) { r.Features[0].Shares = []float64{0.5, 0.5} }, reason: "2 shares for 2 edges"},
		{name: "shares sum", edit: func(r *DriftReference) { r.Features[0].Shares = []float64{0.3, 0.3, 0.3} }, reason: "sum to"},
		{name: "negative share", edit: func(r *DriftReference) { r.Features[0].Shares = []float64{-0.1, 0.8, 0.3} }, reason: "not in [0, 1]"},
		{name: "repeated name", edit: func(r *DriftReference) { r.Features[1].Name = r.Features[0].Name }, reason: "repeated"},
		{name: "newer format", raw: `{"format": 99, "good": 1, "features": [{"name": "a", "shares": [1]}]}`, reason: "upgrade segad"},
		{name: "not JSON", raw: `{"format": 1, "good": `, reason: "parse"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.raw != "" {
				if err := os.WriteFile(filepath.Join(dir, DriftFile), []byte(c.raw), 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				r := testDrift()
				c.edit(r)
				if err := WriteDrift(dir, r); err == nil || !strings.Contains(err.Error(), c.reason) {
					t.Fatalf("WriteDrift: want an error with %q, got %v", c.reason, err)
				}
				// Bypass the writer's check to test the reader's.
				r.Format = DriftFormatVersion
				data, _ := jsonIndent(r)
				if err := os.WriteFile(filepath.Join(dir, DriftFile), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := c.reason
			if c.load != "" {
				want = c.load
			}
			_, err := LoadDrift(dir)
			if err == nil || !strings.Contains(err.Error(), want) || errors.Is(err, ErrNoDrift) {
				t.Fatalf("LoadDrift: want an error with %q, got %v", want, err)
			}
			if c.raw == "" && !strings.Contains(err.Error(), DriftFile) {
				t.Errorf("the error does not name %s: %v", DriftFile, err)
			}
		})
	}
}

// jsonIndent marshals like WriteDrift; JSON cannot hold NaN or Inf, so a
// reference with one is written as a file the reader must refuse to parse.
func jsonIndent(r *DriftReference) ([]byte, error) {
	data, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return []byte(`{"format": 1, "good": "NaN"}`), nil
	}
	return data, nil
}
