package fit

import (
	"encoding/json"
	"fmt"
	"image/color"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
)

// EvaluateOptions are `segad eval`'s inputs.
type EvaluateOptions struct {
	// Bundle is the folder `segad fit` wrote.
	Bundle string
	// Config is the daemon configuration (its detectors and mask must match
	// the bundle's manifest).
	Config *config.Config
	// Good and Bad are the held-out image folders (or MapsCSV).
	Good, Bad, MapsCSV string
	// Report, when set, is a folder for histograms (PNG) and summary.md.
	Report string
	// Images: skipping unreadable images and progress. Images.Synthetic.N
	// > 0 also makes that many synthetic defects (of Images.Synthetic.Kinds)
	// from the held-out good images and reports each kind against them
	// (PerKind), kept only within the bundle's severity bounds when it has
	// them; they never enter the real-data metrics.
	Images ImageOptions
	// Log receives logs (default slog.Default()).
	Log *slog.Logger
}

// ScoreReport is one score's results on the held-out data.
type ScoreReport struct {
	AUROC      float64 `json:"auroc"`
	FPRAt95TPR float64 `json:"fpr_at_95tpr"`
	// Threshold is the one recall and FPR are measured at (the bundle's
	// suggested threshold; for a baseline, its threshold at the same recall
	// on the training data).
	Threshold float64 `json:"threshold"`
	Recall    float64 `json:"recall"`
	FPR       float64 `json:"fpr"`
	// RecallPerType is the share of each defect type's parts at or above
	// the threshold.
	RecallPerType map[string]float64 `json:"recall_per_type"`
}

// Evaluation is the JSON object `segad eval` prints.
type Evaluation struct {
	Bundle string `json:"bundle"`
	ScoreReport
	Counts EvaluationCounts `json:"counts"`
	// Baseline is "detector alone" (each detector's map maximum) per detector.
	Baseline map[string]ScoreReport `json:"baseline"`
	// UnseenTypes are defect types absent from the bundle's training data.
	UnseenTypes []string `json:"unseen_types"`
	// Promise sets the bundle's promised recall and false-reject rate at the
	// suggested threshold (calibration counts and intervals) next to what
	// these held-out parts measured.
	Promise *PromiseReport `json:"promise"`
	// Report is the report folder, when written.
	Report string `json:"report,omitempty"`
	// OneClass is true when the bundle's forest saw no real bad image.
	OneClass bool `json:"one_class"`
	// SyntheticTraining is the bundle's synthetic-defect record (kinds,
	// shares, severity bounds), when it used synthetic defects.
	SyntheticTraining *SyntheticReport `json:"synthetic_training,omitempty"`
	// PerKind scores synthetic defects of each kind made from the held-out
	// good images, SegAD next to each detector alone (EvaluateOptions.Images).
	PerKind map[string]KindMetrics `json:"per_synthetic_kind,omitempty"`
	// SyntheticEval records the held-out synthetic defects' making.
	SyntheticEval *SyntheticReport `json:"synthetic_eval,omitempty"`
}

// EvaluationCounts are the held-out data counts.
type EvaluationCounts struct {
	Good     int            `json:"good"`
	Bad      int            `json:"bad"`
	BadTypes map[string]int `json:"bad_types"`
	Skipped  int            `json:"skipped"`
}

