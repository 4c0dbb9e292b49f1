// Package golden is the golden-sample challenge (assurance.golden): a
// folder of known good and known bad parts, each with the verdict the line
// must give it, run through the line's own model on purpose. A camera
// knocked out of focus, an ageing lamp, a wrong mask or a bundle trained
// for other parts all show up as golden images judged wrongly, which the
// production parts alone would never reveal.
//
// The set is a folder holding either a manifest (golden.yaml) or the
// layout `segad fit` reads: good/*.png and bad/<defect type>/*.png. Load
// reads every image once through capture's guarded reader, so a corrupt
// or hostile file is a configuration error at start, not a crash or a
// challenge that fails for a reason no camera could cause. Run judges
// each image with a function the daemon passes in (the line's
// model.Inspector path) and summarises.
package golden

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/result"
)

// ManifestName is the manifest file of a golden folder; when present it
// alone says which images belong to the set.
const ManifestName = "golden.yaml"

// MaxImages bounds a golden set: a challenge runs every image through the
// detectors, and beyond a few hundred it would hold the line's CPU for
// minutes while saying nothing more.
const MaxImages = 1000

// maxManifestBytes bounds golden.yaml (a line per image is far less).
const maxManifestBytes = 1 << 20

// imageExts are the file types the folder layout picks up (OpenCV's
// decoders behind capture's guarded reader).
var imageExts = []string{".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

// Image is one golden image and what the line must say about it.
type Image struct {
	// File is the path relative to the set's folder (slash-separated); it
	// names the image in summaries, logs and the history's part ID.
	File string `json:"file"`
	// Path is the file on disk.
	Path string `json:"-"`
	// Expect is the verdict the line must give: pass or fail.
	Expect result.Verdict `json:"expected"`
	// Type is the defect type of a bad image (its bad/ sub-folder), for
	// the reader; the forest does not name types, so it is not compared.
	Type string `json:"type,omitempty"`
}

// Set is a loaded golden folder.
type Set struct {
	// Dir is the folder the set was loaded from.
	Dir string
	// Images are the golden images in a stable order.
	Images []Image
}

// manifest is golden.yaml.
type manifest struct {
	Images []struct {
		File   string `yaml:"file"`
		Expect string `yaml:"expect"`
		Type   string `yaml:"type"`
	} `yaml:"images"`
}

// Load reads a golden folder: golden.yaml when present, else good/ and
// bad/<type>/. Every image is decoded once through capture's guarded
// reader (capture.limits apply), so an empty, missing, corrupt or
// oversized file is an error naming it.
func Load(dir string) (*Set, error) {
	if dir == "" {
		return nil, errors.New("assurance.golden.dir is empty")
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("golden set %s: %w (assurance.golden.dir: give a folder with good/ and bad/<type>/ or %s)", dir, err, ManifestName)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("golden set %s is not a folder (assurance.golden.dir: give a folder with good/ and bad/<type>/ or %s)", dir, ManifestName)
	}
	s := &Set{Dir: dir}
	if _, err := os.Stat(filepath.Join(dir, ManifestName)); err == nil {
		err = s.loadManifest()
		if err != nil {
			return nil, err
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		if err := s.loadFolders(); err != nil {
			return nil, err
		}
	} else {
		return nil, fmt.Errorf("golden set %s: %w", dir, err)
	}
	if len(s.Images) == 0 {
		return nil, fmt.Errorf("golden set %s holds no images: put known good parts in good/ and known bad ones in bad/<type>/ (png, jpg, bmp, tif), or list them in %s", dir, ManifestName)
	}
	if len(s.Images) > MaxImages {
		return nil, fmt.Errorf("golden set %s holds %d images, more than %d: a challenge runs every image through the detectors; keep a few per defect type", dir, len(s.Images), MaxImages)
	}
	for _, im := range s.Images {
		m, err := capture.ReadImage(im.Path)
		if err != nil {
			return nil, fmt.Errorf("golden set %s: image %s cannot be read: %w (replace or remove it)", dir, im.File, err)
		}
		m.Close()
	}
	return s, nil
}

func (s *Set) loadManifest() error {
	path := filepath.Join(s.Dir, ManifestName)
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("golden manifest %s: %w", path, err)
	}
	if !st.Mode().IsRegular() || st.Size() > maxManifestBytes {
		return fmt.Errorf("golden manifest %s: not a regular file of at most %d bytes", path, maxManifestBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("golden manifest %s: %w", path, err)
	}
	var m manifest
	if err := yaml.UnmarshalWithOptions(data, &m, yaml.Strict()); err != nil {
		return fmt.Errorf("golden manifest %s: %w (want images: [{file: good/1.png, expect: pass}, {file: bad/crack/1.png, expect: fail, type: crack}])", path, err)
	}
	seen := map[string]bool{}
	for i, e := range m.Images {
		where := fmt.Sprintf("golden manifest %s: images[%d]", path, i)
		if e.File == "" {
			return fmt.Errorf("%s: file is missing", where)
		}
		rel := filepath.Clean(filepath.FromSlash(e.File))
		if filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return fmt.Errorf("%s: file %q lies outside the golden folder: give a path inside %s", where, e.File, s.Dir)
		}
		var v result.Verdict
		switch e.Expect {
		case "pass", "good":
			v = result.VerdictPass
		case "fail", "bad":
			v = result.VerdictFail
		default:
			return fmt.Errorf("%s (%s): expect %q: want pass or fail", where, e.File, e.Expect)
		}
		name := filepath.ToSlash(rel)
		if seen[name] {
			return fmt.Errorf("%s: %s is listed twice", where, name)
		}
		seen[name] = true
		s.Images = append(s.Images, Image{File: name, Path: filepath.Join(s.Dir, rel), Expect: v, Type: e.Type})
	}
	return nil
}

func (s *Set) loadFolders() error {
	good, err := listImages(s.Dir, "good")
	if err != nil {
		return err
	}
	for _, f := range good {
		s.Images = append(s.Images, Image{File: f, Path: filepath.Join(s.Dir, f), Expect: result.VerdictPass})
	}
	badDir := filepath.Join(s.Dir, "bad")
	entries, err := os.ReadDir(badDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("golden set %s: %w", s.Dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue // bad/ holds one folder per defect type
		}
		files, err := listImages(s.Dir, filepath.Join("bad", e.Name()))
		if err != nil {
			return err
		}
		for _, f := range files {
			s.Images = append(s.Images, Image{File: f, Path: filepath.Join(s.Dir, f), Expect: result.VerdictFail, Type: e.Name()})
		}
	}
	return nil
}

// listImages lists the image files of dir/sub (not recursive), sorted,
// as slash paths relative to dir; a missing sub-folder is empty.
func listImages(dir, sub string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, sub))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("golden set %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if !e.Type().IsRegular() || !slices.Contains(imageExts, strings.ToLower(filepath.Ext(e.Name()))) {
			continue
		}
		out = append(out, filepath.ToSlash(filepath.Join(sub, e.Name())))
		if len(out) > MaxImages {
			break // Load reports the count; no need to list a flooded folder
		}
	}
	slices.Sort(out)
	return out, nil
}

