package segad

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/segad-edge/segad-edge/npy"
)

// goldenCase is one case of testdata/golden/features.json, written by
// scripts/golden/features.py from numpy/scipy.
type goldenCase struct {
	Name      string     `json:"name"`
	Mask      string     `json:"mask"`
	Segments  []string   `json:"segments"`
	Detectors []string   `json:"detectors"`
	Maps      []string   `json:"maps"`
	Extra     *float64   `json:"extra"`
	Features  []*float64 `json:"features"`
}

func loadGolden(t testing.TB) []goldenCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", "features.json"))
	if err != nil {
		t.Fatalf("golden features (run scripts/golden/generate.sh): %v", err)
	}
	var doc struct {
		Cases []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Cases
}

func loadMap(t testing.TB, name string) []float32 {
	t.Helper()
	a, err := npy.Read(filepath.Join("testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return a.Float32
}

// close reports whether got matches the float32-precision reference within
// 1e-4 relative. Values near zero (a symmetric segment's skew) get an
// absolute floor of 1e-5: the reference accumulates moments in float32, whose
// rounding alone is of that order there.
func closeTo(got, want float64) bool {
	if math.IsNaN(want) || math.IsNaN(got) {
		return math.IsNaN(want) && math.IsNaN(got)
	}
	return math.Abs(got-want) <= 1e-4*math.Max(math.Abs(got), math.Abs(want))+1e-5
}

func TestExtractMatchesReference(t *testing.T) {
	for _, c := range loadGolden(t) {
		t.Run(c.Name, func(t *testing.T) {
			m, err := LoadMask(filepath.Join("testdata", "golden", c.Mask), c.Segments)
			if err != nil {
				t.Fatal(err)
			}
			extraName, extra := "", float32(0)
			if c.Extra != nil {
				extraName, extra = "classifier", float32(*c.Extra)
			}
			e, err := NewExtractor(m, c.Detectors, extraName)
			if err != nil {
				t.Fatal(err)
			}
			if e.NumFeatures() != len(c.Features) {
				t.Fatalf("NumFeatures = %d, reference row has %d", e.NumFeatures(), len(c.Features))
			}
			maps := make([][]float32, len(c.Maps))
			for i, p := range c.Maps {
				maps[i] = loadMap(t, p)
			}
			dst := make([]float32, e.NumFeatures())
			// Twice: Extract must not depend on leftovers of the previous call.
			for round := 0; round < 2; round++ {
				if err := e.Extract(dst, maps, extra); err != nil {
					t.Fatal(err)
				}
				for i, w := range c.Features {
					want := math.NaN()
					if w != nil {
						want = *w
					}
					if !closeTo(float64(dst[i]), want) {
						t.Errorf("round %d feature %d %s = %v, reference %v", round, i, e.Names()[i], dst[i], want)
					}
				}
			}
		})
	}
}

func TestFeatureNamesOrder(t *testing.T) {
	got := FeatureNames([]string{"a", "b"}, []string{"d1", "d2"}, "cls")
	want := []string{
		"a.d1.q995", "a.d1.skew", "a.d1.kurtosis", "a.d1.mean",
		"a.d2.q995", "a.d2.skew", "a.d2.kurtosis", "a.d2.mean",
		"b.d1.q995", "b.d1.skew", "b.d1.kurtosis", "b.d1.mean",
		"b.d2.q995", "b.d2.skew", "b.d2.kurtosis", "b.d2.mean",
		"d1.max", "d2.max", "cls.score",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("FeatureNames =\n%v\nwant\n%v", got, want)
	}
	if n := len(FeatureNames([]string{"a", "b", "c"}, []string{"x"}, "")); n != 4*3*1+1 {
		t.Fatalf("no extra: %d names, want 13", n)
	}
}

func testMask(w, h, L int) *Mask {
	m := &Mask{Width: w, Height: h, Labels: make([]uint8, w*h), Names: DefaultNames(L)}
	for i := range m.Labels {
		m.Labels[i] = uint8((i / 7) % L)
	}
	return m
}

func TestExtractErrors(t *testing.T) {
	m := testMask(16, 16, 3)
	e, err := NewExtractor(m, []string{"det"}, "")
	if err != nil {
		t.Fatal(err)
	}
	good := make([]float32, 256)
	nan := make([]float32, 256)
	nan[17] = float32(math.NaN())
	inf := make([]float32, 256)
	inf[200] = float32(math.Inf(1))
	tests := []struct {
		name string
		dst  int
		maps [][]float32
		want string
	}{
		{"wrong size map", 13, [][]float32{make([]float32, 255)}, `detector "det" map has 255 pixels, want 16x16 = 256`},
		{"no maps", 13, nil, "got 0 maps, want 1"},
		{"short dst", 12, [][]float32{good}, "dst has 12 slots, want 13"},
		{"NaN pixel", 13, [][]float32{nan}, `detector "det" map: pixel 17 is NaN`},
		{"Inf pixel", 13, [][]float32{inf}, `detector "det" map: pixel 200 is +Inf`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := e.Extract(make([]float32, tc.dst), tc.maps, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// A NaN in an ignored pixel is still an error: it would poison the max.
	m.Labels[5] = Ignore
	e, _ = NewExtractor(m, []string{"det"}, "")
	ign := make([]float32, 256)
	ign[5] = float32(math.NaN())
	if err := e.Extract(make([]float32, 13), [][]float32{ign}, 0); err == nil {
		t.Fatal("NaN in an ignored pixel: no error")
	}
}

func TestNewExtractorErrors(t *testing.T) {
	m := testMask(8, 8, 2)
	tests := []struct {
		name      string
		detectors []string
		extra     string
		want      string
	}{
		{"no detectors", nil, "", "no detectors"},
		{"duplicate", []string{"a", "a"}, "", `detector "a" listed twice`},
		{"dot in name", []string{"a.b"}, "", `name "a.b"`},
		{"bad extra", []string{"a"}, "x y", `extra score: name "x y"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewExtractor(m, tc.detectors, tc.extra)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestQuantileSelection checks the selection-based quantile against a full
// sort on many random, tied and sorted inputs of awkward lengths.
func TestQuantileSelection(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sortedQ := func(x []float32) float64 {
		s := slices.Clone(x)
		slices.Sort(s)
		h := float64(len(s)-1) * 0.995
		i := int(h)
		if i+1 >= len(s) {
			return float64(s[i])
		}
		return float64(s[i]) + (h-float64(i))*(float64(s[i+1])-float64(s[i]))
	}
	gens := map[string]func(n int) []float32{
		"uniform": func(n int) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = r.Float32()
			}
			return x
		},
		"ties": func(n int) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.IntN(3))
			}
			return x
		},
		"ascending": func(n int) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(i)
			}
			return x
		},
		"descending": func(n int) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(n - i)
			}
			return x
		},
	}
	for name, gen := range gens {
		for _, n := range []int{1, 2, 3, 199, 200, 201, 601, 602, 5000, 65536} {
			x := gen(n)
			want := sortedQ(x)
			got := quantile995(slices.Clone(x))
			if got != want {
				t.Errorf("%s n=%d: quantile995 = %v, sort gives %v", name, n, got, want)
			}
		}
	}
}

func TestExtractZeroAllocs(t *testing.T) {
	m := VADTemplate(256, 256, DefaultVADGeometry())
	e, err := NewExtractor(m, []string{"a", "b"}, "cls")
	if err != nil {
		t.Fatal(err)
	}
	maps := [][]float32{randomMap(256*256, 1), randomMap(256*256, 2)}
	dst := make([]float32, e.NumFeatures())
	allocs := testing.AllocsPerRun(20, func() {
		if err := e.Extract(dst, maps, 0.5); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Extract allocates %v times per call, want 0", allocs)
	}
	if dst[len(dst)-1] != 0.5 {
		t.Fatalf("extra score = %v, want 0.5 last", dst[len(dst)-1])
	}
}

func randomMap(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	m := make([]float32, n)
	for i := range m {
		m[i] = float32(r.ExpFloat64())
	}
	return m
}

// BenchmarkExtract is the hot path the README reports: K=1, L=7 (VAD
// template), 256x256. Its baseline is the reference numpy/scipy code timed
// by scripts/bench/features_reference.py on the same machine.
func BenchmarkExtract(b *testing.B) {
	m := VADTemplate(256, 256, DefaultVADGeometry())
	e, err := NewExtractor(m, []string{"efficientad"}, "")
	if err != nil {
		b.Fatal(err)
	}
	maps := [][]float32{randomMap(256*256, 3)}
	dst := make([]float32, e.NumFeatures())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.Extract(dst, maps, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExtractSortBaseline is the naive Go baseline: the same features
// with a full sort per segment instead of selection, to show what selection
// buys.
func BenchmarkExtractSortBaseline(b *testing.B) {
	m := VADTemplate(256, 256, DefaultVADGeometry())
	mp := randomMap(256*256, 3)
	L := m.NumSegments()
	segs := make([][]float32, L)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range segs {
			segs[j] = segs[j][:0]
		}
		for p, l := range m.Labels {
			if int(l) < L {
				segs[l] = append(segs[l], mp[p])
			}
		}
		for _, x := range segs {
			if len(x) == 0 {
				continue
			}
			slices.Sort(x)
			s, _ := sumMax(x)
			centralMoments(x, s/float64(len(x)))
		}
	}
}

// TestSampledQuantileExact checks the sampled pre-selection path against
// plain selection, including inputs built to defeat the strided sample (its
// fallback must keep the result exact).
func TestSampledQuantileExact(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{4096, 4097, 5000, 36278, 65536} {
		gens := map[string]func(i int) float32{
			"exponential": func(int) float32 { return float32(r.ExpFloat64()) },
			"ties":        func(int) float32 { return float32(r.IntN(3)) },
			"constant":    func(int) float32 { return 0.25 },
			"ascending":   func(i int) float32 { return float32(i) },
			"descending":  func(i int) float32 { return float32(-i) },
			// Large values exactly where the stride samples: the sample's
			// threshold lands above the true quantile, forcing the fallback.
			"sample-trap": func(i int) float32 {
				if i%(n/sampleSize) == 0 {
					return 1000 + float32(i)
				}
				return float32(r.Float64())
			},
		}
		for name, gen := range gens {
			x := make([]float32, n)
			for i := range x {
				x[i] = gen(i)
			}
			m := &Mask{Width: n, Height: 1, Labels: make([]uint8, n), Names: []string{"s"}}
			e, err := NewExtractor(m, []string{"d"}, "")
			if err != nil {
				t.Fatal(err)
			}
			s, _ := sumMax(x)
			mean := s / float64(n)
			w2, w3, w4 := centralMoments(x, mean)
			wq := quantile995(slices.Clone(x))
			g2, g3, g4, gq := e.momentsAndQuantile(x, mean)
			if gq != wq {
				t.Errorf("%s n=%d: sampled quantile %v, selection %v", name, n, gq, wq)
			}
			// Moments differ only by summation order; compare each on the
			// scale of m2^(k/2), since a symmetric segment's m3 is ~0.
			for k, p := range [][2]float64{{g2, w2}, {g3, w3}, {g4, w4}} {
				scale := math.Pow(w2, float64(k+2)/2)
				if math.Abs(p[0]-p[1]) > 1e-9*scale {
					t.Errorf("%s n=%d: moment %d = %v, want %v", name, n, k+2, p[0], p[1])
				}
			}
		}
	}
}

// BenchmarkSegmentStats compares, on one 36k-pixel segment (the VAD
// template's background), the moments plus quantile by full-segment
// selection against the sampled pre-selection that Extract uses.
func BenchmarkSegmentStats(b *testing.B) {
	x := randomMap(36278, 9)
	m := &Mask{Width: len(x), Height: 1, Labels: make([]uint8, len(x)), Names: []string{"s"}}
	e, _ := NewExtractor(m, []string{"d"}, "")
	work := make([]float32, len(x))
	s, _ := sumMax(x)
	mean := s / float64(len(x))
	b.Run("select", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			copy(work, x)
			centralMoments(work, mean)
			quantile995(work)
		}
	})
	b.Run("sampled", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			copy(work, x)
			e.momentsAndQuantile(work, mean)
		}
	})
}
