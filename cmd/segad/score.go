package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/npy"
	"github.com/segad-edge/segad-edge/result"
	"github.com/segad-edge/segad-edge/segad"
)

// scoreOptions are the flags of `segad score`.
type scoreOptions struct {
	mask      string
	segments  []string
	model     string
	maps      []string
	threshold float64
	extra     string
	extraVal  float64
	explain   string
}

// newScoreCmd is `segad score`.
func newScoreCmd() *cobra.Command {
	var o scoreOptions
	cmd := &cobra.Command{
		Use:   "score --mask M --model BRF.json --map NAME=PATH.npy [--map ...] [--threshold T]",
		Short: "Score precomputed anomaly maps (.npy) with SegAD and print the result JSON",
		Long: `score reads float32 anomaly maps in the reference repository's .npy format, one per
detector in the model's feature order, computes SegAD's per-segment features with the
given mask and scores them with the boosted random forest.

It prints the result JSON the daemon publishes (docs/mqtt.md), with every feature in
the model's order; NaN features are written as null. A part that cannot be scored (NaN
in a map) gets verdict "error" with reason code invalid_map and a "reason", and exit
status 0, as on the line; a missing or invalid file is an error (exit status 1).

--explain path|exact adds "explain": the score split into a bias plus contributions per
segment, detector and feature (docs/brf.md). path is the path attribution every result
of the line carries; exact is TreeSHAP (XGBoost's pred_contribs), on demand. It needs
an XGBoost JSON model.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runScore(cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.mask, "mask", "", "segmentation mask: 8-bit PNG or .npy label image (255 = ignore)")
	f.StringSliceVar(&o.segments, "segments", nil, "segment names in label order (default: the mask's sidecar file, else seg0..)")
	f.StringVar(&o.model, "model", "", "boosted random forest: XGBoost JSON or LightGBM text model")
	f.StringArrayVar(&o.maps, "map", nil, "detector anomaly map as NAME=PATH.npy, repeated in the model's detector order")
	f.Float64Var(&o.threshold, "threshold", 0, "score at and above which a part fails (raw margin)")
	f.StringVar(&o.extra, "extra", "", "name of an extra (supervised classifier) feature appended last")
	f.Float64Var(&o.extraVal, "extra-value", 0, "value of the extra feature")
	f.StringVar(&o.explain, "explain", "", "add the score's explanation: path (path attribution, as on the line) or exact (TreeSHAP)")
	for _, req := range []string{"mask", "model", "map"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}

func runScore(w io.Writer, o scoreOptions) error {
	names := make([]string, 0, len(o.maps))
	paths := make([]string, 0, len(o.maps))
	for _, m := range o.maps {
		name, path, ok := strings.Cut(m, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("--map %q: want NAME=PATH.npy", m)
		}
		names = append(names, name)
		paths = append(paths, path)
	}
	var forest brf.Model
	var explainer *brf.Explainer
	if o.explain != "" {
		// One load serves scoring and explaining.
		if _, err := brf.ParseMethod(o.explain); err != nil {
			return fmt.Errorf("--explain: %w", err)
		}
		e, err := brf.LoadExplainer(o.model)
		if err != nil {
			return fmt.Errorf("--explain: %w", err)
		}
		forest, explainer = e, e
	} else {
		f, err := brf.Load(o.model)
		if err != nil {
			return err
		}
		forest = f
	}
	maps := make([][]float32, len(paths))
	var mapW, mapH int
	for i, p := range paths {
		a, err := npy.Read(p)
		if err != nil {
			return fmt.Errorf("read map %s: %w", names[i], err)
		}
		w, h, data, err := a.Map2D()
		if err != nil {
			return fmt.Errorf("read map %s (%s): %w", names[i], p, err)
		}
		if i == 0 {
			mapW, mapH = w, h
		} else if w != mapW || h != mapH {
			return fmt.Errorf("map %s (%s) is %dx%d but map %s is %dx%d: all maps must have one size", names[i], p, w, h, names[0], mapW, mapH)
		}
		maps[i] = data
	}
	mask, warnings, err := segad.MaskAt(o.mask, o.segments, mapW, mapH)
	if err != nil {
		return err
	}
	for _, wrn := range warnings {
		slog.Warn("mask", "file", o.mask, "warning", wrn)
	}
	ex, err := segad.NewExtractor(mask, names, o.extra)
	if err != nil {
		return err
	}
	if err := brf.CheckFeatures(forest, ex.NumFeatures()); err != nil {
		return fmt.Errorf("model %s: %w", o.model, err)
	}
	// The result the line publishes, judged the line's way (result.Decide).
	row := make([]float32, ex.NumFeatures())
	r := result.Result{Schema: result.SchemaVersion, Source: "score", DecidedAt: time.Now(), Threshold: o.threshold}
	r.ID = result.NewID(r.DecidedAt)
	if err := ex.Extract(row, maps, float32(o.extraVal)); err != nil {
		result.FailClosed(&r, result.ReasonMap, err)
		for i := range row {
			row[i] = float32(math.NaN())
		}
	} else {
		r.Decide(forest.Margin(row), o.threshold, math.NaN())
		if explainer != nil && r.Score != nil {
			if r.Explain, err = model.Explain(explainer, ex.Names(), row, o.explain); err != nil {
				return err
			}
		}
		first := 4 * mask.NumSegments() * len(names)
		r.MapMax = make(map[string]float64, len(names))
		for i, n := range names {
			r.MapMax[n] = float64(row[first+i])
		}
	}
	r.Features = make([]result.Feature, len(row))
	for i, n := range ex.Names() {
		r.Features[i] = result.Feature{Name: n, Value: float64(row[i])}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
