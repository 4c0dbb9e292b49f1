// Package bundle reads and writes the model bundle folder that `segad fit`
// produces and the daemon loads: the XGBoost JSON forest (model.json) and a
// manifest (manifest.json) recording what the forest was trained with, so
// that a forest is never scored with other detectors or another mask than
// the ones its features came from.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside a bundle folder.
const (
	ModelFile    = "model.json"
	ManifestFile = "manifest.json"
)

// FormatVersion is the manifest schema version this package writes; Load
// refuses newer ones rather than misreading them.
const FormatVersion = 1

// Manifest is manifest.json: everything needed to check that a running
// configuration computes the same features the forest was trained on, and to
// reproduce the training.
type Manifest struct {
	// Format is the manifest schema version (FormatVersion).
	Format int `json:"format"`
	// Tool and ToolVersion name the program that wrote the bundle.
	Tool        string `json:"tool"`
	ToolVersion string `json:"tool_version"`
	// XGBoostVersion is the libxgboost that trained the forest.
	XGBoostVersion string `json:"xgboost_version"`
	// Created is when the bundle was written (UTC).
	Created time.Time `json:"created"`
	// Features are the feature names in the forest's column order.
	Features []string `json:"features"`
	// Detectors are the K detectors in feature order.
	Detectors []Detector `json:"detectors"`
	// Extra names the classifier feature after the maxima ("" when none).
	Extra string `json:"extra,omitempty"`
	// Mask identifies the segmentation at the detectors' map size.
	Mask Mask `json:"mask"`
	// Params are the XGBoost parameters as passed to the library.
	Params map[string]string `json:"params"`
	// Rounds is the number of boosting rounds.
	Rounds int `json:"rounds"`
	// Seed is the base seed (subset choice, synthetic defects, XGBoost).
	Seed int `json:"seed"`
	// Data counts the training images.
	Data Counts `json:"data"`
	// Threshold is the suggested decision threshold and its operating points.
	Threshold Threshold `json:"threshold"`
	// Baseline holds, per detector, the "detector alone" thresholds (map
	// maximum) at the same recalls, so `segad eval` can report the baseline's
	// per-type recall the same way.
	Baseline map[string][]OperatingPoint `json:"baseline,omitempty"`
	// Synthetic records how synthetic defects were made (kinds, shares,
	// severity bounds, kept and rejected per kind); its schema is the fit
	// package's SyntheticReport, kept opaque here so bundle does not depend
	// on fit. Absent when no synthetic defects were used.
	Synthetic json.RawMessage `json:"synthetic,omitempty"`
	// History records the rows taken from the line's results history
	// (`segad fit --history`); absent when none were. Data counts them too.
	History *HistorySource `json:"history,omitempty"`
}

// Detector is one detector as the forest saw it.
type Detector struct {
	// Name is the detector name (it prefixes its feature names).
	Name string `json:"name"`
	// Model is the ONNX file's base name (informative; paths move).
	Model string `json:"model,omitempty"`
	// SHA256 is the hex sha256 of the ONNX file ("" when trained from
	// precomputed maps, where no model file is known).
	SHA256 string `json:"sha256,omitempty"`
}

// Mask identifies the segmentation.
type Mask struct {
	// Source is the configured mask (file base name or builtin:...).
	Source string `json:"source"`
	// Hash is segad.Mask.Hash() at the map size.
	Hash string `json:"hash"`
	// Width and Height are the map size the hash was taken at.
	Width  int `json:"width"`
	Height int `json:"height"`
	// Segments are the segment names in label order.
	Segments []string `json:"segments"`
}

// Counts are the training data counts.
type Counts struct {
	// Good and Bad count the images per class that trained the forest.
	Good int `json:"good"`
	Bad  int `json:"bad"`
	// BadTypes counts bad images per defect type (sub-folder of --bad, or
	// "synthetic"); eval calls types absent here "unseen".
	BadTypes map[string]int `json:"bad_types"`
	// Synthetic counts bad images made from good ones (one-class mode).
	Synthetic int `json:"synthetic,omitempty"`
	// Skipped counts unreadable images skipped with --skip-bad-images.
	Skipped int `json:"skipped,omitempty"`
}

