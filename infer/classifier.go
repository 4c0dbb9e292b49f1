package infer

import (
	"fmt"

	ort "github.com/yalue/onnxruntime_go"
)

// Classifier runs the optional supervised classifier g(I); its score is the
// extra feature after the per-detector maxima.
type Classifier struct {
	cfg     ClassifierConfig
	s       *session
	outT    *ort.Tensor[float32]
	warmImg Image
}

// OpenClassifier loads and checks the model like Open does for detectors.
func OpenClassifier(cfg ClassifierConfig) (*Classifier, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	wrap := func(err error) error { return fmt.Errorf("classifier: %w", err) }
	io, err := readModelIO(cfg.Model)
	if err != nil {
		return nil, wrap(err)
	}
	inName, inShape, err := io.resolveInput(cfg.Model, cfg.Input, cfg.InputSize)
	if err != nil {
		return nil, wrap(err)
	}
	o, err := io.resolveOutput(cfg.Model, "output", cfg.Output)
	if err != nil {
		return nil, wrap(err)
	}
	shape := make([]int64, len(o.Dimensions))
	n := int64(1)
	for i, v := range o.Dimensions {
		if v < 0 {
			v = 1 // dynamic batch
		}
		shape[i] = v
		n *= v
	}
	if int64(cfg.Element) >= n {
		return nil, wrap(fmt.Errorf("model %s output %q has %d values (shape %s), element %d is out of range", cfg.Model, o.Name, n, o.Dimensions, cfg.Element))
	}
	s, err := openSession("classifier", cfg.Model, io.data, cfg.PreprocessConfig, inName, inShape,
		[]outputSpec{{name: o.Name, shape: ort.NewShape(shape...)}}, cfg.Providers)
	if err != nil {
		return nil, wrap(err)
	}
	return &Classifier{cfg: cfg, s: s, outT: s.outs[0]}, nil
}

// InputSize is the image size Run expects.
func (c *Classifier) InputSize() Size { return c.cfg.InputSize }

// Providers returns the providers the session runs with (ending in cpu).
func (c *Classifier) Providers() []string { return c.s.providers }

// Run returns the configured element of the output as the score. A
// probability outside [0,1] (or NaN) is an error: the model is not what the
// config says.
func (c *Classifier) Run(img Image) (float32, error) {
	if err := c.s.run(img); err != nil {
		return 0, fmt.Errorf("classifier: %w", err)
	}
	v := c.outT.GetData()[c.cfg.Element]
	if c.cfg.Kind == KindProbability && !(v >= 0 && v <= 1) {
		return v, fmt.Errorf("classifier %s: kind probability but the model gave %v", c.cfg.Model, v)
	}
	return v, nil
}

// Raw returns the whole output tensor of the last Run (owned by the
// classifier, valid until the next Run): all logits of a multi-class model.
func (c *Classifier) Raw() []float32 { return c.outT.GetData() }

// Warmup runs n mid-gray frames.
func (c *Classifier) Warmup(n int) error {
	if c.warmImg.Pix == nil {
		c.warmImg = grayImage(c.cfg.InputSize)
	}
	for i := 0; i < n; i++ {
		if _, err := c.Run(c.warmImg); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return nil
}

// Close releases the session and tensors.
func (c *Classifier) Close() error {
	if c == nil || c.s == nil {
		return nil
	}
	if err := c.s.close(); err != nil {
		return fmt.Errorf("classifier %s: close: %w", c.cfg.Model, err)
	}
	return nil
}
