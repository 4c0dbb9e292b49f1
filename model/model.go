// Package model is SegAD's model stage: the K detectors (and an optional
// classifier), the segmentation mask, the feature extractor and the boosted
// random forest, built once from a configuration (Build) and used through
// one way in by every tool. An Inspector judges frames with a model and the
// settings in force (thresholds), in two stages the daemon overlaps (Infer,
// Score); Model.Features gives a frame's feature row directly (segad fit).
//
// The path of one frame reads top to bottom in inspector.go.
package model

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/segad"
)

// Detectors runs the K anomaly detectors and the optional classifier on one
// frame; *infer.Set implements it. imgs[i] is detector i's input, the
// classifier's last.
type Detectors interface {
	Run(imgs []infer.Image) (*infer.SetOutput, error)
	// RunEach runs the members one after another, each on its own (the
	// baseline `segad bench` compares the pipeline with).
	RunEach(imgs []infer.Image) error
	InputSizes() []infer.Size
	Warmup(n int) error
	Close() error
}

// Scorer turns a feature row into SegAD's score (the raw margin); every
// brf.Model implements it.
type Scorer interface {
	NumFeatures() int
	Margin(row []float32) float64
}

// Model is everything that turns an image into a score. It is built once
// per configuration (Build) and swapped as a whole on reload, between two
// frames. Its methods are safe for concurrent use.
type Model struct {
	// Detectors runs the K detectors and the optional classifier.
	Detectors Detectors
	// Names are the detector names in feature order.
	Names []string
	// Mask is the segmentation, at the detectors' map size. With a
	// per-frame segmentation model (Frame) it holds the size and segment
	// names only (Labels nil): each frame has its own labels.
	Mask *segad.Mask
	// Frame is the per-frame segmentation (segad.mask with a model); nil
	// for a static mask, which then costs nothing per frame.
	Frame *FrameMask
	// Extractor computes the feature row.
	Extractor *segad.Extractor
	// Scorer is the boosted random forest (nil for a features-only model).
	// An XGBoost JSON forest is a *brf.Explainer, which also explains
	// every score (Result.Explain); set it through New or Build.
	Scorer Scorer
	// ForestHash identifies the forest in results ("bundle" in the result
	// JSON): "sha256:" and the first 16 hex digits of the forest file's
	// hash (segad.model, or the bundle's model.json).
	ForestHash string

	sizes   []infer.Size // input size per member (detectors, then classifier)
	imgs    []infer.Image
	resized map[infer.Size]*gocv.Mat

	// runMu serialises detector runs: detectors own their output buffers.
	runMu sync.Mutex
	// scoreMu guards the extractor and row: an Extractor is not safe for
	// concurrent use.
	scoreMu sync.Mutex
	row     []float32
	// explain explains every score when Scorer is explainable (nil
	// otherwise); its buffers are guarded by scoreMu.
	explain *explainer
	// buffers recycles map copies between the two stages (see Infer).
	buffers chan [][]float32
}

// inFlight is how many frames can be between Infer and Score at once: one
// being scored while the next is inferred, one more queued.
const inFlight = 3

