package fit

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/segad-edge/segad-edge/assurance/drift"
	"github.com/segad-edge/segad-edge/bundle"
)

// DriftReference is the bundle's drift.json: per feature, the quantile
// bins (drift.DefaultBins) of the good training rows and their shares,
// and the calibrated false-reject rate of th's promise. The monitor on the
// line compares passed parts with it (assurance/drift). Bad rows (real,
// synthetic or from the history) never enter it: the reference is what a
// good part looks like.
func DriftReference(d *Dataset, th bundle.Threshold) (*bundle.DriftReference, error) {
	var good []int
	for i, s := range d.Samples {
		if !s.Bad {
			good = append(good, i)
		}
	}
	if len(good) == 0 {
		return nil, fmt.Errorf("drift reference: no good training rows")
	}
	ref := &bundle.DriftReference{Format: bundle.DriftFormatVersion, Created: time.Now().UTC().Truncate(time.Second),
		Good: len(good), Bins: drift.DefaultBins, FRRSource: th.Calibration}
	if p := th.Promise; p != nil {
		ref.ExpectedFRR = p.FPR
		if p.FPRCI != nil {
			ref.ExpectedFRRHigh = p.FPRCI.High
		}
	}
	vals := make([]float64, len(good))
	for c, name := range d.Features {
		seg, det, stat, ok := SplitFeature(name, d.Detectors)
		if !ok {
			continue // the classifier's score: not a per-segment statistic
		}
		for j, i := range good {
			vals[j] = float64(d.Rows[i*d.NCols+c])
		}
		edges, shares, nan := drift.Distribution(vals, drift.DefaultBins)
		ref.Features = append(ref.Features, bundle.DriftFeature{Name: name, Segment: seg, Detector: det, Stat: stat,
			Edges: edges, Shares: shares, NaN: nan})
	}
	if err := ref.Check(); err != nil {
		return nil, fmt.Errorf("drift reference: %w", err)
	}
	return ref, nil
}

// SplitFeature splits a feature name into segment, detector and statistic:
// "wires.fine.mean" is (wires, fine, mean), "fine.max" is ("", fine, max).
// Detector names are matched whole (a segment name may hold dots); ok is
// false for a name of no detector (the classifier's score).
func SplitFeature(name string, detectors []string) (segment, detector, stat string, ok bool) {
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return "", "", "", false
	}
	rest, stat := name[:dot], name[dot+1:]
	for _, d := range detectors {
		if stat == "max" && rest == d {
			return "", d, stat, true
		}
		if strings.HasSuffix(rest, "."+d) && stat != "max" {
			return rest[:len(rest)-len(d)-1], d, stat, true
		}
	}
	return "", "", "", false
}

// writeDrift writes the bundle's drift.json from the forest's training
// rows (td: what the forest saw, so the reference and the forest agree on
// what good is).
func writeDrift(dir string, td *Dataset, th bundle.Threshold, log *slog.Logger) error {
	ref, err := DriftReference(td, th)
	if err != nil {
		return err
	}
	if err := bundle.WriteDrift(dir, ref); err != nil {
		return err
	}
	log.Info("drift reference written", "file", bundle.DriftFile, "features", len(ref.Features), "good", ref.Good, "expected_false_reject_rate", ref.ExpectedFRR)
	if ref.Good < drift.MinReferenceGood {
		log.Warn("drift reference from few good parts: the line's drift alarm may raise false alarms; fit with more good parts (docs/assurance.md)",
			"good", ref.Good, "recommended", drift.MinReferenceGood)
	}
	return nil
}
