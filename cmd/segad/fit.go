package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/fit"
)

// progressWriter returns stderr for progress bars when it is a terminal and
// not silenced, else nil (no bar: logs and pipes stay clean).
func progressWriter(quiet bool) io.Writer {
	if quiet || !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	return os.Stderr
}

func init() {
	var (
		cfgPath, good, bad, maps, out string
		kinds                         string
		quiet, skip, noSeverity       bool
		o                             = fit.DefaultTrainOptions()
		opt                           fit.Options
	)
	cmd := &cobra.Command{
		Use:   "fit --config FILE (--good DIR --bad DIR | --maps CSV) -o BUNDLE",
		Short: "Train SegAD's boosted random forest from labelled images and write a model bundle",
		Long: `fit runs the configured detectors on every image with the line's own code
(same preprocessing, same feature extraction), trains the boosted random forest
with libxgboost (the paper's hyper-parameters unless overridden by flags) and writes
a bundle folder: model.json (XGBoost JSON), manifest.json (feature order, detector
names and model sha256, mask hash, parameters, seed, data counts, suggested
threshold with its operating points). Point segad.bundle at the folder.

Data: --good DIR (images) and --bad DIR (images, or sub-folders named by defect
type), or --maps CSV in the SegAD reference layout (filepath, an_map_path, label;
an_map_path_<detector> per detector when there are several; optional defect_type).
--synthetic-defects N makes N defects from good images (one-class mode) of
--kinds (structural: perlin, cutpaste, scratch, color, blur, rect, thin; logical:
displace, missing, duplicate, stretch), each confined to one segment, kept only
when their map maxima land between --severity-low and --severity-high (levels on
the good images' scale: 0 median, 1 q99.5). With --bad as well (mixed low-shot
mode) each synthetic defect weighs --synthetic-weight.
Threshold: calibrated on out-of-fold scores (stratified k-fold, k = 5 or fewer
when a class has fewer images; the forest in the bundle still trains on all
rows), by an escape budget (--recall 0.95) or a yield budget (--max-false-reject
0.02); the manifest records a table of operating points with 95% Clopper-Pearson
intervals. --calibration training calibrates on the training rows (optimistic).
--cv K measures the forest on K held-out folds; with --bad-limit N --seeds S the
training folds keep N random bad images and the run is repeated S times (low-shot),
reporting mean and standard deviation. Prints one JSON summary.`,
		Example: `  segad fit -c segad.yaml --good data/good --bad data/bad -o bundles/line1
  segad fit -c segad.yaml --good data/good --synthetic-defects 200 -o bundles/oneclass
  segad fit -c segad.yaml --good data/good --synthetic-defects 200 --kinds paper --no-severity -o b
  segad fit -c segad.yaml --good data/good --bad data/bad --synthetic-defects 200 -o bundles/mixed
  segad fit -c segad.yaml --good data/good --bad data/bad --max-false-reject 0.02 -o bundles/line1
  segad fit -c segad.yaml --good data/good --bad data/bad --bad-limit 10 --seeds 5 --cv 5 -o b`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return fmt.Errorf("fit: --config is required")
			}
			if maps == "" && good == "" {
				return fmt.Errorf("fit: give --good DIR (with --bad DIR or --synthetic-defects N) or --maps CSV")
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			log := logger(cfg)
			applyFitConfig(cmd, cfg.Fit, &o, &opt)
			opt.Config, opt.Good, opt.Bad, opt.MapsCSV, opt.Out = cfg, good, bad, maps, out
			opt.Train, opt.Log, opt.ToolVersion = o, log, version
			opt.Images.SkipBadImages = skip
			opt.Images.Synthetic.Seed = o.Seed
			opt.Images.Synthetic.Severity.Off = noSeverity
			opt.Images.Synthetic.Severity.LowSet = cmd.Flags().Changed("severity-low")
			if opt.Images.Synthetic.Kinds, err = fit.ParseKinds(kinds); err != nil {
				return fmt.Errorf("fit: --kinds: %w", err)
			}
			opt.Images.Progress = progressWriter(quiet)
			if len(opt.Calibrate.MaxFalseReject) > 0 {
				opt.Calibrate.Primary = bundle.BudgetMaxFalseReject
				if cmd.Flags().Changed("recall") {
					opt.Calibrate.Primary = bundle.BudgetRecall
					log.Warn("both --recall and --max-false-reject given: the recall budget gives the suggested threshold, the false-reject budget is an extra operating point")
				}
			}
			sum, err := fit.Run(opt)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(sum)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfgPath, "config", "c", "", "daemon configuration (detectors, mask, preprocessing)")
	f.StringVar(&good, "good", "", "folder of good images")
	f.StringVar(&bad, "bad", "", "folder of bad images or of defect-type sub-folders")
	f.StringVar(&maps, "maps", "", "CSV of precomputed .npy anomaly maps (reference layout) instead of images")
	f.StringVarP(&out, "output", "o", "", "bundle folder to write")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	f.BoolVar(&skip, "skip-bad-images", false, "skip (and count) unreadable images instead of failing")
	f.IntVar(&opt.Images.Synthetic.N, "synthetic-defects", 0, "make N synthetic defect images from good ones (one-class mode; with --bad: mixed)")
	f.StringVar(&kinds, "kinds", "default", "synthetic defect kinds, comma-separated: "+strings.Join(fit.AllKinds, ", ")+"; or groups default, paper, structural, logical, all")
	f.BoolVar(&noSeverity, "no-severity", false, "keep every synthetic defect (no severity filter on its map maxima)")
	f.Float64Var(&opt.Images.Synthetic.Severity.Low, "severity-low", 0.5, "keep synthetic defects whose map maximum reaches this level for some detector (0 = good median, 1 = good q99.5)")
	f.Float64Var(&opt.Images.Synthetic.Severity.High, "severity-high", 2, "reject synthetic defects whose map maximum exceeds this level for any detector")
	f.Float64Var(&opt.Images.Synthetic.Weight, "synthetic-weight", 0, "training weight of each synthetic defect next to real bad images (0: together as much as the real ones)")
	f.IntVar(&opt.BadLimit, "bad-limit", 0, "train on at most N random bad images (low-shot)")
	f.IntVar(&opt.Seeds, "seeds", 1, "repeat cross-validation with S seeds and report mean and std (needs --cv)")
	f.IntVar(&opt.CV, "cv", 0, "evaluate on K held-out stratified folds")
	f.Float64SliceVar(&opt.Recalls, "recall", fit.DefaultRecalls, "escape budgets: operating points keeping at least this recall; the first gives the suggested threshold (it wins over --max-false-reject when both are given)")
	f.Float64SliceVar(&opt.Calibrate.MaxFalseReject, "max-false-reject", nil, "yield budgets: operating points failing at most this share of good parts; without --recall the first gives the suggested threshold")
	f.StringVar(&opt.Calibrate.Method, "calibration", fit.CalibrationOutOfFold, "scores the threshold is calibrated on: out-of-fold (stratified k-fold, honest) or training (the forest's own training rows: optimistic, warned about)")
	f.IntVar(&opt.Calibrate.Folds, "calibration-folds", fit.DefaultCalibrationFolds, "k of the out-of-fold calibration (fewer when a class has fewer images; --cv K's folds are used when given)")
	f.IntVar(&o.Seed, "seed", 0, "random seed (XGBoost sampling, subsets, folds, synthetic defects)")
	f.IntVar(&o.Rounds, "rounds", o.Rounds, "boosting rounds (n_estimators)")
	f.IntVar(&o.Params.NumParallelTree, "trees", o.Params.NumParallelTree, "trees per round (num_parallel_tree)")
	f.Float64Var(&o.Params.Eta, "eta", o.Params.Eta, "learning rate")
	f.IntVar(&o.Params.MaxDepth, "max-depth", o.Params.MaxDepth, "maximum tree depth")
	f.Float64Var(&o.Params.Subsample, "subsample", o.Params.Subsample, "row subsample per tree")
	f.Float64Var(&o.Params.ColsampleByTree, "colsample-bytree", o.Params.ColsampleByTree, "feature subsample per tree")
	f.Float64Var(&o.Params.ColsampleByNode, "colsample-bynode", o.Params.ColsampleByNode, "feature subsample per split")
	f.Float64Var(&o.Params.RegAlpha, "reg-alpha", o.Params.RegAlpha, "L1 regularisation of leaf weights")
	f.Float64Var(&o.Params.ScalePosWeight, "scale-pos-weight", 0, "weight of bad images (0: n_good/n_bad, the paper's)")
	f.IntVar(&o.Params.NThread, "threads", 0, "XGBoost threads (0: all cores)")
	rootCmd.AddCommand(cmd)
}

