package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segad-edge/segad-edge/result"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/detector"
	"github.com/segad-edge/segad-edge/fit"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/metrics"
)

// LineOptions size the demo line. The zero value of a count means its default.
type LineOptions struct {
	// Dir holds everything the demo makes; artifacts are reused while the
	// options that made them are unchanged, so a second run starts in seconds.
	Dir string
	// Seed makes the whole demo deterministic (default 1).
	Seed uint64
	// DetectorGood is the number of good parts the detector is fitted on (default 100).
	DetectorGood int
	// FitGood and FitBadPerKind are the BRF's training parts (defaults 60
	// and 6 of every seen defect kind).
	FitGood, FitBadPerKind int
	// Stream is the number of parts on the line (default 120), BadShare the
	// share of defective ones (default 0.4; seen and unseen kinds alike).
	Stream   int
	BadShare float64
	// Trees and Rounds override the paper's forest (200 x 10) when set.
	Trees, Rounds int
	// Jitter makes every part arrive shifted and turned (JitterShift,
	// JitterAngle) and runs the line with fixturing (capture.align, the
	// reference an unjittered good part): detector, forest and stream all
	// see registered frames (docs/fixturing.md).
	Jitter bool
	// Out receives the live lines and the summary; Progress the progress
	// bars (nil: none).
	Out, Progress io.Writer
	// Quiet prints the summary only.
	Quiet bool
	// Log receives structured logs (default: warnings and errors only).
	Log *slog.Logger
	// Line builds the inspection line of cfg (its embedded broker up) and
	// returns the function that runs it until its finite source ends (or
	// ctx ends) and closes it. It is required: `segad demo` passes the
	// daemon, so that demo itself stays a client of the line, as a PLC is.
	Line func(cfg *config.Config, log *slog.Logger) (run func(ctx context.Context) error, err error)
}

