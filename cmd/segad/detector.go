package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/detector"
	"github.com/segad-edge/segad-edge/infer"
)

// detectorCmd groups the tools that build anomaly detectors without Python.
var detectorCmd = &cobra.Command{
	Use:   "detector",
	Short: "Fit built-in anomaly detectors from good images and write them as ONNX",
}

func init() {
	var (
		kind, good, out, backbone, layers, ortLib string
		size, minImages, reservoir, projDim       int
		coresetProj, maxPatches                   int
		sigma, minSpread, coresetRatio            float64
		search                                    string
		searchDim, searchK                        int
		seed                                      int64
		noNormalize, quiet                        bool
	)
	fit := &cobra.Command{
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
			if good == "" || out == "" {
				return fmt.Errorf("detector fit: --good and -o are required")
			}
			detector.Version = version
			paths, err := detector.ListImages(good, minImages)
			if err != nil {
				return err
			}
			var progress = os.Stderr
			if quiet {
				progress = nil
			}
			start := time.Now()
			var model []byte
			switch kind {
			case "variation":
				v, err := detector.FitVariation(cmd.Context(), paths, detector.VariationConfig{
					Size: size, Sigma: sigma, MinSpread: minSpread, Reservoir: reservoir,
					MinImages: minImages, Seed: seed, Progress: writerOrNil(progress),
				})
				if err != nil {
					return err
				}
				model, err = v.ONNX()
				if err != nil {
					return err
				}
			case "patchcore":
				if backbone == "" {
					return fmt.Errorf("detector fit: --kind patchcore needs --backbone FILE.onnx")
				}
				if err := infer.Init(ortLib); err != nil {
					return err
				}
				p, err := detector.FitPatchCore(cmd.Context(), paths, detector.PatchCoreConfig{
					Backbone: backbone, Layers: splitList(layers), Size: size, CoresetRatio: coresetRatio,
					ProjDim: projDim, CoresetProjDim: coresetProj, MaxPatches: maxPatches, Sigma: sigma,
					NoNormalize: noNormalize, MinImages: minImages, Seed: seed, Progress: writerOrNil(progress),
					Search: search, SearchDim: searchDim, SearchK: searchK,
				})
				if err != nil {
					return err
				}
				model, err = p.ONNX()
				if err != nil {
					return err
				}
			default:
				return fmt.Errorf("detector fit: unknown --kind %q (variation or patchcore)", kind)
			}
			if err := os.WriteFile(out, model, 0o644); err != nil {
				return fmt.Errorf("write model: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s, %d images, %.1f MB) in %s\n",
				out, kind, len(paths), float64(len(model))/1e6, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f := fit.Flags()
	f.StringVar(&kind, "kind", "variation", "detector kind: variation or patchcore")
	f.StringVar(&good, "good", "", "folder of good images to fit on")
	f.StringVarP(&out, "output", "o", "", "ONNX model file to write")
	f.IntVar(&size, "size", 256, "square input size of the model")
	f.Float64Var(&sigma, "sigma", 4, "sigma of the Gaussian blur of the map, pixels")
	f.IntVar(&minImages, "min-images", detector.DefaultMinImages, "refuse folders with fewer good images")
	f.Int64Var(&seed, "seed", 0, "random seed (sampling, projections, coreset start)")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bars")
	f.Float64Var(&minSpread, "min-spread", 0.02, "variation: floor of the per-pixel spread, [0,1] units")
	f.IntVar(&reservoir, "reservoir", 256, "variation: images kept in memory (reservoir sample) for median/MAD")
	f.StringVar(&backbone, "backbone", "", "patchcore: pretrained backbone ONNX file")
	f.StringVar(&layers, "layers", "365_quantized,426_quantized", "patchcore: feature tensors of the backbone, finest first")
	f.Float64Var(&coresetRatio, "coreset-ratio", 0.01, "patchcore: share of patches kept in the memory bank")
	f.StringVar(&search, "search", detector.SearchTwoStage, "patchcore: nearest-neighbour search in the graph: two-stage (int8 PCA shortlist, then exact), two-stage-float or exact")
	f.IntVar(&searchDim, "search-dim", 64, "patchcore: PCA dimensions of the two-stage shortlist")
	f.IntVar(&searchK, "search-k", 6, "patchcore: candidates per patch checked exactly by the two-stage search")
	f.IntVar(&projDim, "proj-dim", 0, "patchcore: random projection of features to this many dims (0: none)")
	f.IntVar(&coresetProj, "coreset-proj-dim", 32, "patchcore: random projection dims used only to select the coreset (negative: full features)")
	f.IntVar(&maxPatches, "max-patches", 262144, "patchcore: bound on pre-coreset patches (subsampled per image)")
	f.BoolVar(&noNormalize, "no-normalize", false, "patchcore: the backbone takes [0,1] RGB, skip ImageNet normalisation")
	f.StringVar(&ortLib, "onnxruntime", "", "ONNX Runtime library (default $SEGAD_ONNXRUNTIME_LIB)")

	var evalModel, evalTest, evalLib string
	var evalSize int
	eval := &cobra.Command{
		Use:   "eval --model model.onnx --test DIR",
		Short: "Image-level AUROC of a detector's map maximum on an MVTec-style test folder",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if evalModel == "" || evalTest == "" {
				return fmt.Errorf("detector eval: --model and --test are required")
			}
			if err := infer.Init(evalLib); err != nil {
				return err
			}
			r, err := detector.EvalFolder(evalModel, evalSize, evalTest)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s on %s: %d good, %d bad, image AUROC (map max) %.4f\n",
				evalModel, evalTest, r.Good, r.Bad, r.AUROC)
			return nil
		},
	}
	eval.Flags().StringVar(&evalModel, "model", "", "ONNX model written by detector fit")
	eval.Flags().StringVar(&evalTest, "test", "", "test folder with one subfolder per class; good is negative")
	eval.Flags().IntVar(&evalSize, "size", 256, "input size of the model")
	eval.Flags().StringVar(&evalLib, "onnxruntime", "", "ONNX Runtime library (default $SEGAD_ONNXRUNTIME_LIB)")

	detectorCmd.AddCommand(fit, eval)
	rootCmd.AddCommand(detectorCmd)
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
