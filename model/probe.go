package model

import (
	"fmt"
	"math"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/infer"
)

// probeFrames are the frames a built model is tried on before it may
// inspect parts: the mid-gray frame warm-up uses, and a smooth colour
// gradient that reaches 0 and 255 in every channel (dark and bright
// pixels, as real parts have; a constant frame alone misses graphs that
// fail only on some pixel values, such as a logarithm of a dark pixel).
var probeFrames = []struct {
	name  string
	pixel func(x, y, w, h int) (b, g, r uint8)
}{
	{"mid-gray", func(int, int, int, int) (uint8, uint8, uint8) { return 128, 128, 128 }},
	{"colour-gradient", func(x, y, w, h int) (uint8, uint8, uint8) {
		return uint8(255 * x / max(w-1, 1)), uint8(255 * y / max(h-1, 1)), uint8(255 * (x + y) / max(w+h-2, 1))
	}},
}

// probe runs a built model on probeFrames the way a part goes through the
// line (detectors and classifier, features, forest when forest != "") and
// refuses it when a map has the wrong size or a value that is not finite,
// or the classifier score or the forest score is not finite, naming the
// model file and output. Such a model would reject every part as
// invalid_map or invalid_score (or, for a NaN feature, follow the forest's
// default branches): it is refused up front, at start, reload and `segad
// config check`, rather than failing frame by frame.
func probe(m *Model, cfg *config.Config, forest string) error {
	imgs := make([]infer.Image, len(m.sizes))
	maps := make([][]float32, len(m.Names))
	var row []float32
	if m.Scorer != nil {
		row = make([]float32, m.Extractor.NumFeatures())
	}
	for _, pf := range probeFrames {
		for i, sz := range m.sizes {
			pix := make([]byte, 3*sz.Width*sz.Height)
			for y := 0; y < sz.Height; y++ {
				for x := 0; x < sz.Width; x++ {
					o := 3 * (y*sz.Width + x)
					pix[o], pix[o+1], pix[o+2] = pf.pixel(x, y, sz.Width, sz.Height)
				}
			}
			imgs[i] = infer.Image{Width: sz.Width, Height: sz.Height, Stride: 3 * sz.Width, Pix: pix}
		}
		m.runMu.Lock()
		out, err := m.Detectors.Run(imgs)
		if err != nil {
			m.runMu.Unlock()
			return fmt.Errorf("run the models on a %s test frame: %w", pf.name, err)
		}
		for i, o := range out.Detectors {
			dc := cfg.Detectors[i]
			w, h := m.Mask.Width, m.Mask.Height
			if len(o.Map) != w*h {
				m.runMu.Unlock()
				return fmt.Errorf("detector %s (model %s, map_output %s) gives a %d-value map on a %s test frame, want %dx%d", dc.Name, dc.Model, dc.MapOutput, len(o.Map), pf.name, w, h)
			}
			if j := infer.FirstNaN(o.Map); j >= 0 {
				m.runMu.Unlock()
				return fmt.Errorf("detector %s (model %s, map_output %s) gives %v at map pixel (%d, %d) on a %s test frame: a map that is not a finite number cannot be judged (every part would be rejected as invalid_map); fix or re-export the model and check it with `segad inspect` on a good part",
					dc.Name, dc.Model, dc.MapOutput, o.Map[j], j%w, j/w, pf.name)
			}
			maps[i] = append(maps[i][:0], o.Map...)
		}
		class, hasClass := out.Class, out.HasClass
		if m.Frame != nil {
			if err := m.Frame.probe(pf.name, pf.pixel, cfg.SegAD.Mask.Model); err != nil {
				m.runMu.Unlock()
				return err
			}
		}
		m.runMu.Unlock()
		if hasClass && !finite32(class) {
			return fmt.Errorf("classifier (model %s, output %s) gives score %v on a %s test frame: a score that is not a finite number cannot be judged (every part would be rejected); fix or re-export the model",
				cfg.Classifier.Model, cfg.Classifier.Output, class, pf.name)
		}
		if m.Scorer == nil {
			continue
		}
		m.scoreMu.Lock()
		err = m.Extractor.Extract(row, maps, class)
		var score float64
		if err == nil {
			score = m.Scorer.Margin(row)
		}
		m.scoreMu.Unlock()
		if err != nil {
			return fmt.Errorf("features of a %s test frame: %w", pf.name, err)
		}
		if math.IsNaN(score) || math.IsInf(score, 0) {
			return fmt.Errorf("forest %s gives score %v on a %s test frame (its features are finite): a score that is not a finite number cannot be judged (every part would be rejected as invalid_score); retrain it with `segad fit`, or check its leaf values",
				forest, score, pf.name)
		}
	}
	return nil
}

func finite32(v float32) bool { return v-v == 0 }
