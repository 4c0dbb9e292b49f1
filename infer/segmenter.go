package infer

import (
	"errors"
	"fmt"

	ort "github.com/yalue/onnxruntime_go"
)

// SegmenterConfig declares a segmentation model run on every frame, whose
// output becomes that frame's mask (config segad.mask in its mapping form).
// The input is described as a detector's.
type SegmenterConfig struct {
	// Model is the ONNX file.
	Model string
	// Input tensor name; empty: the model's only input.
	Input string
	// Output holding class scores or labels (name or index); default 0.
	Output OutputRef
	// PreprocessConfig is the input (input_size, color_order, scale, mean, std).
	PreprocessConfig
	// Providers in order of preference; empty: cpu.
	Providers []ProviderConfig
	// Classes is L, the number of labels the configuration names: a
	// class-score output must have exactly L channels.
	Classes int
}

// Defaults fills unset fields as for detectors.
func (c *SegmenterConfig) Defaults() {
	c.PreprocessConfig.Defaults()
	c.Providers = defaultProviders(c.Providers)
}

// ValidateOptions checks everything but the model path: the preprocessing,
// the output reference and the providers (config validation runs it before
// paths are known to exist).
func (c *SegmenterConfig) ValidateOptions() error {
	if err := c.PreprocessConfig.Validate(); err != nil {
		return err
	}
	if c.Output.Name == "" && c.Output.Index < 0 {
		return fmt.Errorf("output index %d is negative", c.Output.Index)
	}
	return validateProviders(c.Providers)
}

// SegKind is what a segmentation model's output holds.
type SegKind int

const (
	// SegScores is class scores [1,L,H,W]: the label is the argmax.
	SegScores SegKind = iota
	// SegLabels is a label map [1,1,H,W].
	SegLabels
)

// SegOutput is one frame's segmentation as the model gave it, at the
// model's resolution (Width x Height). Exactly one of the slices is set,
// by the output's element type; it is owned by the Segmenter and valid
// until its next Run.
type SegOutput struct {
	Kind          SegKind
	Width, Height int
	// Classes is L for SegScores (F32 holds L planes of Width*Height), 1
	// for SegLabels.
	Classes int
	F32     []float32
	I64     []int64
	I32     []int32
	U8      []uint8
}

// Segmenter runs one ONNX segmentation model through the same ONNX Runtime
// path as the detectors: one session created once from the file's bytes,
// the same providers and fallbacks, the same one-pass NCHW preprocessing,
// and output tensors preallocated, so a frame allocates nothing. It is not
// safe for concurrent Run calls.
type Segmenter struct {
	cfg     SegmenterConfig
	pre     *Preprocess
	in      *ort.Tensor[float32]
	inData  []float32
	out     ort.Value
	sess    *ort.AdvancedSession
	opts    *ort.SessionOptions
	prov    []string
	res     SegOutput
	warmImg Image
}

// OpenSegmenter loads the model and checks that its output is class scores
// [1,Classes,H,W] (float32) or a label map [1,1,H,W] (int64, int32, uint8
// or float32); anything else is refused with the model's inputs and
// outputs (names, shapes, types) and what was expected. Init must have run.
func OpenSegmenter(cfg SegmenterConfig) (_ *Segmenter, err error) {
	cfg.Defaults()
	wrap := func(err error) error { return fmt.Errorf("segmentation model (segad.mask.model): %w", err) }
	if cfg.Model == "" {
		return nil, wrap(errors.New("model: path is empty"))
	}
	if err := cfg.ValidateOptions(); err != nil {
		return nil, wrap(err)
	}
	if cfg.Classes < 1 || cfg.Classes > 255 {
		return nil, wrap(fmt.Errorf("%d labels: want 1..255", cfg.Classes))
	}
	io, err := readModelIO(cfg.Model)
	if err != nil {
		return nil, wrap(err)
	}
	inName, inShape, err := io.resolveInput(cfg.Model, cfg.Input, cfg.InputSize)
	if err != nil {
		return nil, wrap(err)
	}
	o, res, shape, err := io.resolveSegOutput(cfg)
	if err != nil {
		return nil, wrap(err)
	}
	pre, err := NewPreprocess(cfg.PreprocessConfig)
	if err != nil {
		return nil, wrap(err)
	}
	s := &Segmenter{cfg: cfg, pre: pre, res: res}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.in, err = ort.NewEmptyTensor[float32](inShape); err != nil {
		return nil, wrap(fmt.Errorf("input tensor %s: %w", inShape, err))
	}
	s.inData = s.in.GetData()
	if s.out, err = s.newOutput(o.DataType, shape); err != nil {
		return nil, wrap(fmt.Errorf("output %q tensor %s: %w", o.Name, shape, err))
	}
	s.sess, s.opts, s.prov, err = newSession(cfg.Model, io.data, []string{inName}, []string{o.Name},
		[]ort.Value{s.in}, []ort.Value{s.out}, cfg.Providers, "segmenter")
	if err != nil {
		return nil, wrap(fmt.Errorf("model %s: create session: %w", cfg.Model, err))
	}
	return s, nil
}

// newOutput preallocates the output tensor of the model's element type and
// points the result's slice at its memory.
func (s *Segmenter) newOutput(dt ort.TensorElementDataType, shape ort.Shape) (ort.Value, error) {
	switch dt {
	case ort.TensorElementDataTypeFloat:
		t, err := ort.NewEmptyTensor[float32](shape)
		if err == nil {
			s.res.F32 = t.GetData()
		}
		return t, err
	case ort.TensorElementDataTypeInt64:
		t, err := ort.NewEmptyTensor[int64](shape)
		if err == nil {
			s.res.I64 = t.GetData()
		}
		return t, err
	case ort.TensorElementDataTypeInt32:
		t, err := ort.NewEmptyTensor[int32](shape)
		if err == nil {
			s.res.I32 = t.GetData()
		}
		return t, err
	case ort.TensorElementDataTypeUint8:
		t, err := ort.NewEmptyTensor[uint8](shape)
		if err == nil {
			s.res.U8 = t.GetData()
		}
		return t, err
	}
	return nil, fmt.Errorf("element type %s is not supported", dt)
}

