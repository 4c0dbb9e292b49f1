package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/logging"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/result"
)

type benchOptions struct {
	cfgPath string
	frames  int
	image   string
	jsonOut bool
	cpuProf string
}

// newBenchCmd is `segad bench`.
func newBenchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench --config FILE [--frames N] [--image IMG]",
		Short: "Measure the pipeline: per-stage p50/p99 latency and throughput against the detectors alone",
		Long: `bench pushes N frames through the configured pipeline (capture preprocessing,
detectors, SegAD features, forest, verdict, result encoding; results are discarded
instead of published) and then runs the detectors alone on the same frame N times,
so the pipeline's overhead is measured side by side in one run.

The frame is --image, or a generated gray test part when none is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.cfgPath, "config", "c", "/etc/segad/segad.yaml", "configuration file")
	f.IntVarP(&o.frames, "frames", "n", 200, "frames to run")
	f.StringVar(&o.image, "image", "", "image file to use as the frame (default: a generated test image)")
	f.BoolVar(&o.jsonOut, "json", false, "print the figures as one JSON object")
	f.StringVar(&o.cpuProf, "cpuprofile", "", "write a Go CPU profile of the pipeline run to this file")
	return cmd
}

// benchReport is what bench prints.
type benchReport struct {
	Frames      int     `json:"frames"`
	PipelineFPS float64 `json:"pipeline_fps"`
	// SessionsFPS is what the detectors alone allow: one frame per sum of
	// the members' run times, each run on its own (the baseline).
	SessionsFPS float64 `json:"sessions_fps"`
	// ConcurrentFPS is the detectors alone run concurrently as the line
	// runs them (infer.Set), the stricter baseline when K > 1.
	ConcurrentFPS float64 `json:"detectors_concurrent_fps"`
	// Efficiency is PipelineFPS / SessionsFPS.
	Efficiency float64            `json:"efficiency"`
	P50MS      map[string]float64 `json:"p50_ms"`
	P99MS      map[string]float64 `json:"p99_ms"`
}

func runBench(ctx context.Context, w io.Writer, o benchOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.frames < 1 {
		return fmt.Errorf("--frames %d: need at least 1", o.frames)
	}
	cfg, err := config.Load(o.cfgPath)
	if err != nil {
		return err
	}
	cfg.Audit.Dir = ""
	cfg.Pipeline.Overflow = "block"
	if err := capture.SetLimits(cfg.Capture.Limits); err != nil {
		return fmt.Errorf("%s: %w", o.cfgPath, err)
	}
	img, err := benchImage(o.image)
	if err != nil {
		return err
	}
	src, err := newRepeatSource(img, o.frames)
	if err != nil {
		return err
	}
	defer src.original.Close()
	col := &collector{}
	log, _ := logging.New(os.Stderr, "warn", cfg.Log.Format)
	d, err := daemon.New(cfg, daemon.Options{Logger: log, Source: src.open, Publisher: col})
	if err != nil {
		return err
	}
	model := d.Model()
	sizes := model.Detectors.InputSizes()
	// Prepare one frame for the detectors-alone run before Run closes them,
	// shaped as the source shapes its frames.
	probe := capture.DecodeFrame(img, src.pre)
	defer probe.Close()
	if probe.Err != nil {
		d.Close()
		return fmt.Errorf("bench image: %w", probe.Err)
	}
	pix, pw, ph, stride, err := probe.Pixels()
	if err != nil {
		d.Close()
		return err
	}
	imgs := make([]infer.Image, len(sizes))
	for i, sz := range sizes {
		if sz.Width != pw || sz.Height != ph {
			d.Close()
			return fmt.Errorf("bench needs every detector and the classifier at one input size; %s differs from %dx%d", sz, pw, ph)
		}
		imgs[i] = infer.Image{Width: pw, Height: ph, Stride: stride, Pix: pix}
	}
	// Detectors alone first (the same sessions the pipeline uses): each
	// member on its own, then all concurrently as the line runs them.
	t0 := time.Now()
	for i := 0; i < o.frames; i++ {
		if err := model.Detectors.RunEach(imgs); err != nil {
			d.Close()
			return err
		}
	}
	sessions := time.Since(t0)
	t0 = time.Now()
	for i := 0; i < o.frames; i++ {
		if _, err := model.Detectors.Run(imgs); err != nil {
			d.Close()
			return fmt.Errorf("detectors alone: %w", err)
		}
	}
	alone := time.Since(t0)
	// The whole pipeline.
	if o.cpuProf != "" {
		pf, err := os.Create(o.cpuProf)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	t0 = time.Now()
	if err := d.Run(ctx); err != nil {
		return err
	}
	pipe := time.Since(t0)
	rep := benchReport{Frames: o.frames,
		PipelineFPS:   float64(o.frames) / pipe.Seconds(),
		SessionsFPS:   float64(o.frames) / sessions.Seconds(),
		ConcurrentFPS: float64(o.frames) / alone.Seconds(),
		P50MS:         map[string]float64{}, P99MS: map[string]float64{}}
	rep.Efficiency = rep.PipelineFPS / rep.SessionsFPS
	for stage, xs := range col.latencies() {
		sort.Float64s(xs)
		rep.P50MS[stage] = xs[len(xs)/2]
		rep.P99MS[stage] = xs[min(len(xs)-1, len(xs)*99/100)]
	}
	if col.count() != o.frames {
		return fmt.Errorf("bench: %d results for %d frames", col.count(), o.frames)
	}
	if o.jsonOut {
		return json.NewEncoder(w).Encode(rep)
	}
	fmt.Fprintf(w, "frames %d\n", rep.Frames)
	stages := make([]string, 0, len(rep.P50MS))
	for s := range rep.P50MS {
		stages = append(stages, s)
	}
	sort.Strings(stages)
	for _, s := range stages {
		fmt.Fprintf(w, "  %-6s p50 %8.3f ms   p99 %8.3f ms\n", s, rep.P50MS[s], rep.P99MS[s])
	}
	fmt.Fprintf(w, "throughput: pipeline %.1f frames/s\n", rep.PipelineFPS)
	fmt.Fprintf(w, "  detectors alone, sum of session run times: %.1f frames/s -> pipeline at %.1f%%\n", rep.SessionsFPS, 100*rep.Efficiency)
	fmt.Fprintf(w, "  detectors alone, run concurrently:         %.1f frames/s -> pipeline at %.1f%%\n", rep.ConcurrentFPS, 100*rep.PipelineFPS/rep.ConcurrentFPS)
	return nil
}

// benchImage reads the image file, or encodes a generated test part.
func benchImage(path string) ([]byte, error) {
	if path != "" {
		b, err := capture.ReadImageFile(path) // bounded by capture.limits.max_bytes
		if err != nil {
			return nil, fmt.Errorf("bench image: %w", err)
		}
		return b, nil
	}
	return testPartPNG()
}

// repeatSource hands out the same image n times, as a camera delivers raw
// frames: decoded once, then copied and preprocessed (ROI, resize, colour)
// for every frame.
type repeatSource struct {
	original gocv.Mat
	pre      capture.PreprocessConfig
	n        int
	seq      uint64
}

func newRepeatSource(data []byte, n int) (*repeatSource, error) {
	// capture's guarded decoder: header and limits checked, OpenCV's
	// exceptions caught (gocv.IMDecode aborts the process on them).
	m, err := capture.DecodeImage(data)
	if err != nil {
		return nil, fmt.Errorf("bench image: %w", err)
	}
	return &repeatSource{original: m, n: n}, nil
}

// open is the daemon's Options.Source: the frames are shaped as the
// model's preprocessing says.
func (s *repeatSource) open(pc capture.PreprocessConfig) (capture.Source, error) {
	s.pre = pc
	return s, nil
}

func (s *repeatSource) Name() string { return "bench" }

func (s *repeatSource) Next(ctx context.Context) (*capture.Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.seq >= uint64(s.n) {
		return nil, io.EOF
	}
	s.seq++
	f := capture.FrameFromMat(s.original.Clone(), s.pre)
	f.Source, f.Seq = "bench", s.seq
	return f, nil
}

func (s *repeatSource) State() capture.SourceState { return capture.SourceState{Connected: true} }
func (s *repeatSource) Close() error               { return nil }

// collector is bench's Publisher: it keeps the latencies, drops the rest.
type collector struct {
	mu  sync.Mutex
	lat map[string][]float64
	n   int
}

func (c *collector) Publish(_ context.Context, r result.Result) error {
	if _, err := json.Marshal(r); err != nil { // encoding is part of the cost
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lat == nil {
		c.lat = map[string][]float64{}
	}
	for k, v := range r.LatencyMS {
		c.lat[k] = append(c.lat[k], v)
	}
	c.n++
	return nil
}

func (c *collector) Close(context.Context) error { return nil }

func (c *collector) Stats() mqtt.Stats { return mqtt.Stats{} }

func (c *collector) latencies() map[string][]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lat
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
