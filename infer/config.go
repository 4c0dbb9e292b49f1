package infer

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a width x height in pixels.
type Size struct {
	Width  int `yaml:"width"`
	Height int `yaml:"height"`
}

// String formats the size as WxH, the form used in error messages.
func (s Size) String() string { return fmt.Sprintf("%dx%d", s.Width, s.Height) }

// DefaultMapSize is the anomaly map size SegAD works on (the paper's 256x256).
var DefaultMapSize = Size{Width: 256, Height: 256}

// OutputRef addresses a model output either by name or by position. anomalib
// 1.x exports name only the first output ("output"), so the others can only be
// reached by index; 2.x names them all ("anomaly_map", "pred_score").
// In YAML an integer is an index and a string is a name.
type OutputRef struct {
	// Name of the output; empty means use Index.
	Name string
	// Index of the output in the model's output list, used when Name is empty.
	Index int
}

// String formats the reference as it would be written in the config.
func (r OutputRef) String() string {
	if r.Name != "" {
		return strconv.Quote(r.Name)
	}
	return "#" + strconv.Itoa(r.Index)
}

// UnmarshalYAML accepts an integer (index) or a string (name). A string of
// digits is a name: ONNX names may be numeric ("426") and quoting in YAML is
// how a user says which they mean.
func (r *OutputRef) UnmarshalYAML(b []byte) error {
	s := strings.TrimSpace(string(b))
	if i, err := strconv.Atoi(s); err == nil {
		if i < 0 {
			return fmt.Errorf("output index %d is negative", i)
		}
		*r = OutputRef{Index: i}
		return nil
	}
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	} else if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		s = strings.ReplaceAll(s[1:len(s)-1], "''", "'")
	}
	if s == "" {
		return errors.New("output name is empty (give a name or an index)")
	}
	*r = OutputRef{Name: s}
	return nil
}

// MarshalYAML writes the reference back in the form UnmarshalYAML reads.
func (r OutputRef) MarshalYAML() ([]byte, error) {
	if r.Name != "" {
		return []byte(strconv.Quote(r.Name)), nil
	}
	return []byte(strconv.Itoa(r.Index)), nil
}

// Preprocessing options shared by detectors and the classifier. The image is
// converted to the model's float input in one pass (see FillNCHW).
type PreprocessConfig struct {
	// InputSize the model is fed; capture resizes frames to it. Default 256x256.
	InputSize Size `yaml:"input_size"`
	// ColorOrder of the tensor's channels: "rgb" (default, anomalib and
	// torchvision) or "bgr".
	ColorOrder string `yaml:"color_order"`
	// Scale multiplies the 8-bit value before mean/std; default 1/255.
	Scale float64 `yaml:"scale"`
	// Mean per channel (in the tensor's channel order), subtracted after
	// scaling. Empty: none (anomalib graphs normalise inside the graph).
	Mean []float64 `yaml:"mean"`
	// Std per channel, dividing after the mean. Empty: none.
	Std []float64 `yaml:"std"`
}

// NormalizeConfig is an affine normalisation applied to the map after
// upsampling and blur. Kind "quantile" is EfficientAD's
// 0.1*(m - q_a)/(q_b - q_a) with the validation quantiles (q_a = q0.9,
// q_b = q0.995 in anomalib); kind "affine" is m*scale + offset.
type NormalizeConfig struct {
	// Kind: "" (none), "quantile" or "affine".
	Kind string `yaml:"kind"`
	// QA is the lower quantile (quantile kind).
	QA float64 `yaml:"q_a"`
	// QB is the upper quantile (quantile kind); must differ from QA.
	QB float64 `yaml:"q_b"`
	// Scale multiplies the map (affine kind).
	Scale float64 `yaml:"scale"`
	// Offset is added after Scale (affine kind).
	Offset float64 `yaml:"offset"`
}

// coefficients returns a, b with m' = a*m + b; ok is false for no normalisation.
func (n NormalizeConfig) coefficients() (a, b float32, ok bool) {
	switch n.Kind {
	case "quantile":
		s := 0.1 / (n.QB - n.QA)
		return float32(s), float32(-n.QA * s), true
	case "affine":
		return float32(n.Scale), float32(n.Offset), true
	}
	return 1, 0, false
}

// PostConfig is the map post-processing done in Go after the model's run.
type PostConfig struct {
	// MapSize the map is brought to; default 256x256. A model map of another
	// size is resized bilinearly with half-pixel centres (OpenCV INTER_LINEAR,
	// PyTorch align_corners=False).
	MapSize Size `yaml:"map_size"`
	// BlurSigma > 0 applies a Gaussian blur like cv2.GaussianBlur(m, (0,0),
	// sigma) (kernel round(8*sigma+1)|1, reflect-101 border). Leave 0 when
	// the graph blurs already (anomalib PatchCore does, sigma 4).
	BlurSigma float64 `yaml:"blur_sigma"`
	// Normalize is applied last.
	Normalize NormalizeConfig `yaml:"normalize"`
}

