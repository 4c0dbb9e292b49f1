package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/fit"
	"github.com/segad-edge/segad-edge/result"
)

// Pose jitter of `segad demo --jitter`: parts arrive shifted by up to
// JitterShift of the frame's side and turned by up to JitterAngle degrees,
// as on a conveyor without a nest (the fixturing issue's figures).
const (
	JitterShift = 0.06
	JitterAngle = 4.0
)

// JitterFolder moves every part image in dir (PNG files other than masks)
// in place by a seeded random shift and rotation about the image centre,
// border replicate (the camera sees more of the same background). Image n
// in name order gets the n-th draw of seed.
func JitterFolder(dir string, seed uint64) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.png"))
	if err != nil {
		return fmt.Errorf("jitter %s: %w", dir, err)
	}
	sort.Strings(files)
	i := 0
	for _, p := range files {
		if strings.HasPrefix(filepath.Base(p), "mask") {
			continue
		}
		if err := jitterFile(p, rand.New(rand.NewPCG(seed, uint64(i)))); err != nil {
			return err
		}
		i++
	}
	return nil
}

func jitterFile(path string, rng *rand.Rand) error {
	m, err := capture.ReadImage(path)
	if err != nil {
		return fmt.Errorf("jitter: %w", err)
	}
	defer m.Close()
	w, h := float64(m.Cols()), float64(m.Rows())
	dx := (2*rng.Float64() - 1) * JitterShift * w
	dy := (2*rng.Float64() - 1) * JitterShift * h
	r := (2*rng.Float64() - 1) * JitterAngle * math.Pi / 180
	cs, sn := math.Cos(r), math.Sin(r)
	cx, cy := (w-1)/2, (h-1)/2
	wm := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer wm.Close()
	for k, v := range []float64{cs, sn, cx - cs*cx - sn*cy + dx, -sn, cs, cy + sn*cx - cs*cy + dy} {
		wm.SetDoubleAt(k/3, k%3, v)
	}
	out := gocv.NewMat()
	defer out.Close()
	gocv.WarpAffineWithParams(m, &out, wm, image.Pt(m.Cols(), m.Rows()), gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
	if err := capture.WriteImage(path, out); err != nil {
		return fmt.Errorf("jitter: %w", err)
	}
	return nil
}

// FixturingSummary is how fixturing fared on a jittered demo line.
type FixturingSummary struct {
	Located    int     `json:"located"`
	NotLocated int     `json:"not_located"`
	MeanShift  float64 `json:"mean_shift_px"`
	MaxShift   float64 `json:"max_shift_px"`
	MeanAngle  float64 `json:"mean_abs_angle_deg"`
	MaxAngle   float64 `json:"max_abs_angle_deg"`
	// Without is the same jittered parts scored by a line without
	// fixturing (its own detectors and forest, fitted on the unregistered
	// jittered parts), for the side-by-side in the summary.
	Without *Unfixtured `json:"without_fixturing,omitempty"`
}

// Unfixtured is SegAD without fixturing on the demo's jittered stream:
// AUROC, FPR@95TPR, and the share of defects caught and of good parts
// rejected at that bundle's suggested threshold.
type Unfixtured struct {
	AUROC       float64 `json:"auroc"`
	FPRAt95TPR  float64 `json:"fpr_at_95tpr"`
	Threshold   float64 `json:"threshold"`
	Recall      float64 `json:"recall"`
	FalseReject float64 `json:"false_reject_rate"`
	Parts       int     `json:"parts"`
}

// compareStep is the demo step that fits and scores the line without
// fixturing.
const compareStep = "compare: the same parts, no fixturing"

// comparisonFile holds the Unfixtured result under the demo folder, so a
// cached run still prints it.
const comparisonFile = "unfixtured/comparison.json"

// compareUnfixtured fits the demo's detectors and forest again on the
// jittered parts as they are (no capture.align), then scores the jittered
// stream offline with them through fit.EvaluateBundle (the same detectors,
// mask and feature code as the line) and writes the result to
// comparisonFile.
func compareUnfixtured(ctx context.Context, o LineOptions, data string, port int) error {
	dir := filepath.Join(o.Dir, "unfixtured")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := fitDemoDetectors(ctx, o, data, filepath.Join(dir, "detector"), capture.AlignConfig{}); err != nil {
		return err
	}
	cfgPath := filepath.Join(o.Dir, "segad-unfixtured.yaml")
	if err := writeDemoConfig(cfgPath, port, false, "unfixtured/detector", "unfixtured/bundle"); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	if err := fitDemoForest(cfg, o, data, cfg.SegAD.Bundle); err != nil {
		return err
	}
	// The stream's parts as eval's good/ and bad/<kind>/ folders (links).
	stream, err := readManifest(filepath.Join(data, "stream", ManifestName))
	if err != nil {
		return err
	}
	good, bad := filepath.Join(dir, "stream", "good"), filepath.Join(dir, "stream", "bad")
	for _, p := range stream.Parts {
		d := good
		if p.Kind != PartGood {
			d = filepath.Join(bad, string(p.Kind))
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		src, err := filepath.Abs(filepath.Join(data, "stream", p.File))
		if err != nil {
			return err
		}
		if err := os.Symlink(src, filepath.Join(d, p.File)); err != nil {
			return fmt.Errorf("compare without fixturing: %w", err)
		}
	}
	ev, err := fit.EvaluateBundle(fit.EvaluateOptions{Bundle: cfg.SegAD.Bundle, Config: cfg, Good: good, Bad: bad,
		Images: fit.ImageOptions{Progress: o.Progress}, Log: o.Log})
	if err != nil {
		return fmt.Errorf("compare without fixturing: %w", err)
	}
	u := Unfixtured{AUROC: ev.AUROC, FPRAt95TPR: ev.FPRAt95TPR, Threshold: ev.Threshold, Recall: ev.Recall, FalseReject: ev.FPR,
		Parts: ev.Counts.Good + ev.Counts.Bad}
	b, _ := json.MarshalIndent(u, "", "  ")
	return os.WriteFile(filepath.Join(o.Dir, comparisonFile), b, 0o644)
}

// readComparison reads what compareUnfixtured wrote.
func readComparison(dir string) (*Unfixtured, error) {
	b, err := os.ReadFile(filepath.Join(dir, comparisonFile))
	if err != nil {
		return nil, fmt.Errorf("demo: the comparison without fixturing: %w (remove %s to redo it)", err, filepath.Join(dir, "demo-state.json"))
	}
	var u Unfixtured
	if err := json.Unmarshal(b, &u); err != nil {
		return nil, fmt.Errorf("demo: %s: %w", filepath.Join(dir, comparisonFile), err)
	}
	return &u, nil
}

// jitterData keeps one good detector part, unmoved, as the fixturing
// reference, then jitters every part image of the demo's data folders.
func jitterData(data string, seed uint64) error {
	goods, err := filepath.Glob(filepath.Join(data, "detector", "good", "*.png"))
	if err != nil || len(goods) == 0 {
		return fmt.Errorf("jitter: no good parts in %s", filepath.Join(data, "detector", "good"))
	}
	sort.Strings(goods)
	m, err := capture.ReadImage(goods[0])
	if err != nil {
		return fmt.Errorf("jitter: %w", err)
	}
	err = capture.WriteImage(filepath.Join(data, "reference.png"), m)
	m.Close()
	if err != nil {
		return fmt.Errorf("jitter: %w", err)
	}
	dirs := []string{filepath.Join(data, "detector", "good"), filepath.Join(data, "fit", "good"), filepath.Join(data, "stream")}
	bads, _ := filepath.Glob(filepath.Join(data, "fit", "bad", "*"))
	dirs = append(dirs, bads...)
	for i, d := range dirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			continue
		}
		if err := JitterFolder(d, seed*1000+uint64(i)); err != nil {
			return err
		}
	}
	return nil
}

