package fit

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/metrics"
)

// Calibration methods (bundle.Threshold.Calibration).
const (
	// CalibrationOutOfFold scores every row with a forest trained without
	// it (stratified k-fold): the default, and the only honest one.
	CalibrationOutOfFold = "out-of-fold"
	// CalibrationTraining scores the training rows with the shipped forest
	// itself: optimistic (the forest has seen them), only on request.
	CalibrationTraining = "training"
	// CalibrationHistory scores are the line's own labelled results.
	CalibrationHistory = "history"
)

// DefaultCalibrationFolds is k of the out-of-fold calibration.
const DefaultCalibrationFolds = 5

// DefaultConfidence is the level of the operating points' intervals.
const DefaultConfidence = 0.95

// DefaultTableRows caps the operating-point table: a technician picks from
// a few dozen rows, and thinner steps than 1/40 of the range are noise at the
// sample sizes a line is calibrated on.
const DefaultTableRows = 40

// IntervalMethod names the interval every operating point carries.
const IntervalMethod = "clopper-pearson"

// CalibrateOptions say how `segad fit` chooses the suggested threshold.
type CalibrateOptions struct {
	// Method is CalibrationOutOfFold (default when "") or
	// CalibrationTraining.
	Method string
	// Folds is k of the out-of-fold calibration (default 5; fewer when a
	// class has fewer rows, see CalibrationFolds). With --cv K the
	// cross-validation's own out-of-fold scores are used instead.
	Folds int
	// MaxFalseReject are yield budgets: operating points failing at most
	// that share of the good parts.
	MaxFalseReject []float64
	// Primary is the budget kind that gives the suggested threshold:
	// bundle.BudgetRecall (the first of Options.Recalls, the default) or
	// bundle.BudgetMaxFalseReject (the first of MaxFalseReject). When both
	// kinds are given the command line decides (see cmd/segad fit).
	Primary string
	// Confidence is the intervals' level (default 0.95).
	Confidence float64
	// TableRows caps the table (default DefaultTableRows).
	TableRows int
}

// Budgets returns the requested budgets, the primary one first.
func Budgets(recalls, maxFalseReject []float64, primary string) ([]bundle.Budget, error) {
	var rs, fs []bundle.Budget
	for _, r := range recalls {
		if !(r > 0 && r <= 1) {
			return nil, fmt.Errorf("recall %v: want a share in (0, 1]", r)
		}
		rs = append(rs, bundle.Budget{Kind: bundle.BudgetRecall, Value: r})
	}
	for _, f := range maxFalseReject {
		if !(f >= 0 && f < 1) {
			return nil, fmt.Errorf("max false reject %v: want a share in [0, 1)", f)
		}
		fs = append(fs, bundle.Budget{Kind: bundle.BudgetMaxFalseReject, Value: f})
	}
	switch primary {
	case "", bundle.BudgetRecall:
		if len(rs) == 0 && len(fs) > 0 {
			return fs, nil
		}
		return append(rs, fs...), nil
	case bundle.BudgetMaxFalseReject:
		if len(fs) == 0 {
			return nil, errors.New("the false-reject budget gives the threshold but none was given (--max-false-reject)")
		}
		return append(fs, rs...), nil
	}
	return nil, fmt.Errorf("budget kind %q: want %s or %s", primary, bundle.BudgetRecall, bundle.BudgetMaxFalseReject)
}

// ClopperPearson returns the exact (Clopper-Pearson) two-sided confidence
// interval of a binomial share with k successes in n trials, as
// scipy.stats.binomtest(k, n).proportion_ci(conf, "exact"); the one
// implementation is metrics.ClopperPearson (the console's what-if uses it
// without importing fit). n = 0 gives [0, 1].
func ClopperPearson(k, n int, conf float64) bundle.Interval {
	lo, hi := metrics.ClopperPearson(k, n, conf)
	return bundle.Interval{Low: lo, High: hi}
}

