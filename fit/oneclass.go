package fit

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"

	"github.com/segad-edge/segad-edge/metrics"
)

// DefaultKinds are the kinds --synthetic-defects draws when --kinds is not
// given: the setting chosen on validation data only (leave-one-kind-out on
// validation/good, docs/fit.md), which on the tire was the paper's kinds
// with the severity band 0.5..2. The richer kinds stay one flag away.
var DefaultKinds = []string{KindBlur, KindRect, KindThin}

// SyntheticOptions control synthetic defects made from good images.
type SyntheticOptions struct {
	// N is the number of synthetic defects to keep (0: none).
	N int
	// Kinds are the kinds drawn, N split evenly among them (default
	// DefaultKinds).
	Kinds []string
	// Seed seeds every defect: defect i of kind k is a function of (Seed, k,
	// i) and the good images alone.
	Seed int
	// Severity keeps only defects whose maps look like real ones.
	Severity Severity
	// Weight is each synthetic row's training weight when real bad images
	// are present too (mixed low-shot mode); 0 weighs the synthetic rows
	// together as much as the real bad ones (n_real_bad / n_synthetic each).
	// One-class rows weigh 1.
	Weight float64
	// BankSize bounds the texture bank (good images kept in memory as
	// texture and CutPaste sources; default 64, drawn by seed).
	BankSize int
	// Bounds, when set, are used instead of bounds computed from the good
	// rows (eval applies the bundle's, so kinds are scored as trained).
	Bounds *SeverityBounds
}

// Severity bounds a synthetic defect's map maxima relative to the good
// images' (the forest's own good rows, i.e. the validation split). Maps
// often have an offset (PatchCore's nearest-neighbour distances never reach
// 0), so the scale is the good images' own: with m the median and q the
// Quantile of the good maxima, a level L means m + L*(q - m), i.e. L = 1 is
// the good q99.5 and L = 2 lies as far above it as it lies above the median.
// A defect is kept when at least one detector's map maximum reaches level
// Low and no detector's exceeds level High. That
// keeps defects out that no detector sees (nothing to learn) and defects so
// loud that the map maximum alone separates them (the forest would learn
// "max > t", i.e. the detector alone).
type Severity struct {
	// Off keeps every defect.
	Off bool
	// Quantile of the good rows' map maxima (default 0.995).
	Quantile float64
	// Low and High are levels on that scale (defaults 0.5 and 2, chosen
	// with the kinds on validation data; Low may be negative or 0, the
	// median).
	Low, High float64
	// LowSet says Low was given (0 is a valid level).
	LowSet bool
	// MaxTries is the number of candidates drawn per kept defect before a
	// kind gives up (default 10).
	MaxTries int
}

func (s *Severity) defaults() {
	if s.Quantile == 0 {
		s.Quantile = 0.995
	}
	if s.Low == 0 && !s.LowSet {
		s.Low = 0.5
	}
	if s.High == 0 {
		s.High = 2
	}
	if s.MaxTries == 0 {
		s.MaxTries = 10
	}
}

// SyntheticReport records how the synthetic defects were made; it goes into
// the bundle manifest ("synthetic") and fit's summary.
type SyntheticReport struct {
	// Requested is N; Kept the defects actually used.
	Requested int `json:"requested"`
	Kept      int `json:"kept"`
	// Kinds are the kinds drawn, in seeding order.
	Kinds []string `json:"kinds"`
	// Seed is the synthetic defects' seed.
	Seed int `json:"seed"`
	// Bank is the number of good images in the texture bank.
	Bank int `json:"texture_bank"`
	// Weight is each synthetic row's training weight.
	Weight float64 `json:"weight"`
	// Severity is the filter applied (nil: none).
	Severity *SeverityBounds `json:"severity,omitempty"`
	// PerKind counts per kind.
	PerKind map[string]*KindReport `json:"per_kind"`
}

// SeverityBounds are the map-maximum bounds per detector a kept defect met.
type SeverityBounds struct {
	Quantile float64 `json:"quantile"`
	Low      float64 `json:"low"`
	High     float64 `json:"high"`
	// Good is the Quantile of the good rows' maxima per detector, Median
	// their median; Min and Max the bounds (levels Low and High).
	Good   map[string]float64 `json:"good"`
	Median map[string]float64 `json:"median"`
	Min    map[string]float64 `json:"min"`
	Max    map[string]float64 `json:"max"`
	// detectors in feature order, for verdict.
	det []string
}

