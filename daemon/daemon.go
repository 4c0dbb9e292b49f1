package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/segad"
)

// Daemon is the running inspection line: a frame source feeding a bounded
// queue, one worker inspecting frames (Line.Inspect) and handing results to
// the publisher, plus audit, metrics and hot reload around it.
type Daemon struct {
	log *slog.Logger
	// floodLog is log with its warnings rate-limited per message: every
	// per-frame and per-message warning goes through it (NewRateLimitHandler).
	floodLog *slog.Logger
	Metrics  *Metrics
	line     *Line
	pub      Publisher
	audit    *Audit

	srcMu sync.Mutex
	src   *sourceRef

	cfgMu    sync.Mutex
	cfg      *config.Config
	reloadMu sync.Mutex // one reload at a time (SIGHUP and file edits race)

	queue *frameQueue

	inflight    atomic.Int64 // frames taken from the source and not finished
	aborting    atomic.Bool  // shutdown deadline passed: remaining frames fail closed fast
	lastPubErr  atomic.Int64 // unix nanos of the last result the outbox could not store
	started     time.Time
	frames      atomic.Uint64
	fails       atomic.Uint64
	errs        atomic.Uint64
	ready       atomic.Bool
	lastBeat    atomic.Int64 // unix nanos of the last sign of pipeline life
	configError atomic.Pointer[string]
	sampleRand  *rand.Rand

	httpLimits HTTPLimits
	freeing    atomic.Bool // returnMemory is running
	linkWatch  linkWatch   // the result link's progress, sampled by watchHealth
}

// Options are what New needs besides the configuration.
type Options struct {
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
	// Publisher overrides the configured MQTT publisher (e.g. `segad
	// inspect` prints results instead).
	Publisher Publisher
	// Source overrides the configured frame source.
	Source FrameSource
	// HTTPLimits bound the HTTP API (zero fields: DefaultHTTPLimits).
	HTTPLimits HTTPLimits
}

// New builds every stage from the configuration: ONNX Runtime, detectors
// (warmed up), mask, forest, publisher and frame source. On error everything
// opened so far is closed.
func New(cfg *config.Config, opt Options) (d *Daemon, err error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	d = &Daemon{log: log, floodLog: rateLimited(log), Metrics: NewMetrics(), cfg: cfg, started: time.Now(),
		sampleRand: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)), httpLimits: opt.HTTPLimits}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	if err := infer.Init(cfg.ONNXRuntime.Library); err != nil {
		return nil, err
	}
	if err := ResolveThreshold(cfg); err != nil {
		return nil, err
	}
	model, err := BuildModel(cfg, log)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { model.Close() })
	d.line = NewLine(model, settingsOf(cfg))
	d.Metrics.ModelInfo.WithLabelValues(model.Bundle, strings.Join(model.Names, ","), fmt.Sprint(model.Extractor.NumFeatures())).Set(1)

	if cfg.Audit.Dir != "" {
		if d.audit, err = NewAudit(cfg.Audit.Dir, cfg.Audit.MaxBytes, cfg.Audit.MaxAge, d.floodLog); err != nil {
			return nil, err
		}
	}
	// The source opens before the publisher: a persistent MQTT session
	// delivers queued triggers as soon as it connects, and they need it.
	src := opt.Source
	if src == nil {
		if src, err = OpenSource(cfg, model, d.floodLog); err != nil {
			return nil, err
		}
		closers = append(closers, func() { src.Close() })
	}
	d.src = newSourceRef(src)
	d.queue = newFrameQueue(cfg.Pipeline.Queue, d.overflowPolicy(cfg))
	d.pub = opt.Publisher
	if d.pub == nil {
		if cfg.MQTT.Broker == "" {
			return nil, fmt.Errorf("%s: mqtt.broker is not set: give a broker URL (tcp://host:1883, ssl://host:8883) or embedded", cfg.Path)
		}
		p, err := mqtt.New(cfg.MQTT, d.floodLog.With("stage", "mqtt"))
		if err != nil {
			return nil, err
		}
		p.SetHealth(d.health)
		p.OnTrigger(d.onTrigger)
		d.pub = p
	}
	d.ready.Store(true)
	d.beat()
	return d, nil
}

