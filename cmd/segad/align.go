package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/segad"
	"github.com/segad-edge/segad-edge/segad/preview"
)

// detectorAlign is the capture.align of the config at path ("" = none), for
// `segad detector fit --config`.
func detectorAlign(path string) (capture.AlignConfig, error) {
	if path == "" {
		return capture.AlignConfig{}, nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return capture.AlignConfig{}, fmt.Errorf("detector fit --config: %w", err)
	}
	return cfg.Capture.Align, nil
}

// newAlignCmd is `segad align`: fixturing tools.
func newAlignCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "align",
		Short: "Fixturing tools: check where capture.align finds parts",
	}
	var cfgPath string
	check := &cobra.Command{
		Use:   "check --config C IMAGES...",
		Short: "Print each image's pose (dx, dy, angle, score) or why it is not located",
		Long: `Registers each image to capture.align.reference exactly as the line would
(the config's preprocessing, completed by the model's input size) and prints
the pose: shift in preprocessed pixels, rotation in degrees (counter-clockwise),
the ECC score, and "not_located" with the reason when the part would fail
closed. Exit status 1 when any image is not located.`,
		Example: `  segad align check --config segad.yaml parts/*.png`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAlignCheck(cmd.Context(), cmd.OutOrStdout(), cfgPath, args)
		},
	}
	check.Flags().StringVarP(&cfgPath, "config", "c", "segad.yaml", "configuration file (capture.align)")
	cmd.AddCommand(check)
	return cmd
}

// alignPreprocess is the preprocessing the line uses for cfg: the config's,
// with the first detector's input size when the config sets none (what
// model.Model.Preprocess does with the size the model reports).
func alignPreprocess(cfg *config.Config) capture.PreprocessConfig {
	pc := cfg.Capture.Preprocess
	if pc.Width == 0 && pc.Height == 0 && len(cfg.Detectors) > 0 {
		s := cfg.Detectors[0].InputSize
		pc.Width, pc.Height = s.Width, s.Height
	}
	return pc
}

func runAlignCheck(ctx context.Context, w io.Writer, cfgPath string, images []string) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	if !cfg.Capture.Align.Enabled() {
		return fmt.Errorf("align check: %s sets no capture.align.reference: fixturing is off", cfgPath)
	}
	pc := alignPreprocess(cfg)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "image\tdx\tdy\tangle\tscore\tresult")
	bad := 0
	for _, p := range images {
		if err := ctx.Err(); err != nil {
			return err
		}
		f := capture.ReadFrame(p, pc)
		switch {
		case f.Err != nil:
			bad++
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\tcapture_error: %v\n", p, f.Err)
		case f.Align.Located():
			a := f.Align
			fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.3f\tlocated\n", p, a.DX, a.DY, a.Angle, a.Score)
		default:
			bad++
			a := f.Align
			fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.3f\tnot_located: %v\n", p, a.DX, a.DY, a.Angle, a.Score, a.Err)
		}
		f.Close()
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if bad > 0 {
		return fmt.Errorf("align check: %d of %d images not located", bad, len(images))
	}
	return nil
}

// renderAlignedPreview is `segad mask preview --config`: the image read and
// preprocessed as the line would, registered by capture.align into the
// reference pose, with the mask drawn over it; a correct reference and
// mask show the segments on the part's features whatever its pose.
func renderAlignedPreview(w io.Writer, cfgPath string, m *segad.Mask, imagePath, out string, opt preview.Options) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	f := capture.ReadFrame(imagePath, alignPreprocess(cfg))
	defer f.Close()
	if f.Err != nil {
		return fmt.Errorf("mask preview: %w", f.Err)
	}
	if f.Align != nil && !f.Align.Located() {
		return fmt.Errorf("mask preview: %s: %w (score %.3f)", imagePath, f.Align.Err, f.Align.Score)
	}
	img, err := preview.Render(m, f.Image, opt)
	if err != nil {
		return fmt.Errorf("mask preview %s: %w", imagePath, err)
	}
	defer img.Close()
	if err := capture.WriteImage(out, img); err != nil {
		return fmt.Errorf("mask preview: %w", err)
	}
	if a := f.Align; a != nil {
		fmt.Fprintf(w, "aligned: dx %.2f dy %.2f angle %.2f score %.3f\n", a.DX, a.DY, a.Angle, a.Score)
	} else {
		fmt.Fprintln(w, "capture.align is off: the preprocessed frame, not registered")
	}
	fmt.Fprintf(w, "wrote %s\n", out)
	return nil
}
