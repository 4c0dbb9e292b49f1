package demo

import (
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

// demoAlign is the line's fixturing: on with Jitter, the reference that
// jitterData kept.
func demoAlign(data string, o LineOptions) capture.AlignConfig {
	if !o.Jitter {
		return capture.AlignConfig{}
	}
	a := capture.AlignConfig{Reference: filepath.Join(data, "reference.png")}
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
