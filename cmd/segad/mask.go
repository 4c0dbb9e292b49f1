package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/segad"
	"github.com/segad-edge/segad-edge/segad/preview"
)

// newMaskCmd is `segad mask`: technicians' tools for the static
// segmentation mask.
func newMaskCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mask",
		Short: "Segmentation mask tools: preview over a part image, built-in VAD template, info",
	}
	cmd.AddCommand(newMaskPreviewCmd(), newMaskTemplateCmd(), newMaskInfoCmd())
	return cmd
}

// loadMaskFlag loads --mask with optional --names (comma-separated) and logs
// Validate's warnings, which are worth seeing but not fatal.
func loadMaskFlag(path, names string) (*segad.Mask, error) {
	var list []string
	if names != "" {
		list = strings.Split(names, ",")
	}
	m, err := segad.LoadMask(path, list)
	if err != nil {
		return nil, err
	}
	warn, _ := m.Validate()
	for _, w := range warn {
		slog.Warn("mask", "file", path, "warning", w)
	}
	return m, nil
}

func newMaskPreviewCmd() *cobra.Command {
	var maskPath, imagePath, out, names string
	var alignCfg string // --config: fixturing (cmd/segad/align.go)
	opt := preview.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "preview --mask M --image I -o overlay.png",
		Short: "Draw a mask over a part image (tints, outlines, legend) to check its alignment",
		Long: `Draws each segment of the mask over the part image in its own colour,
blended, with outlines and a legend (index, name, pixel share). The mask is
resized to the image with nearest neighbour, as the detector input is resized
from the camera frame, so a correct mask follows the part's features.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := loadMaskFlag(maskPath, names)
			if err != nil {
				return err
			}
			if alignCfg != "" {
				return renderAlignedPreview(cmd.OutOrStdout(), alignCfg, m, imagePath, out, opt)
			}
			if err := preview.RenderFile(m, imagePath, out, opt); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&maskPath, "mask", "", "mask file: 8-bit PNG or .npy labels (required)")
	cmd.Flags().StringVar(&imagePath, "image", "", "part image (required)")
	cmd.Flags().StringVarP(&out, "output", "o", "overlay.png", "overlay image to write")
	cmd.Flags().StringVar(&names, "names", "", "segment names, comma-separated (default: the mask's .names.txt sidecar, else seg0..)")
	cmd.Flags().Float64Var(&opt.Alpha, "alpha", opt.Alpha, "tint weight 0..1")
	cmd.Flags().BoolVar(&opt.Legend, "legend", opt.Legend, "draw the legend")
	cmd.Flags().BoolVar(&opt.Outline, "outline", opt.Outline, "draw segment outlines")
	cmd.Flags().StringVar(&alignCfg, "config", "", "preprocess and register the image with this config's capture (fixturing: the mask over the aligned frame)")
	cmd.MarkFlagRequired("mask")
	cmd.MarkFlagRequired("image")
	return cmd
}

func newMaskTemplateCmd() *cobra.Command {
	var size, width, height int
	var out string
	cmd := &cobra.Command{
		Use:   "template --size 256 -o mask.png",
		Short: "Write the built-in 7-segment VAD-like mask (and its names sidecar)",
		Long: `Writes the VAD-style template (background, outer_half_circle, piezo_border,
solder_dots, wires, pins, piezo_middle) as an 8-bit PNG or a uint8 .npy,
chosen by the output's extension, plus <name>.names.txt with the segment names.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if width == 0 {
				width = size
			}
			if height == 0 {
				height = size
			}
			if width <= 0 || height <= 0 || width > 8192 || height > 8192 {
				return fmt.Errorf("mask template: size %dx%d must be within 1..8192", width, height)
			}
			m := segad.VADTemplate(width, height, segad.DefaultVADGeometry())
			var err error
			switch strings.ToLower(filepath.Ext(out)) {
			case ".png":
				err = m.WritePNG(out)
			case ".npy":
				err = m.WriteNpy(out)
			default:
				return fmt.Errorf("mask template: output %s: use a .png or .npy name", out)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s (%dx%d, %d segments, hash %s)\n",
				out, segad.SidecarPath(out), width, height, m.NumSegments(), m.Hash())
			return nil
		},
	}
	cmd.Flags().IntVar(&size, "size", 256, "width and height in pixels (the anomaly map size)")
	cmd.Flags().IntVar(&width, "width", 0, "width, overriding --size")
	cmd.Flags().IntVar(&height, "height", 0, "height, overriding --size")
	cmd.Flags().StringVarP(&out, "output", "o", "mask.png", "mask file to write (.png or .npy)")
	return cmd
}

func newMaskInfoCmd() *cobra.Command {
	var maskPath, names string
	cmd := &cobra.Command{
		Use:   "info --mask M",
		Short: "Print a mask's size, segments with pixel counts, and hash",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := loadMaskFlag(maskPath, names)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s: %dx%d, %d segments, hash %s\n", maskPath, m.Width, m.Height, m.NumSegments(), m.Hash())
			for j, c := range m.Counts() {
				fmt.Fprintf(w, "%3d  %-24s %8d px  %5.1f%%\n", j, m.Names[j], c, 100*float64(c)/float64(len(m.Labels)))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&maskPath, "mask", "", "mask file: 8-bit PNG or .npy labels (required)")
	cmd.Flags().StringVar(&names, "names", "", "segment names, comma-separated (default: sidecar, else seg0..)")
	cmd.MarkFlagRequired("mask")
	return cmd
}