// EvaluateBundle scores held-out data with a bundle and its configuration.
func EvaluateBundle(o EvaluateOptions) (*Evaluation, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	b, err := bundle.Load(o.Bundle)
	if err != nil {
		return nil, err
	}
	forest, err := brf.Load(b.ModelPath)
	if err != nil {
		return nil, err
	}
	var d, dsyn *Dataset
	if o.MapsCSV != "" {
		if o.Images.Synthetic.N > 0 {
			return nil, fmt.Errorf("eval: synthetic defects work on images, not on --maps")
		}
		names := b.Manifest.DetectorNames()
		samples, err := ReadMapsCSV(o.MapsCSV, names)
		if err != nil {
			return nil, err
		}
		var mask interface{ Hash() string }
		dd, m, err := MapsDataset(samples, names, o.Config.SegAD, o.Images.Progress, log)
		if err != nil {
			return nil, err
		}
		d, mask = dd, m
		if err := bundle.Verify(b.Manifest, cfgNames(o.Config), nil, mask.Hash()); err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
	} else {
		samples, err := ListImages(o.Good, o.Bad)
		if err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		f, err := NewFeaturizer(o.Config, log)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := bundle.Verify(b.Manifest, f.Detectors, f.ModelPaths, f.MaskHash); err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		syn := o.Images.Synthetic
		o.Images.Synthetic = SyntheticOptions{}
		if d, err = f.ImageDataset(samples, o.Images); err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		if syn.N > 0 {
			if dsyn, err = evalSynthetic(f, d, b.Manifest, syn, log); err != nil {
				return nil, fmt.Errorf("eval: %w", err)
			}
		}
	}
	if err := checkClasses(d.Samples, "the evaluation data"); err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	if err := brf.CheckFeatures(forest, d.NCols); err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	res := &Evaluation{Bundle: o.Bundle, Baseline: map[string]ScoreReport{}}
	res.Counts = EvaluationCounts{BadTypes: map[string]int{}, Skipped: len(d.Skipped)}
	seen := b.Manifest.Data.BadTypes
	unseen := map[string]bool{}
	for _, s := range d.Samples {
		if !s.Bad {
			res.Counts.Good++
			continue
		}
		res.Counts.Bad++
		res.Counts.BadTypes[s.Type]++
		if _, ok := seen[s.Type]; !ok && !unseen[s.Type] {
			unseen[s.Type] = true
			res.UnseenTypes = append(res.UnseenTypes, s.Type)
		}
	}
	thr, err := b.SuggestedThreshold()
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	scores := Score(forest, d)
	if res.ScoreReport, err = scoreReport(scores, d, thr); err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	res.Promise = MeasurePromise(b.Manifest.Threshold, thr, scores, d.Bad())
	baselines := map[string][]float64{}
	for k, n := range d.Detectors {
		thr := math.NaN()
		for _, p := range b.Manifest.Baseline[n] {
			if sameBudget(p, b.Manifest.Threshold) {
				thr = p.Threshold
			}
		}
		bs := BaselineScores(d, k)
		baselines[n] = bs
		if res.Baseline[n], err = scoreReport(bs, d, thr); err != nil {
			return nil, fmt.Errorf("eval: baseline %s: %w", n, err)
		}
	}
	res.OneClass = b.Manifest.Data.Bad > 0 && b.Manifest.Data.Bad == b.Manifest.Data.Synthetic
	if len(b.Manifest.Synthetic) > 0 {
		res.SyntheticTraining = &SyntheticReport{}
		if err := json.Unmarshal(b.Manifest.Synthetic, res.SyntheticTraining); err != nil {
			return nil, fmt.Errorf("eval: bundle's synthetic record: %w", err)
		}
	}
	if dsyn != nil {
		res.SyntheticEval = dsyn.Synthetic
		bt := map[string]float64{}
		bs := map[string][]float64{}
		for k, n := range dsyn.Detectors {
			bs[n] = BaselineScores(dsyn, k)
			bt[n] = res.Baseline[n].Threshold
		}
		res.PerKind = perKind(dsyn, Score(forest, dsyn), bs, res.Threshold, bt)
	}
	if o.Report != "" {
		if err := writeReport(o.Report, b, d, scores, baselines, res, unseen); err != nil {
			return nil, err
		}
		res.Report = o.Report
	}
	return res, nil
}

func cfgNames(c *config.Config) []string {
	out := make([]string, len(c.Detectors))
	for i, d := range c.Detectors {
		out[i] = d.Name
	}
	return out
}

func scoreReport(scores []float64, d *Dataset, thr float64) (ScoreReport, error) {
	m, err := metricsOf(scores, d.Bad())
	if err != nil {
		return ScoreReport{}, err
	}
	r := ScoreReport{AUROC: m.AUROC, FPRAt95TPR: m.FPRAt95TPR, Threshold: thr, RecallPerType: map[string]float64{}}
	var nb, ng, hitB, hitG int
	per, hit := map[string]int{}, map[string]int{}
	for i, s := range d.Samples {
		over := scores[i] >= thr
		if s.Bad {
			nb++
			per[s.Type]++
			if over {
				hitB++
				hit[s.Type]++
			}
		} else {
			ng++
			if over {
				hitG++
			}
		}
	}
	r.Recall, r.FPR = float64(hitB)/float64(nb), float64(hitG)/float64(ng)
	for t, n := range per {
		r.RecallPerType[t] = float64(hit[t]) / float64(n)
	}
	return r, nil
}

