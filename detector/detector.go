// Package detector fits anomaly detectors from a folder of good images and
// writes them as standard ONNX files that the infer stage runs like any
// anomalib export: input "input" float32 [1,3,S,S] RGB in [0,1], output a raw
// anomaly map float32 [1,1,S,S].
//
// Two kinds exist. Variation is the classic per-pixel variation model for
// aligned parts (robust mean and spread of the good images). PatchCore uses a
// pretrained ONNX backbone: locally aggregated patch features of two layers,
// a greedy k-centre coreset as memory bank, and a nearest-neighbour distance
// computed inside the graph with matrix products.
//
// Fitting uses exactly the preprocessing of inference, through the same
// code: capture.DecodeFrame (INTER_AREA resize to SxS, 8-bit BGR) then
// infer.FillNCHW (RGB, 1/255), so a fitted model sees at run time what it
// saw while fitting. Written models are run by infer.Open; ONNX Runtime is
// initialised with infer.Init.
package detector

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/infer"
)

// DefaultMinImages is the smallest training folder accepted: fewer good
// images cannot give a meaningful per-pixel spread or feature bank.
const DefaultMinImages = 10

// imageExts are the file name endings read as training images.
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".bmp": true, ".tif": true, ".tiff": true}

// ListImages returns the image files directly inside dir, sorted by name, and
// fails when there are fewer than minImages of them.
func ListImages(dir string, minImages int) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list good images in %s: %w", dir, err)
	}
	var paths []string
	for _, e := range entries {
		if e.IsDir() || !imageExts[strings.ToLower(filepath.Ext(e.Name()))] {
			continue
		}
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	sort.Strings(paths)
	if len(paths) < minImages {
		return nil, fmt.Errorf("good image folder %s holds %d images (png/jpg/bmp/tif); fitting needs at least %d", dir, len(paths), minImages)
	}
	return paths, nil
}

// frame is one preprocessed training image: the SxS 8-bit BGR pixels that
// capture hands the infer stage, the same pixels as planar RGB bytes (what
// the variation model keeps), and the size of the file before resizing.
type frame struct {
	origW, origH int
	img          infer.Image // SxS interleaved BGR, tight stride
	chw          []uint8     // 3*S*S, channel-major R, G, B
}

// framePreprocess returns capture's settings for a SxS detector input:
// INTER_AREA, BGR. Fitting and inference both go through capture.DecodeFrame
// (or a capture source configured like this), so a fitted model sees at run
// time exactly the pixels it was fitted on (no train/serve skew).
func framePreprocess(size int) capture.PreprocessConfig {
	return capture.PreprocessConfig{Width: size, Height: size, Interpolation: "area", Color: capture.ColorBGR}
}

// alignedPreprocess is framePreprocess with fixturing (capture.align): a
// detector used on a line that registers frames must be fitted on frames
// registered the same way, or its memory and statistics sit in another pose.
func alignedPreprocess(size int, align capture.AlignConfig) capture.PreprocessConfig {
	pc := framePreprocess(size)
	pc.Align = align
	return pc
}

// loadFrame reads an image file through capture's preprocessing and copies
// its pixels out of the C-owned Mat.
func loadFrame(path string, size int) (frame, error) {
	return loadAligned(path, size, capture.AlignConfig{})
}

// notLocatedSkips leaves out training images whose part fixturing could
// not locate (a part at the edge of the jitter range, a tire whose tread
// correlates poorly with the reference), logged by name, while they are at
// most a tenth of the images; more means a wrong reference or min_score,
// and fitting stops with the count.
type notLocatedSkips struct{ n, total int }

// skip reports whether err is a not-located image to leave out, or returns
// the error that stops the fit.
func (s *notLocatedSkips) skip(err error, path string) (bool, error) {
	if err == nil || !errors.Is(err, capture.ErrNotLocated) {
		return false, nil
	}
	s.n++
	if s.n*10 > s.total {
		return false, fmt.Errorf("%d of %d training images not located (capture.align: check the reference image and min_score with segad align check): %w", s.n, s.total, err)
	}
	slog.Warn("training image left out: part not located", "file", path, "err", err)
	return true, nil
}

// loadAligned is loadFrame with fixturing: a training image whose part is
// not located is an error (it would teach the detector a misplaced part).
func loadAligned(path string, size int, align capture.AlignConfig) (frame, error) {
	// capture's guarded reader: size and pixel limits, header check,
	// OpenCV exceptions caught, so one bad training image is an error.
	cf := capture.ReadFrame(path, alignedPreprocess(size, align))
	defer cf.Close()
	if cf.Err != nil {
		return frame{}, fmt.Errorf("read image: not a readable image file: %w", cf.Err)
	}
	if cf.Align != nil && !cf.Align.Located() {
		return frame{}, fmt.Errorf("training image %s: %w (capture.align)", path, cf.Align.Err)
	}
	pix, w, h, stride, err := cf.Pixels()
	if err != nil {
		return frame{}, fmt.Errorf("read image %s: %w", path, err)
	}
	if w != size || h != size {
		return frame{}, fmt.Errorf("read image %s: preprocessed to %dx%d, want %dx%d", path, w, h, size, size)
	}
	f := frame{origW: cf.Original.Cols(), origH: cf.Original.Rows()}
	bgr := make([]byte, 3*size*size)
	for y := 0; y < size; y++ {
		copy(bgr[y*3*size:(y+1)*3*size], pix[y*stride:y*stride+3*size])
	}
	f.img = infer.Image{Width: size, Height: size, Stride: 3 * size, Pix: bgr}
	n := size * size
	f.chw = make([]uint8, 3*n)
	for i := 0; i < n; i++ {
		f.chw[i] = bgr[3*i+2]     // R
		f.chw[n+i] = bgr[3*i+1]   // G
		f.chw[2*n+i] = bgr[3*i+0] // B
	}
	return f, nil
}

