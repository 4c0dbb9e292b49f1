package model

import (
	"errors"
	"math"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/result"
	"github.com/segad-edge/segad-edge/segad"
)

// fakeDetectors is one detector without ONNX Runtime: every map is fill
// (or a map of the wrong size, or an error), the classifier score class.
type fakeDetectors struct {
	size     int
	fill     float32
	wrongMap bool
	err      error
	class    *float32
}

func (f *fakeDetectors) Run(imgs []infer.Image) (*infer.SetOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	n := f.size * f.size
	if f.wrongMap {
		n--
	}
	m := make([]float32, n)
	for i := range m {
		m[i] = f.fill + float32(i%7)/7
	}
	out := &infer.SetOutput{Detectors: []infer.Output{{Map: m}}}
	if f.class != nil {
		out.Class, out.HasClass = *f.class, true
	}
	return out, nil
}
func (f *fakeDetectors) RunEach([]infer.Image) error { return f.err }
func (f *fakeDetectors) InputSizes() []infer.Size {
	return []infer.Size{{Width: f.size, Height: f.size}}
}
func (f *fakeDetectors) Warmup(int) error { return nil }
func (f *fakeDetectors) Close() error     { return nil }

// fakeScorer gives a fixed score.
type fakeScorer struct{ score float64 }

func (s fakeScorer) NumFeatures() int           { return 0 }
func (s fakeScorer) Margin(_ []float32) float64 { return s.score }

func fakeModel(t *testing.T, det *fakeDetectors, score float64) *Model {
	t.Helper()
	mask := segad.VADTemplate(det.size, det.size, segad.DefaultVADGeometry())
	extra := ""
	if det.class != nil {
		extra = "classifier"
	}
	ex, err := segad.NewExtractor(mask, []string{"fake"}, extra)
	if err != nil {
		t.Fatal(err)
	}
	return New(det, []string{"fake"}, mask, ex, fakeScorer{score})
}

func grayFrame(size int) *capture.Frame {
	img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(128, 128, 128, 0), size, size, gocv.MatTypeCV8UC3)
	return &capture.Frame{Source: "fake", Seq: 7, PartID: "P-7", Image: img, Color: capture.ColorBGR}
}

// TestFailClosedPaths (no ONNX Runtime): every way a part cannot be judged
// gives verdict error with its reason code and never a pass; a judged part
// is decided against the threshold with its warn band.
func TestFailClosedPaths(t *testing.T) {
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name    string
		det     fakeDetectors
		score   float64
		frame   func() *capture.Frame
		verdict result.Verdict
		code    string
		warn    bool
	}{
		{"pass", fakeDetectors{size: 32}, -1, nil, result.VerdictPass, "", false},
		{"warn band", fakeDetectors{size: 32}, 0.5, nil, result.VerdictPass, "", true},
		{"fail", fakeDetectors{size: 32}, 2, nil, result.VerdictFail, result.ReasonAnomaly, false},
		{"unreadable frame", fakeDetectors{size: 32}, -1, func() *capture.Frame {
			return &capture.Frame{Seq: 1, Err: errors.New("truncated image")}
		}, result.VerdictError, result.ReasonCapture, false},
		{"detector error", fakeDetectors{size: 32, err: errors.New("session failed")}, -1, nil, result.VerdictError, result.ReasonInference, false},
		{"map of the wrong size", fakeDetectors{size: 32, wrongMap: true}, -1, nil, result.VerdictError, result.ReasonMap, false},
		{"NaN map", fakeDetectors{size: 32, fill: nan}, -1, nil, result.VerdictError, result.ReasonMap, false},
		{"NaN classifier", fakeDetectors{size: 32, class: &nan}, -1, nil, result.VerdictError, result.ReasonInference, false},
		{"NaN score", fakeDetectors{size: 32}, math.NaN(), nil, result.VerdictError, result.ReasonScore, false},
		{"+Inf score", fakeDetectors{size: 32}, math.Inf(1), nil, result.VerdictError, result.ReasonScore, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			det := tc.det
			insp := NewInspector(fakeModel(t, &det, tc.score), Settings{Station: "s", Threshold: 1, Warn: 0.25})
			defer insp.Close()
			f := grayFrame(32)
			if tc.frame != nil {
				f = tc.frame()
			}
			defer f.Close()
			r := insp.Inspect(f, false).Result
			if r.Verdict != tc.verdict || r.ReasonCode != tc.code || r.Warn != tc.warn {
				t.Fatalf("verdict %s code %q warn %v (reason %q), want %s %q %v", r.Verdict, r.ReasonCode, r.Warn, r.Reason, tc.verdict, tc.code, tc.warn)
			}
			if r.Verdict == result.VerdictError && (r.Reason == "" || !r.Rejected()) {
				t.Fatalf("an error verdict without a reason: %+v", r)
			}
			if r.ID == "" || r.Schema != result.SchemaVersion || r.Station != "s" || r.Threshold != 1 {
				t.Fatalf("result not stamped: %+v", r)
			}
		})
	}
}

// TestRejectedAndSwap: a frame the line will not inspect is answered with
// the given code; a swap installs model and settings together.
func TestRejectedAndSwap(t *testing.T) {
	insp := NewInspector(fakeModel(t, &fakeDetectors{size: 32}, -1), Settings{Threshold: 1, Warn: math.NaN()})
	f := &capture.Frame{Seq: 3, PartID: "P-3"}
	r := insp.Score(insp.Rejected(f, result.ReasonDropped, errors.New("fell behind")), false).Result
	if r.Verdict != result.VerdictError || r.ReasonCode != result.ReasonDropped || r.PartID != "P-3" || !strings.Contains(r.Reason, "fell behind") {
		t.Fatalf("rejected: %+v", r)
	}
	old := insp.Swap(fakeModel(t, &fakeDetectors{size: 32}, 5), Settings{Threshold: 10, Warn: math.NaN()})
	old.Close()
	g := grayFrame(32)
	defer g.Close()
	if r := insp.Inspect(g, false).Result; r.Verdict != result.VerdictPass || r.Threshold != 10 {
		t.Fatalf("after swap: %s against %v", r.Verdict, r.Threshold)
	}
	insp.Close()
}

// TestFeaturesRow: Model.Features gives the row the Inspector scores, and
// the map maxima; a part the line would fail closed is an error.
func TestFeaturesRow(t *testing.T) {
	m := fakeModel(t, &fakeDetectors{size: 32}, 0)
	defer m.Close()
	insp := NewInspector(m, Settings{Threshold: 1, Warn: math.NaN(), PublishFeatures: true})
	f := grayFrame(32)
	defer f.Close()
	row, maxes := make([]float32, m.Extractor.NumFeatures()), make([]float32, 1)
	if err := m.Features(f, row, maxes); err != nil {
		t.Fatal(err)
	}
	r := insp.Inspect(f, false).Result
	for i, ft := range r.Features {
		if float32(ft.Value) != row[i] && !(math.IsNaN(ft.Value) && math.IsNaN(float64(row[i]))) {
			t.Fatalf("feature %s: %v from Features, %v from Inspect", ft.Name, row[i], ft.Value)
		}
	}
	if float64(maxes[0]) != r.MapMax["fake"] {
		t.Fatalf("map max %v, want %v", maxes[0], r.MapMax["fake"])
	}
	bad := &capture.Frame{Path: "x.png", Err: errors.New("truncated")}
	if err := m.Features(bad, row, maxes); err == nil || !strings.Contains(err.Error(), result.ReasonCapture) {
		t.Fatalf("unreadable frame: %v", err)
	}
}