// Threshold is the suggested threshold and the operating points it was
// chosen among.
type Threshold struct {
	// Suggested is the raw-margin score at and above which a part fails.
	Suggested float64 `json:"suggested"`
	// Recall is the recall Suggested keeps on the calibration data.
	Recall float64 `json:"recall"`
	// Calibration says which scores the points come from: "out-of-fold"
	// (each row scored by a forest that did not train on it: honest),
	// "training" (the shipped forest's own training rows: optimistic, only
	// on request) or "history" (labelled results of the line).
	Calibration string `json:"calibration"`
	// Folds is the number of stratified folds of an out-of-fold
	// calibration; FoldsNote says why when it is fewer than asked.
	Folds     int    `json:"folds,omitempty"`
	FoldsNote string `json:"folds_note,omitempty"`
	// Budget is the budget that chose Suggested (absent in bundles written
	// before budgets existed: then it was the first recall of Points).
	Budget *Budget `json:"budget,omitempty"`
	// Promise is the suggested operating point with its calibration counts
	// and confidence intervals: what `segad eval` checks on held-out parts.
	Promise *OperatingPoint `json:"promise,omitempty"`
	// Interval names the confidence interval method of every *_ci field
	// ("clopper-pearson": exact binomial) and Confidence its level (0.95).
	Interval   string  `json:"interval,omitempty"`
	Confidence float64 `json:"confidence,omitempty"`
	// Good and Bad count the calibration parts the rates are shares of.
	Good int `json:"good,omitempty"`
	Bad  int `json:"bad,omitempty"`
	// Points are the operating points of the requested budgets (default
	// recall 0.95 and 0.99).
	Points []OperatingPoint `json:"points"`
	// Table is every achievable operating point worth choosing (one per
	// step of the calibration data's recall / false-reject staircase, from
	// the strictest threshold to the most lenient; thinned to a few dozen
	// rows on large data), for a technician to pick from.
	Table []OperatingPoint `json:"table,omitempty"`
	// Warning says why these numbers should not be trusted, when they
	// should not (in-sample calibration, a budget that was not met).
	Warning string `json:"warning,omitempty"`
}

// Budget is what a plant asks of the threshold: an escape budget (keep at
// least this recall) or a yield budget (fail at most this share of the good
// parts).
type Budget struct {
	// Kind is BudgetRecall or BudgetMaxFalseReject.
	Kind string `json:"kind"`
	// Value is the recall to keep or the false-reject rate not to exceed.
	Value float64 `json:"value"`
}

// Budget kinds.
const (
	BudgetRecall         = "recall"
	BudgetMaxFalseReject = "max_false_reject"
)

// String renders a budget as its flag ("recall 0.95").
func (b Budget) String() string {
	return fmt.Sprintf("%s %g", b.Kind, b.Value)
}

// OperatingPoint is one threshold with its recall and false-positive
// (false-reject) rate on the calibration data.
type OperatingPoint struct {
	Recall    float64 `json:"recall"`
	Threshold float64 `json:"threshold"`
	// FPR is the false-reject rate: the share of good parts scoring at or
	// above Threshold.
	FPR float64 `json:"fpr"`
	// Budget is the budget this point answers (requested points only).
	Budget *Budget `json:"budget,omitempty"`
	// Counts are the calibration counts behind Recall and FPR.
	Counts *PointCounts `json:"counts,omitempty"`
	// RecallCI and FPRCI are confidence intervals of the true recall and
	// false-reject rate given Counts (Threshold.Interval, .Confidence).
	RecallCI *Interval `json:"recall_ci,omitempty"`
	FPRCI    *Interval `json:"fpr_ci,omitempty"`
	// Met is false when the budget could not be met on the calibration
	// data (the point is then the closest one); absent otherwise.
	Met *bool `json:"met,omitempty"`
}

// PointCounts are the calibration counts at one threshold.
type PointCounts struct {
	// Caught of Bad bad parts score at or above the threshold.
	Caught int `json:"caught"`
	Bad    int `json:"bad"`
	// Rejected of Good good parts score at or above the threshold.
	Rejected int `json:"rejected"`
	Good     int `json:"good"`
}

// Interval is a two-sided confidence interval of a share.
type Interval struct {
	Low  float64 `json:"low"`
	High float64 `json:"high"`
}

// Bundle is a loaded bundle folder.
type Bundle struct {
	// Dir is the bundle folder.
	Dir string
	// ModelPath is the forest file (Dir/model.json).
	ModelPath string
	// Manifest is the parsed manifest.json.
	Manifest *Manifest
	// ManifestPath is Dir/manifest.json, for messages.
	ManifestPath string
	// Threshold is the suggested threshold (Manifest.Threshold.Suggested);
	// 0 when HasThreshold is false.
	Threshold float64
	// HasThreshold tells whether manifest.json has threshold.suggested at
	// all. Without it Threshold is a zero value, not a calibrated
	// threshold: use SuggestedThreshold, which refuses.
	HasThreshold bool
}