// Wilson returns the Wilson score interval (no continuity correction) of k
// successes in n trials, as scipy.stats.binomtest(k, n).proportion_ci(conf,
// "wilson"). Narrower than Clopper-Pearson; its coverage is close to conf on
// average but can dip below it. n = 0 gives [0, 1].
func Wilson(k, n int, conf float64) bundle.Interval {
	if n <= 0 {
		return bundle.Interval{Low: 0, High: 1}
	}
	z := distuv.UnitNormal.Quantile(1 - (1-conf)/2)
	nf, p := float64(n), float64(k)/float64(n)
	den := 1 + z*z/nf
	c := (p + z*z/(2*nf)) / den
	h := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	return bundle.Interval{Low: math.Max(0, c-h), High: math.Min(1, c+h)}
}

// CalibrationFolds returns k for an out-of-fold calibration of nGood good
// and nBad bad rows when want folds are asked (0: 5): every fold must hold
// at least one row of each class, so k is at most the smaller class. note
// says why k is fewer than asked ("" when it is not). Fewer than 2 rows of
// a class leave no held-out row to score: an error that says what to do.
func CalibrationFolds(nGood, nBad, want int) (k int, note string, err error) {
	if want <= 0 {
		want = DefaultCalibrationFolds
	}
	if want < 2 {
		return 0, "", fmt.Errorf("out-of-fold calibration needs at least 2 folds, %d asked", want)
	}
	k = min(want, nGood, nBad)
	if k < 2 {
		return 0, "", fmt.Errorf("out-of-fold calibration needs at least 2 good and 2 bad images (one per fold), have %d good and %d bad: add images, or calibrate on the training rows with --calibration training (optimistic: the forest has seen them)", nGood, nBad)
	}
	if k < want {
		cls, n := "bad", nBad
		if nGood < nBad {
			cls, n = "good", nGood
		}
		note = fmt.Sprintf("%d folds instead of %d: only %d %s images, and every fold needs at least one of each class", k, want, n, cls)
	}
	return k, note, nil
}

// Table is an operating-point table computed from labelled scores.
type Table struct {
	// Good and Bad count the scored parts.
	Good int `json:"good"`
	Bad  int `json:"bad"`
	// Interval and Confidence describe every point's intervals.
	Interval   string  `json:"interval"`
	Confidence float64 `json:"confidence"`
	// Suggested is the point of the first budget.
	Suggested bundle.OperatingPoint `json:"suggested"`
	// Points are the requested budgets' points, in the order asked.
	Points []bundle.OperatingPoint `json:"points"`
	// Rows are the table (strictest threshold first).
	Rows []bundle.OperatingPoint `json:"table"`
	// Warnings say which budgets could not be met.
	Warnings []string `json:"warnings,omitempty"`
}

// SuggestFromLabelled computes the operating-point table of labelled scores
// (bad[i] true for a defective part) and the threshold of each budget, the
// first budget giving Suggested, with 95% Clopper-Pearson intervals and at
// most DefaultTableRows rows. Scores must be finite (a NaN score is a part
// the line could not judge: it belongs to no threshold) and both classes
// present.
func SuggestFromLabelled(scores []float64, bad []bool, budgets ...bundle.Budget) (*Table, error) {
	return OperatingTable(scores, bad, budgets, DefaultConfidence, DefaultTableRows)
}

// level is one distinct score with the cumulative counts at or above it.
type level struct {
	score            float64
	caught, rejected int
}

