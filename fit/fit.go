package fit

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/brf/xgboost"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
)

// Options are `segad fit`'s inputs.
type Options struct {
	// Config is the daemon configuration (detectors, mask, preprocessing).
	Config *config.Config
	// Good and Bad are image folders (Bad's sub-folders are defect types).
	Good, Bad string
	// MapsCSV, when set, replaces Good/Bad: precomputed maps (ReadMapsCSV).
	MapsCSV string
	// Out is the bundle folder to write.
	Out string
	// Train are the forest's hyper-parameters and seed.
	Train TrainOptions
	// Recalls are the operating points (default DefaultRecalls); the first
	// gives the suggested threshold.
	Recalls []float64
	// Image options: skipping unreadable images, synthetic defects, progress.
	Images ImageOptions
	// BadLimit keeps at most this many bad images (random, seeded) for the
	// bundle's forest and every training fold (low-shot).
	BadLimit int
	// Seeds repeats cross-validation this many times (needs CV).
	Seeds int
	// CV > 1 evaluates on K held-out folds.
	CV int
	// Calibrate says how the suggested threshold is chosen (out-of-fold by
	// default) and by which budgets.
	Calibrate CalibrateOptions
	// History, when set, adds the line's labelled results' recorded
	// feature rows to the training data; without Good and MapsCSV they are
	// the training data (no images needed).
	History *HistoryInput
	// ToolVersion is recorded in the manifest.
	ToolVersion string
	// Log receives progress logs (default slog.Default()).
	Log *slog.Logger
}

// Summary is what `segad fit` prints.
type Summary struct {
	Bundle    string             `json:"bundle"`
	Features  int                `json:"features"`
	Counts    bundle.Counts      `json:"counts"`
	Threshold bundle.Threshold   `json:"threshold"`
	Training  map[string]Metrics `json:"training_metrics"`
	// Synthetic reports the synthetic defects (kinds, shares, severity).
	Synthetic *SyntheticReport `json:"synthetic,omitempty"`
	CV        *CVReport        `json:"cv,omitempty"`
	// History reports the rows taken from the results history.
	History *bundle.HistorySource `json:"history,omitempty"`
	Seconds map[string]float64    `json:"seconds"`
}

// Run computes features, trains the forest, chooses the threshold and
// writes the bundle.
func Run(o Options) (*Summary, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	if o.Out == "" {
		return nil, fmt.Errorf("fit: no output bundle folder (-o) given")
	}
	if len(o.Recalls) == 0 {
		o.Recalls = DefaultRecalls
	}
	if o.Seeds > 1 && o.CV < 2 {
		return nil, fmt.Errorf("fit: --seeds %d needs --cv K to measure each seed's model on held-out folds", o.Seeds)
	}
	if o.Train.Rounds == 0 && o.Train.Params.NumParallelTree == 0 {
		o.Train = DefaultTrainOptions()
	}
	sum := &Summary{Bundle: o.Out, Seconds: map[string]float64{}}
	t0 := time.Now()
	d, man, err := buildDataset(o, log)
	if err != nil {
		return nil, err
	}
	sum.Seconds["features"] = time.Since(t0).Seconds()
	if err := checkClasses(d.Samples, "the training data"); err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}

	if o.CV > 1 {
		t := time.Now()
		log.Info("cross-validation", "folds", o.CV, "seeds", max(o.Seeds, 1), "bad_limit", o.BadLimit)
		if sum.CV, err = CrossValidate(d, o.Train, o.CV, o.Seeds, o.BadLimit); err != nil {
			return nil, fmt.Errorf("fit: %w", err)
		}
		sum.Seconds["cv"] = time.Since(t).Seconds()
	}

	// The bundle's forest: all rows, bad rows limited in low-shot mode.
	all := make([]int, d.Len())
	for i := range all {
		all[i] = i
	}
	idx := LimitBad(d, all, o.BadLimit, rand.New(rand.NewPCG(uint64(o.Train.Seed), 0xbad)))
	td := d.Subset(idx)
	t := time.Now()
	model, params, err := Train(td, o.Train)
	if err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	sum.Seconds["train"] = time.Since(t).Seconds()
	forest, err := brf.LoadBytes(model)
	if err != nil {
		return nil, fmt.Errorf("fit: read back the trained model: %w", err)
	}
	if err := brf.CheckFeatures(forest, d.NCols); err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}

	// Threshold: out-of-fold scores by default (the --cv folds' when
	// cross-validated, else a k-fold run of its own); the training rows'
	// scores only on request (optimistic: the forest has seen them).
	if man.Threshold, err = calibrate(o, d, td, forest, sum.CV, log); err != nil {
		return nil, fmt.Errorf("fit: threshold: %w", err)
	}
	man.Baseline = map[string][]bundle.OperatingPoint{}
	budgets, _ := Budgets(o.Recalls, o.Calibrate.MaxFalseReject, o.Calibrate.Primary)
	sum.Training = map[string]Metrics{}
	if m, err := metricsOf(Score(forest, td), td.Bad()); err == nil {
		sum.Training["segad"] = m
	}
	for k, n := range td.Detectors {
		bs := BaselineScores(td, k)
		// The detector alone did not train on these rows: its own
		// operating points at the same budgets are honest in-sample.
		if bp, err := OperatingTable(bs, td.Bad(), budgets, DefaultConfidence, DefaultTableRows); err == nil {
			man.Baseline[n] = bp.Points
		}
		if m, err := metricsOf(bs, td.Bad()); err == nil {
			sum.Training[n] = m
		}
	}
	man.Features = d.Features
	man.Params = ParamsMap(params)
	man.Rounds = o.Train.Rounds
	man.Seed = o.Train.Seed
	man.Data = countsOf(td)
	man.Data.Skipped = len(d.Skipped)
	man.Tool, man.ToolVersion, man.Created = "segad fit", o.ToolVersion, time.Now().UTC().Truncate(time.Second)
	man.XGBoostVersion, _ = xgboost.Version()
	if d.Synthetic != nil {
		if man.Synthetic, err = json.Marshal(d.Synthetic); err != nil {
			return nil, fmt.Errorf("fit: manifest: %w", err)
		}
		sum.Synthetic = d.Synthetic
	}
	if err := bundle.Write(o.Out, model, man); err != nil {
		return nil, err
	}
	if err := writeDrift(o.Out, td, man.Threshold, log); err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	sum.Features, sum.Counts, sum.Threshold, sum.History = d.NCols, man.Data, man.Threshold, man.History
	log.Info("bundle written", "dir", o.Out, "good", man.Data.Good, "bad", man.Data.Bad, "threshold", man.Threshold.Suggested)
	return sum, nil
}