// writeReport writes one histogram per score (SegAD and each detector
// alone) like the paper's Fig. 6 and a Markdown summary.
func writeReport(dir string, b *bundle.Bundle, d *Dataset, scores []float64, baselines map[string][]float64, res *Evaluation, unseen map[string]bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := histogram(filepath.Join(dir, "segad.png"), "SegAD score (raw margin)", scores, d, unseen, res.Threshold); err != nil {
		return err
	}
	for _, n := range sortedKeys(baselines) {
		if err := histogram(filepath.Join(dir, "baseline-"+n+".png"), n+" alone (map maximum)", baselines[n], d, unseen, res.Baseline[n].Threshold); err != nil {
			return err
		}
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# SegAD evaluation\n\nBundle `%s` (trained %s on %d good / %d bad images, %d features), threshold %.4g at recall %.0f%% on %s data.\n\n",
		filepath.Base(b.Dir), b.Manifest.Created.Format("2006-01-02"), b.Manifest.Data.Good, b.Manifest.Data.Bad, len(b.Manifest.Features),
		b.Threshold, 100*b.Manifest.Threshold.Recall, b.Manifest.Threshold.Calibration)
	fmt.Fprintf(&md, "Held-out: %d good, %d bad", res.Counts.Good, res.Counts.Bad)
	if res.Counts.Skipped > 0 {
		fmt.Fprintf(&md, " (%d unreadable skipped)", res.Counts.Skipped)
	}
	md.WriteString(".\n\n| score | AUROC | FPR@95TPR | recall at threshold | FPR at threshold |\n|---|---|---|---|---|\n")
	row := func(name string, r ScoreReport) {
		fmt.Fprintf(&md, "| %s | %.3f | %.3f | %.3f | %.3f |\n", name, r.AUROC, r.FPRAt95TPR, r.Recall, r.FPR)
	}
	row("SegAD", res.ScoreReport)
	md.WriteString("\n")
	writePromise(&md, res.Promise)
	for _, n := range sortedKeys(res.Baseline) {
		row(n+" alone (max)", res.Baseline[n])
	}
	md.WriteString("\n| defect type | parts | in training | SegAD recall |")
	for _, n := range sortedKeys(res.Baseline) {
		fmt.Fprintf(&md, " %s recall |", n)
	}
	md.WriteString("\n|---|---|---|---|")
	for range res.Baseline {
		md.WriteString("---|")
	}
	md.WriteString("\n")
	for _, t := range sortedKeys(res.Counts.BadTypes) {
		in := "yes"
		if unseen[t] {
			in = "no"
		}
		fmt.Fprintf(&md, "| %s | %d | %s | %.3f |", t, res.Counts.BadTypes[t], in, res.RecallPerType[t])
		for _, n := range sortedKeys(res.Baseline) {
			fmt.Fprintf(&md, " %.3f |", res.Baseline[n].RecallPerType[t])
		}
		md.WriteString("\n")
	}
	md.WriteString("\n![SegAD scores](segad.png)\n")
	for _, n := range sortedKeys(baselines) {
		fmt.Fprintf(&md, "![%s alone](baseline-%s.png)\n", n, n)
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// histogram plots good, bad (types seen in training) and bad (unseen types)
// scores in three colours over shared bins, with the threshold as a line.
func histogram(path, title string, scores []float64, d *Dataset, unseen map[string]bool, thr float64) error {
	var groups [3]plotter.Values
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, s := range d.Samples {
		g := 0
		if s.Bad {
			g = 1
			if unseen[s.Type] {
				g = 2
			}
		}
		groups[g] = append(groups[g], scores[i])
		lo, hi = math.Min(lo, scores[i]), math.Max(hi, scores[i])
	}
	if hi <= lo {
		hi = lo + 1
	}
	const bins = 30
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "score"
	p.Y.Label.Text = "parts"
	names := [3]string{"good", "bad (type seen in training)", "bad (type unseen in training)"}
	colors := [3]color.NRGBA{{40, 160, 60, 150}, {220, 50, 40, 150}, {130, 60, 200, 150}}
	for g := range groups {
		if len(groups[g]) == 0 {
			continue
		}
		// One extra value at each end pins every group to the same bins; it
		// is then removed from the counts.
		vals := append(plotter.Values{lo, hi}, groups[g]...)
		h, err := plotter.NewHist(vals, bins)
		if err != nil {
			return fmt.Errorf("report %s: %w", path, err)
		}
		h.Bins[0].Weight--
		h.Bins[len(h.Bins)-1].Weight--
		h.FillColor = colors[g]
		h.LineStyle.Width = 0
		p.Add(h)
		p.Legend.Add(fmt.Sprintf("%s (%d)", names[g], len(groups[g])), h)
	}
	if !math.IsNaN(thr) {
		l, err := plotter.NewLine(plotter.XYs{{X: thr, Y: 0}, {X: thr, Y: float64(d.Len()) / 4}})
		if err == nil {
			l.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(l)
			p.Legend.Add("threshold", l)
		}
	}
	p.Legend.Top = true
	if err := p.Save(7*vg.Inch, 4*vg.Inch, path); err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	return nil
}

// evalSynthetic makes synthetic defects from d's good images with the
// bundle's severity bounds (when it recorded them) and returns them with
// those good rows.
func evalSynthetic(f *Featurizer, d *Dataset, m *bundle.Manifest, o SyntheticOptions, log *slog.Logger) (*Dataset, error) {
	var good []int
	var paths []string
	for i, s := range d.Samples {
		if !s.Bad {
			good = append(good, i)
			paths = append(paths, s.Path)
		}
	}
	ds := d.Subset(good)
	if len(m.Synthetic) > 0 && !o.Severity.Off {
		var tr SyntheticReport
		if err := json.Unmarshal(m.Synthetic, &tr); err != nil {
			return nil, fmt.Errorf("bundle's synthetic record: %w", err)
		}
		if tr.Severity != nil {
			if err := tr.Severity.ForDetectors(d.Detectors); err != nil {
				return nil, err
			}
			o.Bounds = tr.Severity
		}
	}
	cand, err := f.Candidates(paths, o)
	if err != nil {
		return nil, err
	}
	rep, err := AddSynthetic(ds, o, cand, nil, log)
	if err != nil {
		return nil, err
	}
	rep.Bank = bankSize(len(paths), o.BankSize)
	ds.Synthetic = rep
	return ds, nil
}
