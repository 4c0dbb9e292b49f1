package model

import (
	"fmt"
	"image"
	"math"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/result"
	"github.com/segad-edge/segad-edge/segad"
)

// Inspector judges frames with a model and the settings in force, in two
// stages that the daemon overlaps: Infer (detectors) for frame n+1 runs
// while Score (features, forest, verdict) finishes frame n. Inspect runs
// both for one frame. All are safe for concurrent use (the pipeline and
// the HTTP /inspect endpoint), and a reload swaps model and settings
// together between two frames (Swap).
type Inspector struct {
	mu       sync.Mutex // guards model and settings
	model    *Model
	settings Settings
	// runMu serialises detector runs and model swaps, so a model is never
	// swapped out mid-run.
	runMu sync.Mutex
}

// NewInspector starts an inspector with a model and settings.
func NewInspector(m *Model, s Settings) *Inspector { return &Inspector{model: m, settings: s} }

// SetSettings applies new thresholds/options from the next frame on.
func (l *Inspector) SetSettings(s Settings) {
	l.mu.Lock()
	l.settings = s
	l.mu.Unlock()
}

// Settings returns the settings in force.
func (l *Inspector) Settings() Settings {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.settings
}

// Swap installs a new model and its settings together, between two
// detector runs, and returns the old model for the caller to close (frames
// already inferred with it are still scored with it: their features come
// from its detectors and mask). Swapping both at once means no frame is
// ever judged by a new forest against an old threshold.
func (l *Inspector) Swap(m *Model, s Settings) *Model {
	l.runMu.Lock()
	defer l.runMu.Unlock()
	l.mu.Lock()
	old := l.model
	l.model, l.settings = m, s
	l.mu.Unlock()
	return old
}

// Close closes the model in force once no detector run is in progress.
func (l *Inspector) Close() error {
	l.runMu.Lock()
	defer l.runMu.Unlock()
	return l.Model().Close()
}

// Model returns the model in force.
func (l *Inspector) Model() *Model {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.model
}

func (l *Inspector) current() (*Model, Settings) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.model, l.settings
}

// Inspection is one part's result plus what the audit needs.
type Inspection struct {
	Result result.Result
	// Maps are copies of the anomaly maps for the audit, filled only when
	// keepMaps was asked for (they are otherwise reused by the next frame).
	Maps       [][]float32
	MapW, MapH int
	// Mask is the mask the features were computed with: the static one,
	// or (with keepMaps) the frame's own from a segmentation model.
	Mask *segad.Mask
}

// Inferred is a frame between the two stages: its result so far and, when
// the detectors ran, copies of their maps.
type Inferred struct {
	res   result.Result
	model *Model
	set   Settings
	start time.Time
	maps  [][]float32 // from model.buffers; nil when the part already failed
	// labels are the frame's mask from the segmentation model (a buffer of
	// model.Frame; nil with a static mask).
	labels []uint8
	class  float32
	done   bool // the verdict is already decided (failed closed)
}

// Inspect is the path of one frame, top to bottom: Infer then Score. It
// never fails: a part that cannot be judged gets a fail-closed result with
// a reason code.
func (l *Inspector) Inspect(f *capture.Frame, keepMaps bool) Inspection {
	return l.Score(l.Infer(f), keepMaps)
}

// Rejected is a frame that will not be inspected (dropped by the overflow
// policy, still queued at shutdown, a trigger not served): Score turns it
// into a fail-closed result with code and err's text.
func (l *Inspector) Rejected(f *capture.Frame, code string, err error) *Inferred {
	m, s := l.current()
	in := &Inferred{model: m, set: s, start: time.Now(), done: true}
	in.res = newResult(f, m, s, 0)
	result.FailClosed(&in.res, code, err)
	return in
}

func newResult(f *capture.Frame, m *Model, s Settings, latencies int) result.Result {
	r := result.Result{Station: s.Station, Source: f.Source, Seq: f.Seq, PartID: f.PartID,
		CapturedAt: f.Captured, Threshold: s.Threshold, Bundle: m.ForestHash, LatencyMS: make(map[string]float64, latencies)}
	if a := f.Align; a != nil {
		// Also on a part not located: the score says how far off it was.
		r.Pose = &result.Pose{DX: a.DX, DY: a.DY, Angle: a.Angle, Score: a.Score}
	}
	return r
}

