package fit

import (
	"encoding/json"
	"errors"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/brf"
	"github.com/segad-edge/segad-edge/brf/xgboost"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/metrics"
	"github.com/segad-edge/segad-edge/segad"
)

// TestParityWithPythonXGBoost trains on the committed rows with the same
// parameters as scripts/golden/fit_parity.py and compares the held-out
// AUROC with python3-xgboost's.
func TestParityWithPythonXGBoost(t *testing.T) {
	var rows struct {
		Cols        int          `json:"cols"`
		Train       [][]*float64 `json:"train"`
		TrainLabels []float32    `json:"train_labels"`
		Test        [][]*float64 `json:"test"`
		TestLabels  []float32    `json:"test_labels"`
	}
	var golden struct {
		Rounds     int       `json:"rounds"`
		TestScores []float64 `json:"test_scores"`
		AUROC      float64   `json:"auroc"`
	}
	readJSON(t, "testdata/parity_rows.json", &rows)
	readJSON(t, "testdata/parity_golden.json", &golden)
	mk := func(x [][]*float64, y []float32) *Dataset {
		d := &Dataset{NCols: rows.Cols, Detectors: []string{"d"}}
		for i, r := range x {
			row := make([]float32, rows.Cols)
			for j, v := range r {
				row[j] = float32(math.NaN())
				if v != nil {
					row[j] = float32(*v)
				}
			}
			d.add(Sample{Bad: y[i] == 1}, row, []float32{0})
		}
		return d
	}
	train, test := mk(rows.Train, rows.TrainLabels), mk(rows.Test, rows.TestLabels)
	o := DefaultTrainOptions()
	o.Seed, o.Rounds = 7, golden.Rounds
	model, params, err := Train(train, o)
	if err != nil {
		t.Fatal(err)
	}
	if want := float64(countGood(train)) / float64(train.Len()-countGood(train)); math.Abs(params.ScalePosWeight-want) > 1e-12 {
		t.Fatalf("scale_pos_weight %v, want n_good/n_bad = %v", params.ScalePosWeight, want)
	}
	m, err := brf.LoadBytes(model)
	if err != nil {
		t.Fatal(err)
	}
	auc, err := metrics.AUROC(Score(m, test), test.Bad())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Go-trained AUROC %.4f, python3-xgboost %.4f", auc, golden.AUROC)
	if math.Abs(auc-golden.AUROC) > 0.005 {
		t.Errorf("AUROC %.4f differs from python3-xgboost's %.4f by more than 0.5 points", auc, golden.AUROC)
	}
	// Determinism: the same seed gives the same model bytes.
	again, _, err := Train(train, o)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(model) {
		t.Error("two trainings with the same seed gave different models")
	}
}

