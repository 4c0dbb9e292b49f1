// Package fit trains and evaluates SegAD's boosted random forest from
// labelled images (or precomputed anomaly maps): it lists the data, computes
// feature rows with exactly the code the line runs (model.Model.Features),
// trains the forest with libxgboost, chooses a threshold, writes a model
// bundle, and measures held-out performance against the detector-alone
// baseline.
package fit

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// SyntheticType is the defect type of images made by --synthetic-defects.
const SyntheticType = "synthetic"

// UnspecifiedType is the defect type of bad images lying directly in the
// --bad folder rather than in a defect-type sub-folder.
const UnspecifiedType = "bad"

// Sample is one labelled image (or set of maps).
type Sample struct {
	// Path is the image file (or the CSV's filepath column).
	Path string
	// Maps are the precomputed map files, one per detector (maps mode only).
	Maps []string
	// Bad is the label: true for a defective part.
	Bad bool
	// Type is the defect type ("" for good parts).
	Type string
	// Kind is the synthetic defect kind ("" for real images).
	Kind string
}

var imageExt = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".bmp": true, ".tif": true, ".tiff": true}

// listImages returns the image files directly in dir, sorted.
func listImages(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() || !imageExt[strings.ToLower(filepath.Ext(e.Name()))] {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	sort.Strings(out)
	return out, nil
}

// ListImages lists a labelled image dataset: every image directly in good,
// and every image in bad's sub-folders (the sub-folder name is the defect
// type) or directly in bad (type "bad"). bad may be "" (one-class mode).
// Sub-folders are followed through symlinks, so a dataset can be assembled
// from links without copying images.
func ListImages(good, bad string) ([]Sample, error) {
	if good == "" {
		return nil, errors.New("no --good folder given")
	}
	gs, err := listImages(good)
	if err != nil {
		return nil, fmt.Errorf("list good images: %w", err)
	}
	if len(gs) == 0 {
		return nil, fmt.Errorf("good folder %s holds no images (png, jpg, bmp, tif)", good)
	}
	out := make([]Sample, 0, len(gs))
	for _, p := range gs {
		out = append(out, Sample{Path: p})
	}
	if bad == "" {
		return out, nil
	}
	direct, err := listImages(bad)
	if err != nil {
		return nil, fmt.Errorf("list bad images: %w", err)
	}
	nBad := 0
	for _, p := range direct {
		out = append(out, Sample{Path: p, Bad: true, Type: UnspecifiedType})
		nBad++
	}
	ents, _ := os.ReadDir(bad)
	for _, e := range ents {
		sub := filepath.Join(bad, e.Name())
		if st, err := os.Stat(sub); err != nil || !st.IsDir() {
			continue
		}
		ps, err := listImages(sub)
		if err != nil {
			return nil, fmt.Errorf("list bad images of type %s: %w", e.Name(), err)
		}
		for _, p := range ps {
			out = append(out, Sample{Path: p, Bad: true, Type: e.Name()})
			nBad++
		}
	}
	if nBad == 0 {
		return nil, fmt.Errorf("bad folder %s holds no images, directly or in defect-type sub-folders", bad)
	}
	return out, nil
}

// ReadMapsCSV reads the reference repository's layout: a CSV with a header
// naming the columns filepath, label (0 good, 1 bad) and the map column(s):
// an_map_path for one detector, or an_map_path_<detector> per detector for
// K > 1 (in the given detector order). An optional defect_type column names
// the defect type. Relative paths are relative to the CSV's folder.
func ReadMapsCSV(path string, detectors []string) ([]Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read maps CSV: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("read maps CSV %s: header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(h)] = i
	}
	need := func(name string) (int, error) {
		i, ok := col[name]
		if !ok {
			return 0, fmt.Errorf("maps CSV %s: no %q column (header: %s)", path, name, strings.Join(head, ","))
		}
		return i, nil
	}
	fpCol, err := need("filepath")
	if err != nil {
		return nil, err
	}
	labelCol, err := need("label")
	if err != nil {
		return nil, err
	}
	mapCols := make([]int, len(detectors))
	for k, d := range detectors {
		name := "an_map_path_" + d
		if len(detectors) == 1 {
			if _, ok := col["an_map_path"]; ok {
				name = "an_map_path"
			}
		}
		if mapCols[k], err = need(name); err != nil {
			return nil, err
		}
	}
	typeCol, hasType := col["defect_type"]
	dir := filepath.Dir(path)
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	var out []Sample
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("maps CSV %s: %w", path, err)
		}
		lab, err := strconv.Atoi(strings.TrimSpace(rec[labelCol]))
		if err != nil || (lab != 0 && lab != 1) {
			return nil, fmt.Errorf("maps CSV %s line %d: label %q: want 0 (good) or 1 (bad)", path, line, rec[labelCol])
		}
		s := Sample{Path: rec[fpCol], Bad: lab == 1}
		for _, c := range mapCols {
			s.Maps = append(s.Maps, abs(strings.TrimSpace(rec[c])))
		}
		if s.Bad {
			s.Type = UnspecifiedType
			if hasType && strings.TrimSpace(rec[typeCol]) != "" {
				s.Type = strings.TrimSpace(rec[typeCol])
			}
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("maps CSV %s has no rows", path)
	}
	return out, nil
}

// checkClasses errs unless both classes are present (training needs both).
func checkClasses(ss []Sample, what string) error {
	var g, b int
	for _, s := range ss {
		if s.Bad {
			b++
		} else {
			g++
		}
	}
	if g == 0 || b == 0 {
		return fmt.Errorf("%s holds %d good and %d bad images: both classes are needed (give --bad DIR, or --synthetic-defects N to make defects from good images)", what, g, b)
	}
	return nil
}
