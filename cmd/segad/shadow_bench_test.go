package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/assurance/shadow"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

// shadowBench is the benchmark's fixture: bundles A (live), B (a candidate
// for the live detectors) and C (a candidate for its own detector ms2).
var shadowBench struct {
	once sync.Once
	dir  string
	base string // config A's text
	err  error
}

func shadowBenchFixture(b *testing.B) (dir, base string) {
	shadowBench.once.Do(func() {
		dir, err := os.MkdirTemp("", "segad-shadow-bench")
		if err != nil {
			shadowBench.err = err
			return
		}
		shadowBench.dir = dir
		cfgA, _ := shadowBundles(b, dir)
		data, err := os.ReadFile(cfgA)
		if err != nil {
			shadowBench.err = err
			return
		}
		shadowBench.base = string(data)
		other := filepath.Join(dir, "other.yaml")
		text := strings.Replace(strings.Replace(shadowBench.base, "name: ms", "name: ms2", 1), "bundle: bundleA", "bundle: bundleC", 1)
		if err := os.WriteFile(other, []byte(text), 0o644); err != nil {
			shadowBench.err = err
			return
		}
		if out, err := execCmd(newFitCmd(), "--config", other, "--good", filepath.Join(dir, "trainA", "good"), "--bad", filepath.Join(dir, "trainA", "bad"),
			"-o", filepath.Join(dir, "bundleC"), "-q"); err != nil {
			shadowBench.err = fmt.Errorf("fit C: %v\n%s", err, out)
		}
	})
	if shadowBench.err != nil {
		b.Fatal(shadowBench.err)
	}
	return shadowBench.dir, shadowBench.base
}

// processCPU is the process's user plus system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkShadowCost is the line's per-frame cost (the whole pipeline,
// as `segad bench` runs it: repeated frames through daemon.Run, results
// collected) side by side with and without a shadow candidate:
//
//   - main: no shadow runner at all (the daemon as before segad.shadow);
//   - off: the runner present, segad.shadow unset (what every line pays);
//   - rows-0.25, rows-1: a candidate for the live detectors (its forest on
//     the live feature rows) on a quarter of the frames, on every frame;
//   - own-0.25, own-1: a candidate with its own detector;
//   - own-alone: that candidate's own per-frame cost, as the live model.
//
// Compare ns/frame and cpu-ms/frame of each with main (the README's
// ratios; scripts/bench/shadow_cost.py runs them interleaved): off must
// not differ measurably, and own-0.25 may add at most 0.25 x own-alone
// plus 5%.
func BenchmarkShadowCost(b *testing.B) {
	dir, base := shadowBenchFixture(b)
	det := filepath.Join(testenv.RepoRoot(b), "infer", "testdata", "meanstd_blur.onnx")
	img, err := testPartPNG()
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		runner bool
		shadow string // segad.shadow's YAML; "" unset
		alone  bool   // candidate C as the live model
	}{
		{"main", false, "", false},
		{"off", true, "", false},
		{"rows-0.25", true, "{bundle: bundleB, share: 0.25}", false},
		{"rows-1", true, "{bundle: bundleB, share: 1}", false},
		{"own-0.25", true, fmt.Sprintf("{bundle: bundleC, share: 0.25, detectors: [{name: ms2, model: %q}]}", det), false},
		{"own-1", true, fmt.Sprintf("{bundle: bundleC, share: 1, detectors: [{name: ms2, model: %q}]}", det), false},
		{"own-alone", false, "", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			text := base
			if bc.alone {
				text = strings.Replace(strings.Replace(text, "name: ms", "name: ms2", 1), "bundle: bundleA", "bundle: bundleC", 1)
			}
			if bc.shadow != "" {
				text = strings.Replace(text, "  bundle: bundleA\n", "  bundle: bundleA\n  shadow: "+bc.shadow+"\n", 1)
			}
			cfg, err := config.Parse(filepath.Join(dir, "bench.yaml"), []byte(text+"pipeline: {overflow: block, warmup: 1}\n"))
			if err != nil {
				b.Fatal(err)
			}
			src, err := newRepeatSource(img, b.N)
			if err != nil {
				b.Fatal(err)
			}
			defer src.original.Close()
			col := &collector{}
			opt := daemon.Options{Logger: quietLogger(), Source: src.open, Publisher: col}
			if bc.runner {
				opt.Shadow = shadow.New(quietLogger())
			}
			d, err := daemon.New(cfg, opt)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			// CPU time of the whole process (ONNX Runtime's threads, the
			// candidate's worker) beside wall time: on a shared machine
			// the other processes' load moves wall time far more.
			cpu0 := processCPU()
			b.ResetTimer()
			if err := d.Run(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/frame")
			if col.count() != b.N {
				b.Fatalf("%d results for %d frames", col.count(), b.N)
			}
		})
	}
}
