package infer

import (
	"runtime"
	"strings"
	"testing"
)

func setConfigs() ([]DetectorConfig, *ClassifierConfig) {
	score := OutputRef{Name: "pred_score"}
	return []DetectorConfig{
			{Name: "ms", Model: fixture("meanstd_blur.onnx")},
			{Name: "small", Model: fixture("small_map.onnx"), Post: PostConfig{BlurSigma: 2, Normalize: NormalizeConfig{Kind: "quantile", QA: 0.2, QB: 0.9}}},
			{Name: "two", Model: fixture("two_output.onnx"), MapOutput: OutputRef{Name: "anomaly_map"}, ScoreOutput: &score},
		}, &ClassifierConfig{
			Model: fixture("classifier.onnx"),
		}
}

func TestSetConcurrentMatchesReferenceWithoutAllocation(t *testing.T) {
	setup(t)
	dcfg, ccfg := setConfigs()
	s, err := OpenSet(dcfg, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Warmup(2); err != nil {
		t.Fatal(err)
	}
	img := testImage(t)
	imgs := []Image{img, img, img, img}
	check := func(out *SetOutput) {
		t.Helper()
		for i, want := range []string{"meanstd_blur.npy", "small_map_post.npy", "two_output_map.npy"} {
			if e, at := maxRelErr(out.Detectors[i].Map, readNpy(t, fixture(want)).f32); e > 2e-5 {
				t.Fatalf("detector %d map differs: %g at %d", i, e, at)
			}
		}
		if ws := readNpy(t, fixture("two_output_score.npy")).f32[0]; absf(out.Detectors[2].Score-ws) > 1e-6 {
			t.Fatalf("score %v want %v", out.Detectors[2].Score, ws)
		}
		if wc := readNpy(t, fixture("classifier_logit.npy")).f32[0]; !out.HasClass || absf(out.Class-wc) > 1e-5 {
			t.Fatalf("class %v want %v", out.Class, wc)
		}
	}
	for i := 0; i < 3; i++ {
		out, err := s.Run(imgs)
		if err != nil {
			t.Fatal(err)
		}
		check(out)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := s.Run(imgs); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Set.Run allocates %v times per frame after warm-up, want 0", allocs)
	}
	out, _ := s.Run(imgs)
	check(out)

	// One bad image: the error names the detector; the others still ran.
	bad := []Image{img, {Width: 64, Height: 64, Stride: 192, Pix: make([]byte, 192*64)}, img, img}
	if _, err := s.Run(bad); err == nil || !strings.Contains(err.Error(), "detector small") {
		t.Fatalf("bad image: %v", err)
	}
	if _, err := s.Run(imgs[:2]); err == nil || !strings.Contains(err.Error(), "got 2 images") {
		t.Fatalf("wrong image count: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(imgs); err == nil {
		t.Fatal("Run after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestOpenSetFailureClosesOpened(t *testing.T) {
	setup(t)
	dcfg, _ := setConfigs()
	dcfg = append(dcfg, DetectorConfig{Name: "ms", Model: fixture("meanstd_blur.onnx")})
	if _, err := OpenSet(dcfg, nil); err == nil || !strings.Contains(err.Error(), "used twice") {
		t.Fatalf("duplicate names: %v", err)
	}
	dcfg, _ = setConfigs()
	if _, err := OpenSet(dcfg, &ClassifierConfig{Model: fixture("missing.onnx")}); err == nil || !strings.Contains(err.Error(), "missing.onnx") {
		t.Fatalf("missing classifier: %v", err)
	}
}

// Thousands of create/close cycles of the daemon's whole inference stage
// (3 detectors + classifier, warm-up, one frame) must not grow the resident
// memory or leak file descriptors.
func TestOpenCloseCyclesDoNotLeak(t *testing.T) {
	setup(t)
	cycles := 2000
	if testing.Short() {
		cycles = 200
	}
	dcfg, ccfg := setConfigs()
	img := testImage(t)
	imgs := []Image{img, img, img, img}
	cycle := func() {
		s, err := OpenSet(dcfg, ccfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Warmup(1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Run(imgs); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	quiet := captureLogs(t) // session logs would flood the test output
	_ = quiet
	for i := 0; i < 30; i++ { // let allocator arenas and the Go heap settle
		cycle()
	}
	runtime.GC()
	rss0, fd0, heap0 := procStatus(t, "VmRSS"), openFDs(t), cHeapInUse()
	for i := 0; i < cycles; i++ {
		cycle()
	}
	runtime.GC()
	rss1, fd1, heap1 := procStatus(t, "VmRSS"), openFDs(t), cHeapInUse()
	t.Logf("%d cycles: C heap in use %d -> %d kB, VmRSS %d -> %d kB, fds %d -> %d", cycles, heap0/1024, heap1/1024, rss0, rss1, fd0, fd1)
	// A leaked set holds 4 sessions and several 256x256 float tensors (> 1 MB
	// in all); even 1 kB per cycle would show as 2 MB here.
	if heap1-heap0 > 1<<20 {
		t.Fatalf("C heap in use grew by %d kB over %d cycles", (heap1-heap0)/1024, cycles)
	}
	// RSS also moves with glibc's per-thread arenas (fragmentation, not
	// leaks; flat under MALLOC_ARENA_MAX=1), so it only gets a loose bound.
	if rss1-rss0 > 128*1024 {
		t.Fatalf("RSS grew by %d kB over %d cycles", rss1-rss0, cycles)
	}
	if fd1 > fd0+2 {
		t.Fatalf("file descriptors grew from %d to %d", fd0, fd1)
	}
}
