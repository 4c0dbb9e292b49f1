package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/brf/xgboost"
	"github.com/segad-edge/segad-edge/demo"
	"github.com/segad-edge/segad-edge/eval"
	"github.com/segad-edge/segad-edge/npy"
	"github.com/segad-edge/segad-edge/segad"
)

type demoOptions struct {
	out   string
	seed  uint64
	size  int
	good  int
	bad   int
	quiet bool
}

func init() {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run SegAD end to end on generated data (no camera, broker, dataset or network)",
		Long: `demo generates synthetic anomaly maps of a VAD-like part on the built-in 7-segment
mask, trains the boosted random forest with XGBoost on part of them, then scores a
stream of new parts (including defect types never seen in training) with the Go
evaluator, printing one line per part and a summary of SegAD against the detector's
map maximum alone. Artifacts (mask, model, sample maps) go to --out so that
'segad score' can be tried on them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "demo-out", "folder for the generated mask, model and sample maps")
	f.Uint64Var(&o.seed, "seed", 1, "random seed (the demo is deterministic for a seed)")
	f.IntVar(&o.size, "size", 256, "map size in pixels")
	f.IntVar(&o.good, "good", 300, "good parts for training (the test stream has 2/3 as many)")
	f.IntVar(&o.bad, "bad", 150, "bad parts for training")
	f.BoolVar(&o.quiet, "quiet", false, "print the summary only")
	rootCmd.AddCommand(cmd)
}

type demoPart struct {
	kind demo.MapKind
	row  []float32
}

func runDemo(w io.Writer, o demoOptions) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	mask := segad.VADTemplate(o.size, o.size, segad.DefaultVADGeometry())
	maskPath := filepath.Join(o.out, "mask.png")
	if err := mask.WritePNG(maskPath); err != nil {
		return err
	}
	if err := segad.WriteNames(segad.SidecarPath(maskPath), mask.Names); err != nil {
		return err
	}
	ex, err := segad.NewExtractor(mask, []string{"detector"}, "")
	if err != nil {
		return err
	}
	nf := ex.NumFeatures()
	gen := demo.NewMapGen(mask, o.seed)
	m := make([]float32, o.size*o.size)
	make1 := func(kind demo.MapKind) (demoPart, error) {
		gen.Render(m, kind)
		row := make([]float32, nf)
		err := ex.Extract(row, [][]float32{m}, 0)
		return demoPart{kind, row}, err
	}

	// Training set: goods and the training defect types.
	fmt.Fprintf(w, "demo: generating %d good and %d bad training maps (%dx%d, 7 segments)\n", o.good, o.bad, o.size, o.size)
	var train []demoPart
	for i := 0; i < o.good+o.bad; i++ {
		kind := demo.Good
		if i >= o.good {
			kind = demo.TrainKinds[i%len(demo.TrainKinds)]
		}
		p, err := make1(kind)
		if err != nil {
			return err
		}
		train = append(train, p)
	}
	feats := make([]float32, 0, len(train)*nf)
	labels := make([]float32, len(train))
	for i, p := range train {
		feats = append(feats, p.row...)
		if p.kind != demo.Good {
			labels[i] = 1
		}
	}
	params := xgboost.DefaultParams()
	params.Seed = int(o.seed)
	if params.ScalePosWeight, err = xgboost.ScalePosWeight(labels); err != nil {
		return err
	}
	t0 := time.Now()
	js, err := xgboost.Train(feats, len(train), nf, labels, params, xgboost.DefaultRounds)
	if err != nil {
		return fmt.Errorf("demo: train the forest: %w (is libxgboost installed? run make setup)", err)
	}
	fmt.Fprintf(w, "demo: trained the BRF (%d trees) on %d rows x %d features in %s\n",
		params.NumParallelTree*xgboost.DefaultRounds, len(train), nf, time.Since(t0).Round(time.Millisecond))
	modelPath := filepath.Join(o.out, "brf.json")
	if err := os.WriteFile(modelPath, js, 0o644); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	model, err := brf.LoadBytes(js)
	if err != nil {
		return err
	}
	// Threshold: keep 95% recall on the training defects.
	trainScores := make([]float64, len(train))
	trainBad := make([]bool, len(train))
	for i, p := range train {
		trainScores[i] = model.Margin(p.row)
		trainBad[i] = p.kind != demo.Good
	}
	_, threshold, err := eval.FPRAt95TPR(trainScores, trainBad)
	if err != nil {
		return err
	}

	// Test stream: new goods, training defect types and unseen ones, shuffled.
	kinds := []demo.MapKind{}
	for i := 0; i < o.good*2/3; i++ {
		kinds = append(kinds, demo.Good)
	}
	all := append(append([]demo.MapKind{}, demo.TrainKinds...), demo.UnseenKinds...)
	for i := 0; i < o.bad*2/3; i++ {
		kinds = append(kinds, all[i%len(all)])
	}
	rng := rand.New(rand.NewPCG(o.seed, 7))
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	maxIdx := nf - 1 // the detector's global max is the last feature (no extra)
	var segScores, maxScores []float64
	var isBad []bool
	caught := map[demo.MapKind][2]int{}
	var worst time.Duration
	fmt.Fprintf(w, "demo: inspecting a stream of %d parts, fail threshold %.3f (95%% recall on training)\n", len(kinds), threshold)
	for seq, kind := range kinds {
		gen.Render(m, kind)
		t := time.Now()
		row := make([]float32, nf)
		var v segad.Verdict
		if err := ex.Extract(row, [][]float32{m}, 0); err != nil {
			v = segad.FailClosed(err, threshold)
		} else {
			v = segad.Decide(model.Margin(row), threshold)
		}
		lat := time.Since(t)
		worst = max(worst, lat)
		if seq < 3 {
			p := filepath.Join(o.out, fmt.Sprintf("map_%d_%s.npy", seq, kind))
			if err := npy.WriteFloat32(p, []int{o.size, o.size}, m); err != nil {
				return err
			}
		}
		segScores = append(segScores, v.Score)
		maxScores = append(maxScores, float64(row[maxIdx]))
		isBad = append(isBad, kind != demo.Good)
		c := caught[kind]
		c[1]++
		if v.Outcome == segad.Fail {
			c[0]++
		}
		caught[kind] = c
		if !o.quiet {
			fmt.Fprintf(w, "part %4d  %-16s %-4s  score %7.3f  map max %5.2f  %6.0f us\n",
				seq, kind, v.Outcome, v.Score, row[maxIdx], float64(lat.Microseconds()))
		}
	}
	aSeg, err := eval.AUROC(segScores, isBad)
	if err != nil {
		return err
	}
	aMax, err := eval.AUROC(maxScores, isBad)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nsummary over %d parts (features + BRF, worst %s per part):\n", len(kinds), worst.Round(time.Microsecond))
	fmt.Fprintf(w, "  AUROC  SegAD %.3f   detector map max alone %.3f\n", aSeg, aMax)
	for _, k := range []demo.MapKind{demo.Good, demo.MisplacedDot, demo.PiezoCrack, demo.BurnedBorder, demo.PinsParticles} {
		c := caught[k]
		seen := "seen in training"
		if k == demo.BurnedBorder || k == demo.PinsParticles {
			seen = "UNSEEN in training"
		}
		if k == demo.Good {
			fmt.Fprintf(w, "  %-16s rejected %3d of %3d (false rejects)\n", k, c[0], c[1])
			continue
		}
		fmt.Fprintf(w, "  %-16s rejected %3d of %3d (%s)\n", k, c[0], c[1], seen)
	}
	fmt.Fprintf(w, "artifacts in %s: mask.png (+ names), brf.json, sample maps; try:\n  segad score --mask %s --model %s --map detector=%s --threshold %.3f\n",
		o.out, maskPath, modelPath, filepath.Join(o.out, fmt.Sprintf("map_0_%s.npy", kinds[0])), threshold)
	return nil
}