func countGood(d *Dataset) int {
	n := 0
	for _, s := range d.Samples {
		if !s.Bad {
			n++
		}
	}
	return n
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (regenerate with scripts/golden/fit_parity.py)", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// noiseImage is a seeded textured w x h BGR image: noise smoothed a little,
// so blurs, shifts and stretches change pixels as on a real part.
func noiseImage(w, h int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	raw := make([]byte, w*h*3)
	for i := range raw {
		raw[i] = byte(r.IntN(256))
	}
	return blurred(raw, w, h, 1.2)
}

// TestSynthesizeStaysInSegment checks, for every kind, that every changed
// pixel lies in the chosen segment and inside the reported rectangle, that
// the reported count is right, and that the same seed gives the same defect
// while another seed gives another.
func TestSynthesizeStaysInSegment(t *testing.T) {
	const w, h = 128, 96
	mask := segad.VADTemplate(w, h, segad.DefaultVADGeometry())
	base := noiseImage(w, h, 1)
	gen, err := NewGenerator(mask, [][]byte{noiseImage(w, h, 2), noiseImage(w, h, 3)})
	if err != nil {
		t.Fatal(err)
	}
	draw := func(kind string, seed uint64) (Defect, []byte) {
		img, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, append([]byte(nil), base...))
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close()
		d, err := gen.Synthesize(&img, kind, rand.New(rand.NewPCG(seed, 9)))
		if err != nil {
			t.Fatalf("%s seed %d: %v", kind, seed, err)
		}
		return d, img.ToBytes()
	}
	for _, kind := range AllKinds {
		t.Run(kind, func(t *testing.T) {
			segs := map[int]bool{}
			for seed := uint64(0); seed < 12; seed++ {
				d, pix := draw(kind, seed)
				if d.Kind != kind {
					t.Fatalf("seed %d: kind %q, asked %q", seed, d.Kind, kind)
				}
				segs[d.Segment] = true
				changed := 0
				for y := 0; y < h; y++ {
					for x := 0; x < w; x++ {
						o := (y*w + x) * 3
						if pix[o] == base[o] && pix[o+1] == base[o+1] && pix[o+2] == base[o+2] {
							continue
						}
						changed++
						if int(mask.Labels[y*w+x]) != d.Segment {
							t.Fatalf("seed %d: changed pixel (%d,%d) of segment %d, chose segment %d", seed, x, y, mask.Labels[y*w+x], d.Segment)
						}
						if !image.Pt(x, y).In(d.Rect) {
							t.Fatalf("seed %d: changed pixel (%d,%d) outside %v", seed, x, y, d.Rect)
						}
					}
				}
				if changed == 0 || changed != d.Changed {
					t.Fatalf("seed %d: %d pixels changed, defect reports %d", seed, changed, d.Changed)
				}
				d2, pix2 := draw(kind, seed)
				if d2 != d || string(pix2) != string(pix) {
					t.Fatalf("seed %d: not reproducible: %+v vs %+v", seed, d, d2)
				}
				if seed > 0 {
					if _, prev := draw(kind, seed-1); string(prev) == string(pix) {
						t.Fatalf("seeds %d and %d drew the same defect", seed-1, seed)
					}
				}
			}
			if len(segs) < 2 {
				t.Errorf("12 draws all chose segment(s) %v", segs)
			}
		})
	}
}

// TestSynthesizePaperMix checks the paper recipe's mix (Synthesize without
// a generator): all three kinds appear, only in the chosen segment.
func TestSynthesizePaperMix(t *testing.T) {
	const w, h = 128, 96
	mask := segad.VADTemplate(w, h, segad.DefaultVADGeometry())
	base := noiseImage(w, h, 1)
	kinds := map[string]int{}
	for seed := uint64(0); seed < 40; seed++ {
		img, _ := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, append([]byte(nil), base...))
		d, err := Synthesize(&img, mask, rand.New(rand.NewPCG(seed, 9)))
		img.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !hasKind(PaperKinds, d.Kind) {
			t.Fatalf("paper recipe drew %q", d.Kind)
		}
		kinds[d.Kind]++
	}
	for _, k := range PaperKinds {
		if kinds[k] == 0 {
			t.Errorf("40 draws made no %s defect: %v", k, kinds)
		}
	}
}

