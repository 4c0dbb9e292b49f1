package segad

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFrameMaskerScores: argmax over class-score planes (ties to the lower
// label, as numpy), nearest-neighbour to the map size, and scores that are
// not numbers refused with the label and pixel rather than guessed.
func TestFrameMaskerScores(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	names := []string{"a", "b", "c"}
	for _, tc := range []struct {
		name   string
		scores []float32 // 3 planes of 2x2
		want   []uint8   // 4x4
		err    string
	}{
		{"argmax", []float32{
			1, 0, 0, 0,
			0, 2, 0, 0,
			0, 0, 3, -1,
		}, []uint8{
			0, 0, 1, 1,
			0, 0, 1, 1,
			2, 2, 0, 0,
			2, 2, 0, 0,
		}, ""},
		{"ties go to the lower label", []float32{
			5, 5, 5, 5,
			5, 6, 5, 5,
			5, 6, 6, 5,
		}, []uint8{
			0, 0, 1, 1,
			0, 0, 1, 1,
			2, 2, 0, 0,
			2, 2, 0, 0,
		}, ""},
		{"NaN score", []float32{
			1, 0, 0, 0,
			0, nan, 0, 0,
			0, 0, 3, 0,
		}, nil, `class score of label 1 "b" is NaN at model pixel (1, 0)`},
		{"Inf score", []float32{
			1, 0, 0, 0,
			0, 0, 0, 0,
			0, 0, 3, inf,
		}, nil, `label 2 "c" is +Inf at model pixel (1, 1)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFrameMasker(names, nil, 2, 2, 4, 4)
			if err != nil {
				t.Fatal(err)
			}
			dst := make([]uint8, 16)
			err = f.FromScores(dst, tc.scores)
			if tc.err != "" {
				var imp *ImplausibleError
				if !errors.As(err, &imp) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want an ImplausibleError with %q", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(dst, tc.want) {
				t.Fatalf("labels %v (err %v), want %v", dst, err, tc.want)
			}
		})
	}
}

// TestFrameMaskerLabels: a label map of every supported element type;
// 255 is ignore as in mask files; anything else outside 0..L-1, or not an
// integer, is refused.
func TestFrameMaskerLabels(t *testing.T) {
	names := []string{"a", "b", "c"}
	f, err := NewFrameMasker(names, nil, 2, 1, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]uint8, 2)
	ok := func(name string, err error, want []uint8) {
		t.Helper()
		if err != nil || !slices.Equal(dst, want) {
			t.Errorf("%s: %v (err %v), want %v", name, dst, err, want)
		}
	}
	bad := func(name string, err error, want string) {
		t.Helper()
		var imp *ImplausibleError
		if !errors.As(err, &imp) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want an ImplausibleError with %q", name, err, want)
		}
	}
	ok("int64", FromLabels(f, dst, []int64{2, 0}), []uint8{2, 0})
	ok("int32", FromLabels(f, dst, []int32{1, 255}), []uint8{1, Ignore})
	ok("uint8", FromLabels(f, dst, []uint8{0, 2}), []uint8{0, 2})
	ok("float32", FromLabels(f, dst, []float32{1, 2}), []uint8{1, 2})
	bad("int64 3", FromLabels(f, dst, []int64{0, 3}), "label 3 at model pixel (1, 0) is not one of 0..2")
	bad("int64 -1", FromLabels(f, dst, []int64{-1, 0}), "label -1")
	bad("int64 256", FromLabels(f, dst, []int64{256, 0}), "label 256")
	bad("uint8 7", FromLabels(f, dst, []uint8{7, 0}), "label 7")
	bad("float 1.5", FromLabels(f, dst, []float32{0, 1.5}), "label 1.5")
	bad("float NaN", FromLabels(f, dst, []float32{float32(math.NaN()), 0}), "label NaN")
	if err := FromLabels(f, dst, []int64{0}); err == nil {
		t.Error("a label map of the wrong size was accepted")
	}
}

// TestFrameMaskerResizeMatchesMask: the per-frame nearest-neighbour resize
// is the static masks' (Mask.Resize), down and up and to other aspects.
func TestFrameMaskerResizeMatchesMask(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sz := range [][4]int{{50, 37, 256, 256}, {256, 256, 64, 64}, {128, 128, 256, 256}, {31, 64, 40, 20}} {
		src := &Mask{Width: sz[0], Height: sz[1], Labels: make([]uint8, sz[0]*sz[1]), Names: []string{"a", "b", "c", "d"}}
		for i := range src.Labels {
			src.Labels[i] = uint8(rng.IntN(4))
		}
		want, err := src.Resize(sz[2], sz[3])
		if err != nil {
			t.Fatal(err)
		}
		f, err := NewFrameMasker(src.Names, nil, sz[0], sz[1], sz[2], sz[3])
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]uint8, sz[2]*sz[3])
		if err := FromLabels(f, dst, src.Labels); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(dst, want.Labels) {
			t.Errorf("%v: labels differ from Mask.Resize", sz)
		}
	}
}

// TestFrameMaskerBounds: a required segment must be present, and every
// segment's share of the map within its bounds; the error names the
// segment and its measured area.
func TestFrameMaskerBounds(t *testing.T) {
	// 10 pixels: a 6, b 3, c 0, one ignored.
	labels := []uint8{0, 0, 0, 0, 0, 0, 1, 1, 1, Ignore}
	free := SegmentBounds{MaxArea: 1}
	for _, tc := range []struct {
		name   string
		bounds []SegmentBounds
		want   string
		area   float64
	}{
		{"within", []SegmentBounds{{Required: true, MinArea: 0.5, MaxArea: 0.6}, {Required: true, MaxArea: 1}, free}, "", 0},
		{"required missing", []SegmentBounds{free, free, {Required: true, MaxArea: 1}}, `required segment "c" is missing`, 0},
		{"below", []SegmentBounds{free, {MinArea: 0.31, MaxArea: 1}, free}, `segment "b" covers 0.3000 of the map, outside its bounds [0.31, 1]`, 0.3},
		{"above", []SegmentBounds{{MaxArea: 0.59}, free, free}, `segment "a" covers 0.6000`, 0.6},
		{"absent but not required", []SegmentBounds{free, free, {MaxArea: 0.1}}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFrameMasker([]string{"a", "b", "c"}, tc.bounds, 10, 1, 10, 1)
			if err != nil {
				t.Fatal(err)
			}
			err = f.Check(labels)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var imp *ImplausibleError
			if !errors.As(err, &imp) || !strings.Contains(err.Error(), tc.want) || imp.Area != tc.area {
				t.Fatalf("error %v (%+v), want %q with area %v", err, imp, tc.want, tc.area)
			}
		})
	}
}

// TestSetLabelsMatchesStatic: an extractor whose mask is set per frame
// gives, frame after frame, exactly the features of an extractor built for
// that frame's mask (empty segments, ignored pixels and one-pixel segments
// included), and allocates nothing once warm.
func TestSetLabelsMatchesStatic(t *testing.T) {
	const w, h = 64, 48
	rng := rand.New(rand.NewPCG(3, 4))
	names := []string{"s0", "s1", "s2", "s3", "s4"}
	dets := []string{"d0", "d1"}
	fe, err := NewFrameExtractor(w, h, names, dets, "x")
	if err != nil {
		t.Fatal(err)
	}
	maps := [][]float32{make([]float32, w*h), make([]float32, w*h)}
	got, want := make([]float32, fe.NumFeatures()), make([]float32, fe.NumFeatures())
	for frame := 0; frame < 12; frame++ {
		m := &Mask{Width: w, Height: h, Labels: make([]uint8, w*h), Names: names}
		used := 1 + frame%len(names) // some frames leave segments empty
		for i := range m.Labels {
			m.Labels[i] = uint8(rng.IntN(used))
			if rng.IntN(20) == 0 {
				m.Labels[i] = Ignore
			}
		}
		m.Labels[rng.IntN(w*h)] = uint8(len(names) - 1) // a one-pixel segment
		for _, mp := range maps {
			for i := range mp {
				mp[i] = float32(rng.ExpFloat64())
			}
		}
		se, err := NewExtractor(m, dets, "x")
		if err != nil {
			t.Fatal(err)
		}
		if err := se.Extract(want, maps, 0.5); err != nil {
			t.Fatal(err)
		}
		if err := fe.SetLabels(m.Labels); err != nil {
			t.Fatal(err)
		}
		if err := fe.Extract(got, maps, 0.5); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
				t.Fatalf("frame %d feature %s: %v per frame, %v static", frame, fe.Names()[i], got[i], want[i])
			}
		}
	}
	labels := make([]uint8, w*h)
	allocs := testing.AllocsPerRun(20, func() {
		_ = fe.SetLabels(labels)
		_ = fe.Extract(got, maps, 0)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame", allocs)
	}
	if err := fe.SetLabels(labels[:10]); err == nil {
		t.Fatal("labels of the wrong size accepted")
	}
}

// benchMasks is a VAD-template map and mask at 256x256, and the same
// labels as a per-frame model's 128x128 output would give them.
func benchMasks(b *testing.B) (*Mask, [][]float32, []uint8) {
	mask := VADTemplate(256, 256, DefaultVADGeometry())
	rng := rand.New(rand.NewPCG(5, 6))
	mp := make([]float32, 256*256)
	for i := range mp {
		mp[i] = float32(rng.NormFloat64())
	}
	small, err := mask.Resize(128, 128)
	if err != nil {
		b.Fatal(err)
	}
	return mask, [][]float32{mp}, small.Labels
}

// BenchmarkMaskStatic is the baseline: features with the static mask (the
// extractor's runs computed once).
func BenchmarkMaskStatic(b *testing.B) {
	mask, maps, _ := benchMasks(b)
	e, err := NewExtractor(mask, []string{"d"}, "")
	if err != nil {
		b.Fatal(err)
	}
	row := make([]float32, e.NumFeatures())
	b.ReportAllocs()
	cpu0 := maskBenchCPU()
	for b.Loop() {
		if err := e.Extract(row, maps, 0); err != nil {
			b.Fatal(err)
		}
	}
	reportMaskCPU(b, cpu0)
}

// BenchmarkMaskPerFrame is the per-frame mask's own cost in the feature
// stage: a 128x128 label map (as a model gives it) resized to 256x256 and
// checked (FrameMasker), the extractor's runs rebuilt (SetLabels), then the
// same features. The segmentation model's run is model's benchmark.
func BenchmarkMaskPerFrame(b *testing.B) {
	mask, maps, small := benchMasks(b)
	fm, err := NewFrameMasker(mask.Names, nil, 128, 128, 256, 256)
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewFrameExtractor(256, 256, mask.Names, []string{"d"}, "")
	if err != nil {
		b.Fatal(err)
	}
	row := make([]float32, e.NumFeatures())
	labels := make([]uint8, 256*256)
	b.ReportAllocs()
	cpu0 := maskBenchCPU()
	for b.Loop() {
		if err := FromLabels(fm, labels, small); err != nil {
			b.Fatal(err)
		}
		if err := e.SetLabels(labels); err != nil {
			b.Fatal(err)
		}
		if err := e.Extract(row, maps, 0); err != nil {
			b.Fatal(err)
		}
	}
	reportMaskCPU(b, cpu0)
}

// maskBenchCPU is the process's user+system CPU time. On the shared
// development VM (load average often above the core count) wall time per
// op mostly measures waiting; CPU time per op (reported as cpu-ns/op)
// measures the work, and is what the README's ratios use.
func maskBenchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportMaskCPU(b *testing.B, since time.Duration) {
	b.ReportMetric(float64(maskBenchCPU()-since)/float64(b.N), "cpu-ns/op")
}