// ImageResult is how the line judged one golden image.
type ImageResult struct {
	File     string         `json:"file"`
	Expected result.Verdict `json:"expected"`
	Type     string         `json:"type,omitempty"`
	Verdict  result.Verdict `json:"verdict"`
	// Score is the model's raw margin; nil when the image was not scored.
	Score *float64 `json:"score"`
	// Threshold is the threshold the score was compared with.
	Threshold float64 `json:"threshold"`
	// OK is true when the verdict is the expected one.
	OK bool `json:"ok"`
	// Reason says why an image is not OK, or the line's own reason.
	Reason string `json:"reason,omitempty"`
	// ResultID is the result recorded in the history (kind golden).
	ResultID string `json:"result_id,omitempty"`
}

// Summary is one challenge.
type Summary struct {
	// At is when the challenge started.
	At time.Time `json:"at"`
	// Trigger says what started it: start, schedule, http, mqtt.
	Trigger string `json:"trigger"`
	// Passed is true when every image got its expected verdict.
	Passed bool `json:"passed"`
	// Seconds is how long the challenge took.
	Seconds float64       `json:"seconds"`
	Images  []ImageResult `json:"images"`
	// Failing names the images judged wrongly.
	Failing []string `json:"failing"`
	// Error is set when the challenge could not run to the end (the
	// daemon stopping); such a challenge has not passed.
	Error string `json:"error,omitempty"`
}