// demoAlignSmooth is the demo line's capture.align.smooth: the blur off.
// The demo parts share one texture, so the texture is what locates them and
// blurring it away only loses precision: measured on seed 1, 200 parts,
// AUROC 0.926 and 23% of good parts rejected at smooth 0.004, against 0.873
// and 43% at the default 0.05 (docs/fixturing.md).
const demoAlignSmooth = 0.004

// demoAlign is the line's fixturing: on with Jitter, the reference that
// jitterData kept.
func demoAlign(data string, o LineOptions) capture.AlignConfig {
	if !o.Jitter {
		return capture.AlignConfig{}
	}
	a := capture.AlignConfig{Reference: filepath.Join(data, "reference.png"), Smooth: demoAlignSmooth}
	a.Defaults()
	return a
}

// fixturingOf summarises the poses of a line's results; nil when no result
// carries one (fixturing off).
func fixturingOf(results map[string]result.Result) *FixturingSummary {
	var fx FixturingSummary
	n := 0
	for _, r := range results {
		if r.Pose == nil {
			continue
		}
		n++
		if r.ReasonCode == result.ReasonNotLocated {
			fx.NotLocated++
			continue
		}
		fx.Located++
		sh := math.Hypot(r.Pose.DX, r.Pose.DY)
		fx.MeanShift += sh
		fx.MaxShift = math.Max(fx.MaxShift, sh)
		fx.MeanAngle += math.Abs(r.Pose.Angle)
		fx.MaxAngle = math.Max(fx.MaxAngle, math.Abs(r.Pose.Angle))
	}
	if n == 0 {
		return nil
	}
	if fx.Located > 0 {
		fx.MeanShift /= float64(fx.Located)
		fx.MeanAngle /= float64(fx.Located)
	}
	return &fx
}