// New assembles a Model from its parts (Build does it from a
// configuration; tests give small fakes of Detectors and Scorer).
//
// A scorer that is a *brf.Explainer (brf.LoadExplainer) makes every
// result carry its explanation (Result.Explain); any other scores without.
func New(det Detectors, names []string, mask *segad.Mask, ex *segad.Extractor, sc Scorer) *Model {
	sizes := det.InputSizes()
	m := &Model{Detectors: det, Names: names, Mask: mask, Extractor: ex, sizes: sizes,
		imgs: make([]infer.Image, len(sizes)), resized: map[infer.Size]*gocv.Mat{},
		row: make([]float32, ex.NumFeatures()), buffers: make(chan [][]float32, inFlight)}
	_ = m.setScorer(sc) // not explainable: scored without explanations
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
// This is the one place frame geometry is decided: the daemon opens every
// source with it, and the HTTP API, bench and fit shape their frames with
// it.
func (m *Model) Preprocess(pc capture.PreprocessConfig) capture.PreprocessConfig {
	if len(m.sizes) > 0 && pc.Width == 0 && pc.Height == 0 {
		pc.Width, pc.Height = m.sizes[0].Width, m.sizes[0].Height
	}
	if pc.Color != capture.ColorGray {
		pc.Color = capture.ColorBGR
	}
	return pc
}

// Close releases the detectors and scratch images once no detector run is
// in progress.
func (m *Model) Close() error {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	for _, r := range m.resized {
		r.Close()
	}
	if m.Frame != nil {
		m.Frame.Close()
	}
	return m.Detectors.Close()
}

// Options are what Build needs besides the configuration.
type Options struct {
	// Log receives the detectors' and the mask's messages (default slog.Default()).
	Log *slog.Logger
	// FeaturesOnly builds everything but the forest (Scorer nil): `segad
	// fit` computes the features a forest is trained on.
	FeaturesOnly bool
	// SkipProbe skips the probe run (see Build): only for tests that need
	// a model the probe would refuse, as one that gives NaN on some parts.
	SkipProbe bool
}

// Build builds the model stage of cfg: ONNX Runtime, the detectors (warmed
// up), the mask at their map size, the feature extractor and the forest
// (segad.model, or the model of segad.bundle after checking that the bundle
// was trained for these detectors, this mask and these features). The
// bundle is read once. It returns the settings the model judges with: the
// configured threshold, else the bundle's suggested one (a bundle without
// one is refused unless segad.threshold is set).
//
// The whole model is then run once on probe frames (see probe) and refused
// when a map, the classifier or the forest gives a number that is not
// finite. The daemon's start, every hot reload, `segad config check`, fit,
// eval, bench and inspect all build through here, so each refuses the same
// models.
func Build(cfg *config.Config, o Options) (*Model, Settings, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	if err := infer.Init(cfg.ONNXRuntime.Library); err != nil {
		return nil, Settings{}, err
	}
	var b *bundle.Bundle
	if cfg.SegAD.Bundle != "" && !o.FeaturesOnly {
		var err error
		if b, err = bundle.Load(cfg.SegAD.Bundle); err != nil {
			return nil, Settings{}, err
		}
	}
	settings, err := settingsFor(cfg, b)
	if err != nil {
		return nil, Settings{}, err
	}
	m, err := buildFeatures(cfg, log)
	if err != nil {
		return nil, Settings{}, err
	}
	forest := ""
	if !o.FeaturesOnly {
		if forest, err = m.loadForest(cfg, b, log); err != nil {
			m.Close()
			return nil, Settings{}, err
		}
	}
	if o.SkipProbe {
		return m, settings, nil
	}
	if err := probe(m, cfg, forest); err != nil {
		m.Close()
		return nil, Settings{}, err
	}
	return m, settings, nil
}

// Settings are the parts of the configuration that apply between two
// frames without rebuilding anything (hot reload).
type Settings struct {
	Station         string
	Threshold       float64
	Warn            float64 // NaN: no warn band
	PublishFeatures bool
}

// SettingsFor are the settings of cfg for a model already built (a reload
// that changes thresholds only): the configured threshold, else the one
// the model's bundle suggests.
func SettingsFor(cfg *config.Config) (Settings, error) {
	var b *bundle.Bundle
	if cfg.SegAD.Threshold == nil && cfg.SegAD.Bundle != "" {
		var err error
		if b, err = bundle.Load(cfg.SegAD.Bundle); err != nil {
			return Settings{}, err
		}
	}
	return settingsFor(cfg, b)
}

// settingsFor resolves the threshold: segad.threshold, else the suggested
// threshold of the bundle b (nil: none). A bundle without one is refused,
// because judging against 0 would be a guess.
func settingsFor(cfg *config.Config, b *bundle.Bundle) (Settings, error) {
	s := Settings{Station: cfg.Station, Warn: math.NaN(), PublishFeatures: cfg.MQTT.PublishFeatures}
	if w := cfg.SegAD.WarnThreshold; w != nil {
		s.Warn = *w
	}
	switch {
	case cfg.SegAD.Threshold != nil:
		s.Threshold = *cfg.SegAD.Threshold
	case b != nil:
		t, err := b.SuggestedThreshold()
		if err != nil {
			return s, fmt.Errorf("%s: segad.threshold is not set and %w", cfg.Path, err)
		}
		if !math.IsNaN(s.Warn) && s.Warn >= t {
			return s, fmt.Errorf("%s: segad.warn_threshold %v must be below the threshold %v suggested by bundle %s (set segad.threshold, or lower the warn band)", cfg.Path, s.Warn, t, cfg.SegAD.Bundle)
		}
		s.Threshold = t
	}
	return s, nil
}

// buildFeatures opens the detectors (warmed up), the mask at the map size
// and the feature extractor: everything but the forest.
func buildFeatures(cfg *config.Config, log *slog.Logger) (*Model, error) {
	set, err := infer.OpenSet(cfg.Detectors, cfg.Classifier)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			set.Close()
		}
	}()
	names := make([]string, len(cfg.Detectors))
	var mapSize infer.Size
	for i, d := range set.Detectors() {
		names[i] = d.Name()
		ms := d.Config().Post.MapSize
		if i == 0 {
			mapSize = ms
		} else if ms != mapSize {
			return nil, fmt.Errorf("detector %s gives %s maps but %s gives %s: set the same post.map_size for all", d.Name(), ms, names[0], mapSize)
		}
		log.Info("detector ready", "name", d.Name(), "model", d.Config().Model, "providers", d.Providers(), "map", ms)
	}
	if err := set.Warmup(max(cfg.Pipeline.Warmup, 1)); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	extra := ""
	if cfg.Classifier != nil {
		extra = "classifier"
	}
	if cfg.SegAD.Mask.PerFrame() {
		return buildPerFrame(cfg, set, names, extra, mapSize, &ok, log)
	}
	mask, err := LoadMask(cfg.SegAD, mapSize.Width, mapSize.Height, log)
	if err != nil {
		return nil, err
	}
	ex, err := segad.NewExtractor(mask, names, extra)
	if err != nil {
		return nil, err
	}
	ok = true
	return New(set, names, mask, ex, nil), nil
}