// TestSynthesizeTooSmall checks that a kind that cannot place a defect
// says so, naming the kind and the sizes, and that small kinds still fit.
func TestSynthesizeTooSmall(t *testing.T) {
	const w, h = 32, 32
	// Segment 0: everything but a 10x10 square (segment 1, 100 pixels).
	mask := &segad.Mask{Width: w, Height: h, Labels: make([]uint8, w*h), Names: []string{"big", "small"}}
	for y := 0; y < 10; y++ {
		for x := 0; x < 10; x++ {
			mask.Labels[y*w+x] = 1
		}
	}
	tiny := &segad.Mask{Width: w, Height: h, Labels: make([]uint8, w*h), Names: []string{"a", "b"}}
	for i := range tiny.Labels {
		tiny.Labels[i] = 255 // no segment at all
	}
	tiny.Labels[0], tiny.Labels[1] = 0, 1
	cases := []struct {
		name string
		mask *segad.Mask
		kind string
		seg  int
		want string // "" = placed
	}{
		{"logical kind in 100 px segment", mask, KindDisplace, 1, "segment 1: 100 pixels at 32x32, the kind needs 256"},
		{"texture kind in 100 px segment", mask, KindPerlin, 1, ""},
		{"paper kind in 100 px segment", mask, KindRect, 1, ""},
		{"no segment fits", tiny, KindScratch, -1, "no segment has 64 pixels or more at 32x32 (largest 1)"},
		{"no segment fits paper", tiny, KindBlur, -1, "no segment has 16 pixels"},
		{"unknown segment", mask, KindBlur, 7, "segment 7 does not exist"},
		{"unknown kind", mask, "smudge", 0, "unknown synthetic defect kind"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, err := NewGenerator(c.mask, nil)
			if err != nil {
				t.Fatal(err)
			}
			img, _ := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, noiseImage(w, h, 4))
			defer img.Close()
			rng := rand.New(rand.NewPCG(1, 1))
			if c.seg < 0 {
				_, err = g.Synthesize(&img, c.kind, rng)
			} else {
				_, err = g.SynthesizeIn(&img, c.kind, c.seg, rng)
			}
			if c.want == "" {
				if err != nil {
					t.Fatalf("err = %v, want a defect", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if strings.Contains(c.want, "pixels") && !errors.Is(err, ErrSegmentTooSmall) {
				t.Errorf("err = %v does not wrap ErrSegmentTooSmall", err)
			}
		})
	}
}

func TestParseKinds(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  string
	}{
		{"paper", []string{KindBlur, KindRect, KindThin}, ""},
		{"scratch, blur", []string{KindBlur, KindScratch}, ""},
		{"logical,displace", LogicalKinds, ""},
		{"all", AllKinds, ""},
		{"default", DefaultKinds, ""},
		{"blur,smudge", nil, `unknown synthetic defect kind "smudge"`},
		{" , ", nil, "no synthetic defect kind"},
	}
	for _, c := range cases {
		got, err := ParseKinds(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%q: %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestListImagesErrors(t *testing.T) {
	dir := t.TempDir()
	mk := func(p string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("x"), 0o644)
	}
	mk(filepath.Join(dir, "good", "a.png"))
	mk(filepath.Join(dir, "good", "notes.txt"))
	mk(filepath.Join(dir, "bad", "cut", "b.png"))
	mk(filepath.Join(dir, "bad", "c.jpg"))
	os.MkdirAll(filepath.Join(dir, "empty"), 0o755)
	mk(filepath.Join(dir, "emptybad", "cut", "readme.txt"))
	cases := []struct {
		name, good, bad, want string
	}{
		{"empty good", filepath.Join(dir, "empty"), "", "holds no images"},
		{"missing good", filepath.Join(dir, "nope"), "", "no such file"},
		{"empty bad", filepath.Join(dir, "good"), filepath.Join(dir, "emptybad"), "holds no images"},
		{"no good flag", "", "", "no --good"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ListImages(c.good, c.bad)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	ss, err := ListImages(filepath.Join(dir, "good"), filepath.Join(dir, "bad"))
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, s := range ss {
		types[s.Type]++
	}
	if len(ss) != 3 || types[""] != 1 || types["cut"] != 1 || types[UnspecifiedType] != 1 {
		t.Fatalf("samples %+v", ss)
	}
	if err := checkClasses(ss[:1], "x"); err == nil || !strings.Contains(err.Error(), "both classes") {
		t.Fatalf("one class: %v", err)
	}
}

// smallTrain is a fast forest for end-to-end tests (the paper's is 2000 trees).
func smallTrain() TrainOptions {
	o := DefaultTrainOptions()
	o.Params.NumParallelTree, o.Rounds, o.Params.NThread = 10, 3, 1
	return o
}

// tireSetup links a few MVTec 3D tire images into good/bad folders (no
// copies) and writes a config with the meanstd_blur detector fixture and the
// built-in VAD mask.
func tireSetup(t *testing.T, nGood, nBad int) (dir string, cfg *config.Config) {
	t.Helper()
	shared := testenv.SharedDir(t)
	root := filepath.Join(shared, "data", "mvtec3d-tire-rgb")
	dir = t.TempDir()
	link := func(src, dst string, n int) {
		os.MkdirAll(dst, 0o755)
		fs, _ := filepath.Glob(filepath.Join(src, "*.png"))
		if len(fs) < n {
			t.Skipf("%s holds %d images, need %d", src, len(fs), n)
		}
		for _, f := range fs[:n] {
			if err := os.Symlink(f, filepath.Join(dst, filepath.Base(f))); err != nil {
				t.Fatal(err)
			}
		}
	}
	link(filepath.Join(root, "validation", "good", "rgb"), filepath.Join(dir, "good"), nGood)
	link(filepath.Join(root, "test", "cut", "rgb"), filepath.Join(dir, "bad", "cut"), nBad)
	link(filepath.Join(root, "test", "hole", "rgb"), filepath.Join(dir, "bad", "hole"), nBad)
	link(filepath.Join(root, "test", "good", "rgb"), filepath.Join(dir, "testgood"), nGood)
	link(filepath.Join(root, "test", "contamination", "rgb"), filepath.Join(dir, "testbad", "contamination"), nBad)
	link(filepath.Join(root, "test", "cut", "rgb"), filepath.Join(dir, "testbad", "cut"), nBad)
	model := filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx")
	yml := "capture: {kind: folder, path: .}\n" +
		"onnxruntime: {library: " + testenv.ORTLib(t) + "}\n" +
		"detectors:\n  - {name: ms, model: " + model + ", map_output: anomaly_map}\n" +
		"segad: {mask: 'builtin:vad', bundle: bundle}\n"
	p := filepath.Join(dir, "segad.yaml")
	os.WriteFile(p, []byte(yml), 0o644)
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

// TestFitEvalEndToEnd runs fit and eval on a few real tire images with the
// real detector runtime, XGBoost and bundle files.
func TestFitEvalEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	if err := xgboost.Open(); err != nil {
		t.Skip(err)
	}
	dir, cfg := tireSetup(t, 8, 4)
	out := filepath.Join(dir, "bundle")
	sum, err := Run(Options{Config: cfg, Good: filepath.Join(dir, "good"), Bad: filepath.Join(dir, "bad"), Out: out,
		Train: smallTrain(), CV: 2, ToolVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	m := b.Manifest
	if m.Data.Good != 8 || m.Data.Bad != 8 || m.Data.BadTypes["cut"] != 4 || len(m.Features) != 29 || m.Detectors[0].SHA256 == "" {
		t.Fatalf("manifest %+v", m)
	}
	if m.Threshold.Calibration != "out-of-fold" || len(m.Threshold.Points) != 2 || m.Threshold.Points[1].Threshold > m.Threshold.Points[0].Threshold {
		t.Errorf("threshold points %+v: the 99%% recall threshold must not exceed the 95%% one", m.Threshold)
	}
	if m.Params["scale_pos_weight"] != "1" || m.Params["num_parallel_tree"] != "10" {
		t.Errorf("params %v", m.Params)
	}
	if sum.CV == nil || len(sum.CV.FoldAUROC) != 2 {
		t.Errorf("cv %+v", sum.CV)
	}
	// The suggested threshold keeps at least 95% of the calibration bad parts.
	res, err := EvaluateBundle(EvaluateOptions{Bundle: out, Config: cfg, Good: filepath.Join(dir, "testgood"), Bad: filepath.Join(dir, "testbad"), Report: filepath.Join(dir, "report")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Good != 8 || res.Counts.Bad != 8 || len(res.UnseenTypes) != 1 || res.UnseenTypes[0] != "contamination" {
		t.Errorf("counts %+v unseen %v", res.Counts, res.UnseenTypes)
	}
	if res.AUROC < 0 || res.AUROC > 1 || res.Baseline["ms"].AUROC < 0 {
		t.Errorf("auroc %v baseline %+v", res.AUROC, res.Baseline)
	}
	for _, f := range []string{"segad.png", "baseline-ms.png", "summary.md"} {
		st, err := os.Stat(filepath.Join(dir, "report", f))
		if err != nil || st.Size() < 100 {
			t.Errorf("report file %s: %v", f, err)
		}
	}
	// A config with another mask is refused, with the difference named.
	other := *cfg
	other.SegAD.Mask.File = filepath.Join(dir, "grid.png")
	g := &segad.Mask{Width: 256, Height: 256, Labels: make([]uint8, 256*256), Names: []string{"a", "b"}}
	for i := range g.Labels {
		g.Labels[i] = uint8(i % 2)
	}
	if err := g.WritePNG(other.SegAD.Mask.File); err != nil {
		t.Fatal(err)
	}
	_, err = EvaluateBundle(EvaluateOptions{Bundle: out, Config: &other, Good: filepath.Join(dir, "testgood"), Bad: filepath.Join(dir, "testbad")})
	if err == nil || !strings.Contains(err.Error(), "mask differs") {
		t.Errorf("other mask: err = %v", err)
	}
}

func TestFitBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the detector runtime")
	}
	dir, cfg := tireSetup(t, 3, 2)
	// An unreadable image among the good ones.
	corrupt := filepath.Join(dir, "good", "zz_corrupt.png")
	os.WriteFile(corrupt, []byte("not a png"), 0o644)
	os.MkdirAll(filepath.Join(dir, "nobad"), 0o755)
	base := Options{Config: cfg, Good: filepath.Join(dir, "good"), Bad: filepath.Join(dir, "bad"), Out: filepath.Join(dir, "b"), Train: smallTrain()}
	cases := []struct {
		name string
		mod  func(o *Options)
		want string
	}{
		{"corrupt image is fatal", func(o *Options) {}, "zz_corrupt.png"},
		{"one class", func(o *Options) { o.Bad = "" }, "both classes"},
		{"empty bad", func(o *Options) { o.Bad = filepath.Join(dir, "nobad") }, "holds no images"},
		{"seeds without cv", func(o *Options) { o.Seeds = 3 }, "needs --cv"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := base
			c.mod(&o)
			_, err := Run(o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	t.Run("skip corrupt and synthetic one-class", func(t *testing.T) {
		o := base
		o.Bad = ""
		o.Images.SkipBadImages = true
		o.Images.Synthetic = SyntheticOptions{N: 3, Kinds: PaperKinds, Severity: Severity{Off: true}}
		sum, err := Run(o)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Counts.Skipped != 1 || sum.Counts.Synthetic != 3 || sum.Counts.BadTypes[SyntheticType] != 3 || sum.Counts.Good != 3 {
			t.Fatalf("counts %+v", sum.Counts)
		}
	})
}

func TestMapsCSV(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, w, h int, v float32) string {
		// Minimal float32 .npy writer for the test's maps.
		hdr := "{'descr': '<f4', 'fortran_order': False, 'shape': (" + itoa(h) + ", " + itoa(w) + "), }"
		for (10+len(hdr)+1)%64 != 0 {
			hdr += " "
		}
		hdr += "\n"
		b := []byte("\x93NUMPY\x01\x00")
		b = append(b, byte(len(hdr)), byte(len(hdr)>>8))
		b = append(b, hdr...)
		for i := 0; i < w*h; i++ {
			x := math.Float32bits(v + float32(i%7)*0.01)
			b = append(b, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return name
	}
	csv := "filepath,an_map_path,label\n" +
		"a.png," + write("a.npy", 16, 16, 0) + ",0\n" +
		"b.png," + write("b.npy", 16, 16, 1) + ",1\n"
	p := filepath.Join(dir, "maps.csv")
	os.WriteFile(p, []byte(csv), 0o644)
	ss, err := ReadMapsCSV(p, []string{"d"})
	if err != nil {
		t.Fatal(err)
	}
	d, mask, err := MapsDataset(ss, []string{"d"}, config.SegADConfig{Mask: config.MaskConfig{File: "builtin:vad"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 || d.NCols != 29 || mask.Width != 16 || d.Max[1] < 1 {
		t.Fatalf("dataset %d rows %d cols, mask %dx%d, max %v", d.Len(), d.NCols, mask.Width, mask.Height, d.Max)
	}
	// Mismatched map sizes and bad labels are named.
	bad := []struct{ name, csv, want string }{
		{"size", "filepath,an_map_path,label\na,a.npy,0\nc," + write("c.npy", 8, 16, 0) + ",1\n", "c.npy is 8x16 but the first map is 16x16"},
		{"label", "filepath,an_map_path,label\na,a.npy,2\n", "label \"2\""},
		{"column", "filepath,map,label\na,a.npy,0\n", "no \"an_map_path_x\" column"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			os.WriteFile(p, []byte(c.csv), 0o644)
			dets := []string{"d"}
			if c.name == "column" {
				dets = []string{"x", "y"}
			}
			ss, err := ReadMapsCSV(p, dets)
			if err == nil {
				_, _, err = MapsDataset(ss, dets, config.SegADConfig{Mask: config.MaskConfig{File: "builtin:vad"}}, nil, nil)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
