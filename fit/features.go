package fit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"

	"github.com/schollz/progressbar/v3"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/npy"
	"github.com/segad-edge/segad-edge/segad"
)

// Dataset is a feature matrix with labels: what the forest trains on and
// what evaluation scores.
type Dataset struct {
	// Features are the feature names in column order.
	Features []string
	// Detectors are the detector names (feature order).
	Detectors []string
	// NCols is the row length (len(Features)).
	NCols int
	// Rows is the row-major feature matrix (NaN = missing, as on the line).
	Rows []float32
	// Max holds each row's per-detector map maxima (the baseline scores),
	// row-major len(Detectors) per row.
	Max []float32
	// Samples are the rows' images, labels and defect types.
	Samples []Sample
	// Skipped are the unreadable images skipped (--skip-bad-images).
	Skipped []string
	// Weights are the rows' training weights (nil: all 1).
	Weights []float32
	// Synthetic records the synthetic defects added (nil: none).
	Synthetic *SyntheticReport
}

// Len returns the number of rows.
func (d *Dataset) Len() int { return len(d.Samples) }

// Row returns row i (aliasing Rows).
func (d *Dataset) Row(i int) []float32 { return d.Rows[i*d.NCols : (i+1)*d.NCols] }

// Labels returns 0/1 float labels (1 = bad), XGBoost's label type.
func (d *Dataset) Labels() []float32 {
	out := make([]float32, len(d.Samples))
	for i, s := range d.Samples {
		if s.Bad {
			out[i] = 1
		}
	}
	return out
}

// Bad returns the labels as booleans (eval's type).
func (d *Dataset) Bad() []bool {
	out := make([]bool, len(d.Samples))
	for i, s := range d.Samples {
		out[i] = s.Bad
	}
	return out
}

// Subset returns the rows idx (copied).
func (d *Dataset) Subset(idx []int) *Dataset {
	o := &Dataset{Features: d.Features, Detectors: d.Detectors, NCols: d.NCols, Synthetic: d.Synthetic}
	k := len(d.Detectors)
	for _, i := range idx {
		o.Rows = append(o.Rows, d.Row(i)...)
		o.Max = append(o.Max, d.Max[i*k:(i+1)*k]...)
		o.Samples = append(o.Samples, d.Samples[i])
		if d.Weights != nil {
			o.Weights = append(o.Weights, d.Weights[i])
		}
	}
	return o
}

func (d *Dataset) add(s Sample, row, max []float32) {
	d.Rows = append(d.Rows, row...)
	d.Max = append(d.Max, max...)
	d.Samples = append(d.Samples, s)
	if d.Weights != nil {
		d.Weights = append(d.Weights, 1)
	}
}

// Append adds rows of o (same features) to d.
func (d *Dataset) Append(o *Dataset) {
	if d.Weights != nil || o.Weights != nil {
		if d.Weights == nil {
			d.SetWeights(func(Sample) float32 { return 1 })
		}
		if o.Weights == nil {
			for range o.Samples {
				d.Weights = append(d.Weights, 1)
			}
		} else {
			d.Weights = append(d.Weights, o.Weights...)
		}
	}
	d.Rows = append(d.Rows, o.Rows...)
	d.Max = append(d.Max, o.Max...)
	d.Samples = append(d.Samples, o.Samples...)
}

// Featurizer computes feature rows from images with the line's own code:
// capture.ReadFrame with the model's preprocessing, then model.Model.Features
// (the same detectors, mask and segad.Extractor the line's Inspector runs).
// There is no second implementation to drift from the line.
type Featurizer struct {
	// Detectors are the detector names in feature order.
	Detectors []string
	// ModelPaths are the detectors' ONNX files (for the manifest's hashes).
	ModelPaths []string
	// Mask is the segmentation at the map size.
	Mask *segad.Mask
	// MaskSource is the configured mask (file, builtin:..., or model:<path>
	// for a per-frame segmentation model).
	MaskSource string
	// MaskHash identifies the mask in manifests (model.Model.MaskHash).
	MaskHash string
	// Features are the feature names in order.
	Features []string

	pre   capture.PreprocessConfig
	model *model.Model
	mask  *segad.Mask // at the preprocessed image size, for synthetic defects
}

// NewFeaturizer builds the configured model stage without a forest
// (model.Build with FeaturesOnly: ONNX Runtime, detectors warmed up, mask).
func NewFeaturizer(cfg *config.Config, log *slog.Logger) (*Featurizer, error) {
	if log == nil {
		log = slog.Default()
	}
	m, _, err := model.Build(cfg, model.Options{Log: log, FeaturesOnly: true})
	if err != nil {
		return nil, err
	}
	f := &Featurizer{MaskSource: cfg.SegAD.Mask.Source(), MaskHash: m.MaskHash(), Detectors: m.Names, Mask: m.Mask, Features: m.Extractor.Names(), model: m}
	for _, d := range cfg.Detectors {
		f.ModelPaths = append(f.ModelPaths, d.Model)
	}
	// The same frame geometry as the line's source.
	f.pre = m.Preprocess(cfg.Capture.Preprocess)
	if err := capture.SetLimits(cfg.Capture.Limits); err != nil {
		return nil, err
	}
	return f, nil
}