// ProviderConfig is one execution provider in an ordered fallback list.
type ProviderConfig struct {
	// Name: "tensorrt", "cuda" or "cpu".
	Name string `yaml:"name"`
	// DeviceID of the GPU (tensorrt, cuda).
	DeviceID int `yaml:"device_id"`
	// FP16 lets TensorRT build half-precision engines.
	FP16 bool `yaml:"fp16"`
	// EngineCache is the folder where TensorRT keeps built engines between
	// restarts (the first build can take minutes). Empty: no cache.
	EngineCache string `yaml:"engine_cache"`
	// TimingCache is TensorRT's timing cache folder. Empty: no cache.
	TimingCache string `yaml:"timing_cache"`
	// Workspace is TensorRT's maximum workspace in bytes; 0 keeps ORT's default.
	Workspace int64 `yaml:"workspace"`
	// IntraOpThreads for the CPU provider; default 1 (fastest on 2 cores,
	// and K detectors run concurrently anyway).
	IntraOpThreads int `yaml:"intra_op_threads"`
	// InterOpThreads for the CPU provider; 0 keeps ORT's default.
	InterOpThreads int `yaml:"inter_op_threads"`
}

// DetectorConfig declares one anomaly detector (one ONNX model giving a map).
type DetectorConfig struct {
	// Name identifies the detector in logs and in feature names.
	Name string `yaml:"name"`
	// Model is the ONNX file.
	Model string `yaml:"model"`
	// Input tensor name; empty: the model's first input.
	Input string `yaml:"input"`
	// MapOutput is the anomaly map output (name or index); default index 0.
	MapOutput OutputRef `yaml:"map_output"`
	// ScoreOutput is an optional image-score output (one element).
	ScoreOutput *OutputRef `yaml:"score_output,omitempty"`
	// Preprocess options (inlined: input_size, color_order, scale, mean, std).
	PreprocessConfig `yaml:",inline"`
	// Post-processing of the map.
	Post PostConfig `yaml:"post"`
	// Providers in order of preference; empty: cpu. The last that can be
	// set up runs, and the log says why the others did not.
	Providers []ProviderConfig `yaml:"providers"`
}

// Classifier output kinds.
const (
	KindLogit       = "logit"
	KindProbability = "probability"
)

// ClassifierConfig declares the optional supervised classifier whose score
// becomes the extra feature after the per-detector maxima.
type ClassifierConfig struct {
	// Model is the ONNX file.
	Model string `yaml:"model"`
	// Input tensor name; empty: the first input.
	Input string `yaml:"input"`
	// Output holding the score (name or index); default index 0.
	Output OutputRef `yaml:"output"`
	// Element of that output which is the score; default 0 (a one-logit
	// model). Lets a multi-class network stand in (e.g. ImageNet class n).
	Element int `yaml:"element"`
	// Kind of the value: "logit" (default) or "probability" (checked to lie
	// in [0,1] on every run). The value is used as the model gives it.
	Kind string `yaml:"kind"`
	// Preprocess options (inlined).
	PreprocessConfig `yaml:",inline"`
	// Providers as for detectors.
	Providers []ProviderConfig `yaml:"providers"`
}

// Defaults fills unset fields with the defaults documented on each field.
func (p *PreprocessConfig) Defaults() {
	if p.InputSize == (Size{}) {
		p.InputSize = DefaultMapSize
	}
	if p.ColorOrder == "" {
		p.ColorOrder = "rgb"
	}
	if p.Scale == 0 {
		p.Scale = 1.0 / 255
	}
}

// Validate reports the first problem with the preprocessing options.
func (p *PreprocessConfig) Validate() error {
	if p.InputSize.Width <= 0 || p.InputSize.Height <= 0 {
		return fmt.Errorf("input_size %s: width and height must be positive", p.InputSize)
	}
	switch strings.ToLower(p.ColorOrder) {
	case "rgb", "bgr":
	default:
		return fmt.Errorf("color_order %q: want rgb or bgr", p.ColorOrder)
	}
	if p.Scale == 0 || math.IsNaN(p.Scale) || math.IsInf(p.Scale, 0) {
		return fmt.Errorf("scale %v: want a finite non-zero number (default 1/255)", p.Scale)
	}
	if n := len(p.Mean); n != 0 && n != 3 {
		return fmt.Errorf("mean has %d values: want none or 3 (one per channel)", n)
	}
	if n := len(p.Std); n != 0 && n != 3 {
		return fmt.Errorf("std has %d values: want none or 3 (one per channel)", n)
	}
	for i, s := range p.Std {
		if s == 0 || math.IsNaN(s) {
			return fmt.Errorf("std[%d] = %v: must be non-zero", i, s)
		}
	}
	return nil
}

