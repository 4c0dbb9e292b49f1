package drift_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/demo"
	"github.com/segad-edge/segad-edge/detector"
	"github.com/segad-edge/segad-edge/fit"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/result"
)

// demoLine is a small demo line built once for the package's tests: two
// variation detectors fitted on rendered good parts, a forest fitted by
// segad fit (which writes drift.json), and the real model built from the
// config (model.Build), as the daemon builds it.
type demoLine struct {
	dir  string
	cfg  *config.Config
	ref  *bundle.DriftReference
	insp *model.Inspector
	pre  capture.PreprocessConfig
	gen  *demo.PartGen
	mu   sync.Mutex
	buf  []byte
}

var (
	lineOnce sync.Once
	line     *demoLine
	lineErr  error
	lineDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if line != nil {
		line.insp.Close()
	}
	if lineDir != "" {
		os.RemoveAll(lineDir)
	}
	os.Exit(code)
}

const lineSeed = 5

// getLine builds the demo line (about a minute on two cores, once).
func getLine(t *testing.T) *demoLine {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and fits a demo line (-short)")
	}
	lib := testenv.ORTLib(t)
	lineOnce.Do(func() {
		lineDir, lineErr = os.MkdirTemp("", "segad-drift-line-")
		if lineErr == nil {
			line, lineErr = buildLine(lineDir, lib)
		}
	})
	if lineErr != nil {
		t.Fatalf("demo line: %v", lineErr)
	}
	return line
}

func buildLine(dir, lib string) (*demoLine, error) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	data := filepath.Join(dir, "data")
	if _, err := demo.WriteDatasetKinds(filepath.Join(data, "detector"), 60, 0, lineSeed+1, nil); err != nil {
		return nil, err
	}
	if _, err := demo.WriteDataset(filepath.Join(data, "fit"), 120, 8, lineSeed); err != nil {
		return nil, err
	}
	paths, err := detector.ListImages(filepath.Join(data, "detector", "good"), detector.DefaultMinImages)
	if err != nil {
		return nil, err
	}
	for _, d := range []struct {
		name          string
		sigma, spread float64
	}{{"fine", 1, 0.02}, {"coarse", 4, 0.04}} {
		v, err := detector.FitVariation(ctx, paths, detector.VariationConfig{Size: 256, Seed: lineSeed, Sigma: d.sigma, MinSpread: d.spread})
		if err != nil {
			return nil, err
		}
		onnx, err := v.ONNX()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, d.name+".onnx"), onnx, 0o644); err != nil {
			return nil, err
		}
	}
	yaml := fmt.Sprintf(`station: drift
onnxruntime: {library: %s}
capture: {kind: folder, path: data/fit/good}
detectors:
  - {name: fine, model: fine.onnx}
  - {name: coarse, model: coarse.onnx}
segad: {mask: data/fit/mask.png, bundle: bundle}
mqtt: {broker: ""}
http: {listen: "off"}
`, lib)
	cfgPath := filepath.Join(dir, "segad.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	if err := infer.Init(lib); err != nil {
		return nil, err
	}
	tr := fit.DefaultTrainOptions()
	tr.Seed, tr.Params.NumParallelTree, tr.Rounds = lineSeed, 50, 5
	if _, err := fit.Run(fit.Options{Config: cfg, Good: filepath.Join(data, "fit", "good"), Bad: filepath.Join(data, "fit", "bad"),
		Out: filepath.Join(dir, "bundle"), Train: tr, Log: quiet,
		// A yield budget: a line runs at a small false-reject rate, so
		// most good parts pass and reach the drift window.
		Calibrate: fit.CalibrateOptions{MaxFalseReject: []float64{0.02}, Primary: bundle.BudgetMaxFalseReject}}); err != nil {
		return nil, err
	}
	ref, err := bundle.LoadDrift(filepath.Join(dir, "bundle"))
	if err != nil {
		return nil, err
	}
	m, settings, err := model.Build(cfg, model.Options{Log: quiet})
	if err != nil {
		return nil, err
	}
	settings.PublishFeatures = true
	l := &demoLine{dir: dir, cfg: cfg, ref: ref, insp: model.NewInspector(m, settings), pre: m.Preprocess(cfg.Capture.Preprocess),
		gen: demo.NewPartGen(lineSeed+100, demo.DefaultPartSize)}
	l.buf = make([]byte, 3*demo.DefaultPartSize*demo.DefaultPartSize)
	return l, nil
}

// part renders good part index (a part number range of its own, never a
// training part), scales its pixels by gain (the lamp: 1 is as trained),
// and inspects it with the real model.
func (l *demoLine) part(t testing.TB, index uint64, gain float64) result.Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.gen.RenderBGR(l.buf, 1_000_000+index, demo.PartGood); err != nil {
		t.Fatal(err)
	}
	if gain != 1 {
		for i, v := range l.buf {
			l.buf[i] = uint8(math.Min(255, math.Round(float64(v)*gain)))
		}
	}
	s := demo.DefaultPartSize
	mat, err := gocv.NewMatFromBytes(s, s, gocv.MatTypeCV8UC3, l.buf)
	if err != nil {
		t.Fatal(err)
	}
	f := capture.FrameFromMat(mat.Clone(), l.pre)
	mat.Close()
	defer f.Close()
	r := l.insp.Inspect(f, false).Result
	if r.Verdict == result.VerdictError {
		t.Fatalf("part %d (gain %.3f) could not be judged: %s %s", index, gain, r.ReasonCode, r.Reason)
	}
	return r
}