// Close releases the detectors.
func (f *Featurizer) Close() error { return f.model.Close() }

// Decode reads and preprocesses an image file as the line's capture stage
// would. The caller closes the frame.
func (f *Featurizer) Decode(path string) (*capture.Frame, error) {
	// The guarded reader: size, header and pixel limits, decode semaphore,
	// OpenCV exceptions caught (a bad training image must not abort fit).
	fr := capture.ReadFrame(path, f.pre)
	if fr.Err != nil {
		err := fr.Err
		fr.Close()
		return nil, err
	}
	return fr, nil
}

// FrameRow computes one frame's feature row and per-detector map maxima
// into row and max (len(Features), len(Detectors)).
func (f *Featurizer) FrameRow(fr *capture.Frame, row, max []float32) error {
	return f.model.Features(fr, row, max)
}

// imageMask returns the mask at the preprocessed frame size, for synthetic
// defects (nearest-neighbour resize, as masks are label images).
func (f *Featurizer) imageMask(w, h int) (*segad.Mask, error) {
	if f.mask != nil && f.mask.Width == w && f.mask.Height == h {
		return f.mask, nil
	}
	m := f.Mask
	if m.Labels == nil {
		// A per-frame segmentation has no one mask to place disturbances in.
		return nil, fmt.Errorf("synthetic disturbances need a static mask, but segad.mask is a segmentation model (%s): train with real bad parts, or fit with a static mask", f.MaskSource)
	}
	if m.Width != w || m.Height != h {
		var err error
		if m, err = m.Resize(w, h); err != nil {
			return nil, err
		}
	}
	f.mask = m
	return m, nil
}

// ManifestDetectors describes the detectors for a bundle manifest, with
// their model files' sha256.
func (f *Featurizer) ManifestDetectors() ([]bundle.Detector, error) {
	out := make([]bundle.Detector, len(f.Detectors))
	for i, n := range f.Detectors {
		sum, err := bundle.FileSHA256(f.ModelPaths[i])
		if err != nil {
			return nil, fmt.Errorf("detector %s: %w", n, err)
		}
		out[i] = bundle.Detector{Name: n, Model: filepath.Base(f.ModelPaths[i]), SHA256: sum}
	}
	return out, nil
}

// ImageOptions control feature computation over images.
type ImageOptions struct {
	// SkipBadImages skips (and counts) unreadable images instead of failing.
	SkipBadImages bool
	// Synthetic makes defect images from good ones (one-class mode, or
	// mixed with real bad images).
	Synthetic SyntheticOptions
	// Log receives warnings (default slog.Default()).
	Log *slog.Logger
	// Progress receives a progress bar with ETA; nil for none.
	Progress io.Writer
}

func newBar(w io.Writer, n int, what string) *progressbar.ProgressBar {
	if w == nil {
		return progressbar.DefaultSilent(int64(n))
	}
	return progressbar.NewOptions(n, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("img"), progressbar.OptionThrottle(200_000_000),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }))
}

// ImageDataset computes the feature rows of samples (plus o.Synthetic.N
// synthetic defect images made from the good ones).
func (f *Featurizer) ImageDataset(samples []Sample, o ImageOptions) (*Dataset, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	d := &Dataset{Features: f.Features, Detectors: f.Detectors, NCols: len(f.Features)}
	row := make([]float32, d.NCols)
	max := make([]float32, len(f.Detectors))
	bar := newBar(o.Progress, len(samples)+o.Synthetic.N, "features")
	defer bar.Close()
	var goods []string
	for _, s := range samples {
		err := f.sampleRow(s.Path, row, max)
		bar.Add(1)
		if err != nil {
			if o.SkipBadImages {
				d.Skipped = append(d.Skipped, s.Path)
				log.Warn("skipping unreadable image", "file", s.Path, "err", err)
				continue
			}
			return nil, fmt.Errorf("%w (give --skip-bad-images to skip unreadable images)", err)
		}
		d.add(s, row, max)
		if !s.Bad {
			goods = append(goods, s.Path)
		}
	}
	if d.Len() == 0 {
		return nil, fmt.Errorf("no readable images (%d skipped)", len(d.Skipped))
	}
	if o.Synthetic.N > 0 {
		cand, err := f.Candidates(goods, o.Synthetic)
		if err != nil {
			return nil, err
		}
		rep, err := AddSynthetic(d, o.Synthetic, cand, func() { bar.Add(1) }, log)
		if err != nil {
			return nil, err
		}
		rep.Bank = bankSize(len(goods), o.Synthetic.BankSize)
		d.Synthetic = rep
	}
	return d, nil
}

