package fit

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/history"
)

// Default least numbers of labelled rows per class `segad fit --history`
// trains on: the out-of-fold calibration needs one of each class per fold
// (5 folds), and a forest from fewer parts than this is a guess.
const (
	DefaultHistoryMinGood = 10
	DefaultHistoryMinBad  = 5
)

// HistoryPrefix prefixes a history row's sample path: "history:" + result ID.
const HistoryPrefix = "history:"

// HistoryInput are labelled results of the line with their recorded
// feature rows (`segad fit --history DB [--since T]`): training data
// without images, alone or added to the image (or maps) data.
type HistoryInput struct {
	// Path names the database in the manifest (a PostgreSQL URL without
	// its password).
	Path string
	// Since is the --since bound (zero: all of the history).
	Since time.Time
	// Read is when the history was read (default now).
	Read time.Time
	// Rows are the labelled production results' feature rows
	// (history.Store.LabelledFeatures).
	Rows *history.LabelledFeatures
	// MinGood and MinBad are the least good and bad rows the training data
	// must hold, history and images together (defaults
	// DefaultHistoryMinGood, DefaultHistoryMinBad).
	MinGood, MinBad int
}

// historyDataset turns the history's rows into a dataset with the given
// feature order (the configuration's: the model's feature names), refusing
// rows recorded with another order and naming the first difference.
func historyDataset(h *HistoryInput, features, detectors []string) (*Dataset, *bundle.HistorySource, error) {
	lf := h.Rows
	if lf == nil {
		lf = &history.LabelledFeatures{}
	}
	src := &bundle.HistorySource{Path: h.Path, Read: h.Read, BadTypes: map[string]int{}, NoFeatures: lf.NoFeatures, Bundles: map[string]int{}}
	if src.Read.IsZero() {
		src.Read = time.Now().UTC().Truncate(time.Second)
	}
	if !h.Since.IsZero() {
		s := h.Since.UTC()
		src.Since = &s
	}
	d := &Dataset{Features: features, Detectors: detectors, NCols: len(features)}
	if len(lf.Rows) == 0 {
		return d, src, nil
	}
	if i := firstNameDifference(lf.Names, features); i >= 0 {
		at := func(ns []string) string {
			if i < len(ns) {
				return fmt.Sprintf("%q", ns[i])
			}
			return "absent"
		}
		return nil, nil, fmt.Errorf("the history's feature rows do not match the configuration: feature %d is %s in the history (%d features, newest result %s) but %s in the configuration (%d features): the line recorded them with other detectors, mask or extractor; give the configuration the line ran with, or --since after the change",
			i, at(lf.Names), len(lf.Names), lf.Rows[0].ID, at(features), len(features))
	}
	// The per-detector map maxima (the baseline's scores) are features
	// themselves ("<detector>.max"), as on the line.
	maxCol := make([]int, len(detectors))
	for k, det := range detectors {
		maxCol[k] = -1
		for j, n := range features {
			if n == det+".max" {
				maxCol[k] = j
			}
		}
	}
	row := make([]float32, d.NCols)
	mx := make([]float32, len(detectors))
	// Oldest first, like a folder listing: the row order does not depend on
	// how the history pages.
	for i := len(lf.Rows) - 1; i >= 0; i-- {
		r := &lf.Rows[i]
		for j, v := range r.Values {
			row[j] = float32(v)
		}
		for k, det := range detectors {
			mx[k] = float32(math.NaN())
			if v, ok := r.MapMax[det]; ok {
				mx[k] = float32(v)
			} else if maxCol[k] >= 0 {
				mx[k] = row[maxCol[k]]
			}
		}
		s := Sample{Path: HistoryPrefix + r.ID, Bad: r.Bad}
		if r.Bad {
			s.Type = r.DefectType
			if s.Type == "" {
				s.Type = UnspecifiedType
			}
			src.Bad++
			src.BadTypes[s.Type]++
		} else {
			src.Good++
		}
		if r.Bundle != "" {
			src.Bundles[r.Bundle]++
		}
		if src.Oldest.IsZero() || r.DecidedAt.Before(src.Oldest) {
			src.Oldest = r.DecidedAt.UTC()
		}
		if r.DecidedAt.After(src.Newest) {
			src.Newest = r.DecidedAt.UTC()
		}
		d.add(s, row, mx)
	}
	if len(src.Bundles) == 0 {
		src.Bundles = nil
	}
	return d, src, nil
}

func firstNameDifference(a, b []string) int {
	for i := 0; i < max(len(a), len(b)); i++ {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}

// checkHistoryCounts refuses training data with fewer good or bad rows than
// the minimum, saying how many there are (history and images) and how many
// are needed.
func checkHistoryCounts(d *Dataset, h *HistoryInput, src *bundle.HistorySource) error {
	minGood, minBad := h.MinGood, h.MinBad
	if minGood <= 0 {
		minGood = DefaultHistoryMinGood
	}
	if minBad <= 0 {
		minBad = DefaultHistoryMinBad
	}
	var good, bad int
	for _, s := range d.Samples {
		if s.Bad {
			bad++
		} else {
			good++
		}
	}
	if good >= minGood && bad >= minBad {
		return nil
	}
	since := "all of it"
	if src.Since != nil {
		since = "since " + src.Since.Format(time.RFC3339)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "too few labelled parts to train on: the history %s (%s) holds %d good and %d bad labelled production results with a feature row",
		src.Path, since, src.Good, src.Bad)
	if src.NoFeatures > 0 {
		fmt.Fprintf(&b, " (%d more labelled without a feature row)", src.NoFeatures)
	}
	if ig, ib := good-src.Good, bad-src.Bad; ig > 0 || ib > 0 {
		fmt.Fprintf(&b, ", the images %d good and %d bad", ig, ib)
	}
	fmt.Fprintf(&b, "; training needs at least %d good and %d bad (--min-good, --min-bad): label more results (segad results label), widen --since, or add --good/--bad images", minGood, minBad)
	return fmt.Errorf("%s", b.String())
}

// historyTypes lists a source's defect types for logs.
func historyTypes(src *bundle.HistorySource) string {
	var ts []string
	for _, k := range sortedKeys(src.BadTypes) {
		ts = append(ts, fmt.Sprintf("%s=%d", k, src.BadTypes[k]))
	}
	sort.Strings(ts)
	return strings.Join(ts, ",")
}
