package daemon

import (
	"errors"
	"fmt"
	"image"
	"math"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/segad"
)

// Reason codes of results that were failed closed (mqtt Result.ReasonCode),
// so a PLC or MES can tell a defect from a part that could not be judged.
const (
	ReasonCapture   = "capture_error"   // the frame or file could not be read
	ReasonInference = "inference_error" // a detector or the classifier failed
	ReasonMap       = "invalid_map"     // NaN/Inf in a map, wrong map size
	ReasonScore     = "invalid_score"   // the forest returned NaN/Inf
	ReasonDropped   = "dropped"         // inference fell behind; the part was not inspected
	ReasonShutdown  = "shutdown"        // the daemon stopped before inspecting it
)

// Model is everything that turns an image into a score. It is built once
// per configuration and swapped as a whole on reload, between two frames.
type Model struct {
	// Detectors runs the K detectors and the optional classifier.
	Detectors Detectors
	// Names are the detector names in feature order.
	Names []string
	// Mask is the segmentation, at the detectors' map size.
	Mask *segad.Mask
	// Extractor computes the feature row.
	Extractor *segad.Extractor
	// Scorer is the boosted random forest.
	Scorer Scorer
	// Bundle identifies the model (bundle ID or model file hash).
	Bundle string

	sizes   []infer.Size // input size per member (detectors, then classifier)
	row     []float32
	maps    [][]float32
	imgs    []infer.Image
	resized map[infer.Size]*gocv.Mat
}

// Preprocess completes a capture preprocessing config for this model:
// frames are resized to the first detector's input size unless the config
// sets a size, and delivered in BGR (infer converts colour per detector).
// The line's source, the HTTP API, bench and fit all use it, so every
// path shapes frames alike.
func (m *Model) Preprocess(pc capture.PreprocessConfig) capture.PreprocessConfig {
	if len(m.sizes) > 0 && pc.Width == 0 && pc.Height == 0 {
		pc.Width, pc.Height = m.sizes[0].Width, m.sizes[0].Height
	}
	if pc.Color != capture.ColorGray {
		pc.Color = capture.ColorBGR
	}
	return pc
}

// Close releases the detectors and scratch images.
func (m *Model) Close() error {
	for _, r := range m.resized {
		r.Close()
	}
	return m.Detectors.Close()
}

// Settings are the parts of the configuration that apply between two
// frames without rebuilding anything (hot reload).
type Settings struct {
	Station         string
	Threshold       float64
	Warn            float64 // NaN: no warn band
	PublishFeatures bool
}

// Line inspects frames. Inspect is safe for concurrent use (the pipeline
// worker and the HTTP /inspect endpoint); calls are serialised because the
// detectors own their output buffers.
type Line struct {
	mu       sync.Mutex
	model    *Model
	settings Settings
}

// NewLine starts a line with a model and settings.
func NewLine(m *Model, s Settings) *Line { return &Line{model: m, settings: s} }

// SetSettings applies new thresholds/options from the next frame on.
func (l *Line) SetSettings(s Settings) {
	l.mu.Lock()
	l.settings = s
	l.mu.Unlock()
}

// Settings returns the settings in force.
func (l *Line) Settings() Settings {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.settings
}

// SwapModel installs a new model between two frames and returns the old
// one for the caller to close.
func (l *Line) SwapModel(m *Model) *Model {
	l.mu.Lock()
	old := l.model
	l.model = m
	l.mu.Unlock()
	return old
}

// Model returns the model in force (for reporting).
func (l *Line) Model() *Model {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.model
}

// Inspection is one part's result plus what the audit needs.
type Inspection struct {
	Result mqtt.Result
	// Maps are copies of the anomaly maps for the audit, filled only when
	// keepMaps was asked for (they are otherwise reused by the next frame).
	Maps       [][]float32
	MapW, MapH int
	Mask       *segad.Mask
}

