package model

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"log/slog"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/result"
	"github.com/segad-edge/segad-edge/segad"
)

// Segmenter runs a segmentation model on one frame; *infer.Segmenter
// implements it. Tests give small fakes.
type Segmenter interface {
	Run(img infer.Image) (infer.SegOutput, error)
	InputSize() infer.Size
	Warmup(n int) error
	Close() error
}

// FrameMask is a model's per-frame segmentation (segad.mask with a model):
// every frame is segmented by the model, its output turned into labels at
// the map size and checked for plausibility, and the frame's features are
// computed with that mask. A Model without one uses its static Mask at no
// cost per frame.
type FrameMask struct {
	seg    Segmenter
	masker *segad.FrameMasker
	// bufs are the label buffers frames carry from Infer to Score (as the
	// maps travel in Model.buffers), one per frame in flight.
	bufs chan []uint8
	hash string

	// The model runs beside the detectors on its own worker goroutine,
	// started once (a goroutine per frame would allocate): Infer hands it
	// the frame before the detectors run and collects the labels after.
	work    chan *capture.Frame
	done    chan segmented
	stopped chan struct{}
	resized *gocv.Mat // the frame at the model's input size, when it differs
}

// segmented is the worker's answer for one frame (see segment).
type segmented struct {
	lab  []uint8
	code string
	err  error
}

// NewFrameMask assembles a per-frame segmentation from a segmenter whose
// output is out (its kind and resolution, from a first run or the model's
// declared shape), for maps of w x h with the named segments and bounds.
// hash identifies the segmentation model in bundles.
func NewFrameMask(seg Segmenter, out infer.SegOutput, names []string, bounds []segad.SegmentBounds, w, h int, hash string) (*FrameMask, error) {
	fm, err := segad.NewFrameMasker(names, bounds, out.Width, out.Height, w, h)
	if err != nil {
		return nil, err
	}
	f := &FrameMask{seg: seg, masker: fm, bufs: make(chan []uint8, inFlight), hash: hash,
		work: make(chan *capture.Frame), done: make(chan segmented, 1), stopped: make(chan struct{})}
	for i := 0; i < inFlight; i++ {
		f.bufs <- make([]uint8, w*h)
	}
	go f.loop()
	return f, nil
}

// openFrameMask opens segad.mask's segmentation model through infer (the
// detectors' ONNX Runtime path), warms it up and prepares its labels at the
// map size. A model whose output is neither class scores for the
// configured labels nor a label map is refused here, with its outputs.
func openFrameMask(c config.SegADConfig, w, h, warmup int, log *slog.Logger) (*FrameMask, error) {
	mc := c.Mask
	seg, err := infer.OpenSegmenter(mc.SegmenterConfig())
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			seg.Close()
		}
	}()
	if err := seg.Warmup(warmup); err != nil {
		return nil, fmt.Errorf("segmentation model %s: %w", mc.Model, err)
	}
	out, err := seg.Run(grayInput(seg.InputSize()))
	if err != nil {
		return nil, fmt.Errorf("segmentation model %s: %w", mc.Model, err)
	}
	f, err := NewFrameMask(seg, out, mc.Labels, mc.Bounds(), w, h, segmenterHash(mc.Model, mc.Labels, w, h))
	if err != nil {
		return nil, fmt.Errorf("segmentation model %s: %w", mc.Model, err)
	}
	kind := "class scores"
	if out.Kind == infer.SegLabels {
		kind = "label map"
	}
	log.Info("segmentation model ready", "model", mc.Model, "output", kind, "resolution", infer.Size{Width: out.Width, Height: out.Height},
		"map", infer.Size{Width: w, Height: h}, "labels", mc.Labels, "providers", seg.Providers())
	ok = true
	return f, nil
}

func grayInput(sz infer.Size) infer.Image {
	pix := make([]byte, 3*sz.Width*sz.Height)
	for i := range pix {
		pix[i] = 128
	}
	return infer.Image{Width: sz.Width, Height: sz.Height, Stride: 3 * sz.Width, Pix: pix}
}