func (o *LineOptions) defaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	def(&o.DetectorGood, 200)
	def(&o.FitGood, 300)
	def(&o.FitBadPerKind, 30)
	def(&o.Stream, 200)
	if o.BadShare == 0 {
		o.BadShare = 0.4
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// KindSummary is how a defect kind (or good parts) fared on the line.
type KindSummary struct {
	Kind     DefectKind `json:"kind"`
	Unseen   bool       `json:"unseen"`
	Parts    int        `json:"parts"`
	Rejected int        `json:"rejected"`
}

// LineSummary is what a demo run measured.
type LineSummary struct {
	Parts      int     `json:"parts"`
	Results    int     `json:"results"`
	Duplicates int     `json:"duplicates"`
	AUROCSegAD float64 `json:"auroc_segad"`
	// FPRAt95TPR is SegAD's share of good parts rejected at the score that
	// catches 95% of the defects (the paper's second metric).
	FPRAt95TPR float64 `json:"fpr_at_95tpr_segad"`
	// Recall is the share of all defects (seen and unseen) caught at the
	// bundle's suggested threshold.
	Recall   float64            `json:"recall"`
	AUROCMax map[string]float64 `json:"auroc_detector_alone"`
	// RecallAt5 is the share of defects caught when the threshold lets 5%
	// of good parts fail, for SegAD ("segad") and each detector alone: a
	// comparison at the same false-reject rate, independent of thresholds.
	RecallAt5   map[string]float64 `json:"recall_at_5pct_false_rejects"`
	SeenRecall  float64            `json:"recall_seen"`
	UnseenRec   float64            `json:"recall_unseen"`
	FalseReject float64            `json:"false_reject_rate"`
	Threshold   float64            `json:"threshold"`
	Kinds       []KindSummary      `json:"kinds"`
	P50MS       float64            `json:"latency_p50_ms"`
	AuditDir    string             `json:"audit_dir"`
	Config      string             `json:"config"`
	Seconds     map[string]float64 `json:"seconds"`
	// Fixturing is set on a jittered line (LineOptions.Jitter).
	Fixturing *FixturingSummary `json:"fixturing,omitempty"`
}

// demoDetectors are the line's K=2 detectors: two variation models of
// the good parts, one sharp and one smooth. Each alone is a weak detector on
// these parts; SegAD combines their per-segment statistics, as the paper
// combines several detectors.
var demoDetectors = []struct {
	name             string
	sigma, minSpread float64
}{
	{"fine", 1, 0.02},
	{"coarse", 4, 0.04},
}

// demoState records what made the cached artifacts.
type demoState struct {
	Options string   `json:"options"`
	Steps   []string `json:"steps"`
}

// RunLine is `make demo`: it generates synthetic VAD-like parts, fits a
// variation detector on good parts, fits SegAD's forest on good and
// defective parts (seen defect kinds only), writes a daemon config with the
// embedded MQTT broker, runs the daemon on an image sequence of new parts
// (unseen defect kinds included), follows the result topic like a PLC
// would, and summarises SegAD against the detector alone.
func RunLine(ctx context.Context, o LineOptions) (*LineSummary, error) {
	o.defaults()
	if o.Dir == "" {
		return nil, errors.New("demo: no output folder")
	}
	sum := &LineSummary{Seconds: map[string]float64{}}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	state := loadState(o)
	step := func(name string, fn func() error) error {
		t := time.Now()
		if state.done(name) {
			fmt.Fprintf(o.Out, "demo: %-34s cached\n", name)
			return nil
		}
		fmt.Fprintf(o.Out, "demo: %s ...\n", name)
		if err := fn(); err != nil {
			return fmt.Errorf("demo: %s: %w", name, err)
		}
		state.Steps = append(state.Steps, name)
		if err := state.save(o.Dir); err != nil {
			return err
		}
		sum.Seconds[name] = time.Since(t).Seconds()
		fmt.Fprintf(o.Out, "demo: %-34s %.1fs\n", name, sum.Seconds[name])
		return nil
	}
	data := filepath.Join(o.Dir, "data")
	var stream *Manifest
	if err := step("generate synthetic parts", func() error {
		// The detector and the forest see different good parts (the
		// paper's protocol): other seed, same generator.
		if _, err := WriteDatasetKinds(filepath.Join(data, "detector"), o.DetectorGood, 0, o.Seed+1, nil); err != nil {
			return err
		}
		if _, err := WriteDataset(filepath.Join(data, "fit"), o.FitGood, o.FitBadPerKind, o.Seed); err != nil {
			return err
		}
		if _, err := WriteSequence(filepath.Join(data, "stream"), StreamKinds(o.Stream, o.BadShare, o.Seed), o.Seed); err != nil {
			return err
		}
		if o.Jitter {
			return jitterData(data, o.Seed)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	stream, err := readManifest(filepath.Join(data, "stream", ManifestName))
	if err != nil {
		return nil, err
	}
	if err := step("fit the variation detectors", func() error {
		return fitDemoDetectors(ctx, o, data, filepath.Join(o.Dir, "detector"), demoAlign(data, o))
	}); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(o.Dir, "segad.yaml")
	if err := writeDemoConfig(cfgPath, port, o.Jitter, "detector", "bundle"); err != nil {
		return nil, err
	}
	sum.Config = cfgPath
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	if err := infer.Init(cfg.ONNXRuntime.Library); err != nil {
		return nil, err
	}
	if err := step("fit the SegAD forest (XGBoost)", func() error {
		return fitDemoForest(cfg, o, data, filepath.Join(o.Dir, "bundle"))
	}); err != nil {
		return nil, err
	}
	if o.Jitter {
		// The same jittered parts on a line without fixturing, for the
		// summary's side-by-side (docs/fixturing.md).
		if err := step(compareStep, func() error { return compareUnfixtured(ctx, o, data, port) }); err != nil {
			return nil, err
		}
	}

	// The line: a fresh outbox and audit folder for every run.
	for _, d := range []string{"state", "audit"} {
		if err := os.RemoveAll(filepath.Join(o.Dir, d)); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
	}
	b, err := bundle.Load(cfg.SegAD.Bundle)
	if err != nil {
		return nil, err
	}
	if sum.Threshold, err = b.SuggestedThreshold(); err != nil {
		return nil, err
	}
	if o.Line == nil {
		return nil, errors.New("demo: LineOptions.Line is not set: give the function that builds the line (segad demo passes the daemon)")
	}
	run, err := o.Line(cfg, o.Log)
	if err != nil {
		return nil, err
	}
	sub, err := follow(port, stream, o)
	if err != nil {
		stopped, stop := context.WithCancel(ctx)
		stop()
		run(stopped) // closes the line
		return nil, err
	}
	defer sub.client.Disconnect(100)
	fmt.Fprintf(o.Out, "demo: inspecting %d parts; results on mqtt://127.0.0.1:%d topic segad/demo/result (user demo, password demo)\n", len(stream.Parts), port)
	t := time.Now()
	if err := run(ctx); err != nil {
		return nil, err
	}
	sum.Seconds["inspect the stream"] = time.Since(t).Seconds()
	// Run flushed every result to the embedded broker before stopping it.
	sub.summarise(sum, stream)
	sum.AuditDir = filepath.Join(o.Dir, "audit")
	if o.Jitter && sum.Fixturing != nil {
		if sum.Fixturing.Without, err = readComparison(o.Dir); err != nil {
			return nil, err
		}
	}
	return sum, nil
}

// fitDemoDetectors fits the demo's variation detectors on the detector's
// good parts (registered with align when it is on) into dir.
func fitDemoDetectors(ctx context.Context, o LineOptions, data, dir string, align capture.AlignConfig) error {
	paths, err := detector.ListImages(filepath.Join(data, "detector", "good"), detector.DefaultMinImages)
	if err != nil {
		return err
	}
	for _, dd := range demoDetectors {
		v, err := detector.FitVariation(ctx, paths, detector.VariationConfig{Size: 256, Seed: int64(o.Seed),
			Progress: o.Progress, Sigma: dd.sigma, MinSpread: dd.minSpread, Align: align})
		if err != nil {
			return err
		}
		onnx, err := v.ONNX()
		if err != nil {
			return err
		}
		p := filepath.Join(dir, dd.name+".onnx")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, onnx, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// fitDemoForest fits SegAD's forest of cfg on the demo's fit parts into
// the bundle folder out.
func fitDemoForest(cfg *config.Config, o LineOptions, data, out string) error {
	tr := fit.DefaultTrainOptions()
	tr.Seed = int(o.Seed)
	if o.Trees > 0 {
		tr.Params.NumParallelTree = o.Trees
	}
	if o.Rounds > 0 {
		tr.Rounds = o.Rounds
	}
	_, err := fit.Run(fit.Options{Config: cfg, Good: filepath.Join(data, "fit", "good"), Bad: filepath.Join(data, "fit", "bad"),
		Out: out, Train: tr, CV: 5, Recalls: []float64{0.9, 0.95, 0.99}, Images: fit.ImageOptions{Progress: o.Progress, SkipBadImages: o.Jitter}, Log: o.Log})
	return err
}

// writeDemoConfig writes the line's configuration, fixturing on with
// align, the detectors in the folder det and the bundle in the folder
// bundle; paths are relative to the config.
func writeDemoConfig(path string, port int, align bool, det, bundle string) error {
	alignYAML := ""
	if align {
		alignYAML = fmt.Sprintf("  align: {reference: data/reference.png, smooth: %v}   # fixturing: parts arrive jittered (segad demo --jitter); the parts' texture locates them, so no blur\n", demoAlignSmooth)
	}
	cfg := fmt.Sprintf(`# segad demo line, written by `+"`segad demo`"+`. Try: segad config check %s
station: demo
capture:
  kind: sequence
  path: data/stream/%%04d.png
%sdetectors:                       # two variation models fitted by segad detector fit
  - name: fine
    model: %s/fine.onnx
  - name: coarse
    model: %s/coarse.onnx
segad:
  mask: data/stream/mask.png     # the 7-segment VAD-like mask (names in mask.names.txt)
  bundle: %s                 # segad fit's model, manifest and suggested threshold
mqtt:
  broker: embedded
  outbox: {path: state/outbox.db}
  embedded:
    listen: 127.0.0.1:%d
    users:
      - username: demo
        password: demo
        acl: [{topic: "segad/#", access: read}]
http:
  listen: "off"
audit:
  dir: audit
pipeline:
  queue: 4
  overflow: block
`, path, alignYAML, det, det, bundle, port)
	return os.WriteFile(path, []byte(cfg), 0o644)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("demo: no free local port for the MQTT broker: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func readManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("demo: %s: %w", path, err)
	}
	return &m, nil
}

func loadState(o LineOptions) *demoState {
	key := fmt.Sprintf("v1 seed=%d det=%d fit=%d/%d stream=%d/%.3f trees=%d rounds=%d",
		o.Seed, o.DetectorGood, o.FitGood, o.FitBadPerKind, o.Stream, o.BadShare, o.Trees, o.Rounds)
	if o.Jitter {
		key += " jitter"
	}
	s := &demoState{Options: key}
	b, err := os.ReadFile(filepath.Join(o.Dir, "demo-state.json"))
	if err != nil {
		return s
	}
	var old demoState
	if json.Unmarshal(b, &old) == nil && old.Options == key {
		return &old
	}
	return s
}

func (s *demoState) done(step string) bool {
	for _, d := range s.Steps {
		if d == step {
			return true
		}
	}
	return false
}

func (s *demoState) save(dir string) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return os.WriteFile(filepath.Join(dir, "demo-state.json"), b, 0o644)
}

// lineFollower subscribes to the results like a PLC and prints live lines.
type lineFollower struct {
	mu      sync.Mutex
	client  paho.Client
	results map[string]result.Result // by result ID (at-least-once: duplicates collapse)
	dups    int
}

func follow(port int, stream *Manifest, o LineOptions) (*lineFollower, error) {
	f := &lineFollower{results: map[string]result.Result{}}
	opts := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", port)).SetClientID("segad-demo-viewer").
		SetUsername("demo").SetPassword("demo").SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond)
	f.client = paho.NewClient(opts)
	if tok := f.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("demo: connect to the embedded broker: %v", tok.Error())
	}
	tok := f.client.Subscribe("segad/demo/result", 1, func(_ paho.Client, m paho.Message) {
		var r result.Result
		if err := json.Unmarshal(m.Payload(), &r); err != nil {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, dup := f.results[r.ID]; dup {
			f.dups++
			return
		}
		f.results[r.ID] = r
		if o.Quiet {
			return
		}
		kind := partKind(stream, r.PartID)
		score := "   n/a"
		if r.Score != nil {
			score = fmt.Sprintf("%6.2f", *r.Score)
		}
		fmt.Fprintf(o.Out, "part %4d %-20s %-5s score %s  map max fine %5.2f coarse %5.2f  %5.1f ms\n",
			r.Seq, kind, r.Verdict, score, r.MapMax["fine"], r.MapMax["coarse"], r.LatencyMS["total"])
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("demo: subscribe: %v", tok.Error())
	}
	return f, nil
}

// partKind finds a stream part's kind from its part ID (the file name).
func partKind(stream *Manifest, partID string) DefectKind {
	i, err := strconv.Atoi(strings.TrimLeft(partID, "0"))
	if partID != "" && strings.Trim(partID, "0") == "" {
		i, err = 0, nil
	}
	if err != nil || i < 0 || i >= len(stream.Parts) {
		return "?"
	}
	return stream.Parts[i].Kind
}

func (f *lineFollower) summarise(s *LineSummary, stream *Manifest) {
	// Give the last messages a moment to arrive after the broker flushed them.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		n := len(f.results)
		f.mu.Unlock()
		if n >= len(stream.Parts) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s.Parts, s.Results, s.Duplicates = len(stream.Parts), len(f.results), f.dups
	kinds := map[DefectKind]*KindSummary{}
	var seg, lat []float64
	mx := map[string][]float64{}
	var bad []bool
	var seenN, seenR, unseenN, unseenR, goodN, goodR int
	for _, r := range f.results {
		k := partKind(stream, r.PartID)
		dt, _ := LookupDefect(k)
		ks := kinds[k]
		if ks == nil {
			ks = &KindSummary{Kind: k, Unseen: dt.Unseen}
			kinds[k] = ks
		}
		ks.Parts++
		rej := r.Verdict != result.VerdictPass
		if rej {
			ks.Rejected++
		}
		switch {
		case k == PartGood:
			goodN++
			if rej {
				goodR++
			}
		case dt.Unseen:
			unseenN++
			if rej {
				unseenR++
			}
		default:
			seenN++
			if rej {
				seenR++
			}
		}
		if r.Score != nil {
			seg = append(seg, *r.Score)
			for _, dd := range demoDetectors {
				mx[dd.name] = append(mx[dd.name], r.MapMax[dd.name])
			}
			bad = append(bad, k != PartGood)
		}
		lat = append(lat, r.LatencyMS["total"])
	}
	s.AUROCSegAD, _ = metrics.AUROC(seg, bad)
	s.FPRAt95TPR, _, _ = metrics.FPRAt95TPR(seg, bad)
	s.AUROCMax = map[string]float64{}
	s.RecallAt5 = map[string]float64{"segad": metrics.RecallAtFPR(seg, bad, 0.05)}
	for name, xs := range mx {
		s.AUROCMax[name], _ = metrics.AUROC(xs, bad)
		s.RecallAt5[name] = metrics.RecallAtFPR(xs, bad, 0.05)
	}
	ratio := func(a, b int) float64 {
		if b == 0 {
			return math.NaN()
		}
		return float64(a) / float64(b)
	}
	s.SeenRecall, s.UnseenRec, s.FalseReject = ratio(seenR, seenN), ratio(unseenR, unseenN), ratio(goodR, goodN)
	s.Recall = ratio(seenR+unseenR, seenN+unseenN)
	for _, k := range kinds {
		s.Kinds = append(s.Kinds, *k)
	}
	sort.Slice(s.Kinds, func(i, j int) bool {
		if (s.Kinds[i].Kind == PartGood) != (s.Kinds[j].Kind == PartGood) {
			return s.Kinds[i].Kind == PartGood
		}
		if s.Kinds[i].Unseen != s.Kinds[j].Unseen {
			return !s.Kinds[i].Unseen
		}
		return s.Kinds[i].Kind < s.Kinds[j].Kind
	})
	sort.Float64s(lat)
	if len(lat) > 0 {
		s.P50MS = lat[len(lat)/2]
	}
	s.Fixturing = fixturingOf(f.results)
}

// Print writes the summary for people.
func (s *LineSummary) Print(w io.Writer) {
	fmt.Fprintf(w, "\nsummary: %d parts inspected, %d results received over MQTT (%d duplicates dropped by result ID)\n", s.Parts, s.Results, s.Duplicates)
	fmt.Fprintf(w, "  AUROC   SegAD %.3f   vs   detectors alone (map max):", s.AUROCSegAD)
	for _, dd := range demoDetectors {
		fmt.Fprintf(w, " %s %.3f", dd.name, s.AUROCMax[dd.name])
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  defects caught when 5%% of good parts are rejected: SegAD %.0f%%", 100*s.RecallAt5["segad"])
	for _, dd := range demoDetectors {
		fmt.Fprintf(w, ", %s alone %.0f%%", dd.name, 100*s.RecallAt5[dd.name])
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  at the bundle's suggested threshold %.3f (90%% recall on held-out folds of the training parts): seen defects caught %.0f%%, unseen defects caught %.0f%%, good parts rejected %.0f%%\n",
		s.Threshold, 100*s.SeenRecall, 100*s.UnseenRec, 100*s.FalseReject)
	for _, k := range s.Kinds {
		tag := "seen"
		switch {
		case k.Kind == PartGood:
			tag = "good"
		case k.Unseen:
			tag = "UNSEEN in training"
		}
		fmt.Fprintf(w, "    %-22s %3d of %3d rejected  (%s)\n", k.Kind, k.Rejected, k.Parts, tag)
	}
	if fx := s.Fixturing; fx != nil {
		fmt.Fprintf(w, "  fixturing (parts jittered by up to %.0f%% and %.0f degrees): %d located, %d not located (failed closed); shift mean %.1f px, max %.1f px; turn mean %.1f, max %.1f degrees\n",
			100*JitterShift, JitterAngle, fx.Located, fx.NotLocated, fx.MeanShift, fx.MaxShift, fx.MeanAngle, fx.MaxAngle)
		if u := fx.Without; u != nil {
			fmt.Fprintf(w, "  the same jittered parts, with and without fixturing (detectors and forest fitted each way; at each bundle's suggested threshold):\n")
			fmt.Fprintf(w, "    %-34s AUROC %.3f  FPR@95TPR %.2f  defects caught %3.0f%%  good parts rejected %3.0f%%\n",
				"with fixturing (this line)", s.AUROCSegAD, s.FPRAt95TPR, 100*s.Recall, 100*s.FalseReject)
			fmt.Fprintf(w, "    %-34s AUROC %.3f  FPR@95TPR %.2f  defects caught %3.0f%%  good parts rejected %3.0f%%\n",
				"without fixturing (scored offline)", u.AUROC, u.FPRAt95TPR, 100*u.Recall, 100*u.FalseReject)
		}
	}
	fmt.Fprintf(w, "  latency per part p50 %.1f ms\n", s.P50MS)
	fmt.Fprintf(w, "  audit images of rejected parts: %s\n  the line's config: %s (try: segad config check %s)\n", s.AuditDir, s.Config, s.Config)
}