// KindReport counts one kind's candidates.
type KindReport struct {
	// Share is the kind's share of the kept defects.
	Share float64 `json:"share"`
	// Quota is what the kind was asked for, Kept what it delivered.
	Quota int `json:"quota"`
	Kept  int `json:"kept"`
	// TooWeak and TooStrong count candidates the severity filter rejected.
	TooWeak   int `json:"rejected_too_weak"`
	TooStrong int `json:"rejected_too_strong"`
}

// NewSeverityBounds computes the bounds from the good rows of d.
func NewSeverityBounds(d *Dataset, s Severity) (*SeverityBounds, error) {
	s.defaults()
	b := &SeverityBounds{Quantile: s.Quantile, Low: s.Low, High: s.High, Good: map[string]float64{},
		Median: map[string]float64{}, Min: map[string]float64{}, Max: map[string]float64{}, det: d.Detectors}
	for k, n := range d.Detectors {
		var good []float64
		for i, smp := range d.Samples {
			if !smp.Bad {
				good = append(good, float64(d.Max[i*len(d.Detectors)+k]))
			}
		}
		if len(good) == 0 {
			return nil, errors.New("severity bounds need good images")
		}
		q, m := metrics.Quantile(good, s.Quantile), metrics.Quantile(good, 0.5)
		if !(q > m) {
			return nil, fmt.Errorf("severity bounds: detector %s's good maps have equal median and q%.1f maxima (%g): no scale to measure defects on (use --severity off)", n, 100*s.Quantile, q)
		}
		b.Good[n], b.Median[n] = q, m
		b.Min[n], b.Max[n] = m+s.Low*(q-m), m+s.High*(q-m)
	}
	return b, nil
}

// ForDetectors binds bounds read back from a manifest to the detectors in
// feature order (an error names a detector without bounds).
func (b *SeverityBounds) ForDetectors(names []string) error {
	for _, n := range names {
		if _, ok := b.Min[n]; !ok {
			return fmt.Errorf("severity bounds have no detector %s", n)
		}
		if _, ok := b.Max[n]; !ok {
			return fmt.Errorf("severity bounds have no detector %s", n)
		}
	}
	b.det = names
	return nil
}

// Verdict says whether a defect with these map maxima (feature order) is
// too weak (-1), in range (0) or too strong (+1).
func (b *SeverityBounds) Verdict(max []float32) int {
	seen := false
	for k, n := range b.det {
		v := float64(max[k])
		if v > b.Max[n] {
			return 1
		}
		if v >= b.Min[n] {
			seen = true
		}
	}
	if !seen {
		return -1
	}
	return 0
}

// Candidate computes synthetic defect i of kind (a pure function of the
// seed, kind, i and the good images) into row and max.
type Candidate func(kind string, i int, row, max []float32) (Defect, string, error)

// quotas splits n among kinds (the first n%len kinds get one more).
func quotas(n int, kinds []string) map[string]int {
	q := map[string]int{}
	for i, k := range kinds {
		q[k] = n / len(kinds)
		if i < n%len(kinds) {
			q[k]++
		}
	}
	return q
}

