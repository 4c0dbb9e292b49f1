package infer

import (
	"errors"
	"fmt"
	"os"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// session is what Detector and Classifier share: one ORT session created
// once, with its input and output tensors preallocated, so a frame is a
// table-driven fill, one Run and reads of memory ORT wrote in place.
type session struct {
	who       string
	path      string
	size      Size
	pre       *Preprocess
	in        *ort.Tensor[float32]
	inData    []float32
	outs      []*ort.Tensor[float32]
	sess      *ort.AdvancedSession
	opts      *ort.SessionOptions
	providers []string
}

// modelIO is the model's declared inputs and outputs, read from the file.
type modelIO struct {
	ins, outs []ort.InputOutputInfo
	// data is the model file's content. Sessions are created from bytes, not
	// from the path: onnxruntime_go v1.27.0's path-based functions leak the C
	// copy of the path on every session (measured ~100 B per Open with
	// mallinfo2), which thousands of reloads would accumulate. The cost is
	// that models with external-data files (> 2 GB) are not supported.
	data []byte
}

func (m modelIO) String() string {
	var b strings.Builder
	b.WriteString("inputs [")
	for i, x := range m.ins {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "#%d %s", i, describe(x))
	}
	b.WriteString("], outputs [")
	for i, x := range m.outs {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "#%d %s", i, describe(x))
	}
	b.WriteString("]")
	return b.String()
}

func describe(x ort.InputOutputInfo) string {
	if x.OrtValueType != ort.ONNXTypeTensor {
		return fmt.Sprintf("%q %s", x.Name, x.OrtValueType)
	}
	return fmt.Sprintf("%q %s %s", x.Name, x.DataType, x.Dimensions)
}

// readModelIO reads the model's inputs and outputs, with clear errors for a
// missing file and a file that is not an ONNX model.
func readModelIO(path string) (modelIO, error) {
	if !initialised() {
		return modelIO{}, errNotInit
	}
	st, err := os.Stat(path)
	if err != nil {
		return modelIO{}, fmt.Errorf("model %s: %w", path, err)
	}
	if st.IsDir() {
		return modelIO{}, fmt.Errorf("model %s is a folder, want an .onnx file", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return modelIO{}, fmt.Errorf("model %s: %w", path, err)
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return modelIO{}, fmt.Errorf("model %s is not a loadable ONNX model: %w", path, err)
	}
	return modelIO{ins: ins, outs: outs, data: data}, nil
}

// resolveInput picks the input by name (or the first) and checks it is a
// float32 NCHW 3-channel image of the configured size. Dynamic dimensions
// (-1) are fixed to batch 1 and the configured size.
func (m modelIO) resolveInput(path, name string, size Size) (string, ort.Shape, error) {
	if len(m.ins) == 0 {
		return "", nil, fmt.Errorf("model %s has no inputs", path)
	}
	idx := 0
	if name != "" {
		idx = -1
		for i, x := range m.ins {
			if x.Name == name {
				idx = i
			}
		}
		if idx < 0 {
			return "", nil, fmt.Errorf("model %s has no input %q; it has %s", path, name, m)
		}
	}
	if len(m.ins) > 1 {
		return "", nil, fmt.Errorf("model %s has %d inputs; a detector feeds exactly one image: %s", path, len(m.ins), m)
	}
	x := m.ins[idx]
	if x.OrtValueType != ort.ONNXTypeTensor || x.DataType != ort.TensorElementDataTypeFloat {
		return "", nil, fmt.Errorf("model %s input %q is %s, want a float32 tensor [1,3,H,W]", path, x.Name, describe(x))
	}
	d := x.Dimensions
	want := []int64{1, 3, int64(size.Height), int64(size.Width)}
	if len(d) != 4 {
		return "", nil, fmt.Errorf("model %s input %q has shape %s, want [1,3,%d,%d] (NCHW, input_size %s); the model has %s", path, x.Name, d, size.Height, size.Width, size, m)
	}
	shape := ort.NewShape(want...)
	for i := range d {
		if d[i] >= 0 && d[i] != want[i] {
			return "", nil, fmt.Errorf("model %s input %q has shape %s, config wants [1,3,%d,%d] (input_size %s): set input_size to the model's or re-export it; the model has %s", path, x.Name, d, size.Height, size.Width, size, m)
		}
	}
	return x.Name, shape, nil
}

// resolveOutput finds an output by reference and checks it is float32.
func (m modelIO) resolveOutput(path, key string, ref OutputRef) (ort.InputOutputInfo, error) {
	var x *ort.InputOutputInfo
	if ref.Name != "" {
		for i := range m.outs {
			if m.outs[i].Name == ref.Name {
				x = &m.outs[i]
			}
		}
	} else if ref.Index >= 0 && ref.Index < len(m.outs) {
		x = &m.outs[ref.Index]
	}
	if x == nil {
		return ort.InputOutputInfo{}, fmt.Errorf("model %s has no output %s (config key %s); it has %s", path, ref, key, m)
	}
	if x.OrtValueType != ort.ONNXTypeTensor || x.DataType != ort.TensorElementDataTypeFloat {
		return ort.InputOutputInfo{}, fmt.Errorf("model %s output %s (config key %s) is %s, want a float32 tensor", path, ref, key, describe(*x))
	}
	return *x, nil
}

// outputSpec is one output to bind with the concrete shape to preallocate.
type outputSpec struct {
	name  string
	shape ort.Shape
}

func openSession(who, path string, data []byte, pc PreprocessConfig, inName string, inShape ort.Shape, outs []outputSpec, providers []ProviderConfig) (_ *session, err error) {
	pre, err := NewPreprocess(pc)
	if err != nil {
		return nil, err
	}
	s := &session{who: who, path: path, size: pc.InputSize, pre: pre}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.in, err = ort.NewEmptyTensor[float32](inShape); err != nil {
		return nil, fmt.Errorf("input tensor %s: %w", inShape, err)
	}
	s.inData = s.in.GetData()
	names := make([]string, len(outs))
	vals := make([]ort.Value, len(outs))
	for i, o := range outs {
		t, err := ort.NewEmptyTensor[float32](o.shape)
		if err != nil {
			return nil, fmt.Errorf("output %q tensor %s: %w", o.name, o.shape, err)
		}
		s.outs = append(s.outs, t)
		names[i], vals[i] = o.name, t
	}
	s.sess, s.opts, s.providers, err = newSession(path, data, []string{inName}, names, []ort.Value{s.in}, vals, providers, who)
	if err != nil {
		return nil, fmt.Errorf("model %s: create session: %w", path, err)
	}
	return s, nil
}

// run fills the input from img and runs the model.
func (s *session) run(img Image) error {
	if s.sess == nil {
		return errors.New("closed")
	}
	if err := img.check(s.size); err != nil {
		return err
	}
	fillNCHW(s.inData, img, s.pre)
	if err := s.sess.Run(); err != nil {
		return fmt.Errorf("run %s: %w", s.path, err)
	}
	return nil
}

// close releases the session, its options and tensors; safe to call twice.
func (s *session) close() error {
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
	for _, t := range s.outs {
		errs = append(errs, t.Destroy())
	}
	s.outs = nil
	return errors.Join(errs...)
}

// grayImage returns a mid-gray frame for warm-up runs.
func grayImage(size Size) Image {
	pix := make([]byte, 3*size.Width*size.Height)
	for i := range pix {
		pix[i] = 128
	}
	return Image{Width: size.Width, Height: size.Height, Stride: 3 * size.Width, Pix: pix}
}