// Defaults fills unset fields: 1 intra-op thread for cpu.
func (p *ProviderConfig) Defaults() {
	p.Name = strings.ToLower(p.Name)
	if p.Name == "cpu" && p.IntraOpThreads == 0 {
		p.IntraOpThreads = 1
	}
}

// Validate checks the provider name and its numeric options.
func (p *ProviderConfig) Validate() error {
	switch p.Name {
	case "tensorrt", "cuda", "cpu":
	default:
		return fmt.Errorf("provider %q: want tensorrt, cuda or cpu", p.Name)
	}
	if p.DeviceID < 0 {
		return fmt.Errorf("provider %s: device_id %d is negative", p.Name, p.DeviceID)
	}
	if p.Workspace < 0 {
		return fmt.Errorf("provider %s: workspace %d is negative", p.Name, p.Workspace)
	}
	if p.IntraOpThreads < 0 || p.InterOpThreads < 0 {
		return fmt.Errorf("provider %s: thread counts must not be negative", p.Name)
	}
	return nil
}

func defaultProviders(ps []ProviderConfig) []ProviderConfig {
	if len(ps) == 0 {
		ps = []ProviderConfig{{Name: "cpu"}}
	}
	for i := range ps {
		ps[i].Defaults()
	}
	return ps
}

func validateProviders(ps []ProviderConfig) error {
	for i := range ps {
		if err := ps[i].Validate(); err != nil {
			return fmt.Errorf("providers[%d]: %w", i, err)
		}
	}
	return nil
}

// Defaults fills unset fields with their documented defaults.
func (c *DetectorConfig) Defaults() {
	c.PreprocessConfig.Defaults()
	if c.Post.MapSize == (Size{}) {
		c.Post.MapSize = DefaultMapSize
	}
	c.Providers = defaultProviders(c.Providers)
}

// Validate reports the first problem, naming the detector and the key.
func (c *DetectorConfig) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("detector (model %q): name is empty", c.Model)
	}
	wrap := func(err error) error { return fmt.Errorf("detector %s: %w", c.Name, err) }
	if c.Model == "" {
		return wrap(errors.New("model: path is empty"))
	}
	if err := c.PreprocessConfig.Validate(); err != nil {
		return wrap(err)
	}
	if c.MapOutput.Name == "" && c.MapOutput.Index < 0 {
		return wrap(fmt.Errorf("map_output index %d is negative", c.MapOutput.Index))
	}
	if c.Post.MapSize.Width <= 0 || c.Post.MapSize.Height <= 0 {
		return wrap(fmt.Errorf("post.map_size %s: width and height must be positive", c.Post.MapSize))
	}
	if c.Post.BlurSigma < 0 || math.IsNaN(c.Post.BlurSigma) || c.Post.BlurSigma > 64 {
		return wrap(fmt.Errorf("post.blur_sigma %v: want 0 (off) up to 64", c.Post.BlurSigma))
	}
	n := c.Post.Normalize
	switch n.Kind {
	case "":
	case "quantile":
		if n.QA == n.QB || math.IsNaN(n.QA) || math.IsNaN(n.QB) {
			return wrap(fmt.Errorf("post.normalize: q_a (%v) and q_b (%v) must be distinct numbers", n.QA, n.QB))
		}
	case "affine":
		if n.Scale == 0 || math.IsNaN(n.Scale) || math.IsNaN(n.Offset) {
			return wrap(fmt.Errorf("post.normalize: affine scale %v must be non-zero (offset %v)", n.Scale, n.Offset))
		}
	default:
		return wrap(fmt.Errorf("post.normalize.kind %q: want quantile, affine or empty", n.Kind))
	}
	if err := validateProviders(c.Providers); err != nil {
		return wrap(err)
	}
	return nil
}

// Defaults fills unset fields with their documented defaults.
func (c *ClassifierConfig) Defaults() {
	c.PreprocessConfig.Defaults()
	if c.Kind == "" {
		c.Kind = KindLogit
	}
	c.Providers = defaultProviders(c.Providers)
}

// Validate reports the first problem, naming the key.
func (c *ClassifierConfig) Validate() error {
	wrap := func(err error) error { return fmt.Errorf("classifier %s: %w", c.Model, err) }
	if c.Model == "" {
		return errors.New("classifier: model path is empty")
	}
	if err := c.PreprocessConfig.Validate(); err != nil {
		return wrap(err)
	}
	if c.Kind != KindLogit && c.Kind != KindProbability {
		return wrap(fmt.Errorf("kind %q: want logit or probability", c.Kind))
	}
	if c.Element < 0 {
		return wrap(fmt.Errorf("element %d is negative", c.Element))
	}
	if err := validateProviders(c.Providers); err != nil {
		return wrap(err)
	}
	return nil
}