func countsOf(d *Dataset) bundle.Counts {
	c := bundle.Counts{BadTypes: map[string]int{}}
	for _, s := range d.Samples {
		if s.Bad {
			c.Bad++
			c.BadTypes[s.Type]++
			if s.Type == SyntheticType {
				c.Synthetic++
			}
		} else {
			c.Good++
		}
	}
	return c
}

// buildDataset computes the feature rows from images or maps, adds the
// history's (Options.History), and returns the manifest's detector and mask
// identity (and history source).
func buildDataset(o Options, log *slog.Logger) (*Dataset, *bundle.Manifest, error) {
	if o.Config == nil {
		return nil, nil, fmt.Errorf("fit: no configuration")
	}
	if o.History == nil {
		return buildInputs(o, log)
	}
	var d *Dataset
	man := &bundle.Manifest{}
	if o.Good == "" && o.MapsCSV == "" {
		// History alone: the configured model gives the feature order, the
		// detectors' hashes and the mask; no image is read.
		if o.Images.Synthetic.N > 0 {
			return nil, nil, fmt.Errorf("fit: --synthetic-defects makes defects from --good images; give --good DIR with --history")
		}
		f, err := NewFeaturizer(o.Config, log)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		if man.Detectors, err = f.ManifestDetectors(); err != nil {
			return nil, nil, err
		}
		man.Mask = bundle.Mask{Source: maskSource(f.MaskSource), Hash: f.MaskHash, Width: f.Mask.Width, Height: f.Mask.Height, Segments: f.Mask.Names}
		d = &Dataset{Features: f.Features, Detectors: f.Detectors, NCols: len(f.Features)}
	} else {
		var err error
		if d, man, err = buildInputs(o, log); err != nil {
			return nil, nil, err
		}
	}
	hd, src, err := historyDataset(o.History, d.Features, d.Detectors)
	if err != nil {
		return nil, nil, fmt.Errorf("fit: --history %s: %w", o.History.Path, err)
	}
	d.Append(hd)
	man.History = src
	log.Info("history rows", "path", src.Path, "good", src.Good, "bad", src.Bad, "types", historyTypes(src), "no_features", src.NoFeatures)
	if err := checkHistoryCounts(d, o.History, src); err != nil {
		return nil, nil, fmt.Errorf("fit: %w", err)
	}
	return d, man, nil
}

// buildInputs computes the feature rows from images or maps and the
// manifest's detector and mask identity.
func buildInputs(o Options, log *slog.Logger) (*Dataset, *bundle.Manifest, error) {
	man := &bundle.Manifest{}
	if o.MapsCSV != "" {
		if o.Images.Synthetic.N > 0 {
			return nil, nil, fmt.Errorf("fit: --synthetic-defects works on images, not on --maps")
		}
		names := make([]string, len(o.Config.Detectors))
		for i, dc := range o.Config.Detectors {
			names[i] = dc.Name
			man.Detectors = append(man.Detectors, bundle.Detector{Name: dc.Name})
		}
		samples, err := ReadMapsCSV(o.MapsCSV, names)
		if err != nil {
			return nil, nil, err
		}
		d, mask, err := MapsDataset(samples, names, o.Config.SegAD, o.Images.Progress, log)
		if err != nil {
			return nil, nil, err
		}
		man.Mask = bundle.Mask{Source: maskSource(o.Config.SegAD.Mask.Source()), Hash: mask.Hash(), Width: mask.Width, Height: mask.Height, Segments: mask.Names}
		return d, man, nil
	}
	samples, err := ListImages(o.Good, o.Bad)
	if err != nil {
		return nil, nil, fmt.Errorf("fit: %w", err)
	}
	if o.Images.Synthetic.N == 0 && o.History == nil {
		if err := checkClasses(samples, fmt.Sprintf("--good %s / --bad %s", o.Good, o.Bad)); err != nil {
			return nil, nil, fmt.Errorf("fit: %w", err)
		}
	}
	f, err := NewFeaturizer(o.Config, log)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if man.Detectors, err = f.ManifestDetectors(); err != nil {
		return nil, nil, err
	}
	man.Mask = bundle.Mask{Source: maskSource(f.MaskSource), Hash: f.MaskHash, Width: f.Mask.Width, Height: f.Mask.Height, Segments: f.Mask.Names}
	d, err := f.ImageDataset(samples, o.Images)
	if err != nil {
		return nil, nil, fmt.Errorf("fit: %w", err)
	}
	return d, man, nil
}

func maskSource(m string) string {
	if p, ok := strings.CutPrefix(m, "model:"); ok {
		return "model:" + maskSource(p)
	}
	if filepath.IsAbs(m) {
		return filepath.Base(m)
	}
	return m
}

// sortedKeys returns a map's keys in order (stable reports).
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