// LoadMask loads the configured mask (or the built-in VAD template) at the
// detectors' map size and logs its warnings (segad.MaskAt).
func LoadMask(c config.SegADConfig, w, h int, log *slog.Logger) (*segad.Mask, error) {
	if c.Mask.PerFrame() {
		return perFrameMask(c.Mask.Labels, w, h), nil
	}
	mask, warnings, err := segad.MaskAt(c.Mask.File, c.Segments, w, h)
	if err != nil {
		return nil, err
	}
	for _, wrn := range warnings {
		log.Warn("mask", "file", c.Mask.File, "warning", wrn)
	}
	return mask, nil
}

// loadForest loads segad.model, or the model of bundle b after verifying
// that b matches the detectors, mask and features; it returns the forest's
// file for messages. An XGBoost JSON forest is loaded once, as an explainer
// that also scores; one that cannot be explained (LightGBM) scores alone.
func (m *Model) loadForest(cfg *config.Config, b *bundle.Bundle, log *slog.Logger) (string, error) {
	modelPath := cfg.SegAD.Model
	if b != nil {
		paths := make([]string, len(cfg.Detectors))
		for i, d := range cfg.Detectors {
			paths[i] = d.Model
		}
		if err := bundle.Verify(b.Manifest, m.Names, paths, m.MaskHash()); err != nil {
			return "", fmt.Errorf("bundle %s does not match this configuration: %w (retrain with segad fit, or fix detectors/mask)", cfg.SegAD.Bundle, err)
		}
		if err := bundle.VerifyFeatures(b.Manifest, m.Extractor.Names()); err != nil {
			return "", fmt.Errorf("bundle %s does not match this configuration: %s: %w (retrain with segad fit, or restore the configuration it was trained with)", cfg.SegAD.Bundle, b.ManifestPath, err)
		}
		modelPath = b.ModelPath
	}
	var forest brf.Model
	e, xerr := brf.LoadExplainer(modelPath)
	if xerr == nil {
		forest = e
	} else {
		// Not explainable, or not loadable at all: Load says which.
		var err error
		if forest, err = brf.Load(modelPath); err != nil {
			return "", err
		}
	}
	if err := brf.CheckFeatures(forest, m.Extractor.NumFeatures()); err != nil {
		return "", fmt.Errorf("model %s: %w", modelPath, err)
	}
	if err := m.setScorer(forest); err != nil {
		if xerr == nil {
			xerr = err
		}
		log.Info("results carry no explanation", "model", modelPath, "reason", xerr)
	}
	m.ForestHash = fileHash(modelPath)
	return modelPath, nil
}

// fileHash is a short content hash identifying a model file in results.
func fileHash(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}
