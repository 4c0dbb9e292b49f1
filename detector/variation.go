package detector

import (
	"github.com/segad-edge/segad-edge/capture"

	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"strconv"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/schollz/progressbar/v3"
)

// VariationConfig holds the fitting parameters of the variation model.
type VariationConfig struct {
	// Size is the square input size (default 256).
	Size int
	// Align is the line's fixturing (capture.align): training images are
	// registered to its reference and warped into its pose, as frames are
	// at run time. Zero: off.
	Align capture.AlignConfig
	// Sigma of the Gaussian blur of the map, in pixels (default 4, as anomalib).
	Sigma float64
	// MinSpread floors the per-pixel spread (input units, [0,1] scale): flat,
	// saturated or perfectly repeatable pixels have MAD 0 and would otherwise
	// turn sensor noise into huge scores. Default 0.02 (about 5 grey levels).
	MinSpread float64
	// Reservoir bounds memory: at most this many images (8-bit, SxSx3 each,
	// 192 KiB at 256) are kept, chosen by reservoir sampling, and the median
	// and MAD are exact over them. Default 256 (48 MiB at 256x256).
	Reservoir int
	// MinImages is the smallest accepted training set (default DefaultMinImages).
	MinImages int
	// Seed drives the reservoir sampling.
	Seed int64
	// Progress receives a progress bar when not nil (the command passes stderr).
	Progress io.Writer
}

func (c *VariationConfig) defaults() {
	if c.Size == 0 {
		c.Size = 256
	}
	if c.Sigma == 0 {
		c.Sigma = 4
	}
	if c.MinSpread == 0 {
		c.MinSpread = 0.02
	}
	if c.Reservoir == 0 {
		c.Reservoir = 256
	}
	if c.MinImages == 0 {
		c.MinImages = DefaultMinImages
	}
}

// Variation is a fitted variation model: per pixel and channel the median of
// the good images and a robust spread (1.4826*MAD, floored). Its map is
// mean over channels of |x - median| / spread, Gaussian-blurred.
type Variation struct {
	Config  VariationConfig
	Median  []float32 // 3*S*S, planar RGB, [0,1] scale
	Spread  []float32 // 3*S*S
	NImages int       // images streamed while fitting
}

// FitVariation fits a variation model on the good images at paths, streaming
// them one at a time (only the bounded reservoir stays in memory).
func FitVariation(ctx context.Context, paths []string, cfg VariationConfig) (*Variation, error) {
	cfg.defaults()
	if len(paths) < cfg.MinImages {
		return nil, fmt.Errorf("fit variation model: %d good images given, at least %d needed", len(paths), cfg.MinImages)
	}
	if 2*int(4*cfg.Sigma+0.5) >= cfg.Size {
		return nil, fmt.Errorf("fit variation model: blur sigma %g is too large for size %d", cfg.Sigma, cfg.Size)
	}
	rng := rand.New(rand.NewSource(cfg.Seed))
	res := make([][]uint8, 0, cfg.Reservoir)
	var sizes sizeChecker
	bar := newBar(cfg.Progress, len(paths), "variation: reading good images")
	skips := notLocatedSkips{total: len(paths)}
	for i, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("fit variation model: %w", err)
		}
		f, err := loadAligned(p, cfg.Size, cfg.Align)
		if skip, serr := skips.skip(err, p); skip {
			bar.Add(1)
			continue
		} else if serr != nil {
			return nil, fmt.Errorf("fit variation model: %w", serr)
		}
		if err != nil {
			return nil, fmt.Errorf("fit variation model: %w", err)
		}
		if err := sizes.check(p, f); err != nil {
			return nil, fmt.Errorf("fit variation model: %w", err)
		}
		// Algorithm R: every image ends up in the reservoir with equal chance.
		if len(res) < cfg.Reservoir {
			res = append(res, f.chw)
		} else if j := rng.Intn(i + 1); j < cfg.Reservoir {
			res[j] = f.chw
		}
		bar.Add(1)
	}
	bar.Finish()
	v := &Variation{Config: cfg, NImages: len(paths) - skips.n}
	v.Median, v.Spread = robustStats(res, 3*cfg.Size*cfg.Size, cfg.MinSpread)
	slog.Info("variation model fitted", "images", len(paths), "reservoir", len(res), "size", cfg.Size)
	return v, nil
}