// segmenterHash identifies a per-frame mask in bundle manifests, in place
// of a static mask's label hash: the model file's content, the labels and
// the map size.
func segmenterHash(path string, labels []string, w, h int) string {
	hs := sha256.New()
	hs.Write([]byte("segad per-frame mask\x00"))
	hs.Write([]byte(fileHash(path)))
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:4], uint32(w))
	binary.LittleEndian.PutUint32(b[4:], uint32(h))
	hs.Write(b[:])
	for _, n := range labels {
		hs.Write([]byte(n))
		hs.Write([]byte{0})
	}
	return hex.EncodeToString(hs.Sum(nil))
}

// MaskHash identifies the mask a bundle must have been trained with: the
// static mask's hash, or the per-frame segmentation's.
func (m *Model) MaskHash() string {
	if m.Frame != nil {
		return m.Frame.hash
	}
	return m.Mask.Hash()
}

// segment runs the segmentation model on the frame and returns the
// frame's labels at the map size, in a buffer for the caller to give back
// (release). A model that fails to run is an inference error; an
// implausible segmentation is a segmentation error, and its labels are
// returned too, so the audit can show what the model saw.
func (f *FrameMask) segment(fr *capture.Frame) ([]uint8, string, error) {
	img, err := imageAt(fr, f.seg.InputSize(), &f.resized)
	if err != nil {
		return nil, result.ReasonCapture, err
	}
	out, err := f.seg.Run(img)
	if err != nil {
		return nil, result.ReasonInference, err
	}
	lab := <-f.bufs
	switch {
	case out.Kind == infer.SegScores:
		err = f.masker.FromScores(lab, out.F32)
	case out.F32 != nil:
		err = segad.FromLabels(f.masker, lab, out.F32)
	case out.I64 != nil:
		err = segad.FromLabels(f.masker, lab, out.I64)
	case out.I32 != nil:
		err = segad.FromLabels(f.masker, lab, out.I32)
	default:
		err = segad.FromLabels(f.masker, lab, out.U8)
	}
	if err != nil {
		var imp *segad.ImplausibleError
		if errors.As(err, &imp) {
			return lab, result.ReasonSegmentation, err
		}
		f.bufs <- lab
		return nil, result.ReasonSegmentation, err
	}
	return lab, "", nil
}

// loop is the worker: one frame at a time, until Close.
func (f *FrameMask) loop() {
	defer close(f.stopped)
	for fr := range f.work {
		lab, code, err := f.segment(fr)
		f.done <- segmented{lab, code, err}
	}
}

// start hands the frame to the worker; wait collects its labels. Every
// start is followed by exactly one wait (Model.infer, runMu held).
func (f *FrameMask) start(fr *capture.Frame) { f.work <- fr }

func (f *FrameMask) wait() segmented { return <-f.done }

// release gives a frame's label buffer back.
func (f *FrameMask) release(lab []uint8) {
	if f != nil && lab != nil {
		f.bufs <- lab
	}
}

// maskOf is a frame's labels as a Mask of its own (a copy: the buffer is
// reused), for the audit overlay and the explanation's outline.
func (f *FrameMask) maskOf(lab []uint8) *segad.Mask {
	w, h := f.masker.Size()
	return &segad.Mask{Width: w, Height: h, Labels: append([]uint8(nil), lab...), Names: f.masker.Names()}
}

// Close releases the segmentation model.
func (f *FrameMask) Close() error {
	if f == nil || f.seg == nil {
		return nil
	}
	close(f.work)
	<-f.stopped
	if f.resized != nil {
		f.resized.Close()
	}
	err := f.seg.Close()
	f.seg = nil
	return err
}

