package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/assurance/golden"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/demo"
	"github.com/segad-edge/segad-edge/detector"
	"github.com/segad-edge/segad-edge/fit"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/result"
)

// The golden-sample tests share one demo station, built once per test
// binary as `segad demo` builds its line (smaller): two variation
// detectors fitted on good demo parts, a SegAD bundle fitted on good and
// defective ones, and a golden set of new demo parts (other part numbers)
// that the station judges with a margin, as a quality engineer picks golden
// samples the station judges clearly.
type goldenStation struct {
	Dir       string   // detector/, data/fit/mask.png, bundle/
	Threshold float64  // between the golden candidates' good and bad scores
	GoldDir   string   // good/ and bad/<kind>/: the golden set as captured
	Good, Bad []string // its files, relative
}

// goldenCacheName is the prefix of the station's folder under the
// temporary folder: it is kept between runs of the same test binary
// (building it fits two detectors and a forest, about a minute on two busy
// cores). The folder's name ends in the test binary's hash, so a change to
// any code that trains or loads the station (detector, fit, bundle) builds
// a fresh one rather than testing against artefacts of older code.
const goldenCacheName = "segad-golden-station-v1"

// goldenCacheDir is the station's folder for this test binary; folders of
// other builds are removed.
func goldenCacheDir() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	f, err := os.Open(exe)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s-%x", goldenCacheName, h.Sum(nil)[:8])
	// Other builds' stations (about 170 MB each) are removed once they are
	// older than a test run of this package could be: a younger one may
	// belong to a test binary running now (another checkout, CI beside a
	// developer's run), whose station must not be pulled from under it.
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), goldenCacheName+"*"))
	for _, o := range old {
		info, err := os.Stat(o)
		if b := filepath.Base(o); err == nil && !strings.HasPrefix(b, name) && time.Since(info.ModTime()) > 30*time.Minute {
			os.RemoveAll(o)
		}
	}
	return filepath.Join(os.TempDir(), name), nil
}

var goldenOnce struct {
	sync.Once
	st  *goldenStation
	err error
}

const goldenSeed = 11

// goldenKinds are the golden set's defect kinds: one per segment family.
var goldenKinds = []demo.DefectKind{"missing_wire", "crack", "broken_piezo", "misplaced_solder"}

func goldenDemoStation(t testing.TB) *goldenStation {
	t.Helper()
	t.Setenv("SEGAD_ONNXRUNTIME_LIB", testenv.ORTLib(t))
	goldenOnce.Do(func() { goldenOnce.st, goldenOnce.err = buildGoldenStation(testenv.ORTLib(t)) })
	if goldenOnce.err != nil {
		t.Fatal(goldenOnce.err)
	}
	return goldenOnce.st
}

func buildGoldenStation(ortLib string) (*goldenStation, error) {
	final, err := goldenCacheDir()
	if err != nil {
		return nil, err
	}
	if data, err := os.ReadFile(filepath.Join(final, "station.json")); err == nil {
		var st goldenStation
		if err := json.Unmarshal(data, &st); err == nil {
			return &st, nil
		}
	}
	tmp, err := os.MkdirTemp("", filepath.Base(final)+"-build")
	if err != nil {
		return nil, err
	}
	st, err := buildStationIn(tmp, ortLib)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	// Move into place; the tests write their own configurations from Dir.
	// A folder left without station.json (an interrupted build) is stale;
	// one with it was finished by another test binary meanwhile: use it.
	if _, err := os.Stat(filepath.Join(final, "station.json")); err == nil {
		os.RemoveAll(tmp)
		return buildGoldenStation(ortLib)
	}
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	st.Dir, st.GoldDir = final, filepath.Join(final, "golden")
	data, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return st, os.WriteFile(filepath.Join(final, "station.json"), data, 0o644)
}

func buildStationIn(dir, ortLib string) (*goldenStation, error) {
	st := &goldenStation{Dir: dir}
	data := filepath.Join(dir, "data")
	if _, err := demo.WriteDatasetKinds(filepath.Join(data, "detector"), 100, 0, goldenSeed+1, nil); err != nil {
		return nil, err
	}
	if _, err := demo.WriteDataset(filepath.Join(data, "fit"), 150, 15, goldenSeed); err != nil {
		return nil, err
	}
	paths, err := detector.ListImages(filepath.Join(data, "detector", "good"), detector.DefaultMinImages)
	if err != nil {
		return nil, err
	}
	for _, dd := range []struct {
		name             string
		sigma, minSpread float64
	}{{"fine", 1, 0.02}, {"coarse", 4, 0.04}} {
		v, err := detector.FitVariation(context.Background(), paths, detector.VariationConfig{Size: 256, Seed: goldenSeed, Sigma: dd.sigma, MinSpread: dd.minSpread})
		if err != nil {
			return nil, err
		}
		onnx, err := v.ONNX()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(dir, "detector"), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "detector", dd.name+".onnx"), onnx, 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "in"), 0o755); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "fit.yaml")
	if err := os.WriteFile(cfgPath, []byte(goldenModelYAML(ortLib, dir, goldenVariant{})), 0o644); err != nil {
		return nil, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	if err := infer.Init(cfg.ONNXRuntime.Library); err != nil {
		return nil, err
	}
	tr := fit.DefaultTrainOptions()
	tr.Seed = goldenSeed
	tr.Params.NumParallelTree, tr.Rounds = 100, 10
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := fit.Run(fit.Options{Config: cfg, Good: filepath.Join(data, "fit", "good"), Bad: filepath.Join(data, "fit", "bad"),
		Out: filepath.Join(dir, "bundle"), Train: tr, Log: quiet}); err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	return st, st.pickGolden(cfgPath)
}