// Infer is the first stage: the frame's image through the K detectors (and
// the classifier), concurrently. The maps are copied out, so the detectors
// are free for the next frame while this one is scored. The frame itself
// is not needed after Infer (the caller keeps it for the audit).
func (l *Inspector) Infer(f *capture.Frame) *Inferred {
	l.runMu.Lock()
	defer l.runMu.Unlock()
	m, s := l.current()
	in := &Inferred{model: m, set: s, start: time.Now()}
	in.res = newResult(f, m, s, 6)
	if !f.Captured.IsZero() {
		in.res.LatencyMS["queue"] = ms(in.start.Sub(f.Captured))
	}
	r := m.infer(f)
	if r.ran {
		in.res.LatencyMS["infer"] = ms(r.took)
	}
	in.labels = r.labels // kept on an implausible segmentation too, for the audit
	if r.err != nil {
		result.FailClosed(&in.res, r.code, r.err)
		in.done = true
		return in
	}
	in.maps, in.class = r.maps, r.class
	return in
}

// inferred is what the detectors made of one frame: the maps (a buffer
// from m.buffers, for the caller to give back) and the classifier score,
// or the reason code and error of a part that failed closed.
type inferred struct {
	maps   [][]float32
	labels []uint8 // the frame's mask (per-frame segmentation only)
	class  float32
	ran    bool // the detectors ran (took is their time)
	took   time.Duration
	code   string
	err    error
}

// infer runs the detectors on f: 1. the frame (a part whose image could not
// be read is rejected), 2. the K detectors and the classifier,
// concurrently, their maps copied out and checked.
func (m *Model) infer(f *capture.Frame) inferred {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	if f.Err != nil {
		return inferred{code: result.ReasonCapture, err: f.Err}
	}
	if f.Align != nil && !f.Align.Located() {
		// Scoring an unregistered frame against models trained in the
		// reference pose would be a guess: the part fails closed.
		return inferred{code: result.ReasonNotLocated, err: f.Align.Err}
	}
	if err := m.images(f); err != nil {
		return inferred{code: result.ReasonCapture, err: err}
	}
	t := time.Now()
	if m.Frame != nil {
		m.Frame.start(f) // the segmentation model runs beside the detectors
	}
	out, err := m.Detectors.Run(m.imgs)
	var seg segmented
	if m.Frame != nil {
		seg = m.Frame.wait()
	}
	r := inferred{ran: true, took: time.Since(t)}
	if err != nil {
		m.Frame.release(seg.lab)
		r.code, r.err = result.ReasonInference, err
		return r
	}
	maps := <-m.buffers
	for i, o := range out.Detectors {
		if len(o.Map) != len(maps[i]) {
			m.buffers <- maps
			m.Frame.release(seg.lab)
			r.code, r.err = result.ReasonMap, fmt.Errorf("detector %s gave a %d-value map, want %dx%d", m.Names[i], len(o.Map), m.Mask.Width, m.Mask.Height)
			return r
		}
		copy(maps[i], o.Map)
	}
	if out.HasClass && (math.IsNaN(float64(out.Class)) || math.IsInf(float64(out.Class), 0)) {
		// A NaN feature would follow the forest's default branches and
		// could pass the part: a classifier that gives no number fails it.
		m.buffers <- maps
		m.Frame.release(seg.lab)
		r.code, r.err = result.ReasonInference, fmt.Errorf("classifier score is %v", out.Class)
		return r
	}
	r.maps, r.class = maps, out.Class
	// 3. With a segmentation model, the frame's own mask (made beside the
	// detectors' run).
	if m.Frame != nil {
		if seg.err != nil {
			m.buffers <- maps
			r.maps, r.labels, r.code, r.err = nil, seg.lab, seg.code, fmt.Errorf("segmentation model: %w", seg.err)
			return r
		}
		r.labels = seg.lab
	}
	return r
}