// LoadInput reads an image file into the model input layout: float32 NCHW
// [1,3,size,size], RGB, scaled to [0,1]. It is the preprocessing every model
// this package writes expects: capture.DecodeFrame then infer.FillNCHW, the
// code path of the daemon.
func LoadInput(path string, size int) ([]float32, error) {
	f, err := loadFrame(path, size)
	if err != nil {
		return nil, err
	}
	return f.float()
}

// inputPreprocess is infer's conversion for the models written here: RGB,
// x/255, no mean/std (normalisation, when any, is inside the graph).
func inputPreprocess(size int) (*infer.Preprocess, error) {
	return infer.NewPreprocess(ModelPreprocess(size))
}

// ModelPreprocess is the infer preprocessing configuration of every model
// this package writes; DetectorConfig for them uses it (it is infer's
// default apart from the size).
func ModelPreprocess(size int) infer.PreprocessConfig {
	return infer.PreprocessConfig{InputSize: infer.Size{Width: size, Height: size}, ColorOrder: "rgb", Scale: 1.0 / 255}
}

// float converts to the model input with infer's own conversion.
func (f frame) float() ([]float32, error) {
	pre, err := inputPreprocess(f.img.Width)
	if err != nil {
		return nil, err
	}
	out := make([]float32, 3*f.img.Width*f.img.Height)
	if err := infer.FillNCHW(out, f.img, pre); err != nil {
		return nil, err
	}
	return out, nil
}

// sizeChecker rejects training sets of mixed image sizes: the models assume
// one fixed camera view, and resizing different sizes to SxS would distort
// parts differently.
type sizeChecker struct {
	w, h  int
	first string
}

func (c *sizeChecker) check(path string, f frame) error {
	if c.first == "" {
		c.w, c.h, c.first = f.origW, f.origH, path
		return nil
	}
	if f.origW != c.w || f.origH != c.h {
		return fmt.Errorf("image %s is %dx%d but %s is %dx%d: the good images must all come from the same camera view and size",
			path, f.origW, f.origH, c.first, c.w, c.h)
	}
	return nil
}

// runner is one ORT session over an in-memory model with a fixed input
// shape and any number of float outputs, reused for every image (sessions
// are expensive to create). It exists because infer.Detector runs
// anomaly-map models only (one map plus an optional scalar score, from a
// file): fitting PatchCore needs the backbone's intermediate feature
// tensors, several outputs of a graph built in memory. Written models are
// run through infer.Open, like in the daemon. ORT must be initialised with
// infer.Init first.
type runner struct {
	sess     *ort.DynamicAdvancedSession
	in       *ort.Tensor[float32]
	outNames []string
}

// newRunner opens a session on model with all graph optimisations on.
func newRunner(what string, model []byte, inName string, inShape []int64, outNames []string, threads int) (*runner, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options for %s: %w", what, err)
	}
	defer opts.Destroy()
	if err := opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll); err != nil {
		return nil, fmt.Errorf("session options for %s: %w", what, err)
	}
	if threads > 0 {
		if err := opts.SetIntraOpNumThreads(threads); err != nil {
			return nil, fmt.Errorf("session options for %s: %w", what, err)
		}
	}
	in, err := ort.NewEmptyTensor[float32](ort.NewShape(inShape...))
	if err != nil {
		return nil, fmt.Errorf("input tensor for %s: %w", what, err)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, []string{inName}, outNames, opts)
	if err != nil {
		in.Destroy()
		return nil, fmt.Errorf("load %s in ONNX Runtime: %w", what, err)
	}
	return &runner{sess: s, in: in, outNames: outNames}, nil
}

// run feeds input (copied into the session's tensor) and returns each output's
// data and shape.
func (r *runner) run(input []float32) ([][]float32, []ort.Shape, error) {
	dst := r.in.GetData()
	if len(input) != len(dst) {
		return nil, nil, fmt.Errorf("input has %d values, the model takes %d", len(input), len(dst))
	}
	copy(dst, input)
	outs := make([]ort.Value, len(r.outNames))
	if err := r.sess.Run([]ort.Value{r.in}, outs); err != nil {
		return nil, nil, fmt.Errorf("run: %w", err)
	}
	data := make([][]float32, len(outs))
	shapes := make([]ort.Shape, len(outs))
	for i, o := range outs {
		t, ok := o.(*ort.Tensor[float32])
		if !ok {
			for _, o := range outs {
				o.Destroy()
			}
			return nil, nil, fmt.Errorf("output %s is not a float32 tensor", r.outNames[i])
		}
		data[i] = append([]float32(nil), t.GetData()...)
		shapes[i] = t.GetShape()
	}
	for _, o := range outs {
		o.Destroy()
	}
	return data, shapes, nil
}

func (r *runner) close() {
	r.sess.Destroy()
	r.in.Destroy()
}
