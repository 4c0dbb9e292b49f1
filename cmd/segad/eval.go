package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/fit"
)

// evalFlags are `segad eval`'s flags besides fit.EvaluateOptions.
type evalFlags struct {
	cfgPath, kinds string
	quiet, skip    bool
}

// newEvalCmd is `segad eval`: a bundle measured on held-out images.
func newEvalCmd() *cobra.Command {
	var (
		ef evalFlags
		o  fit.EvaluateOptions
	)
	cmd := &cobra.Command{
		Use:   "eval --bundle DIR --config FILE (--good DIR --bad DIR | --maps CSV) [--report OUT]",
		Short: "Score held-out labelled images with a bundle and print AUROC, FPR@95TPR and recall per defect type",
		Long: `eval checks that the bundle matches the configuration's detectors and mask, scores
every image with the line's own code and prints one JSON object: auroc, fpr_at_95tpr,
recall and FPR at the bundle's suggested threshold, "promise" (the recall and
false-reject rate the bundle promised at that threshold next to the measured ones,
both with 95% Clopper-Pearson intervals, and whether the promise was kept),
recall per defect type, counts,
and the same for the "detector alone" baseline (each detector's map maximum, at its
own threshold for the same recall on the training data), so SegAD's gain is visible.
One-class bundles (trained on synthetic defects only) say so ("one_class") with
their synthetic record; --synthetic-defects N adds, per synthetic kind made from
the held-out good images (within the bundle's severity bounds), AUROC and recall
of SegAD next to each detector alone ("per_synthetic_kind").
--report OUT also writes histograms (good, bad of types seen in training, bad of
unseen types) as PNG and a Markdown summary.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEval(cmd.OutOrStdout(), o, ef)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ef.cfgPath, "config", "c", "", "daemon configuration (must match the bundle)")
	f.StringVar(&o.Bundle, "bundle", "", "bundle folder written by segad fit")
	f.StringVar(&o.Good, "good", "", "folder of held-out good images")
	f.StringVar(&o.Bad, "bad", "", "folder of held-out bad images or defect-type sub-folders")
	f.StringVar(&o.MapsCSV, "maps", "", "CSV of precomputed .npy maps (reference layout) instead of images")
	f.StringVar(&o.Report, "report", "", "folder for histograms (PNG) and summary.md")
	f.BoolVarP(&ef.quiet, "quiet", "q", false, "no progress bar")
	f.BoolVar(&ef.skip, "skip-bad-images", false, "skip (and count) unreadable images instead of failing")
	f.IntVar(&o.Images.Synthetic.N, "synthetic-defects", 0, "also make N synthetic defects from the held-out good images and report each kind (SegAD and each detector alone)")
	f.StringVar(&ef.kinds, "kinds", "all", "synthetic defect kinds for --synthetic-defects (as segad fit --kinds)")
	f.IntVar(&o.Images.Synthetic.Seed, "seed", 0, "seed of the held-out synthetic defects")
	return cmd
}

// runEval measures the bundle and prints the JSON report to w.
func runEval(w io.Writer, o fit.EvaluateOptions, ef evalFlags) error {
	if ef.cfgPath == "" || o.Bundle == "" {
		return fmt.Errorf("eval: --config and --bundle are required")
	}
	if o.MapsCSV == "" && (o.Good == "" || o.Bad == "") {
		return fmt.Errorf("eval: give --good DIR and --bad DIR, or --maps CSV")
	}
	cfg, err := config.Load(ef.cfgPath)
	if err != nil {
		return err
	}
	o.Config = cfg
	o.Log = logger(cfg)
	o.Images.SkipBadImages = ef.skip
	if o.Images.Synthetic.Kinds, err = fit.ParseKinds(ef.kinds); err != nil {
		return fmt.Errorf("eval: --kinds: %w", err)
	}
	o.Images.Progress = progressWriter(ef.quiet)
	res, err := fit.EvaluateBundle(o)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}