// AddSynthetic draws o.N defects through cand, keeps those within the
// severity bounds (computed from d's good rows), appends them to d, and
// weights them (see SyntheticOptions.Weight). The same options and data
// give the same rows.
func AddSynthetic(d *Dataset, o SyntheticOptions, cand Candidate, bar func(), log *slog.Logger) (*SyntheticReport, error) {
	if log == nil {
		log = slog.Default()
	}
	kinds := o.Kinds
	if len(kinds) == 0 {
		kinds = DefaultKinds
	}
	rep := &SyntheticReport{Requested: o.N, Kinds: kinds, Seed: o.Seed, PerKind: map[string]*KindReport{}}
	sev := o.Severity
	sev.defaults()
	bounds := o.Bounds
	if bounds != nil {
		if len(bounds.det) != len(d.Detectors) {
			return nil, fmt.Errorf("severity bounds for %d detectors, data has %d", len(bounds.det), len(d.Detectors))
		}
		rep.Severity = bounds
	} else if !sev.Off {
		var err error
		if bounds, err = NewSeverityBounds(d, sev); err != nil {
			return nil, err
		}
		rep.Severity = bounds
	}
	q := quotas(o.N, kinds)
	row := make([]float32, d.NCols)
	max := make([]float32, len(d.Detectors))
	start := d.Len()
	for _, k := range kinds {
		kr := &KindReport{Quota: q[k]}
		rep.PerKind[k] = kr
		tries := q[k]
		if bounds != nil {
			tries *= sev.MaxTries
		}
		for i := 0; i < tries && kr.Kept < kr.Quota; i++ {
			def, src, err := cand(k, i, row, max)
			if err != nil {
				return nil, fmt.Errorf("synthetic %s defect %d: %w", k, i, err)
			}
			if bounds != nil {
				switch bounds.Verdict(max) {
				case -1:
					kr.TooWeak++
					continue
				case 1:
					kr.TooStrong++
					continue
				}
			}
			kr.Kept++
			if bar != nil {
				bar()
			}
			d.add(Sample{Path: fmt.Sprintf("%s#synthetic-%s-%d-seg%d", src, k, i, def.Segment), Bad: true, Type: SyntheticType, Kind: k}, row, max)
		}
		rep.Kept += kr.Kept
		if kr.Kept < kr.Quota {
			log.Warn("synthetic defects: a kind delivered fewer defects in the severity range than asked",
				"kind", k, "kept", kr.Kept, "quota", kr.Quota, "too_weak", kr.TooWeak, "too_strong", kr.TooStrong)
		}
	}
	if rep.Kept == 0 {
		return nil, fmt.Errorf("no synthetic defect of kinds %v landed in the severity range (%s): widen it with --severity-low/--severity-high or turn it off", kinds, bounds)
	}
	for _, k := range kinds {
		rep.PerKind[k].Share = float64(rep.PerKind[k].Kept) / float64(rep.Kept)
	}
	// Weights: one-class rows weigh 1; next to real bad images the
	// synthetic ones together weigh as much as the real ones unless told.
	nReal := 0
	for _, s := range d.Samples[:start] {
		if s.Bad {
			nReal++
		}
	}
	rep.Weight = 1
	if nReal > 0 {
		rep.Weight = o.Weight
		if rep.Weight == 0 {
			rep.Weight = float64(nReal) / float64(rep.Kept)
		}
		d.SetWeights(func(s Sample) float32 {
			if s.Kind != "" {
				return float32(rep.Weight)
			}
			return 1
		})
	}
	return rep, nil
}

// String renders the bounds for errors and logs.
func (b *SeverityBounds) String() string {
	if b == nil {
		return "no severity filter"
	}
	s := ""
	for _, n := range b.det {
		s += fmt.Sprintf("%s max in [%.4g, %.4g] ", n, b.Min[n], b.Max[n])
	}
	return s + "for at least one detector, none above"
}

// SetWeights sets every row's training weight from its sample.
func (d *Dataset) SetWeights(w func(Sample) float32) {
	d.Weights = make([]float32, d.Len())
	for i, s := range d.Samples {
		d.Weights[i] = w(s)
	}
}

// KindMetrics are per-kind results: each synthetic kind (made from the
// held-out good images) against the held-out good images.
type KindMetrics struct {
	// N is the number of defects of the kind scored.
	N int `json:"n"`
	// SegAD is the forest's AUROC and recall at the bundle's threshold.
	SegAD KindScore `json:"segad"`
	// Baseline is the same per detector alone (map maximum).
	Baseline map[string]KindScore `json:"baseline"`
}

// KindScore is one score's AUROC on a kind and the kind's recall at the
// score's threshold.
type KindScore struct {
	AUROC  float64 `json:"auroc"`
	Recall float64 `json:"recall"`
}

// perKind scores each synthetic kind in d against d's good rows.
func perKind(d *Dataset, scores []float64, baselines map[string][]float64, thr float64, baseThr map[string]float64) map[string]KindMetrics {
	kinds := map[string][]int{}
	var good []int
	for i, s := range d.Samples {
		if s.Kind != "" {
			kinds[s.Kind] = append(kinds[s.Kind], i)
		} else if !s.Bad {
			good = append(good, i)
		}
	}
	one := func(sc []float64, idx []int, t float64) KindScore {
		var v []float64
		var lab []bool
		hit := 0
		for _, i := range good {
			v, lab = append(v, sc[i]), append(lab, false)
		}
		for _, i := range idx {
			v, lab = append(v, sc[i]), append(lab, true)
			if sc[i] >= t {
				hit++
			}
		}
		a, err := metrics.AUROC(v, lab)
		if err != nil {
			a = math.NaN()
		}
		return KindScore{AUROC: a, Recall: float64(hit) / float64(len(idx))}
	}
	out := map[string]KindMetrics{}
	ks := make([]string, 0, len(kinds))
	for k := range kinds {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		m := KindMetrics{N: len(kinds[k]), SegAD: one(scores, kinds[k], thr), Baseline: map[string]KindScore{}}
		for n, bs := range baselines {
			m.Baseline[n] = one(bs, kinds[k], baseThr[n])
		}
		out[k] = m
	}
	return out
}

// hasKind reports whether kinds holds k.
func hasKind(kinds []string, k string) bool { return slices.Contains(kinds, k) }