// pickGolden renders candidate parts (part numbers no training set uses),
// judges them with the bundle, and keeps as golden samples the good parts
// scored well below the threshold and the defective ones well above it.
func (st *goldenStation) pickGolden(cfgPath string) error {
	cands := filepath.Join(st.Dir, "candidates")
	g := demo.NewPartGen(goldenSeed+100, 512)
	type cand struct {
		file string
		kind demo.DefectKind
	}
	var cs []cand
	write := func(idx uint64, kind demo.DefectKind) error {
		m, _, err := g.RenderPart(idx, kind)
		if err != nil {
			return err
		}
		defer m.Close()
		sub := "good"
		if kind != demo.PartGood {
			sub = filepath.Join("bad", string(kind))
		}
		f := filepath.Join(sub, fmt.Sprintf("%04d.png", idx))
		if err := os.MkdirAll(filepath.Join(cands, sub), 0o755); err != nil {
			return err
		}
		if !gocv.IMWrite(filepath.Join(cands, f), m) {
			return fmt.Errorf("write %s", f)
		}
		cs = append(cs, cand{filepath.ToSlash(f), kind})
		return nil
	}
	for i := uint64(0); i < 14; i++ {
		if err := write(50000+i, demo.PartGood); err != nil {
			return err
		}
	}
	for k, kind := range goldenKinds {
		for i := uint64(0); i < 4; i++ {
			if err := write(60000+uint64(k)*10+i, kind); err != nil {
				return err
			}
		}
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	set, err := golden.Load(cands)
	if err != nil {
		return err
	}
	d, err := daemon.New(cfg, daemon.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Publisher: &countingPublisher{}, Golden: set})
	if err != nil {
		return err
	}
	defer d.Close()
	s, err := d.RunGolden(context.Background(), "pick")
	if err != nil {
		return err
	}
	// The threshold between the two groups' mean scores, and a margin of
	// a quarter of their distance each side: golden samples are parts the
	// station judges clearly, not borderline ones.
	var sums [2]float64
	var ns [2]int
	for _, ir := range s.Images {
		if ir.Score != nil {
			i := 0
			if ir.Expected == result.VerdictFail {
				i = 1
			}
			sums[i] += *ir.Score
			ns[i]++
		}
	}
	mg, mb := sums[0]/float64(max(ns[0], 1)), sums[1]/float64(max(ns[1], 1))
	st.Threshold = (mg + mb) / 2
	margin := (mb - mg) / 4
	st.GoldDir = filepath.Join(st.Dir, "golden")
	perKind := map[string]int{}
	for _, ir := range s.Images {
		if ir.Score == nil {
			continue
		}
		keep := false
		switch ir.Expected {
		case result.VerdictPass:
			keep = *ir.Score < st.Threshold-margin && len(st.Good) < 4
		case result.VerdictFail:
			keep = *ir.Score > st.Threshold+margin && perKind[ir.Type] < 1
		}
		if !keep {
			continue
		}
		dst := filepath.Join(st.GoldDir, filepath.FromSlash(ir.File))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		data, err := os.ReadFile(filepath.Join(cands, filepath.FromSlash(ir.File)))
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
		if ir.Expected == result.VerdictPass {
			st.Good = append(st.Good, ir.File)
		} else {
			perKind[ir.Type]++
			st.Bad = append(st.Bad, ir.File)
		}
	}
	sort.Strings(st.Good)
	sort.Strings(st.Bad)
	if len(st.Good) < 3 || len(st.Bad) < 2 {
		var lines []string
		for _, ir := range s.Images {
			lines = append(lines, fmt.Sprintf("%s %s %v", ir.File, ir.Verdict, fmtScore(ir.Score)))
		}
		return fmt.Errorf("the demo station judges too few candidates clearly (threshold %.3f): %d good, %d bad kept:\n%s",
			st.Threshold, len(st.Good), len(st.Bad), strings.Join(lines, "\n"))
	}
	return nil
}

// goldenVariant is what a station's configuration gets wrong (or right).
type goldenVariant struct {
	mask      string  // segad.mask (default: the demo mask)
	swapped   bool    // the detectors' models swapped: a forest trained for other detectors
	plain     bool    // segad.model + threshold instead of the bundle (no manifest check)
	threshold float64 // segad.threshold (0: the bundle's suggestion)
	watch     string  // capture: the watch folder (default <station>/in)
}

// goldenModelYAML is the model part of a station's configuration.
func goldenModelYAML(ortLib, dir string, v goldenVariant) string {
	mask := v.mask
	if mask == "" {
		mask = filepath.Join(dir, "data", "fit", "mask.png")
	}
	fine, coarse := filepath.Join(dir, "detector", "fine.onnx"), filepath.Join(dir, "detector", "coarse.onnx")
	if v.swapped {
		fine, coarse = coarse, fine
	}
	watch := v.watch
	if watch == "" {
		watch = filepath.Join(dir, "in")
	}
	forest := fmt.Sprintf("  bundle: %q", filepath.Join(dir, "bundle"))
	if v.threshold != 0 {
		forest += fmt.Sprintf("\n  threshold: %v", v.threshold)
	}
	if v.plain {
		forest = fmt.Sprintf("  model: %q\n  threshold: %v", filepath.Join(dir, "bundle", "model.json"), v.threshold)
	}
	return fmt.Sprintf(`station: golden
onnxruntime: {library: %q}
detectors:
  - name: fine
    model: %q
  - name: coarse
    model: %q
segad:
  mask: %q
%s
capture: {kind: watch, path: %q, watch: {poll: 50ms, grace: 300ms}}
pipeline: {warmup: 1}
`, ortLib, fine, coarse, mask, forest, watch)
}