// Score is the second stage: SegAD's per-segment features of every map, the
// forest's score, its explanation (Result.Explain, path attribution, when
// the forest can be explained) and the verdict against the threshold
// (result.Decide).
func (l *Inspector) Score(in *Inferred, keepMaps bool) Inspection {
	m, s, res := in.model, in.set, &in.res
	ins := Inspection{Mask: m.Mask}
	finish := func() Inspection {
		if in.labels != nil {
			if keepMaps {
				ins.Mask = m.Frame.maskOf(in.labels)
			}
			m.Frame.release(in.labels)
			in.labels = nil
		}
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

	// 4. SegAD features: per-segment statistics of every map, with the
	// frame's own mask when a segmentation model made one.
	t := time.Now()
	res.MapMax = make(map[string]float64, len(m.Names))
	if err := m.extract(in.labels, in.maps, in.class); err != nil {
		res.LatencyMS["segad"] = ms(time.Since(t))
		for i, mp := range in.maps {
			res.MapMax[m.Names[i]] = float64(mapMax(mp))
		}
		result.FailClosed(res, result.ReasonMap, err)
		return finish()
	}
	// The per-detector maxima are features already: 4*L*K statistics,
	// then one map maximum per detector.
	first := m.firstMax()
	for i, n := range m.Names {
		res.MapMax[n] = float64(m.row[first+i])
	}

	// 5. The forest's score against the threshold is the verdict.
	var score float64
	if m.Scorer != nil {
		score = m.Scorer.Margin(m.row)
	} else {
		score = math.NaN() // a features-only model cannot judge: fail closed
	}
	res.LatencyMS["segad"] = ms(time.Since(t))
	// 6. Which segment made the score: path attribution, every frame.
	if x := m.explainerInForce(); x != nil && !math.IsNaN(score) && !math.IsInf(score, 0) {
		t := time.Now()
		res.Explain = x.pathExplain(m.row)
		res.LatencyMS["explain"] = ms(time.Since(t))
	}
	// The feature row goes with every result: the history records it (it
	// is what `segad fit --history` trains on and what an explanation is
	// recomputed from); the MQTT payload carries it only with
	// mqtt.publish_features (the daemon strips it).
	{
		names := m.Extractor.Names()
		res.Features = make([]result.Feature, len(names))
		for i, n := range names {
			res.Features[i] = result.Feature{Name: n, Value: float64(m.row[i])}
		}
	}
	res.Decide(score, s.Threshold, s.Warn)
	return finish()
}

// firstMax is the index of the first per-detector map maximum in a feature
// row: after 4 statistics per segment and detector.
func (m *Model) firstMax() int { return 4 * m.Mask.NumSegments() * len(m.Names) }

// Features computes one frame's feature row and per-detector map maxima
// into row and maxes (len Extractor.NumFeatures(), len Names) with the
// line's own code (the same images, detectors, mask and extractor as
// Inspector.Inspect), without a forest or thresholds: `segad fit` trains
// on these rows. A part the line would fail closed is an error naming the
// frame's file and the reason code.
func (m *Model) Features(f *capture.Frame, row, maxes []float32) error {
	if len(row) != m.Extractor.NumFeatures() || len(maxes) != len(m.Names) {
		return fmt.Errorf("features: row of %d and maxima of %d, want %d and %d", len(row), len(maxes), m.Extractor.NumFeatures(), len(m.Names))
	}
	r := m.infer(f)
	if r.err != nil {
		if r.labels != nil {
			m.Frame.release(r.labels)
		}
		return fmt.Errorf("image %s: %s (%s)", f.Path, r.err, r.code)
	}
	defer func() {
		m.buffers <- r.maps
		if r.labels != nil {
			m.Frame.release(r.labels)
		}
	}()
	m.scoreMu.Lock()
	defer m.scoreMu.Unlock()
	if err := m.extract(r.labels, r.maps, r.class); err != nil {
		return fmt.Errorf("image %s: %s (%s)", f.Path, err, result.ReasonMap)
	}
	copy(row, m.row)
	first := m.firstMax()
	copy(maxes, m.row[first:first+len(m.Names)])
	return nil
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
