package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/detector"
	"github.com/segad-edge/segad-edge/infer"
)

// newDetectorCmd is `segad detector`: the tools that build anomaly
// detectors without Python.
func newDetectorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "detector",
		Short: "Fit built-in anomaly detectors from good images and write them as ONNX",
	}
	cmd.AddCommand(newDetectorFitCmd(), newDetectorEvalCmd())
	return cmd
}

// detectorFitOptions are the flags of `segad detector fit`.
type detectorFitOptions struct {
	kind, good, out, backbone, layers, ortLib string
	size, minImages, reservoir, projDim       int
	coresetProj, maxPatches                   int
	sigma, minSpread, coresetRatio            float64
	search                                    string
	searchDim, searchK                        int
	seed                                      int64
	noNormalize, quiet                        bool

	// alignCfg is a config file whose capture.align the training images
	// are registered with (fixturing; docs/fixturing.md).
	alignCfg string
}

// newDetectorFitCmd is `segad detector fit`.
func newDetectorFitCmd() *cobra.Command {
	var o detectorFitOptions
	cmd := &cobra.Command{
		Use:   "fit --kind variation|patchcore --good DIR -o model.onnx",
		Short: "Fit a detector on a folder of good images and write an ONNX anomaly-map model",
		Long: `fit reads every image in --good (png/jpg/bmp/tif), preprocesses it exactly as
inference does (capture.DecodeFrame: INTER_AREA resize to --size, BGR; then
infer.FillNCHW: RGB, 1/255), fits the chosen
kind and writes an ONNX model with input "input" [1,3,S,S] and output
"anomaly_map" [1,1,S,S] that infer runs like an anomalib export.

  variation: per-pixel median and MAD spread; map = mean over channels of
             |x - median| / spread, Gaussian blur. Aligned parts only.
  patchcore: features of two backbone layers (--backbone, --layers), greedy
             k-centre coreset memory bank, nearest-neighbour distance in the graph.`,
		Example: `  segad detector fit --kind variation --good data/train/good -o variation.onnx
  segad detector fit --kind patchcore --good data/train/good -o patchcore.onnx \
      --backbone mobilenetv2-12-int8.onnx --layers 365_quantized,426_quantized`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDetectorFit(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kind, "kind", "variation", "detector kind: variation or patchcore")
	f.StringVar(&o.good, "good", "", "folder of good images to fit on")
	f.StringVarP(&o.out, "output", "o", "", "ONNX model file to write")
	f.IntVar(&o.size, "size", 256, "square input size of the model")
	f.Float64Var(&o.sigma, "sigma", 4, "sigma of the Gaussian blur of the map, pixels")
	f.IntVar(&o.minImages, "min-images", detector.DefaultMinImages, "refuse folders with fewer good images")
	f.Int64Var(&o.seed, "seed", 0, "random seed (sampling, projections, coreset start)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no progress bars")
	f.Float64Var(&o.minSpread, "min-spread", 0.02, "variation: floor of the per-pixel spread, [0,1] units")
	f.IntVar(&o.reservoir, "reservoir", 256, "variation: images kept in memory (reservoir sample) for median/MAD")
	f.StringVar(&o.backbone, "backbone", "", "patchcore: pretrained backbone ONNX file")
	f.StringVar(&o.layers, "layers", "365_quantized,426_quantized", "patchcore: feature tensors of the backbone, finest first")
	f.Float64Var(&o.coresetRatio, "coreset-ratio", 0.01, "patchcore: share of patches kept in the memory bank")
	f.StringVar(&o.search, "search", detector.SearchTwoStage, "patchcore: nearest-neighbour search in the graph: two-stage (int8 PCA shortlist, then exact), two-stage-float or exact")
	f.IntVar(&o.searchDim, "search-dim", 64, "patchcore: PCA dimensions of the two-stage shortlist")
	f.IntVar(&o.searchK, "search-k", 6, "patchcore: candidates per patch checked exactly by the two-stage search")
	f.IntVar(&o.projDim, "proj-dim", 0, "patchcore: random projection of features to this many dims (0: none)")
	f.IntVar(&o.coresetProj, "coreset-proj-dim", 32, "patchcore: random projection dims used only to select the coreset (negative: full features)")
	f.IntVar(&o.maxPatches, "max-patches", 262144, "patchcore: bound on pre-coreset patches (subsampled per image)")
	f.BoolVar(&o.noNormalize, "no-normalize", false, "patchcore: the backbone takes [0,1] RGB, skip ImageNet normalisation")
	f.StringVar(&o.ortLib, "onnxruntime", "", "ONNX Runtime library (default $SEGAD_ONNXRUNTIME_LIB)")
	f.StringVar(&o.alignCfg, "config", "", "register the training images with this config's capture.align (fixturing), as the line will")
	return cmd
}

// runDetectorFit fits the detector and writes its ONNX model.
func runDetectorFit(ctx context.Context, w io.Writer, o detectorFitOptions) error {
	if o.good == "" || o.out == "" {
		return fmt.Errorf("detector fit: --good and -o are required")
	}
	detector.Version = version
	paths, err := detector.ListImages(o.good, o.minImages)
	if err != nil {
		return err
	}
	var progress = os.Stderr
	if o.quiet {
		progress = nil
	}
	align, err := detectorAlign(o.alignCfg)
	if err != nil {
		return err
	}
	start := time.Now()
	var model []byte
	switch o.kind {
	case "variation":
		v, err := detector.FitVariation(ctx, paths, detector.VariationConfig{
			Size: o.size, Sigma: o.sigma, MinSpread: o.minSpread, Reservoir: o.reservoir,
			MinImages: o.minImages, Seed: o.seed, Progress: writerOrNil(progress), Align: align,
		})
		if err != nil {
			return err
		}
		model, err = v.ONNX()
		if err != nil {
			return err
		}
	case "patchcore":
		if o.backbone == "" {
			return fmt.Errorf("detector fit: --kind patchcore needs --backbone FILE.onnx")
		}
		if err := infer.Init(o.ortLib); err != nil {
			return err
		}
		p, err := detector.FitPatchCore(ctx, paths, detector.PatchCoreConfig{
			Backbone: o.backbone, Layers: splitList(o.layers), Size: o.size, CoresetRatio: o.coresetRatio,
			ProjDim: o.projDim, CoresetProjDim: o.coresetProj, MaxPatches: o.maxPatches, Sigma: o.sigma,
			NoNormalize: o.noNormalize, MinImages: o.minImages, Seed: o.seed, Progress: writerOrNil(progress),
			Search: o.search, SearchDim: o.searchDim, SearchK: o.searchK, Align: align,
		})
		if err != nil {
			return err
		}
		model, err = p.ONNX()
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("detector fit: unknown --kind %q (variation or patchcore)", o.kind)
	}
	if err := os.WriteFile(o.out, model, 0o644); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	fmt.Fprintf(w, "wrote %s (%s, %d images, %.1f MB) in %s\n",
		o.out, o.kind, len(paths), float64(len(model))/1e6, time.Since(start).Round(time.Millisecond))
	return nil
}

// detectorEvalOptions are the flags of `segad detector eval`.
type detectorEvalOptions struct {
	model, test, ortLib string
	size                int
}

// newDetectorEvalCmd is `segad detector eval`.
func newDetectorEvalCmd() *cobra.Command {
	var o detectorEvalOptions
	cmd := &cobra.Command{
		Use:   "eval --model model.onnx --test DIR",
		Short: "Image-level AUROC of a detector's map maximum on an MVTec-style test folder",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDetectorEval(cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.model, "model", "", "ONNX model written by detector fit")
	cmd.Flags().StringVar(&o.test, "test", "", "test folder with one subfolder per class; good is negative")
	cmd.Flags().IntVar(&o.size, "size", 256, "input size of the model")
	cmd.Flags().StringVar(&o.ortLib, "onnxruntime", "", "ONNX Runtime library (default $SEGAD_ONNXRUNTIME_LIB)")
	return cmd
}

// runDetectorEval measures the model on the test folder.
func runDetectorEval(w io.Writer, o detectorEvalOptions) error {
	if o.model == "" || o.test == "" {
		return fmt.Errorf("detector eval: --model and --test are required")
	}
	if err := infer.Init(o.ortLib); err != nil {
		return err
	}
	r, err := detector.FolderAUROC(o.model, o.size, o.test)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s on %s: %d good, %d bad, image AUROC (map max) %.4f\n",
		o.model, o.test, r.Good, r.Bad, r.AUROC)
	return nil
}

// writerOrNil keeps a nil *os.File from becoming a non-nil io.Writer.
func writerOrNil(f *os.File) io.Writer {
	if f == nil {
		return nil
	}
	return f
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