// OperatingTable is SuggestFromLabelled with the interval level and the
// row cap given.
//
// The rows are the corners of the recall / false-reject staircase: as the
// threshold is lowered through the distinct scores, a row is kept only when
// no other threshold catches as many bad parts with fewer false rejects, or
// more bad parts with as few (the Pareto front; at most min(good, bad)+1
// rows). A row's threshold lies halfway between its lowest failing score and
// the next lower score, so a new part scoring a little below a calibration
// defect still fails, and counting scores >= threshold on the calibration
// data gives the row's counts exactly. A recall budget takes the row with the
// fewest false rejects that keeps it; a false-reject budget the row with the
// most recall within it (or, when none is, the strictest row, marked
// Met=false with a warning).
func OperatingTable(scores []float64, bad []bool, budgets []bundle.Budget, conf float64, maxRows int) (*Table, error) {
	if len(scores) != len(bad) {
		return nil, fmt.Errorf("operating points: %d scores but %d labels", len(scores), len(bad))
	}
	if len(budgets) == 0 {
		return nil, errors.New("operating points: no budget (recall or max false reject) given")
	}
	if !(conf > 0 && conf < 1) {
		return nil, fmt.Errorf("operating points: confidence %v: want a share in (0, 1)", conf)
	}
	if maxRows < 2 {
		maxRows = DefaultTableRows
	}
	t := &Table{Interval: IntervalMethod, Confidence: conf}
	idx := make([]int, len(scores))
	var nonFinite []int
	for i, s := range scores {
		idx[i] = i
		if math.IsNaN(s) || math.IsInf(s, 0) {
			nonFinite = append(nonFinite, i)
		}
		if bad[i] {
			t.Bad++
		} else {
			t.Good++
		}
	}
	if len(nonFinite) > 0 {
		return nil, fmt.Errorf("operating points: %d of %d scores are not finite (first: row %d, %v): a part the line could not score belongs to no threshold; drop or re-score those rows", len(nonFinite), len(scores), nonFinite[0], scores[nonFinite[0]])
	}
	if t.Good == 0 || t.Bad == 0 {
		return nil, fmt.Errorf("operating points: %d good and %d bad parts: recall and false-reject rate need both", t.Good, t.Bad)
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	var lv []level
	var c, r int
	for j, i := range idx {
		if bad[i] {
			c++
		} else {
			r++
		}
		if j == len(idx)-1 || scores[idx[j+1]] != scores[i] {
			lv = append(lv, level{score: scores[i], caught: c, rejected: r})
		}
	}
	point := func(j int) bundle.OperatingPoint {
		l := lv[j]
		thr := l.score
		if j+1 < len(lv) {
			// Halfway to the next lower score; (a+b)/2 can round onto the
			// lower one when they are adjacent floats, which would fail it.
			if m := l.score/2 + lv[j+1].score/2; m > lv[j+1].score && m <= l.score {
				thr = m
			}
		}
		p := bundle.OperatingPoint{
			Threshold: thr,
			Recall:    float64(l.caught) / float64(t.Bad),
			FPR:       float64(l.rejected) / float64(t.Good),
			Counts:    &bundle.PointCounts{Caught: l.caught, Bad: t.Bad, Rejected: l.rejected, Good: t.Good},
		}
		rc, fc := ClopperPearson(l.caught, t.Bad, conf), ClopperPearson(l.rejected, t.Good, conf)
		p.RecallCI, p.FPRCI = &rc, &fc
		return p
	}
	// The Pareto front, as level indices (strictest first).
	var front []int
	for j := range lv {
		prev := 0
		if j > 0 {
			prev = lv[j-1].caught
		}
		newBad := lv[j].caught > prev
		nextGood := j == len(lv)-1 || lv[j+1].rejected > lv[j].rejected
		if newBad && nextGood {
			front = append(front, j)
		}
	}
	chosen := map[int]bool{}
	for bi, b := range budgets {
		var j int
		met := true
		switch b.Kind {
		case bundle.BudgetRecall:
			if !(b.Value > 0 && b.Value <= 1) {
				return nil, fmt.Errorf("operating points: recall %v: want a share in (0, 1]", b.Value)
			}
			j = front[len(front)-1]
			for _, f := range front {
				if float64(lv[f].caught) >= b.Value*float64(t.Bad)-1e-9 {
					j = f
					break
				}
			}
		case bundle.BudgetMaxFalseReject:
			if !(b.Value >= 0 && b.Value < 1) {
				return nil, fmt.Errorf("operating points: max false reject %v: want a share in [0, 1)", b.Value)
			}
			j, met = front[0], false
			for _, f := range front {
				if float64(lv[f].rejected) <= b.Value*float64(t.Good)+1e-9 {
					j, met = f, true
				}
			}
		default:
			return nil, fmt.Errorf("operating points: budget kind %q: want %s or %s", b.Kind, bundle.BudgetRecall, bundle.BudgetMaxFalseReject)
		}
		p := point(j)
		bb := b
		p.Budget = &bb
		if !met {
			p.Met = &met
			t.Warnings = append(t.Warnings, fmt.Sprintf("no threshold fails at most %.4g of the good parts while failing any part: the strictest threshold (%.6g) already fails %d of %d good parts (%.4g)",
				b.Value, p.Threshold, p.Counts.Rejected, t.Good, p.FPR))
		}
		chosen[j] = true
		t.Points = append(t.Points, p)
		if bi == 0 {
			t.Suggested = p
		}
	}
	// Thin the front to maxRows, evenly along it, keeping both ends and
	// every requested point.
	keep := front
	if len(front) > maxRows {
		even := map[int]bool{}
		for i := 0; i < maxRows; i++ {
			even[int(math.Round(float64(i)*float64(len(front)-1)/float64(maxRows-1)))] = true
		}
		keep = nil
		for i, f := range front {
			if even[i] || chosen[f] {
				keep = append(keep, f)
			}
		}
	}
	for _, f := range keep {
		t.Rows = append(t.Rows, point(f))
	}
	return t, nil
}

// Threshold renders the table as a manifest's threshold record.
func (t *Table) Threshold(method string) bundle.Threshold {
	p := t.Suggested
	th := bundle.Threshold{
		Suggested: p.Threshold, Recall: p.Recall, Calibration: method, Budget: p.Budget, Promise: &p,
		Interval: t.Interval, Confidence: t.Confidence, Good: t.Good, Bad: t.Bad, Points: t.Points, Table: t.Rows,
		Warning: strings.Join(t.Warnings, "; "),
	}
	return th
}

// calibrate chooses the bundle's threshold (Options.Calibrate): on
// out-of-fold scores of d (cv's when cross-validated, else a k-fold run of
// its own) or, on request, on the shipped forest's training rows td.
func calibrate(o Options, d, td *Dataset, forest brf.Model, cv *CVReport, log *slog.Logger) (bundle.Threshold, error) {
	c := o.Calibrate
	budgets, err := Budgets(o.Recalls, c.MaxFalseReject, c.Primary)
	if err != nil {
		return bundle.Threshold{}, err
	}
	if c.Confidence == 0 {
		c.Confidence = DefaultConfidence
	}
	var scores []float64
	var rows *Dataset
	var folds int
	var note, warning string
	switch c.Method {
	case "", CalibrationOutOfFold:
		c.Method = CalibrationOutOfFold
		rows = d
		if cv != nil && len(cv.OOFScores) == d.Len() {
			scores, folds = cv.OOFScores, cv.Folds
			note = fmt.Sprintf("the --cv %d folds' out-of-fold scores", cv.Folds)
		} else {
			var nGood, nBad int
			for _, b := range d.Bad() {
				if b {
					nBad++
				} else {
					nGood++
				}
			}
			if folds, note, err = CalibrationFolds(nGood, nBad, c.Folds); err != nil {
				return bundle.Threshold{}, err
			}
			log.Info("calibration: out-of-fold scores", "folds", folds, "good", nGood, "bad", nBad, "note", note)
			rep, err := CrossValidate(d, o.Train, folds, 1, o.BadLimit)
			if err != nil {
				return bundle.Threshold{}, fmt.Errorf("out-of-fold calibration: %w", err)
			}
			scores = rep.OOFScores
		}
	case CalibrationTraining:
		rows, scores = td, Score(forest, td)
		warning = "in-sample calibration: the forest scored its own training rows, so recall is overstated and false rejects understated on new parts; calibrate out-of-fold (the default) for a threshold you can promise"
		log.Warn("calibration on the training rows (--calibration training): the operating points are optimistic")
	default:
		return bundle.Threshold{}, fmt.Errorf("calibration %q: want %s or %s", c.Method, CalibrationOutOfFold, CalibrationTraining)
	}
	// Mixed mode: the promise is about real defects; synthetic ones trained
	// the forest but stay out of the table when real ones can calibrate it.
	bad := rows.Bad()
	var real, synth int
	for _, s := range rows.Samples {
		if s.Bad && s.Kind == "" && s.Type != SyntheticType {
			real++
		} else if s.Bad {
			synth++
		}
	}
	if real >= 2 && synth > 0 {
		var ks []float64
		var kb []bool
		for i, s := range rows.Samples {
			if !s.Bad || (s.Kind == "" && s.Type != SyntheticType) {
				ks, kb = append(ks, scores[i]), append(kb, bad[i])
			}
		}
		scores, bad = ks, kb
		note = strings.TrimPrefix(note+fmt.Sprintf("; %d synthetic defects left out of the table (real defects only)", synth), "; ")
	}
	if real == 0 && synth > 0 {
		note = strings.TrimPrefix(note+"; one-class: the bad rows are synthetic defects, so recall is promised for those, not for real defects", "; ")
	}
	t, err := OperatingTable(scores, bad, budgets, c.Confidence, c.TableRows)
	if err != nil {
		return bundle.Threshold{}, err
	}
	th := t.Threshold(c.Method)
	th.Folds, th.FoldsNote = folds, note
	if warning != "" {
		th.Warning = strings.TrimSuffix(warning+"; "+th.Warning, "; ")
	}
	for _, w := range t.Warnings {
		log.Warn("calibration: "+w, "budget", budgets[0].String())
	}
	return th, nil
}

// LabelledScore is one judged part with its label.
type LabelledScore struct {
	Score float64
	Bad   bool
}

// LabelledSource reads the labelled results of a line since a time: what
// `segad threshold suggest --history DB` computes its table from (the
// history store implements it).
type LabelledSource interface {
	LabelledScores(ctx context.Context, since time.Time) ([]LabelledScore, error)
}

// SuggestFromSource is SuggestFromLabelled on a source's results since a
// time.
func SuggestFromSource(ctx context.Context, src LabelledSource, since time.Time, budgets ...bundle.Budget) (*Table, error) {
	ls, err := src.LabelledScores(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("read labelled results: %w", err)
	}
	scores, bad := make([]float64, len(ls)), make([]bool, len(ls))
	for i, l := range ls {
		scores[i], bad[i] = l.Score, l.Bad
	}
	return SuggestFromLabelled(scores, bad, budgets...)
}

// ReadScoresCSV reads labelled scores: rows of score,label where label is
// 1/bad/true/fail or 0/good/false/pass; a first row that is not a number
// is a header. Columns are found by name (score, label) when a header names
// them.
func ReadScoresCSV(r io.Reader) ([]LabelledScore, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	si, li := 0, 1
	var out []LabelledScore
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("scores csv: %w", err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if line == 1 {
			if _, err := strconv.ParseFloat(strings.TrimSpace(rec[0]), 64); err != nil {
				for i, h := range rec {
					switch strings.ToLower(strings.TrimSpace(h)) {
					case "score":
						si = i
					case "label", "bad":
						li = i
					}
				}
				continue
			}
		}
		if si >= len(rec) || li >= len(rec) {
			return nil, fmt.Errorf("scores csv line %d: %d columns, want score and label", line, len(rec))
		}
		s, err := strconv.ParseFloat(strings.TrimSpace(rec[si]), 64)
		if err != nil {
			return nil, fmt.Errorf("scores csv line %d: score %q: %w", line, rec[si], err)
		}
		var b bool
		switch strings.ToLower(strings.TrimSpace(rec[li])) {
		case "1", "bad", "true", "fail", "ng":
			b = true
		case "0", "good", "false", "pass", "ok":
		default:
			return nil, fmt.Errorf("scores csv line %d: label %q: want 1/bad or 0/good", line, rec[li])
		}
		out = append(out, LabelledScore{Score: s, Bad: b})
	}
	return out, nil
}

// sameBudget tells whether a baseline point answers the threshold's budget
// (by recall in bundles written before budgets were recorded).
func sameBudget(p bundle.OperatingPoint, th bundle.Threshold) bool {
	if p.Budget != nil && th.Budget != nil {
		return *p.Budget == *th.Budget
	}
	return p.Budget == nil && th.Budget == nil && p.Recall == th.Recall
}

// Rates are recall and false-reject rate at one threshold, with counts and
// intervals when known.
type Rates struct {
	Recall        float64             `json:"recall"`
	RecallCI      *bundle.Interval    `json:"recall_ci,omitempty"`
	FalseReject   float64             `json:"false_reject"`
	FalseRejectCI *bundle.Interval    `json:"false_reject_ci,omitempty"`
	Counts        *bundle.PointCounts `json:"counts,omitempty"`
}

// PromiseReport sets what a bundle promised at its suggested threshold next
// to what held-out parts measured.
type PromiseReport struct {
	Threshold   float64        `json:"threshold"`
	Calibration string         `json:"calibration"`
	Budget      *bundle.Budget `json:"budget,omitempty"`
	// Interval and Confidence describe both sides' intervals.
	Interval   string  `json:"interval"`
	Confidence float64 `json:"confidence"`
	Promised   Rates   `json:"promised"`
	Measured   Rates   `json:"measured"`
	// Verdict is "kept" when the measured recall is at least the promised
	// interval's low end and the measured false-reject rate at most its
	// high end, else says which promise was broken.
	Verdict string `json:"verdict"`
}

// MeasurePromise measures a threshold record's promise at thr on labelled
// scores (held-out parts, or the line's labelled history).
func MeasurePromise(th bundle.Threshold, thr float64, scores []float64, bad []bool) *PromiseReport {
	conf := th.Confidence
	if conf == 0 {
		conf = DefaultConfidence
	}
	c := bundle.PointCounts{}
	for i, s := range scores {
		over := s >= thr
		if bad[i] {
			c.Bad++
			if over {
				c.Caught++
			}
		} else {
			c.Good++
			if over {
				c.Rejected++
			}
		}
	}
	r := &PromiseReport{Threshold: thr, Calibration: th.Calibration, Budget: th.Budget, Interval: IntervalMethod, Confidence: conf}
	rc, fc := ClopperPearson(c.Caught, c.Bad, conf), ClopperPearson(c.Rejected, c.Good, conf)
	r.Measured = Rates{Recall: float64(c.Caught) / float64(max(c.Bad, 1)), RecallCI: &rc,
		FalseReject: float64(c.Rejected) / float64(max(c.Good, 1)), FalseRejectCI: &fc, Counts: &c}
	if p := th.Promise; p != nil {
		r.Promised = Rates{Recall: p.Recall, RecallCI: p.RecallCI, FalseReject: p.FPR, FalseRejectCI: p.FPRCI, Counts: p.Counts}
	} else {
		// Bundles from before promises: the recorded recall and the first
		// point's rate, without intervals.
		r.Promised.Recall = th.Recall
		for _, p := range th.Points {
			if p.Threshold == th.Suggested {
				r.Promised.FalseReject = p.FPR
				break
			}
		}
	}
	var broken []string
	lowR, highF := r.Promised.Recall, r.Promised.FalseReject
	if r.Promised.RecallCI != nil {
		lowR = r.Promised.RecallCI.Low
	}
	if r.Promised.FalseRejectCI != nil {
		highF = r.Promised.FalseRejectCI.High
	}
	if r.Measured.Recall < lowR {
		broken = append(broken, fmt.Sprintf("recall %.3f below the promised %.3f (interval low %.3f)", r.Measured.Recall, r.Promised.Recall, lowR))
	}
	if r.Measured.FalseReject > highF {
		broken = append(broken, fmt.Sprintf("false-reject rate %.3f above the promised %.3f (interval high %.3f)", r.Measured.FalseReject, r.Promised.FalseReject, highF))
	}
	r.Verdict = "kept"
	if len(broken) > 0 {
		r.Verdict = "broken: " + strings.Join(broken, "; ")
	}
	if th.Calibration == CalibrationTraining {
		r.Verdict += " (the promise was calibrated in-sample, on the training rows)"
	}
	return r
}

// writePromise renders a PromiseReport as a Markdown table.
func writePromise(md *strings.Builder, p *PromiseReport) {
	if p == nil {
		return
	}
	ci := func(v float64, iv *bundle.Interval) string {
		if iv == nil {
			return fmt.Sprintf("%.3f", v)
		}
		return fmt.Sprintf("%.3f [%.3f, %.3f]", v, iv.Low, iv.High)
	}
	fmt.Fprintf(md, "Promise at threshold %.4g (calibration: %s; %.0f%% %s intervals): **%s**.\n\n", p.Threshold, p.Calibration, 100*p.Confidence, p.Interval, p.Verdict)
	md.WriteString("| | recall | false-reject rate |\n|---|---|---|\n")
	fmt.Fprintf(md, "| promised | %s | %s |\n", ci(p.Promised.Recall, p.Promised.RecallCI), ci(p.Promised.FalseReject, p.Promised.FalseRejectCI))
	fmt.Fprintf(md, "| measured | %s | %s |\n", ci(p.Measured.Recall, p.Measured.RecallCI), ci(p.Measured.FalseReject, p.Measured.FalseRejectCI))
}
