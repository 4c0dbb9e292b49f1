package infer

import (
	"fmt"
	"log/slog"

	ort "github.com/yalue/onnxruntime_go"
)

// ExportRecipe is the advice logged when a map looks clamped to [0,1].
const ExportRecipe = "export the model without anomalib's post-processor so the map keeps its raw values " +
	"(anomalib 2.x: model = Patchcore(post_processor=False) or engine.export(..., export_type=\"onnx\") on a model built with post_processor=False; " +
	"fixed 256x256 input, batch 1); see docs/infer.md \"Bringing your detectors\""

// Output is one detector's result for one frame.
type Output struct {
	// Map is the anomaly map, row-major MapSize.Height x MapSize.Width. It is
	// owned by the detector and valid until its next Run. NaN is passed
	// through (the feature stage reports it; see FirstNaN).
	Map []float32
	// MapSize is the map's size (the configured post.map_size).
	MapSize Size
	// Score is the model's image score when the config names score_output.
	Score float32
	// HasScore tells whether Score is set.
	HasScore bool
}

// Detector runs one ONNX anomaly detector. It is not safe for concurrent
// Run calls; Set runs K detectors concurrently, one goroutine each.
type Detector struct {
	cfg      DetectorConfig
	s        *session
	mapT     *ort.Tensor[float32]
	scoreT   *ort.Tensor[float32]
	modelMap Size
	resize   *resizer
	blur     *blurrer
	normA    float32
	normB    float32
	norm     bool
	mapBuf   []float32 // upsampled map (only when the model's map is smaller)
	warmImg  Image
}

// Open loads the model, checks its inputs and outputs against cfg (a
// mismatch lists what the model has) and creates the session once, with
// preallocated tensors. cfg gets its defaults applied. Init must have run.
func Open(cfg DetectorConfig) (*Detector, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	wrap := func(err error) error { return fmt.Errorf("detector %s: %w", cfg.Name, err) }
	io, err := readModelIO(cfg.Model)
	if err != nil {
		return nil, wrap(err)
	}
	inName, inShape, err := io.resolveInput(cfg.Model, cfg.Input, cfg.InputSize)
	if err != nil {
		return nil, wrap(err)
	}
	mo, err := io.resolveOutput(cfg.Model, "map_output", cfg.MapOutput)
	if err != nil {
		return nil, wrap(err)
	}
	mapShape, mapSize, err := mapShapeOf(mo, cfg.InputSize)
	if err != nil {
		return nil, wrap(fmt.Errorf("model %s: %w; the model has %s", cfg.Model, err, io))
	}
	specs := []outputSpec{{name: mo.Name, shape: mapShape}}
	if cfg.ScoreOutput != nil {
		so, err := io.resolveOutput(cfg.Model, "score_output", *cfg.ScoreOutput)
		if err != nil {
			return nil, wrap(err)
		}
		if so.Name == mo.Name {
			return nil, wrap(fmt.Errorf("model %s: score_output and map_output are both %q", cfg.Model, so.Name))
		}
		shape, err := scalarShapeOf(so)
		if err != nil {
			return nil, wrap(fmt.Errorf("model %s: score_output: %w", cfg.Model, err))
		}
		specs = append(specs, outputSpec{name: so.Name, shape: shape})
	}
	s, err := openSession(cfg.Name, cfg.Model, io.data, cfg.PreprocessConfig, inName, inShape, specs, cfg.Providers)
	if err != nil {
		return nil, wrap(err)
	}
	d := &Detector{cfg: cfg, s: s, mapT: s.outs[0], modelMap: mapSize}
	if len(s.outs) > 1 {
		d.scoreT = s.outs[1]
	}
	if mapSize != cfg.Post.MapSize {
		d.resize = newResizer(mapSize, cfg.Post.MapSize)
		d.mapBuf = make([]float32, cfg.Post.MapSize.Width*cfg.Post.MapSize.Height)
	}
	if cfg.Post.BlurSigma > 0 {
		d.blur = newBlurrer(cfg.Post.MapSize, cfg.Post.BlurSigma)
	}
	d.normA, d.normB, d.norm = cfg.Post.Normalize.coefficients()
	return d, nil
}

