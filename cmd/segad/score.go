package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/npy"
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
}

func init() {
	var o scoreOptions
	cmd := &cobra.Command{
		Use:   "score --mask M --model BRF.json --map NAME=PATH.npy [--map ...] [--threshold T]",
		Short: "Score precomputed anomaly maps (.npy) with SegAD and print one JSON object",
		Long: `score reads float32 anomaly maps in the reference repository's .npy format, one per
detector in the model's feature order, computes SegAD's per-segment features with the
given mask and scores them with the boosted random forest.

It prints {"features": {...}, "feature_order": [...], "score": s, "verdict": "pass|fail",
"threshold": t}; NaN features are written as null. A part that cannot be scored (NaN in
a map, wrong map size) gets verdict "fail" with a "reason" and exit status 0, as on the
line; a missing or invalid file is an error (exit status 1).`,
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
	for _, req := range []string{"mask", "model", "map"} {
		_ = cmd.MarkFlagRequired(req)
	}
	rootCmd.AddCommand(cmd)
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
	model, err := brf.Load(o.model)
	if err != nil {
		return err
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
	mask, err := segad.LoadMask(o.mask, o.segments)
	if err != nil {
		return err
	}
	if mask.Width != mapW || mask.Height != mapH {
		if mask, err = mask.Resize(mapW, mapH); err != nil {
			return fmt.Errorf("resize mask %s to the maps' %dx%d: %w", o.mask, mapW, mapH, err)
		}
	}
	warnings, err := mask.Validate()
	if err != nil {
		return fmt.Errorf("mask %s: %w", o.mask, err)
	}
	for _, wrn := range warnings {
		slog.Warn("mask", "file", o.mask, "warning", wrn)
	}
	ex, err := segad.NewExtractor(mask, names, o.extra)
	if err != nil {
		return err
	}
	if err := brf.CheckFeatures(model, ex.NumFeatures()); err != nil {
		return fmt.Errorf("model %s: %w", o.model, err)
	}
	row := make([]float32, ex.NumFeatures())
	var v segad.Verdict
	if err := ex.Extract(row, maps, float32(o.extraVal)); err != nil {
		v = segad.FailClosed(err, o.threshold)
		for i := range row {
			row[i] = float32(math.NaN())
		}
	} else {
		v = segad.Decide(model.Margin(row), o.threshold)
	}
	return writeScore(w, ex.Names(), row, v)
}

// writeScore prints the result object with features in feature order (a Go
// map would lose it) and NaN as null.
func writeScore(w io.Writer, names []string, row []float32, v segad.Verdict) error {
	var b bytes.Buffer
	b.WriteString(`{"features":{`)
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(n)
		b.Write(k)
		b.WriteByte(':')
		b.WriteString(jsonFloat(float64(row[i])))
	}
	b.WriteString(`},"feature_order":`)
	order, _ := json.Marshal(names)
	b.Write(order)
	fmt.Fprintf(&b, `,"score":%s,"verdict":%q,"threshold":%s`, jsonFloat(v.Score), v.Outcome, jsonFloat(v.Threshold))
	if v.Reason != "" {
		r, _ := json.Marshal(v.Reason)
		b.WriteString(`,"reason":`)
		b.Write(r)
	}
	b.WriteString("}\n")
	_, err := w.Write(b.Bytes())
	return err
}

func jsonFloat(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "null"
	}
	b, _ := json.Marshal(f)
	return string(b)
}
