package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"
)

// DriftFile is the drift reference inside a bundle folder: the training
// distribution of good parts that the line's drift monitor compares passed
// parts with (docs/assurance.md). It is a file of its own, not a manifest
// field, so bundles written before it existed load unchanged (their drift
// monitor is then off) and the manifest stays small.
const DriftFile = "drift.json"

// DriftFormatVersion is the drift.json schema version this package writes;
// LoadDrift refuses newer ones rather than misreading them.
const DriftFormatVersion = 1

// ErrNoDrift is returned (wrapped) by LoadDrift for a bundle without
// drift.json: one written before `segad fit` wrote drift references.
var ErrNoDrift = errors.New("the bundle has no drift reference (drift.json)")

// DriftReference is drift.json: per feature, the quantile bins of the good
// training parts and the share of those parts in each bin, plus the
// false-reject rate the threshold was calibrated to.
type DriftReference struct {
	// Format is the schema version (DriftFormatVersion).
	Format int `json:"format"`
	// Created is when `segad fit` wrote it (UTC).
	Created time.Time `json:"created"`
	// Good counts the good training parts the bins and shares come from.
	Good int `json:"good"`
	// Bins is the number of quantile bins asked for (fewer when values tie).
	Bins int `json:"bins"`
	// Features are the reference distributions, one per feature, in the
	// manifest's feature order.
	Features []DriftFeature `json:"features"`
	// ExpectedFRR is the calibrated false-reject rate at the suggested
	// threshold (manifest threshold.promise.fpr); ExpectedFRRHigh its upper
	// confidence bound (0 when the calibration gave none).
	ExpectedFRR     float64 `json:"expected_false_reject_rate"`
	ExpectedFRRHigh float64 `json:"expected_false_reject_rate_high,omitempty"`
	// FRRSource says where ExpectedFRR comes from (the calibration method).
	FRRSource string `json:"false_reject_source,omitempty"`
}

// DriftFeature is one feature's training distribution.
type DriftFeature struct {
	// Name is the feature name (as in the manifest: segment.detector.stat,
	// or detector.max).
	Name string `json:"name"`
	// Segment, Detector and Stat split the name (Segment is "" for a
	// whole-map feature such as the maximum).
	Segment  string `json:"segment,omitempty"`
	Detector string `json:"detector"`
	Stat     string `json:"stat"`
	// Edges are the ascending inner bin edges; a value v falls in bin i,
	// the number of edges below v (bins are (-inf, e0], (e0, e1], ...,
	// (e_last, +inf): numpy.searchsorted(edges, v, side="left")).
	Edges []float64 `json:"edges"`
	// Shares are the training parts' shares per bin (len(Edges)+1).
	Shares []float64 `json:"shares"`
	// NaN is the share of training parts whose value was missing (NaN:
	// skewness and kurtosis of a constant segment); the finite shares and
	// NaN sum to 1.
	NaN float64 `json:"nan,omitempty"`
}

// maxDriftBytes bounds drift.json: a few hundred features of a dozen bins
// are tens of KB.
const maxDriftBytes = 16 << 20

// WriteDrift writes dir/drift.json atomically (temporary name, rename).
func WriteDrift(dir string, r *DriftReference) error {
	if r.Format == 0 {
		r.Format = DriftFormatVersion
	}
	if err := r.Check(); err != nil {
		return fmt.Errorf("write drift reference %s: %w", filepath.Join(dir, DriftFile), err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write drift reference %s: %w", dir, err)
	}
	if err := writeAtomic(filepath.Join(dir, DriftFile), append(data, '\n')); err != nil {
		return fmt.Errorf("write drift reference: %w", err)
	}
	return nil
}

// LoadDrift reads dir/drift.json. A bundle without one gives an error
// wrapping ErrNoDrift (errors.Is), for a clear "drift monitoring off" line;
// a damaged or inconsistent file gives an error naming it and what is wrong.
func LoadDrift(dir string) (*DriftReference, error) {
	p := filepath.Join(dir, DriftFile)
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bundle %s: %w: re-run `segad fit` to write one", dir, ErrNoDrift)
	}
	if err != nil {
		return nil, fmt.Errorf("load drift reference: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() > maxDriftBytes {
		return nil, fmt.Errorf("load drift reference: %s is not a regular file of at most %d bytes", p, maxDriftBytes)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("load drift reference: %w", err)
	}
	var r DriftReference
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("load drift reference: parse %s: %w", p, err)
	}
	if r.Format > DriftFormatVersion {
		return nil, fmt.Errorf("load drift reference: %s has format %d, this segad reads up to %d: upgrade segad", p, r.Format, DriftFormatVersion)
	}
	if err := r.Check(); err != nil {
		return nil, fmt.Errorf("load drift reference: %s: %w", p, err)
	}
	return &r, nil
}

// Check rejects a reference that cannot be used: edges not ascending or not
// finite, shares that are not a distribution, rates outside [0, 1].
func (r *DriftReference) Check() error {
	if len(r.Features) == 0 {
		return errors.New("no features")
	}
	if r.Good <= 0 {
		return fmt.Errorf("good is %d: the reference needs the count of good training parts", r.Good)
	}
	for _, v := range []float64{r.ExpectedFRR, r.ExpectedFRRHigh} {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("expected false-reject rate %v is not a share in [0, 1]", v)
		}
	}
	seen := make(map[string]bool, len(r.Features))
	for i, f := range r.Features {
		if f.Name == "" || seen[f.Name] {
			return fmt.Errorf("feature %d: name %q is empty or repeated", i, f.Name)
		}
		seen[f.Name] = true
		if len(f.Shares) != len(f.Edges)+1 {
			return fmt.Errorf("feature %s: %d shares for %d edges, want %d", f.Name, len(f.Shares), len(f.Edges), len(f.Edges)+1)
		}
		for j, e := range f.Edges {
			if math.IsNaN(e) || math.IsInf(e, 0) || (j > 0 && e <= f.Edges[j-1]) {
				return fmt.Errorf("feature %s: edges must be finite and strictly ascending (edge %d is %v)", f.Name, j, e)
			}
		}
		sum := f.NaN
		for _, s := range append([]float64{f.NaN}, f.Shares...) {
			if !(s >= 0 && s <= 1) {
				return fmt.Errorf("feature %s: share %v is not in [0, 1]", f.Name, s)
			}
		}
		for _, s := range f.Shares {
			sum += s
		}
		if math.Abs(sum-1) > 1e-6 {
			return fmt.Errorf("feature %s: shares sum to %v, want 1", f.Name, sum)
		}
	}
	return nil
}