// BuildFeatureModel opens the detectors (warmed up), the mask at the map
// size and the feature extractor: everything but the forest (Scorer is nil).
// `segad fit` computes its training features with it, so training and the
// line share one feature path. The model is run once on probe frames (see
// probeModel) and refused when a map or the classifier score is not finite.
func BuildFeatureModel(cfg *config.Config, log *slog.Logger) (*Model, error) {
	m, err := buildFeatureModel(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := probeModel(m, cfg, ""); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func buildFeatureModel(cfg *config.Config, log *slog.Logger) (*Model, error) {
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
	mask, err := LoadMask(cfg.SegAD, mapSize.Width, mapSize.Height, log)
	if err != nil {
		return nil, err
	}
	extra := ""
	if cfg.Classifier != nil {
		extra = "classifier"
	}
	ex, err := segad.NewExtractor(mask, names, extra)
	if err != nil {
		return nil, err
	}
	ok = true
	return newModel(set, names, mask, ex), nil
}

// BuildModel is BuildFeatureModel plus the forest: segad.model, or the
// model of segad.bundle after checking that the bundle was trained for
// these detectors (names and model file hashes), this mask and these
// features, and that it gives a threshold when the config sets none. The
// whole model is then run once on probe frames (see probeModel). The
// daemon's start, every hot reload and `segad config check` all build
// through here, so each refuses the same models.
func BuildModel(cfg *config.Config, log *slog.Logger) (*Model, error) {
	m, forest, err := buildModel(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := probeModel(m, cfg, forest); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// buildModel is BuildModel without the probe run; it returns the forest
// file for messages.
func buildModel(cfg *config.Config, log *slog.Logger) (*Model, string, error) {
	m, err := buildFeatureModel(cfg, log)
	if err != nil {
		return nil, "", err
	}
	modelPath := cfg.SegAD.Model
	if cfg.SegAD.Bundle != "" {
		b, err := bundle.Load(cfg.SegAD.Bundle)
		if err != nil {
			m.Close()
			return nil, "", err
		}
		if cfg.SegAD.Threshold == nil {
			if _, err := b.SuggestedThreshold(); err != nil {
				m.Close()
				return nil, "", fmt.Errorf("segad.threshold is not set and %w", err)
			}
		}
		paths := make([]string, len(cfg.Detectors))
		for i, d := range cfg.Detectors {
			paths[i] = d.Model
		}
		if err := bundle.Verify(b.Manifest, m.Names, paths, m.Mask.Hash()); err != nil {
			m.Close()
			return nil, "", fmt.Errorf("bundle %s does not match this configuration: %w (retrain with segad fit, or fix detectors/mask)", cfg.SegAD.Bundle, err)
		}
		if err := bundle.VerifyFeatures(b.Manifest, m.Extractor.Names()); err != nil {
			m.Close()
			return nil, "", fmt.Errorf("bundle %s does not match this configuration: %s: %w (retrain with segad fit, or restore the configuration it was trained with)", cfg.SegAD.Bundle, b.ManifestPath, err)
		}
		modelPath = b.ModelPath
	}
	forest, err := brf.Load(modelPath)
	if err != nil {
		m.Close()
		return nil, "", err
	}
	if err := brf.CheckFeatures(forest, m.Extractor.NumFeatures()); err != nil {
		m.Close()
		return nil, "", fmt.Errorf("model %s: %w", modelPath, err)
	}
	m.Scorer, m.Bundle = forest, fileID(modelPath)
	return m, modelPath, nil
}

// probeFrames are the frames a built model is tried on before it may
// inspect parts: the mid-gray frame warm-up uses, and a smooth colour
// gradient that reaches 0 and 255 in every channel (dark and bright
// pixels, as real parts have; a constant frame alone misses graphs that
// fail only on some pixel values, such as a logarithm of a dark pixel).
var probeFrames = []struct {
	name  string
	pixel func(x, y, w, h int) (b, g, r uint8)
}{
	{"mid-gray", func(int, int, int, int) (uint8, uint8, uint8) { return 128, 128, 128 }},
	{"colour-gradient", func(x, y, w, h int) (uint8, uint8, uint8) {
		return uint8(255 * x / max(w-1, 1)), uint8(255 * y / max(h-1, 1)), uint8(255 * (x + y) / max(w+h-2, 1))
	}},
}

// probeModel runs a built model on probeFrames the way a part goes through
// the line (detectors and classifier, features, forest when forest != "")
// and refuses it when a map has the wrong size or a value that is not
// finite, or the classifier score or the forest score is not finite,
// naming the model file and output. Such a model would reject every part
// as invalid_map or invalid_score (or, for a NaN feature, follow the
// forest's default branches): it is refused up front, at start, reload and
// `segad config check`, rather than failing frame by frame.
func probeModel(m *Model, cfg *config.Config, forest string) error {
	imgs := make([]infer.Image, len(m.sizes))
	maps := make([][]float32, len(m.Names))
	var row []float32
	if m.Scorer != nil {
		row = make([]float32, m.Extractor.NumFeatures())
	}
	for _, pf := range probeFrames {
		for i, sz := range m.sizes {
			pix := make([]byte, 3*sz.Width*sz.Height)
			for y := 0; y < sz.Height; y++ {
				for x := 0; x < sz.Width; x++ {
					o := 3 * (y*sz.Width + x)
					pix[o], pix[o+1], pix[o+2] = pf.pixel(x, y, sz.Width, sz.Height)
				}
			}
			imgs[i] = infer.Image{Width: sz.Width, Height: sz.Height, Stride: 3 * sz.Width, Pix: pix}
		}
		out, err := m.Detectors.Run(imgs)
		if err != nil {
			return fmt.Errorf("run the models on a %s test frame: %w", pf.name, err)
		}
		for i, o := range out.Detectors {
			dc := cfg.Detectors[i]
			w, h := m.Mask.Width, m.Mask.Height
			if len(o.Map) != w*h {
				return fmt.Errorf("detector %s (model %s, map_output %s) gives a %d-value map on a %s test frame, want %dx%d", dc.Name, dc.Model, dc.MapOutput, len(o.Map), pf.name, w, h)
			}
			if j := infer.FirstNaN(o.Map); j >= 0 {
				return fmt.Errorf("detector %s (model %s, map_output %s) gives %v at map pixel (%d, %d) on a %s test frame: a map that is not a finite number cannot be judged (every part would be rejected as invalid_map); fix or re-export the model and check it with `segad inspect` on a good part",
					dc.Name, dc.Model, dc.MapOutput, o.Map[j], j%w, j/w, pf.name)
			}
			maps[i] = o.Map
		}
		if out.HasClass && !finite32(out.Class) {
			return fmt.Errorf("classifier (model %s, output %s) gives score %v on a %s test frame: a score that is not a finite number cannot be judged (every part would be rejected); fix or re-export the model",
				cfg.Classifier.Model, cfg.Classifier.Output, out.Class, pf.name)
		}
		if m.Scorer == nil {
			continue
		}
		m.scoreMu.Lock()
		err = m.Extractor.Extract(row, maps, out.Class)
		var score float64
		if err == nil {
			score = m.Scorer.Margin(row)
		}
		m.scoreMu.Unlock()
		if err != nil {
			return fmt.Errorf("features of a %s test frame: %w", pf.name, err)
		}
		if math.IsNaN(score) || math.IsInf(score, 0) {
			return fmt.Errorf("forest %s gives score %v on a %s test frame (its features are finite): a score that is not a finite number cannot be judged (every part would be rejected as invalid_score); retrain it with `segad fit`, or check its leaf values",
				forest, score, pf.name)
		}
	}
	return nil
}

func finite32(v float32) bool { return v-v == 0 }

// ResolveThreshold fills segad.threshold from the bundle's suggested
// threshold when the config leaves it out. A bundle without a suggested
// threshold is refused (it would otherwise judge against 0).
func ResolveThreshold(cfg *config.Config) error {
	if cfg.SegAD.Threshold != nil || cfg.SegAD.Bundle == "" {
		return nil
	}
	b, err := bundle.Load(cfg.SegAD.Bundle)
	if err != nil {
		return err
	}
	t, err := b.SuggestedThreshold()
	if err != nil {
		return fmt.Errorf("%s: segad.threshold is not set and %w", cfg.Path, err)
	}
	if w := cfg.SegAD.WarnThreshold; w != nil && *w >= t {
		return fmt.Errorf("%s: segad.warn_threshold %v must be below the threshold %v suggested by bundle %s (set segad.threshold, or lower the warn band)", cfg.Path, *w, t, cfg.SegAD.Bundle)
	}
	cfg.SegAD.Threshold = &t
	return nil
}

// LoadMask loads the configured mask (or the built-in VAD template) at the
// detectors' map size and logs its warnings. A mask with no labelled pixel
// at the map size is refused (segad.Mask.Validate).
func LoadMask(c config.SegADConfig, w, h int, log *slog.Logger) (*segad.Mask, error) {
	var mask *segad.Mask
	if c.Mask == "builtin:vad" {
		mask = segad.VADTemplate(w, h, segad.DefaultVADGeometry())
		if len(c.Segments) > 0 {
			if len(c.Segments) != mask.NumSegments() {
				return nil, fmt.Errorf("segad.segments names %d segments but builtin:vad has %d", len(c.Segments), mask.NumSegments())
			}
			mask.Names = append([]string(nil), c.Segments...)
		}
	} else {
		var err error
		if mask, err = segad.LoadMask(c.Mask, c.Segments); err != nil {
			return nil, err
		}
		if mask.Width != w || mask.Height != h {
			// Nearest-neighbour resizing keeps labels, but a different
			// aspect ratio stretches every segment off the part.
			if ma, ta := float64(mask.Width)/float64(mask.Height), float64(w)/float64(h); math.Abs(ma/ta-1) > 0.02 {
				log.Warn("mask", "file", c.Mask, "warning", fmt.Sprintf("the mask is %dx%d but the maps are %dx%d: resized with another aspect ratio, the segments are stretched (check with `segad mask preview`)", mask.Width, mask.Height, w, h))
			}
			if mask, err = mask.Resize(w, h); err != nil {
				return nil, fmt.Errorf("resize mask %s to %dx%d: %w", c.Mask, w, h, err)
			}
		}
	}
	warnings, err := mask.Validate()
	if err != nil {
		return nil, fmt.Errorf("mask %s at the map size %dx%d: %w", c.Mask, w, h, err)
	}
	for _, wrn := range warnings {
		log.Warn("mask", "file", c.Mask, "warning", wrn)
	}
	return mask, nil
}

// OpenSource opens the configured frame source, preprocessing frames to the
// first detector's input size in BGR order (what infer takes).
func OpenSource(cfg *config.Config, m *Model, log *slog.Logger) (FrameSource, error) {
	cc := cfg.Capture
	cc.Preprocess = m.Preprocess(cc.Preprocess)
	cc.Logger = log.With("stage", "capture")
	return capture.Open(cc)
}

func settingsOf(cfg *config.Config) Settings {
	s := Settings{Station: cfg.Station, Warn: math.NaN(), PublishFeatures: cfg.MQTT.PublishFeatures}
	if cfg.SegAD.Threshold != nil {
		s.Threshold = *cfg.SegAD.Threshold
	}
	if cfg.SegAD.WarnThreshold != nil {
		s.Warn = *cfg.SegAD.WarnThreshold
	}
	return s
}

// fileID is a short content hash identifying a model file in results.
func fileID(path string) string {
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

// Line returns the inspection line (for the HTTP API and tests).
func (d *Daemon) Line() *Line { return d.line }

// Ready reports whether the daemon has warmed up and is inspecting.
func (d *Daemon) Ready() bool { return d.ready.Load() }