// Inspect is the path of one frame, top to bottom. It never fails: a part
// that cannot be judged gets a fail-closed result with a reason code.
func (l *Line) Inspect(f *capture.Frame, keepMaps bool) Inspection {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, s := l.model, l.settings
	start := time.Now()
	res := mqtt.Result{
		Station: s.Station, Source: f.Source, Seq: f.Seq, PartID: f.PartID,
		CapturedAt: f.Captured, Threshold: s.Threshold, Bundle: m.Bundle,
		LatencyMS: make(map[string]float64, 4),
	}
	if !f.Captured.IsZero() {
		res.LatencyMS["queue"] = ms(start.Sub(f.Captured))
	}
	ins := Inspection{Mask: m.Mask}
	done := func() Inspection {
		res.DecidedAt = time.Now()
		res.LatencyMS["total"] = ms(res.DecidedAt.Sub(start))
		ins.Result = res
		return ins
	}

	// 1. The frame: a part whose image could not be read is rejected.
	if f.Err != nil {
		failClosed(&res, ReasonCapture, f.Err)
		return done()
	}
	if err := m.images(f); err != nil {
		failClosed(&res, ReasonCapture, err)
		return done()
	}

	// 2. Inference: K detectors (and the classifier) run concurrently.
	t := time.Now()
	out, err := m.Detectors.Run(m.imgs)
	res.LatencyMS["infer"] = ms(time.Since(t))
	if err != nil {
		failClosed(&res, ReasonInference, err)
		return done()
	}
	res.MapMax = make(map[string]float64, len(m.Names))
	for i, o := range out.Detectors {
		m.maps[i] = o.Map
		res.MapMax[m.Names[i]] = float64(mapMax(o.Map))
	}
	if keepMaps {
		ins.MapW, ins.MapH = m.Mask.Width, m.Mask.Height
		for _, mp := range m.maps {
			ins.Maps = append(ins.Maps, append([]float32(nil), mp...))
		}
	}

	// 3. SegAD features: per-segment statistics of every map.
	t = time.Now()
	if err := m.Extractor.Extract(m.row, m.maps, out.Class); err != nil {
		res.LatencyMS["segad"] = ms(time.Since(t))
		failClosed(&res, ReasonMap, err)
		return done()
	}

	// 4. The forest's score against the threshold is the verdict.
	score := m.Scorer.Margin(m.row)
	res.LatencyMS["segad"] = ms(time.Since(t))
	v := segad.Decide(score, s.Threshold)
	res.Score = &score
	if s.PublishFeatures {
		names := m.Extractor.Names()
		res.Features = make([]mqtt.Feature, len(names))
		for i, n := range names {
			res.Features[i] = mqtt.Feature{Name: n, Value: float64(m.row[i])}
		}
	}
	switch {
	case v.Reason != "": // NaN/Inf score or threshold: fail closed
		failClosed(&res, ReasonScore, errors.New(v.Reason))
		res.Score = &score
	case v.Outcome == segad.Fail:
		res.Verdict = mqtt.VerdictFail
		res.ReasonCode = mqtt.ReasonAnomaly
		res.Reason = fmt.Sprintf("score %.4g >= threshold %.4g", score, s.Threshold)
	default:
		res.Verdict = mqtt.VerdictPass
		res.Warn = !math.IsNaN(s.Warn) && score >= s.Warn
	}
	return done()
}

// images fills m.imgs from the frame: the preprocessed image for every
// member of its size, a resized copy for members of another size (e.g. a
// 224x224 classifier next to 256x256 detectors).
func (m *Model) images(f *capture.Frame) error {
	pix, w, h, stride, err := f.Pixels()
	if err != nil {
		return err
	}
	if f.Color == capture.ColorRGB {
		// infer swaps channels itself (detectors' color_order); an RGB
		// frame would be swapped twice.
		return fmt.Errorf("frame %d: colour order rgb, the detectors take bgr or gray (set capture.preprocess.color: bgr; each detector's color_order says what its model wants)", f.Seq)
	}
	for i, sz := range m.sizes {
		if sz.Width == w && sz.Height == h {
			m.imgs[i] = infer.Image{Width: w, Height: h, Stride: stride, Pix: pix}
			continue
		}
		r := m.resized[sz]
		if r == nil {
			mat := gocv.NewMat()
			r = &mat
			m.resized[sz] = r
		}
		gocv.Resize(f.Image, r, image.Pt(sz.Width, sz.Height), 0, 0, gocv.InterpolationArea)
		rp, err := r.DataPtrUint8()
		if err != nil {
			return fmt.Errorf("resize frame %d to %s: %w", f.Seq, sz, err)
		}
		m.imgs[i] = infer.Image{Width: sz.Width, Height: sz.Height, Stride: r.Step(), Pix: rp}
	}
	return nil
}

// failClosed marks a result rejected because the part could not be judged.
func failClosed(r *mqtt.Result, code string, err error) {
	r.Verdict = mqtt.VerdictError
	r.ReasonCode = code
	r.Reason = err.Error()
	r.Score = nil
}

func mapMax(m []float32) float32 {
	mx := float32(math.Inf(-1))
	for _, v := range m {
		if v > mx || v != v {
			mx = v
			if v != v {
				return v
			}
		}
	}
	return mx
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
