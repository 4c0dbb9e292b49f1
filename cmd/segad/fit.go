package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

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

// fitFlags are `segad fit`'s flags.
type fitFlags struct {
	cfgPath, good, bad, maps, out string
	kinds, history, since         string
	quiet, skip, noSeverity       bool
	minGood, minBad               int
	o                             fit.TrainOptions
	opt                           fit.Options
}

// newFitCmd is `segad fit`: train the forest and write a model bundle.
func newFitCmd() *cobra.Command {
	ff := &fitFlags{o: fit.DefaultTrainOptions()}
	o, opt := &ff.o, &ff.opt
	cmd := &cobra.Command{
		Use:   "fit --config FILE (--good DIR --bad DIR | --maps CSV | --history DB [--since 7d]) -o BUNDLE",
		Short: "Train SegAD's boosted random forest from labelled images and write a model bundle",
		Long: `fit runs the configured detectors on every image with the line's own code
(same preprocessing, same feature extraction), trains the boosted random forest
with libxgboost (the paper's hyper-parameters unless overridden by flags) and writes
a bundle folder: model.json (XGBoost JSON), manifest.json (feature order, detector
names and model sha256, mask hash, parameters, seed, data counts, suggested
threshold with its operating points). Point segad.bundle at the folder.

Data: --good DIR (images) and --bad DIR (images, or sub-folders named by defect
type), or --maps CSV in the SegAD reference layout (filepath, an_map_path, label;
an_map_path_<detector> per detector when there are several; optional defect_type),
or --history DB: the labelled production results of the line's results history
(since --since) with the feature rows the daemon recorded, alone (no images
needed) or added to the images; their feature order must be the configuration's.
With --history, fewer than --min-good good or --min-bad bad parts is refused.
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
  segad fit -c segad.yaml --good data/good --bad data/bad --bad-limit 10 --seeds 5 --cv 5 -o b
  segad fit -c segad.yaml --history /var/lib/segad/history.db --since 30d -o bundles/line1-v2
  segad fit -c segad.yaml --good data/good --bad data/bad --history /var/lib/segad/history.db -o b`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sum, err := runFit(cmd, ff)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(sum)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ff.cfgPath, "config", "c", "", "daemon configuration (detectors, mask, preprocessing)")
	f.StringVar(&ff.good, "good", "", "folder of good images")
	f.StringVar(&ff.bad, "bad", "", "folder of bad images or of defect-type sub-folders")
	f.StringVar(&ff.maps, "maps", "", "CSV of precomputed .npy anomaly maps (reference layout) instead of images")
	f.StringVar(&ff.history, "history", "", "results history database (SQLite file or postgres:// URL): train on its labelled results' recorded feature rows, with or instead of images")
	f.StringVar(&ff.since, "since", "", "with --history: only results since a duration back from now (7d, 12h) or a date (2006-01-02, RFC 3339)")
	f.IntVar(&ff.minGood, "min-good", fit.DefaultHistoryMinGood, "with --history: refuse to train on fewer good parts (history and images together)")
	f.IntVar(&ff.minBad, "min-bad", fit.DefaultHistoryMinBad, "with --history: refuse to train on fewer bad parts (history and images together)")
	f.StringVarP(&ff.out, "output", "o", "", "bundle folder to write")
	f.BoolVarP(&ff.quiet, "quiet", "q", false, "no progress bar")
	f.BoolVar(&ff.skip, "skip-bad-images", false, "skip (and count) unreadable images instead of failing")
	f.IntVar(&opt.Images.Synthetic.N, "synthetic-defects", 0, "make N synthetic defect images from good ones (one-class mode; with --bad: mixed)")
	f.StringVar(&ff.kinds, "kinds", "default", "synthetic defect kinds, comma-separated: "+strings.Join(fit.AllKinds, ", ")+"; or groups default, paper, structural, logical, all")
	f.BoolVar(&ff.noSeverity, "no-severity", false, "keep every synthetic defect (no severity filter on its map maxima)")
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
	return cmd
}

// runFit is `segad fit`'s work: the flags into fit.Options, the history
// (when --history) read, fit.Run.
func runFit(cmd *cobra.Command, ff *fitFlags) (*fit.Summary, error) {
	o, opt := ff.o, ff.opt
	if ff.cfgPath == "" {
		return nil, fmt.Errorf("fit: --config is required")
	}
	if ff.maps == "" && ff.good == "" && ff.history == "" {
		return nil, fmt.Errorf("fit: give --good DIR (with --bad DIR or --synthetic-defects N), --maps CSV or --history DB")
	}
	if ff.history == "" && (ff.since != "" || cmd.Flags().Changed("min-good") || cmd.Flags().Changed("min-bad")) {
		return nil, fmt.Errorf("fit: --since, --min-good and --min-bad go with --history DB")
	}
	cfg, err := config.Load(ff.cfgPath)
	if err != nil {
		return nil, err
	}
	log := logger(cfg)
	o.ApplyConfig(cfg.Fit, &opt.Recalls, cmd.Flags().Changed)
	opt.Config, opt.Good, opt.Bad, opt.MapsCSV, opt.Out = cfg, ff.good, ff.bad, ff.maps, ff.out
	opt.Train, opt.Log, opt.ToolVersion = o, log, version
	opt.Images.SkipBadImages = ff.skip
	opt.Images.Synthetic.Seed = o.Seed
	opt.Images.Synthetic.Severity.Off = ff.noSeverity
	opt.Images.Synthetic.Severity.LowSet = cmd.Flags().Changed("severity-low")
	if opt.Images.Synthetic.Kinds, err = fit.ParseKinds(ff.kinds); err != nil {
		return nil, fmt.Errorf("fit: --kinds: %w", err)
	}
	opt.Images.Progress = progressWriter(ff.quiet)
	if len(opt.Calibrate.MaxFalseReject) > 0 {
		opt.Calibrate.Primary = bundle.BudgetMaxFalseReject
		if cmd.Flags().Changed("recall") {
			opt.Calibrate.Primary = bundle.BudgetRecall
			log.Warn("both --recall and --max-false-reject given: the recall budget gives the suggested threshold, the false-reject budget is an extra operating point")
		}
	}
	if ff.history != "" {
		if opt.Out == "" {
			return nil, fmt.Errorf("fit: no output bundle folder (-o) given")
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		now := time.Now()
		since, err := parseSince(ff.since, now)
		if err != nil {
			return nil, fmt.Errorf("fit: --since: %w", err)
		}
		st, err := openHistoryReadOnly(ctx, ff.history)
		if err != nil {
			return nil, fmt.Errorf("fit: open history %s: %w", redactDB(ff.history), err)
		}
		lf, err := st.LabelledFeatures(ctx, since)
		st.Close()
		if err != nil {
			return nil, fmt.Errorf("fit: --history %s: %w", redactDB(ff.history), err)
		}
		opt.History = &fit.HistoryInput{Path: redactDB(ff.history), Since: since, Read: now.UTC().Truncate(time.Second),
			Rows: lf, MinGood: ff.minGood, MinBad: ff.minBad}
	}
	return fit.Run(opt)
}
