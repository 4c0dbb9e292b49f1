package daemon

import (
	"errors"
	"fmt"
	"image"
	"math"
	"sync"
	"time"

	"github.com/segad-edge/segad-edge/result"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/segad"
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
	imgs    []infer.Image
	resized map[infer.Size]*gocv.Mat

	// scoreMu guards the extractor and row: an Extractor is not safe for
	// concurrent use, and the pipeline and the HTTP API both score.
	scoreMu sync.Mutex
	row     []float32
	// buffers recycles map copies between the two stages (see Infer).
	buffers chan [][]float32
}

// inFlight is how many frames can be between Infer and Score at once: one
// being scored while the next is inferred, one more queued.
const inFlight = 3

// newModel finishes a Model's scratch space.
func newModel(det Detectors, names []string, mask *segad.Mask, ex *segad.Extractor) *Model {
	sizes := det.InputSizes()
	m := &Model{Detectors: det, Names: names, Mask: mask, Extractor: ex, sizes: sizes,
		imgs: make([]infer.Image, len(sizes)), resized: map[infer.Size]*gocv.Mat{},
		row: make([]float32, ex.NumFeatures()), buffers: make(chan [][]float32, inFlight)}
	for i := 0; i < inFlight; i++ {
		b := make([][]float32, len(names))
		for k := range b {
			b[k] = make([]float32, mask.Width*mask.Height)
		}
		m.buffers <- b
	}
	return m
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

// Line inspects frames in two stages that the pipeline overlaps: Infer
// (detectors) for frame n+1 runs while Score (features, forest, verdict)
// finishes frame n. Inspect runs both for one frame. All are safe for
// concurrent use (the pipeline and the HTTP /inspect endpoint).
type Line struct {
	mu       sync.Mutex // guards model and settings
	model    *Model
	settings Settings
	// runMu serialises detector runs (detectors own their output buffers)
	// and model swaps, so a model is never closed mid-run.
	runMu sync.Mutex
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

// Swap installs a new model and its settings together, between two
// detector runs, and returns the old model for the caller to close (frames
// already inferred with it are still scored with it: their features come
// from its detectors and mask). Swapping both at once means no frame is
// ever judged by a new forest against an old threshold.
func (l *Line) Swap(m *Model, s Settings) *Model {
	l.runMu.Lock()
	defer l.runMu.Unlock()
	l.mu.Lock()
	old := l.model
	l.model, l.settings = m, s
	l.mu.Unlock()
	return old
}

// Close closes the model in force once no detector run is in progress
// (a run in flight finishes first).
func (l *Line) Close() error {
	l.runMu.Lock()
	defer l.runMu.Unlock()
	l.mu.Lock()
	m := l.model
	l.mu.Unlock()
	return m.Close()
}

// Model returns the model in force (for reporting).
func (l *Line) Model() *Model {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.model
}

// Inspection is one part's result plus what the audit needs.
type Inspection struct {
	Result result.Result
	// Maps are copies of the anomaly maps for the audit, filled only when
	// keepMaps was asked for (they are otherwise reused by the next frame).
	Maps       [][]float32
	MapW, MapH int
	Mask       *segad.Mask
}

// Inferred is a frame between the two stages: its result so far and, when
// the detectors ran, copies of their maps.
type Inferred struct {
	res   result.Result
	model *Model
	set   Settings
	start time.Time
	maps  [][]float32 // from model.buffers; nil when the part already failed
	class float32
	done  bool // the verdict is already decided (failed closed)
}

// Inspect is the path of one frame, top to bottom: Infer then Score. It
// never fails: a part that cannot be judged gets a fail-closed result with
// a reason code.
func (l *Line) Inspect(f *capture.Frame, keepMaps bool) Inspection {
	return l.Score(l.Infer(f), keepMaps)
}

// Rejected is a frame that will not be inspected (dropped by the overflow
// policy, or still queued at shutdown): Score turns it into a fail-closed
// result, published in order with the others.
func (l *Line) Rejected(f *capture.Frame, code string, err error) *Inferred {
	l.mu.Lock()
	m, s := l.model, l.settings
	l.mu.Unlock()
	in := &Inferred{model: m, set: s, start: time.Now(), done: true}
	in.res = result.Result{Station: s.Station, Source: f.Source, Seq: f.Seq, PartID: f.PartID,
		CapturedAt: f.Captured, Threshold: s.Threshold, Bundle: m.Bundle, LatencyMS: map[string]float64{}}
	result.FailClosed(&in.res, code, err)
	return in
}

// Infer is the first stage: the frame's image through the K detectors (and
// the classifier), concurrently. The maps are copied out, so the detectors
// are free for the next frame while this one is scored. The frame itself
// is not needed after Infer (the caller keeps it for the audit).
func (l *Line) Infer(f *capture.Frame) *Inferred {
	l.runMu.Lock()
	defer l.runMu.Unlock()
	l.mu.Lock()
	m, s := l.model, l.settings
	l.mu.Unlock()
	in := &Inferred{model: m, set: s, start: time.Now()}
	in.res = result.Result{
		Station: s.Station, Source: f.Source, Seq: f.Seq, PartID: f.PartID,
		CapturedAt: f.Captured, Threshold: s.Threshold, Bundle: m.Bundle,
		LatencyMS: make(map[string]float64, 5),
	}
	if !f.Captured.IsZero() {
		in.res.LatencyMS["queue"] = ms(in.start.Sub(f.Captured))
	}

	// 1. The frame: a part whose image could not be read is rejected.
	if f.Err != nil {
		result.FailClosed(&in.res, result.ReasonCapture, f.Err)
		in.done = true
		return in
	}
	if err := m.images(f); err != nil {
		result.FailClosed(&in.res, result.ReasonCapture, err)
		in.done = true
		return in
	}

	// 2. Inference: K detectors (and the classifier) run concurrently.
	t := time.Now()
	out, err := m.Detectors.Run(m.imgs)
	in.res.LatencyMS["infer"] = ms(time.Since(t))
	if err != nil {
		result.FailClosed(&in.res, result.ReasonInference, err)
		in.done = true
		return in
	}
	in.maps = <-m.buffers
	for i, o := range out.Detectors {
		if len(o.Map) != len(in.maps[i]) {
			m.buffers <- in.maps
			in.maps = nil
			result.FailClosed(&in.res, result.ReasonMap, fmt.Errorf("detector %s gave a %d-value map, want %dx%d", m.Names[i], len(o.Map), m.Mask.Width, m.Mask.Height))
			in.done = true
			return in
		}
		copy(in.maps[i], o.Map)
	}
	if out.HasClass && (math.IsNaN(float64(out.Class)) || math.IsInf(float64(out.Class), 0)) {
		// A NaN feature would follow the forest's default branches and
		// could pass the part: a classifier that gives no number fails it.
		m.buffers <- in.maps
		in.maps = nil
		result.FailClosed(&in.res, result.ReasonInference, fmt.Errorf("classifier score is %v", out.Class))
		in.done = true
		return in
	}
	in.class = out.Class
	return in
}

// Score is the second stage: SegAD's per-segment features of every map, the
// forest's score, and the verdict against the threshold.
func (l *Line) Score(in *Inferred, keepMaps bool) Inspection {
	m, s, res := in.model, in.set, &in.res
	ins := Inspection{Mask: m.Mask}
	finish := func() Inspection {
		if in.maps != nil {
			if keepMaps {
				ins.MapW, ins.MapH = m.Mask.Width, m.Mask.Height
				for _, mp := range in.maps {
					ins.Maps = append(ins.Maps, append([]float32(nil), mp...))
				}
			}
			m.buffers <- in.maps
			in.maps = nil
		}
		res.DecidedAt = time.Now()
		res.LatencyMS["total"] = ms(res.DecidedAt.Sub(in.start))
		stamp(res)
		ins.Result = *res
		return ins
	}
	if in.done {
		return finish()
	}
	m.scoreMu.Lock()
	defer m.scoreMu.Unlock()

	// 3. SegAD features: per-segment statistics of every map.
	t := time.Now()
	res.MapMax = make(map[string]float64, len(m.Names))
	if err := m.Extractor.Extract(m.row, in.maps, in.class); err != nil {
		res.LatencyMS["segad"] = ms(time.Since(t))
		for i, mp := range in.maps {
			res.MapMax[m.Names[i]] = float64(mapMax(mp))
		}
		result.FailClosed(res, result.ReasonMap, err)
		return finish()
	}
	// The per-detector maxima are features already: 4*L*K statistics,
	// then one map maximum per detector.
	first := 4 * m.Mask.NumSegments() * len(m.Names)
	for i, n := range m.Names {
		res.MapMax[n] = float64(m.row[first+i])
	}

	// 4. The forest's score against the threshold is the verdict.
	score := m.Scorer.Margin(m.row)
	res.LatencyMS["segad"] = ms(time.Since(t))
	v := segad.Decide(score, s.Threshold)
	res.Score = &score
	if s.PublishFeatures {
		names := m.Extractor.Names()
		res.Features = make([]result.Feature, len(names))
		for i, n := range names {
			res.Features[i] = result.Feature{Name: n, Value: float64(m.row[i])}
		}
	}
	switch {
	case v.Reason != "": // NaN/Inf score or threshold: fail closed
		result.FailClosed(res, result.ReasonScore, errors.New(v.Reason))
		res.Score = &score
	case v.Outcome == segad.Fail:
		res.Verdict = result.VerdictFail
		res.ReasonCode = result.ReasonAnomaly
		res.Reason = fmt.Sprintf("score %.4g >= threshold %.4g", score, s.Threshold)
	default:
		res.Verdict = result.VerdictPass
		res.Warn = !math.IsNaN(s.Warn) && score >= s.Warn
	}
	return finish()
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

// stamp gives a decided result its schema version and a fresh result ID.
// Every result is decided in Score (the line, HTTP /inspect, dropped frames,
// unserved triggers), so this is the one place that stamps results: the
// audit entry, the log line, the HTTP answer and the MQTT message all carry
// the same ID.
func stamp(r *result.Result) {
	r.Schema = result.SchemaVersion
	if r.ID == "" {
		r.ID = result.NewID(r.DecidedAt)
	}
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