// resolveSegOutput finds the output and decides from its declared shape
// and type whether it is class scores or a label map. Dynamic dimensions
// are fixed: batch 1, H and W the input size, the channel count Classes
// for float outputs and 1 for integer ones.
func (m modelIO) resolveSegOutput(cfg SegmenterConfig) (ort.InputOutputInfo, SegOutput, ort.Shape, error) {
	var x *ort.InputOutputInfo
	if cfg.Output.Name != "" {
		for i := range m.outs {
			if m.outs[i].Name == cfg.Output.Name {
				x = &m.outs[i]
			}
		}
	} else if cfg.Output.Index >= 0 && cfg.Output.Index < len(m.outs) {
		x = &m.outs[cfg.Output.Index]
	}
	L := cfg.Classes
	want := fmt.Sprintf("class scores float32 [1,%d,H,W] (one channel per label in segad.mask.labels) or a label map [1,1,H,W] of int64, int32, uint8 or float32", L)
	if x == nil {
		return ort.InputOutputInfo{}, SegOutput{}, nil, fmt.Errorf("model %s has no output %s (config key segad.mask.output); want %s; the model has %s", cfg.Model, cfg.Output, want, m)
	}
	refuse := func(why string) (ort.InputOutputInfo, SegOutput, ort.Shape, error) {
		return ort.InputOutputInfo{}, SegOutput{}, nil, fmt.Errorf("model %s output %s is %s: %s; want %s; the model has %s", cfg.Model, cfg.Output, describe(*x), why, want, m)
	}
	if x.OrtValueType != ort.ONNXTypeTensor {
		return refuse("not a tensor")
	}
	isFloat := false
	switch x.DataType {
	case ort.TensorElementDataTypeFloat:
		isFloat = true
	case ort.TensorElementDataTypeInt64, ort.TensorElementDataTypeInt32, ort.TensorElementDataTypeUint8:
	default:
		return refuse(fmt.Sprintf("element type %s is not one of float32, int64, int32, uint8", x.DataType))
	}
	d := x.Dimensions
	if len(d) != 4 {
		return refuse(fmt.Sprintf("rank %d, want 4 (NCHW)", len(d)))
	}
	if d[0] > 1 {
		return refuse("batch dimension must be 1")
	}
	c := d[1]
	switch {
	case c < 0 && isFloat:
		c = int64(L)
	case c < 0:
		c = 1
	}
	res := SegOutput{Kind: SegLabels, Classes: 1}
	switch {
	case c == 1:
	case c == int64(L) && isFloat:
		res = SegOutput{Kind: SegScores, Classes: L}
	case c == int64(L):
		return refuse(fmt.Sprintf("%d channels of %s: class scores must be float32", c, x.DataType))
	default:
		return refuse(fmt.Sprintf("%d channels but segad.mask.labels names %d labels", c, L))
	}
	h, w := d[2], d[3]
	if h < 0 {
		h = int64(cfg.InputSize.Height)
	}
	if w < 0 {
		w = int64(cfg.InputSize.Width)
	}
	if h == 0 || w == 0 {
		return refuse("empty map")
	}
	res.Width, res.Height = int(w), int(h)
	return *x, res, ort.NewShape(1, c, h, w), nil
}

// InputSize is the image size Run expects.
func (s *Segmenter) InputSize() Size { return s.cfg.InputSize }

// Config returns the configuration with defaults applied.
func (s *Segmenter) Config() SegmenterConfig { return s.cfg }

// Providers returns the execution providers the session runs with.
func (s *Segmenter) Providers() []string { return s.prov }

// Run converts img into the input tensor and runs the model. The output's
// slices are the session's own memory, valid until the next Run; nothing
// is allocated.
func (s *Segmenter) Run(img Image) (SegOutput, error) {
	if s.sess == nil {
		return SegOutput{}, errors.New("segmenter: closed")
	}
	if err := img.check(s.cfg.InputSize); err != nil {
		return SegOutput{}, fmt.Errorf("segmenter %s: %w", s.cfg.Model, err)
	}
	fillNCHW(s.inData, img, s.pre)
	if err := s.sess.Run(); err != nil {
		return SegOutput{}, fmt.Errorf("segmenter: run %s: %w", s.cfg.Model, err)
	}
	return s.res, nil
}

// Warmup runs n mid-gray frames (lazy initialisation, GPU engine builds).
func (s *Segmenter) Warmup(n int) error {
	if s.warmImg.Pix == nil {
		s.warmImg = grayImage(s.cfg.InputSize)
	}
	for i := 0; i < n; i++ {
		if _, err := s.Run(s.warmImg); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return nil
}

// Close releases the session and its tensors; safe to call twice.
func (s *Segmenter) Close() error {
	if s == nil {
		return nil
	}
	var errs []error
	if s.sess != nil {
		errs = append(errs, s.sess.Destroy())
		s.sess = nil
	}
	if s.opts != nil {
		errs = append(errs, s.opts.Destroy())
		s.opts = nil
	}
	if s.in != nil {
		errs = append(errs, s.in.Destroy())
		s.in, s.inData = nil, nil
	}
	if s.out != nil {
		errs = append(errs, s.out.Destroy())
		s.out = nil
	}
	s.res = SegOutput{}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("segmenter %s: close: %w", s.cfg.Model, err)
	}
	return nil
}