// robustStats returns per value position the median of the reservoir
// images (in [0,1] units) and the spread max(1.4826*MAD, minSpread). Values
// are 8-bit, so both medians come from 256-bin histograms, not sorts.
func robustStats(res [][]uint8, n int, minSpread float64) (median, spread []float32) {
	median, spread = make([]float32, n), make([]float32, n)
	parallelFor(n, func(lo, hi int) {
		var hist [256]int
		var dev [511]int
		for p := lo; p < hi; p++ {
			hist = [256]int{}
			for _, img := range res {
				hist[img[p]]++
			}
			med2 := medianTimes2(hist[:], len(res)) // 2*median, an integer
			dev = [511]int{}
			for val, c := range hist {
				if c > 0 {
					d := 2*val - med2
					if d < 0 {
						d = -d
					}
					dev[d] += c // 2*|x - median|
				}
			}
			mad := float64(medianTimes2(dev[:], len(res))) / 4 // 2*median of 2*|dev|
			sp := 1.4826 * mad / 255
			if sp < minSpread {
				sp = minSpread
			}
			median[p] = float32(med2) / 2 / 255
			spread[p] = float32(sp)
		}
	})
	return median, spread
}

// medianTimes2 returns twice numpy's median of a sample given as a histogram
// over integer values (average of the two middle values for even n).
func medianTimes2(hist []int, n int) int {
	lo, hi := (n-1)/2, n/2 // 0-based ranks of the middle values
	a, b := -1, -1
	cum := 0
	for val, c := range hist {
		cum += c
		if a < 0 && cum > lo {
			a = val
		}
		if cum > hi {
			b = val
			break
		}
	}
	return a + b
}

// Map computes the model's anomaly map directly in Go from an input in the
// model layout ([1,3,S,S] RGB [0,1]); it is the reference the written ONNX
// graph is checked against.
func (v *Variation) Map(input []float32) []float32 {
	s := v.Config.Size
	n := s * s
	m := make([]float32, n)
	for c := 0; c < 3; c++ {
		for i := 0; i < n; i++ {
			p := c*n + i
			d := input[p] - v.Median[p]
			if d < 0 {
				d = -d
			}
			m[i] += d / v.Spread[p]
		}
	}
	for i := range m {
		m[i] /= 3
	}
	return gaussianBlur(m, s, s, v.Config.Sigma)
}

// ONNX writes the model as an ONNX graph: input "input" [1,3,S,S], output
// "anomaly_map" [1,1,S,S].
func (v *Variation) ONNX() ([]byte, error) {
	s := int64(v.Config.Size)
	var b graphBuilder
	w := make([]float32, len(v.Spread))
	for i, sp := range v.Spread {
		w[i] = 1 / (3 * sp) // folds the channel mean into the weights
	}
	med := b.floatInit("median", []int64{1, 3, s, s}, v.Median)
	wt := b.floatInit("inv_spread", []int64{1, 3, s, s}, w)
	d := b.node("Sub", []string{"input", med})
	a := b.node("Abs", []string{d})
	z := b.node("Mul", []string{a, wt})
	m := b.node("ReduceSum", []string{z}, attrInts("axes", 1), attrInt("keepdims", 1))
	b.blur(m, v.Config.Sigma, "anomaly_map")
	meta := map[string]string{
		"segad.kind":          "variation",
		"segad.size":          strconv.Itoa(v.Config.Size),
		"segad.sigma":         strconv.FormatFloat(v.Config.Sigma, 'g', -1, 64),
		"segad.min_spread":    strconv.FormatFloat(v.Config.MinSpread, 'g', -1, 64),
		"segad.reservoir":     strconv.Itoa(v.Config.Reservoir),
		"segad.images":        strconv.Itoa(v.NImages),
		"segad.seed":          strconv.FormatInt(v.Config.Seed, 10),
		"segad.preprocessing": preprocessingNote,
		"segad.map":           "mean_c |x - median| / max(1.4826*MAD, min_spread), Gaussian blur (reflect)",
	}
	model := b.model("segad_variation",
		[]*onnx.ValueInfoProto{floatValueInfo("input", 1, 3, s, s)},
		[]*onnx.ValueInfoProto{floatValueInfo("anomaly_map", 1, 1, s, s)}, meta, nil)
	return marshalModel(model)
}

// preprocessingNote is recorded in every model so a reader of the file knows
// what input it was fitted on.
const preprocessingNote = "capture.DecodeFrame (IMDecode BGR, resize SxS INTER_AREA) -> infer.FillNCHW (RGB, x/255), NCHW float32"

// newBar returns a progress bar on w, or a silent one when w is nil.
func newBar(w io.Writer, n int, what string) *progressbar.ProgressBar {
	if w == nil {
		return progressbar.NewOptions(n, progressbar.OptionSetVisibility(false))
	}
	return progressbar.NewOptions(n,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(200*time.Millisecond), // redraws cost more than a coreset step
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
}