// SuggestedThreshold returns the suggested threshold, or an error naming
// manifest.json when it has none: a missing threshold must never become
// threshold 0 (the daemon would then judge parts against a number nobody
// chose, and fail open for every score below it).
func (b *Bundle) SuggestedThreshold() (float64, error) {
	if !b.HasThreshold {
		return 0, fmt.Errorf("bundle %s: %s has no threshold.suggested, so the bundle gives no threshold (judging against 0 would be a guess): re-run `segad fit` to write a complete bundle, or set segad.threshold explicitly", b.Dir, b.ManifestPath)
	}
	return b.Threshold, nil
}

// Write creates dir (if needed) and writes model.json and manifest.json.
// Each file is written to a temporary name and renamed, so a crash never
// leaves a half-written bundle that the daemon would load.
func Write(dir string, model []byte, m *Manifest) error {
	if len(model) == 0 {
		return fmt.Errorf("write bundle %s: empty model", dir)
	}
	if m.Format == 0 {
		m.Format = FormatVersion
	}
	if err := m.check(); err != nil {
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write bundle %s: manifest: %w", dir, err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{ModelFile, model}, {ManifestFile, append(mj, '\n')}} {
		if err := writeAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("write bundle %s: %w", dir, err)
		}
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Load reads a bundle folder and checks the manifest is complete. It does
// not parse the forest (brf.Load does, from ModelPath).
func Load(dir string) (*Bundle, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("load bundle: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("load bundle %s: not a folder (a bundle is the folder `segad fit -o` wrote)", dir)
	}
	mp := filepath.Join(dir, ManifestFile)
	data, err := readManifest(mp)
	if err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("load bundle: parse %s: %w", mp, err)
	}
	// Threshold.Suggested is a float64: absent and 0 look alike after
	// decoding. Ask the JSON itself.
	var presence struct {
		Threshold *struct {
			Suggested *float64 `json:"suggested"`
		} `json:"threshold"`
	}
	if err := json.Unmarshal(data, &presence); err != nil {
		return nil, fmt.Errorf("load bundle: parse %s: %w", mp, err)
	}
	if m.Format > FormatVersion {
		return nil, fmt.Errorf("load bundle: %s has format %d, this segad reads up to %d: upgrade segad", mp, m.Format, FormatVersion)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("load bundle: %s: %w", mp, err)
	}
	model := filepath.Join(dir, ModelFile)
	if _, err := os.Stat(model); err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", dir, err)
	}
	has := presence.Threshold != nil && presence.Threshold.Suggested != nil
	return &Bundle{Dir: dir, ModelPath: model, ManifestPath: mp, Manifest: &m, Threshold: m.Threshold.Suggested, HasThreshold: has}, nil
}

// check rejects manifests that cannot be verified or used.
func (m *Manifest) check() error {
	var errs []error
	if len(m.Detectors) == 0 {
		errs = append(errs, errors.New("no detectors"))
	}
	if len(m.Features) == 0 {
		errs = append(errs, errors.New("no feature names"))
	}
	if m.Mask.Hash == "" {
		errs = append(errs, errors.New("no mask hash"))
	}
	if t := m.Threshold.Suggested; math.IsNaN(t) || math.IsInf(t, 0) {
		errs = append(errs, fmt.Errorf("suggested threshold %v is not finite", t))
	}
	// The features must be what K detectors and L segments give: 4*L*K
	// statistics, K maxima and at most one extra (classifier) feature. A
	// list edited by hand or written by another tool is refused here,
	// before anything is scored with it.
	if L, K := len(m.Mask.Segments), len(m.Detectors); L > 0 && K > 0 && len(m.Features) > 0 {
		if want := 4*L*K + K; len(m.Features) != want && len(m.Features) != want+1 {
			errs = append(errs, fmt.Errorf("lists %d features, but %d detectors and %d segments give %d (4 per segment and detector, 1 maximum per detector, plus 1 with a classifier)",
				len(m.Features), K, L, want))
		}
	}
	seen := make(map[string]int, len(m.Features))
	for i, f := range m.Features {
		if j, dup := seen[f]; dup {
			errs = append(errs, fmt.Errorf("feature %d %q is also feature %d: names must be unique", i, f, j))
			break
		}
		seen[f] = i
	}
	return errors.Join(errs...)
}