// mapShapeOf turns the declared map shape ([1,1,H,W], [1,H,W] or [H,W],
// dynamic dims allowed) into the concrete shape to preallocate. Dynamic H/W
// are taken as the input size, which is what anomalib exports produce.
func mapShapeOf(o ort.InputOutputInfo, in Size) (ort.Shape, Size, error) {
	d := o.Dimensions
	if len(d) < 2 || len(d) > 4 {
		return nil, Size{}, fmt.Errorf("map output %q has shape %s, want [1,1,H,W], [1,H,W] or [H,W]", o.Name, d)
	}
	shape := make([]int64, len(d))
	for i := 0; i < len(d)-2; i++ {
		if d[i] > 1 {
			return nil, Size{}, fmt.Errorf("map output %q has shape %s: leading dimensions must be 1 (one map per frame, batch 1)", o.Name, d)
		}
		shape[i] = 1
	}
	h, w := d[len(d)-2], d[len(d)-1]
	if h < 0 {
		h = int64(in.Height)
	}
	if w < 0 {
		w = int64(in.Width)
	}
	if h == 0 || w == 0 {
		return nil, Size{}, fmt.Errorf("map output %q has shape %s: empty map", o.Name, d)
	}
	shape[len(d)-2], shape[len(d)-1] = h, w
	return ort.NewShape(shape...), Size{Width: int(w), Height: int(h)}, nil
}

// scalarShapeOf checks an output holds one value ([], [1], [1,1], dynamic 1).
func scalarShapeOf(o ort.InputOutputInfo) (ort.Shape, error) {
	shape := make([]int64, len(o.Dimensions))
	for i, v := range o.Dimensions {
		if v > 1 {
			return nil, fmt.Errorf("output %q has shape %s, want one value", o.Name, o.Dimensions)
		}
		shape[i] = 1
	}
	return ort.NewShape(shape...), nil
}

// Name returns the detector's configured name.
func (d *Detector) Name() string { return d.cfg.Name }

// Config returns the detector's configuration with defaults applied.
func (d *Detector) Config() DetectorConfig { return d.cfg }

// InputSize is the image size Run expects (capture resizes to it).
func (d *Detector) InputSize() Size { return d.cfg.InputSize }

// ModelMapSize is the map size the model itself outputs (before upsampling).
func (d *Detector) ModelMapSize() Size { return d.modelMap }

// Providers returns the execution providers the session was created with,
// most preferred first, always ending in "cpu".
func (d *Detector) Providers() []string { return d.s.providers }

// Run converts img into the input tensor, runs the model and
// post-processes the map in place. No allocation happens here.
func (d *Detector) Run(img Image) (Output, error) {
	if err := d.s.run(img); err != nil {
		return Output{}, fmt.Errorf("detector %s: %w", d.cfg.Name, err)
	}
	return d.post(), nil
}

// post turns the output tensors into the Output: upsampling into mapBuf when
// needed, else blur/normalisation in place in ORT's output buffer (ORT
// overwrites it on the next run anyway).
func (d *Detector) post() Output {
	m := d.mapT.GetData()
	if d.resize != nil {
		d.resize.resize(d.mapBuf, m)
		m = d.mapBuf
	}
	if d.blur != nil {
		d.blur.blur(m)
	}
	if d.norm {
		affine(m, d.normA, d.normB)
	}
	out := Output{Map: m, MapSize: d.cfg.Post.MapSize}
	if d.scoreT != nil {
		out.Score, out.HasScore = d.scoreT.GetData()[0], true
	}
	return out
}

// Warmup runs n mid-gray frames so that lazy initialisation (and on GPUs the
// TensorRT engine build) happens before the first part arrives. It warns,
// with the export recipe, when the map looks clamped to [0,1], and when it
// holds NaN.
func (d *Detector) Warmup(n int) error {
	if d.warmImg.Pix == nil {
		d.warmImg = grayImage(d.cfg.InputSize)
	}
	var out Output
	for i := 0; i < n; i++ {
		var err error
		if out, err = d.Run(d.warmImg); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	if n > 0 {
		d.checkWarm(out.Map)
	}
	return nil
}

func (d *Detector) checkWarm(m []float32) {
	if LooksClamped(m) {
		slog.Warn("infer: anomaly map looks min-max normalised and clamped to [0,1]; SegAD needs raw maps",
			"detector", d.cfg.Name, "model", d.cfg.Model, "fix", ExportRecipe)
	}
	if i := FirstNaN(m); i >= 0 {
		slog.Warn("infer: anomaly map has non-finite values on a gray warm-up frame",
			"detector", d.cfg.Name, "model", d.cfg.Model, "pixel", i, "value", m[i])
	}
}

// Close releases the session and its tensors. The Output of the last Run
// must not be used afterwards.
func (d *Detector) Close() error {
	if d == nil || d.s == nil {
		return nil
	}
	err := d.s.close()
	d.s.sess = nil
	if err != nil {
		return fmt.Errorf("detector %s: close: %w", d.cfg.Name, err)
	}
	return nil
}