// Candidates returns the synthetic-defect source over the good images:
// candidate i of kind k is drawn from its own stream (seed, k, i), so it
// does not depend on how many candidates of other kinds were drawn or
// rejected.
func (f *Featurizer) Candidates(goods []string, o SyntheticOptions) (Candidate, error) {
	if len(goods) == 0 {
		return nil, errors.New("synthetic defects need good images")
	}
	kinds := o.Kinds
	if len(kinds) == 0 {
		kinds = DefaultKinds
	}
	// The texture bank: up to BankSize good images (seeded choice).
	n := bankSize(len(goods), o.BankSize)
	pick := append([]string(nil), goods...)
	if len(pick) > n {
		rng := rand.New(rand.NewPCG(uint64(o.Seed), 0xba4c))
		rng.Shuffle(len(pick), func(a, b int) { pick[a], pick[b] = pick[b], pick[a] })
		pick = pick[:n]
	}
	var bank [][]byte
	var gen *Generator
	for _, p := range pick {
		fr, err := f.Decode(p)
		if err != nil {
			return nil, fmt.Errorf("texture bank: %w", err)
		}
		if gen == nil {
			m, err := f.imageMask(fr.Image.Cols(), fr.Image.Rows())
			if err != nil {
				fr.Close()
				return nil, err
			}
			gen = &Generator{mask: m}
		}
		bank = append(bank, fr.Image.ToBytes())
		fr.Close()
	}
	gen, err := NewGenerator(gen.mask, bank)
	if err != nil {
		return nil, err
	}
	// Fail before any work when a kind fits no segment.
	for _, k := range kinds {
		if err := gen.CanPlace(k); err != nil {
			return nil, err
		}
	}
	return func(kind string, i int, row, max []float32) (Defect, string, error) {
		ki := kindIndex(kind)
		if ki < 0 {
			return Defect{}, "", fmt.Errorf("unknown synthetic defect kind %q", kind)
		}
		rng := rand.New(rand.NewPCG(uint64(o.Seed), uint64(ki)<<32|uint64(i)))
		src := goods[rng.IntN(len(goods))]
		fr, err := f.Decode(src)
		if err != nil {
			return Defect{}, src, err
		}
		defer fr.Close()
		def, err := gen.Synthesize(&fr.Image, kind, rng)
		if err != nil {
			return Defect{}, src, err
		}
		return def, src, f.FrameRow(fr, row, max)
	}, nil
}

func (f *Featurizer) sampleRow(path string, row, max []float32) error {
	fr, err := f.Decode(path)
	if err != nil {
		return err
	}
	defer fr.Close()
	return f.FrameRow(fr, row, max)
}

// MapsDataset computes feature rows from precomputed float32 .npy maps (the
// reference layout), with the configured mask resized to the maps' size.
func MapsDataset(samples []Sample, detectors []string, segCfg config.SegADConfig, progress io.Writer, log *slog.Logger) (*Dataset, *segad.Mask, error) {
	if log == nil {
		log = slog.Default()
	}
	if segCfg.Mask.PerFrame() {
		return nil, nil, fmt.Errorf("precomputed maps have no images for the segmentation model %s (segad.mask.model) to segment: fit from images, or use a static mask file", segCfg.Mask.Model)
	}
	var ex *segad.Extractor
	var mask *segad.Mask
	var w0, h0 int
	var d *Dataset
	maps := make([][]float32, len(detectors))
	max := make([]float32, len(detectors))
	var row []float32
	bar := newBar(progress, len(samples), "features")
	defer bar.Close()
	for _, s := range samples {
		for k, p := range s.Maps {
			a, err := npy.Read(p)
			if err != nil {
				return nil, nil, fmt.Errorf("map %s of %s: %w", detectors[k], s.Path, err)
			}
			w, h, data, err := a.Map2D()
			if err != nil {
				return nil, nil, fmt.Errorf("map %s: %w", p, err)
			}
			if ex == nil {
				w0, h0 = w, h
				if mask, err = model.LoadMask(segCfg, w, h, log); err != nil {
					return nil, nil, err
				}
				if ex, err = segad.NewExtractor(mask, detectors, ""); err != nil {
					return nil, nil, err
				}
				d = &Dataset{Features: ex.Names(), Detectors: detectors, NCols: ex.NumFeatures()}
				row = make([]float32, d.NCols)
			} else if w != w0 || h != h0 {
				return nil, nil, fmt.Errorf("map %s is %dx%d but the first map is %dx%d: all maps must have one size", p, w, h, w0, h0)
			}
			maps[k] = data
			max[k] = mapMax(data)
		}
		if err := ex.Extract(row, maps, 0); err != nil {
			return nil, nil, fmt.Errorf("features of %s: %w", s.Path, err)
		}
		d.add(s, row, max)
		bar.Add(1)
	}
	return d, mask, nil
}

func mapMax(m []float32) float32 {
	mx := float32(math.Inf(-1))
	for _, v := range m {
		if v > mx {
			mx = v
		}
	}
	return mx
}

// bankSize is the texture bank's size for n good images (BankSize, default
// 64, at most n).
func bankSize(n, want int) int {
	if want <= 0 {
		want = 64
	}
	return min(n, want)
}