// applyFitConfig takes the config's fit: section as defaults: a flag given
// on the command line wins over it, the paper's value applies when neither
// says anything.
func applyFitConfig(cmd *cobra.Command, fc config.FitConfig, o *fit.TrainOptions, opt *fit.Options) {
	set := func(flag string) bool { return !cmd.Flags().Changed(flag) }
	if fc.Trees != nil && set("trees") {
		o.Params.NumParallelTree = *fc.Trees
	}
	if fc.Rounds != nil && set("rounds") {
		o.Rounds = *fc.Rounds
	}
	if fc.Eta != nil && set("eta") {
		o.Params.Eta = *fc.Eta
	}
	if fc.MaxDepth != nil && set("max-depth") {
		o.Params.MaxDepth = *fc.MaxDepth
	}
	if fc.Subsample != nil && set("subsample") {
		o.Params.Subsample = *fc.Subsample
	}
	if fc.ColsampleByTree != nil && set("colsample-bytree") {
		o.Params.ColsampleByTree = *fc.ColsampleByTree
	}
	if fc.ColsampleByNode != nil && set("colsample-bynode") {
		o.Params.ColsampleByNode = *fc.ColsampleByNode
	}
	if fc.RegAlpha != nil && set("reg-alpha") {
		o.Params.RegAlpha = *fc.RegAlpha
	}
	if fc.ScalePosWeight != nil && set("scale-pos-weight") {
		o.Params.ScalePosWeight = *fc.ScalePosWeight
	}
	if fc.Seed != nil && set("seed") {
		o.Seed = *fc.Seed
	}
	if fc.Threads != nil && set("threads") {
		o.Params.NThread = *fc.Threads
	}
	if len(fc.Recalls) > 0 && set("recall") {
		opt.Recalls = fc.Recalls
	}
}