// maxManifestBytes bounds manifest.json: a real one is a few KB (a few
// hundred feature names and operating points).
const maxManifestBytes = 16 << 20

// readManifest reads manifest.json, refusing anything but a regular file
// of bounded size.
func readManifest(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Size() > maxManifestBytes {
		return nil, fmt.Errorf("%s is %d bytes: a manifest is at most %d", path, st.Size(), maxManifestBytes)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxManifestBytes {
		return nil, fmt.Errorf("%s grew past %d bytes while being read", path, maxManifestBytes)
	}
	return data, nil
}

// VerifyFeatures checks that the running configuration computes the
// features the forest was trained on, by name and position: the forest
// reads features by column, so a list that differs (segments renamed or
// reordered, detectors swapped, a classifier added or removed) would score
// every part with the wrong inputs. The error names the first difference.
func VerifyFeatures(m *Manifest, names []string) error {
	n := min(len(m.Features), len(names))
	for i := 0; i < n; i++ {
		if m.Features[i] != names[i] {
			return fmt.Errorf("feature %d is %q in the manifest but %q in this configuration (the forest reads features by position; %d features in the manifest, %d here)",
				i, m.Features[i], names[i], len(m.Features), len(names))
		}
	}
	switch {
	case len(m.Features) > n:
		return fmt.Errorf("the manifest lists %d features, this configuration computes %d: the first missing one is feature %d %q",
			len(m.Features), len(names), n, m.Features[n])
	case len(names) > n:
		return fmt.Errorf("the manifest lists %d features, this configuration computes %d: the first extra one is feature %d %q",
			len(m.Features), len(names), n, names[n])
	}
	return nil
}

// Verify checks that a running configuration matches the bundle: the same
// detectors in the same order, the same model files (by sha256) and the same
// mask (segad.Mask.Hash at the map size). The error names the first
// difference of each kind. detectorModelPaths may be nil to skip the file
// check (e.g. when features come from precomputed maps).
func Verify(m *Manifest, detectorNames, detectorModelPaths []string, maskHash string) error {
	var errs []error
	if len(detectorNames) != len(m.Detectors) {
		errs = append(errs, fmt.Errorf("the bundle was trained with %d detectors (%s) but the config has %d (%s)",
			len(m.Detectors), strings.Join(m.DetectorNames(), ", "), len(detectorNames), strings.Join(detectorNames, ", ")))
	} else {
		for i, n := range detectorNames {
			if want := m.Detectors[i].Name; n != want {
				errs = append(errs, fmt.Errorf("detector %d is %q in the bundle but %q in the config (features are in detector order)", i+1, want, n))
				continue
			}
			if detectorModelPaths == nil || m.Detectors[i].SHA256 == "" {
				continue
			}
			if i >= len(detectorModelPaths) {
				errs = append(errs, fmt.Errorf("detector %s: no model file given", n))
				continue
			}
			sum, err := FileSHA256(detectorModelPaths[i])
			if err != nil {
				errs = append(errs, fmt.Errorf("detector %s: %w", n, err))
				continue
			}
			if sum != m.Detectors[i].SHA256 {
				errs = append(errs, fmt.Errorf("detector %s model file changed: sha256 %s is %s, the bundle was trained with %s: retrain with `segad fit`",
					n, detectorModelPaths[i], short(sum), short(m.Detectors[i].SHA256)))
			}
		}
	}
	if maskHash != m.Mask.Hash {
		errs = append(errs, fmt.Errorf("mask differs: the bundle was trained with mask %s (hash %s, segments %s) but the config's mask hashes to %s: use the same mask or retrain",
			m.Mask.Source, short(m.Mask.Hash), strings.Join(m.Mask.Segments, ","), short(maskHash)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("bundle does not match the configuration: %w", errors.Join(errs...))
	}
	return nil
}

// DetectorNames returns the detector names in feature order.
func (m *Manifest) DetectorNames() []string {
	out := make([]string, len(m.Detectors))
	for i, d := range m.Detectors {
		out[i] = d.Name
	}
	return out
}

// FileSHA256 returns the hex sha256 of a file's contents.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash model file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash model file %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// short abbreviates a hex hash for messages.
func short(h string) string {
	if len(h) > 12 {
		return h[:12] + ".."
	}
	return h
}