// imageAt is the frame at size sz: the preprocessed image when it has that
// size, else a copy resized into *cache (INTER_AREA, as images does for
// detectors of another size), which it creates on first use.
func imageAt(f *capture.Frame, sz infer.Size, cache **gocv.Mat) (infer.Image, error) {
	pix, w, h, stride, err := f.Pixels()
	if err != nil {
		return infer.Image{}, err
	}
	if sz.Width == w && sz.Height == h {
		return infer.Image{Width: w, Height: h, Stride: stride, Pix: pix}, nil
	}
	r := *cache
	if r == nil {
		mat := gocv.NewMat()
		r = &mat
		*cache = r
	}
	gocv.Resize(f.Image, r, image.Pt(sz.Width, sz.Height), 0, 0, gocv.InterpolationArea)
	rp, err := r.DataPtrUint8()
	if err != nil {
		return infer.Image{}, fmt.Errorf("resize frame %d to %s for the segmentation model: %w", f.Seq, sz, err)
	}
	return infer.Image{Width: sz.Width, Height: sz.Height, Stride: r.Step(), Pix: rp}, nil
}

// perFrameMask is the Mask a per-frame model shows where a static one is
// expected: the map size and the segment names, no labels (every frame has
// its own; Inspection.Mask carries the frame's).
func perFrameMask(names []string, w, h int) *segad.Mask {
	return &segad.Mask{Width: w, Height: h, Names: append([]string(nil), names...)}
}

// buildPerFrame completes buildFeatures for a per-frame segmentation: the
// segmentation model opened beside the detectors, a placeholder Mask (size
// and names) and an extractor whose mask is set per frame. ok is set once
// the model owns set.
func buildPerFrame(cfg *config.Config, set *infer.Set, names []string, extra string, mapSize infer.Size, ok *bool, log *slog.Logger) (*Model, error) {
	fm, err := openFrameMask(cfg.SegAD, mapSize.Width, mapSize.Height, max(cfg.Pipeline.Warmup, 1), log)
	if err != nil {
		return nil, err
	}
	ex, err := segad.NewFrameExtractor(mapSize.Width, mapSize.Height, cfg.SegAD.Mask.Labels, names, extra)
	if err != nil {
		fm.Close()
		return nil, err
	}
	m := New(set, names, perFrameMask(cfg.SegAD.Mask.Labels, mapSize.Width, mapSize.Height), ex, nil)
	m.Frame = fm
	*ok = true
	return m, nil
}

// extract computes the feature row into m.row (scoreMu held): with the
// frame's labels when the model segments per frame, else with the static
// mask the extractor was built with.
func (m *Model) extract(labels []uint8, maps [][]float32, class float32) error {
	if m.Frame != nil {
		if labels == nil {
			return errors.New("extract features: no per-frame mask for this frame")
		}
		if err := m.Extractor.SetLabels(labels); err != nil {
			return err
		}
	}
	return m.Extractor.Extract(m.row, maps, class)
}

// probe runs the segmentation model on a probe frame (see probe.go) and
// refuses it when its class scores are not all finite numbers: such a
// model would reject parts as segmentation_error frame by frame, so it is
// refused up front with the model file and the pixel. (Implausible labels
// on a synthetic frame are no reason to refuse: bounds describe parts.)
func (f *FrameMask) probe(name string, pixel func(x, y, w, h int) (b, g, r uint8), model string) error {
	sz := f.seg.InputSize()
	pix := make([]byte, 3*sz.Width*sz.Height)
	for y := 0; y < sz.Height; y++ {
		for x := 0; x < sz.Width; x++ {
			o := 3 * (y*sz.Width + x)
			pix[o], pix[o+1], pix[o+2] = pixel(x, y, sz.Width, sz.Height)
		}
	}
	out, err := f.seg.Run(infer.Image{Width: sz.Width, Height: sz.Height, Stride: 3 * sz.Width, Pix: pix})
	if err != nil {
		return fmt.Errorf("run the segmentation model %s on a %s test frame: %w", model, name, err)
	}
	plane := out.Width * out.Height
	for i, v := range out.F32 {
		if !finite32(v) {
			p := i % plane
			return fmt.Errorf("segmentation model %s (segad.mask.model) gives %v in channel %d at model pixel (%d, %d) on a %s test frame: scores that are not finite numbers cannot be segmented (parts would be rejected as segmentation_error); fix or re-export the model",
				model, v, i/plane, p%out.Width, p/out.Width, name)
		}
	}
	return nil
}