// Judge inspects one golden image through the line's model and returns the
// result (never nil verdict: an image that cannot be judged is an error
// verdict, which counts as wrong).
type Judge func(ctx context.Context, im Image) result.Result

// Run judges every image of s in order and summarises. It stops early
// (not passed, Error set) when ctx ends.
func Run(ctx context.Context, s *Set, trigger string, judge Judge) Summary {
	sum := Summary{At: time.Now().UTC(), Trigger: trigger, Images: make([]ImageResult, 0, len(s.Images)), Failing: []string{}}
	for _, im := range s.Images {
		if err := ctx.Err(); err != nil {
			sum.Error = fmt.Sprintf("challenge stopped after %d of %d images: %v", len(sum.Images), len(s.Images), err)
			break
		}
		r := judge(ctx, im)
		ir := Compare(im, r)
		sum.Images = append(sum.Images, ir)
		if !ir.OK {
			sum.Failing = append(sum.Failing, im.File)
		}
	}
	sum.Passed = sum.Error == "" && len(sum.Failing) == 0 && len(sum.Images) > 0
	sum.Seconds = time.Since(sum.At).Seconds()
	return sum
}

// Compare holds one result against its image's expectation.
func Compare(im Image, r result.Result) ImageResult {
	ir := ImageResult{File: im.File, Expected: im.Expect, Type: im.Type, Verdict: r.Verdict, Score: r.Score, Threshold: r.Threshold, ResultID: r.ID}
	switch {
	case r.Verdict == result.VerdictError:
		ir.Reason = fmt.Sprintf("not judged (%s): %s", r.ReasonCode, r.Reason)
	case r.Verdict != im.Expect:
		ir.Reason = fmt.Sprintf("expected %s, got %s (score %s, threshold %.4g)", im.Expect, r.Verdict, scoreText(r.Score), r.Threshold)
	default:
		ir.OK = true
		ir.Reason = r.Reason
	}
	return ir
}

func scoreText(s *float64) string {
	if s == nil {
		return "none"
	}
	return fmt.Sprintf("%.4g", *s)
}

// Brief is the summary in one line for health, logs and the readiness
// reason: when it ran and which images were judged wrongly (at most five
// named).
func (s Summary) Brief() string {
	at := s.At.Format(time.RFC3339)
	if s.Passed {
		return fmt.Sprintf("golden-sample challenge passed at %s (%d images)", at, len(s.Images))
	}
	if s.Error != "" && len(s.Failing) == 0 {
		return fmt.Sprintf("golden-sample challenge (%s) at %s has not passed: %s", s.Trigger, at, s.Error)
	}
	var parts []string
	for _, ir := range s.Images {
		if ir.OK {
			continue
		}
		if len(parts) == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(s.Failing)-5))
			break
		}
		parts = append(parts, ir.File+": "+ir.Reason)
	}
	return fmt.Sprintf("golden-sample challenge failed at %s: %d of %d images judged wrongly: %s",
		at, len(s.Failing), len(s.Images), strings.Join(parts, "; "))
}
