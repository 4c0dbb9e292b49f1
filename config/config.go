// Package config is segad-edge's one YAML file: its schema, defaults,
// validation with errors that name the file, line and key, and what each
// key takes to change on a hot reload (reload.go: the class table, Diff,
// Applicable); the daemon applies the reload.
//
// Each stage owns its own section type (capture.Config, infer.DetectorConfig,
// mqttconfig.Config, ...); this package only composes them, fills defaults,
// resolves relative paths against the config file's folder and checks that
// the sections agree with each other.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/infer"
	"github.com/segad-edge/segad-edge/mqtt/mqttconfig"
	"github.com/segad-edge/segad-edge/segad"
)

// Config is the whole daemon configuration.
type Config struct {
	// Station names this inspection station in topics, results and metrics.
	Station string `yaml:"station"`
	// Log sets the log level and format.
	Log LogConfig `yaml:"log"`
	// ONNXRuntime locates the ONNX Runtime shared library.
	ONNXRuntime ORTConfig `yaml:"onnxruntime"`
	// Capture is the frame source.
	Capture capture.Config `yaml:"capture"`
	// Detectors are the K anomaly detectors, in feature order.
	Detectors []infer.DetectorConfig `yaml:"detectors"`
	// Classifier is the optional supervised classifier whose score is the
	// extra feature after the per-detector maxima.
	Classifier *infer.ClassifierConfig `yaml:"classifier"`
	// SegAD holds the mask, the forest and the thresholds.
	SegAD SegADConfig `yaml:"segad"`
	// MQTT is where results go.
	MQTT mqttconfig.Config `yaml:"mqtt"`
	// HTTP is the health, metrics and inspect API.
	HTTP HTTPConfig `yaml:"http"`
	// Audit keeps images of failed (and sampled passed) parts.
	Audit AuditConfig `yaml:"audit"`
	// Pipeline tunes queues and shutdown.
	Pipeline PipelineConfig `yaml:"pipeline"`
	// Fit holds `segad fit`'s training hyper-parameters (the daemon ignores it).
	Fit FitConfig `yaml:"fit"`
	// History records every result (queries, labels, training).
	History HistoryConfig `yaml:"history"`
	// PLC holds the Modbus TCP and OPC UA servers.
	PLC PLCConfig `yaml:"plc"`
	// Assurance holds golden-sample challenges and drift alarms.
	Assurance AssuranceConfig `yaml:"assurance"`
	// Console is the technician console's users and limits (docs/console.md).
	Console ConsoleConfig `yaml:"console"`

	// Path is the file the configuration was read from ("" when built in code).
	Path string `yaml:"-"`
	// lines maps YAML paths ("$.segad.threshold") to source lines, for errors.
	lines map[string]int
}

// LogConfig sets up log/slog.
type LogConfig struct {
	// Level is debug, info, warn or error (default info).
	Level string `yaml:"level"`
	// Format is text or json (default text; json suits log shippers).
	Format string `yaml:"format"`
}

// ORTConfig locates ONNX Runtime.
type ORTConfig struct {
	// Library is the path of libonnxruntime.so; default: $SEGAD_ONNXRUNTIME_LIB,
	// then the copy `make setup` installs.
	Library string `yaml:"library"`
}

// SegADConfig is the SegAD stage: mask, forest, thresholds.
type SegADConfig struct {
	// Mask is a label image (PNG or .npy) or "builtin:vad" for the built-in
	// 7-segment VAD-style template, or a segmentation model run per frame
	// (see MaskConfig).
	Mask MaskConfig `yaml:"mask"`
	// Segments names the mask's segments in label order (default: the mask's
	// sidecar names file, else seg0..).
	Segments []string `yaml:"segments"`
	// Model is the boosted random forest (XGBoost JSON or LightGBM text).
	Model string `yaml:"model"`
	// Bundle is a model bundle folder written by `segad fit` (model, manifest
	// and suggested threshold); use either Model or Bundle.
	Bundle string `yaml:"bundle"`
	// Threshold is the score at and above which a part fails. Required with
	// Model; with Bundle it defaults to the bundle's suggested threshold.
	Threshold *float64 `yaml:"threshold"`
	// WarnThreshold, when set and below Threshold, flags passed parts whose
	// score is at or above it (a "warn" band for drift before rejects).
	WarnThreshold *float64 `yaml:"warn_threshold"`
	// Shadow is a candidate model scored beside the live one (shadow.go).
	Shadow *ShadowConfig `yaml:"shadow"`
}

// HTTPConfig is the daemon's HTTP server.
type HTTPConfig struct {
	// Listen is host:port; default 127.0.0.1:8080. Empty string "off" disables.
	Listen string `yaml:"listen"`
	// Token, when set, is required as "Authorization: Bearer <token>" on every
	// endpoint but /healthz and /readyz. Required when Listen is not loopback.
	Token string `yaml:"token"`
	// TLSCert and TLSKey enable HTTPS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// MaxBody is the largest POST /inspect upload in bytes (default 32 MiB);
	// larger ones get 413 before they are read.
	MaxBody int64 `yaml:"max_body"`
	// MaxInspect is how many /inspect requests run at once (default 2); each
	// holds its upload and decoded image, more get 503 with Retry-After.
	MaxInspect int `yaml:"max_inspect"`
	// MaxConnections caps concurrent HTTP connections (default 64).
	MaxConnections int `yaml:"max_connections"`
}

// AuditConfig is the audit image store.
type AuditConfig struct {
	// Dir is where audit images and result JSON go; empty disables audit.
	Dir string `yaml:"dir"`
	// SamplePass is the share of passed parts also saved (0..1, default 0).
	SamplePass float64 `yaml:"sample_pass"`
	// MaxBytes bounds the folder's size (default 1 GiB; 0 means the
	// default); oldest entries are deleted first.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxAge deletes entries older than this (default 30 days; 0 means the
	// default: the folder is always bounded, a full disk would stop the line).
	MaxAge time.Duration `yaml:"max_age"`
}

// PipelineConfig tunes the stages' queues and shutdown.
type PipelineConfig struct {
	// Queue is the number of frames waiting for inference (default 2).
	Queue int `yaml:"queue"`
	// Overflow is what happens when inference falls behind: drop_oldest
	// (default; counted) or block (the source waits).
	Overflow string `yaml:"overflow"`
	// ShutdownTimeout bounds a graceful stop (default 10s).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Warmup is the number of warm-up runs per detector at start (default 3).
	Warmup int `yaml:"warmup"`
}

// FitConfig overrides the boosted random forest's hyper-parameters for
// `segad fit`. Unset keys keep the paper's values (200 parallel trees x 10
// rounds, eta 0.3, depth 5, subsample and colsample 0.6, reg_alpha 1,
// scale_pos_weight n_good/n_bad); command-line flags override both. The
// keys are merged with the flags in one place, fit.TrainOptions.ApplyConfig.
type FitConfig struct {
	Trees           *int      `yaml:"trees"`            // num_parallel_tree
	Rounds          *int      `yaml:"rounds"`           // boosting rounds (n_estimators)
	Eta             *float64  `yaml:"eta"`              // learning rate
	MaxDepth        *int      `yaml:"max_depth"`        // tree depth
	Subsample       *float64  `yaml:"subsample"`        // rows per tree
	ColsampleByTree *float64  `yaml:"colsample_bytree"` // features per tree
	ColsampleByNode *float64  `yaml:"colsample_bynode"` // features per split
	RegAlpha        *float64  `yaml:"reg_alpha"`        // L1 on leaf weights
	ScalePosWeight  *float64  `yaml:"scale_pos_weight"` // 0: n_good/n_bad
	Seed            *int      `yaml:"seed"`             // XGBoost sampling, subsets, folds
	Threads         *int      `yaml:"threads"`          // 0: all cores
	Recalls         []float64 `yaml:"recalls"`          // operating points; the first gives the suggested threshold
}

// Error is a configuration problem with where it is.
type Error struct {
	// File is the config file ("" for a config built in code).
	File string
	// Line is the line of Key in File (0 when unknown).
	Line int
	// Key is the YAML path, e.g. "segad.threshold" or "detectors[1].model".
	Key string
	// Msg says what is wrong and what is expected.
	Msg string
}

// Error formats the problem as FILE:LINE: KEY: MESSAGE.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads, defaults, resolves and validates a config file. Only a
// regular file of at most MaxFileBytes is read (see Parse for the other
// limits).
func Load(path string) (*Config, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse is Load on bytes already read; path is used for errors and to
// resolve relative paths. The text is checked against MaxFileBytes,
// MaxLines, MaxDepth and MaxNodes before it is decoded, so a hostile or
// mistaken file costs milliseconds and little memory, never gigabytes.
func Parse(path string, data []byte) (*Config, error) {
	if err := prescan(path, data); err != nil {
		return nil, err
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, yamlError(path, err)
	}
	if err := checkNodes(path, f.Docs); err != nil {
		return nil, err
	}
	// MQTT's defaults are set before decoding, because some of its zero
	// values are choices (qos: 0, retain: false); every other default
	// fills a zero value afterwards (Defaults).
	c := &Config{Path: path, MQTT: mqttconfig.Defaults()}
	if err := yaml.UnmarshalWithOptions(data, c, yaml.Strict()); err != nil {
		return nil, yamlError(path, err)
	}
	c.lines = lineIndex(f)
	// Paths first: defaults derived from them (the capture source's name)
	// see the resolved path.
	c.resolvePaths(filepath.Dir(path))
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// yamlError turns a go-yaml error into an Error with file and line.
func yamlError(path string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) {
		e := &Error{File: path, Msg: clip(ye.GetMessage(), 300)}
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			e.Line = tk.Position.Line
		}
		var uf *yaml.UnknownFieldError
		if errors.As(err, &uf) {
			e.Msg = strings.Replace(e.Msg, "unknown field", "unknown key", 1) + " (check the spelling and indentation; `segad config example` lists every key)"
		}
		return e
	}
	return &Error{File: path, Msg: clip(err.Error(), 300)}
}

// clip shortens s to at most n bytes (on a rune boundary), so that an
// error never echoes a megabyte of hostile input into the log.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("... (%d bytes)", len(s))
}

// lineIndex records the line of every mapping key, by YAML path, so that
// validation errors found after decoding can still point at the line.
func lineIndex(f *ast.File) map[string]int {
	lines := map[string]int{}
	for _, doc := range f.Docs {
		ast.Walk(lineVisitor(lines), doc)
	}
	return lines
}

type lineVisitor map[string]int

func (v lineVisitor) Visit(n ast.Node) ast.Visitor {
	if n == nil {
		return nil
	}
	if mv, ok := n.(*ast.MappingValueNode); ok && mv.Key != nil {
		if tk := mv.Key.GetToken(); tk != nil && tk.Position != nil {
			p := mv.GetPath()
			if _, seen := v[p]; !seen {
				v[p] = tk.Position.Line
			}
		}
	}
	return v
}

// errorAt builds an Error for key (written without the "$." prefix).
func (c *Config) errorAt(key string, format string, args ...any) *Error {
	e := &Error{File: c.Path, Key: key, Msg: fmt.Sprintf(format, args...)}
	// Walk up the path until a key with a known line is found.
	for p := key; p != ""; {
		if l, ok := c.lines["$."+p]; ok {
			e.Line = l
			break
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return e
}

// sectionError reports a stage's own validation error (which already names
// its keys) at the line of the section it came from, one error per line of
// the stage's message.
func (c *Config) sectionError(section string, err error) error {
	var out []error
	for _, msg := range strings.Split(err.Error(), "\n") {
		if msg = strings.TrimSpace(msg); msg == "" {
			continue
		}
		e := c.errorAt(section, "%s", msg)
		if strings.HasPrefix(msg, strings.SplitN(section, "[", 2)[0]) {
			e.Key = "" // the stage's message names the key itself
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return c.errorAt(section, "%v", err)
	}
	return errors.Join(out...)
}

// Defaults fills every unset key with its documented default, every
// section's included (capture, detectors, classifier); config.Parse calls it
// after resolving relative paths. The default values are written once, here
// or in the section's own Defaults; config/example.yaml and the key tables in
// README.md and docs/ are held against them by tests.
func (c *Config) Defaults() {
	if c.Station == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.Station = h
		} else {
			c.Station = "station1"
		}
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.ONNXRuntime.Library == "" {
		// Relative to the config file's folder, like a path in the file.
		c.ONNXRuntime.Library = resolvePath(filepath.Dir(c.Path), os.Getenv("SEGAD_ONNXRUNTIME_LIB"))
	}
	c.Capture.Defaults()
	for i := range c.Detectors {
		c.Detectors[i].Defaults()
	}
	if c.Classifier != nil {
		c.Classifier.Defaults()
	}
	c.SegAD.Mask.Defaults()
	if c.MQTT.Station == "" {
		c.MQTT.Station = c.Station // one station name for topics and payloads
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = "127.0.0.1:8080"
	}
	if c.HTTP.MaxBody == 0 {
		c.HTTP.MaxBody = 32 << 20
	}
	if c.HTTP.MaxInspect == 0 {
		c.HTTP.MaxInspect = 2
	}
	if c.HTTP.MaxConnections == 0 {
		c.HTTP.MaxConnections = 64
	}
	if c.Audit.MaxBytes == 0 {
		c.Audit.MaxBytes = 1 << 30
	}
	if c.Audit.MaxAge == 0 {
		c.Audit.MaxAge = 30 * 24 * time.Hour
	}
	if c.Pipeline.Queue == 0 {
		c.Pipeline.Queue = 2
	}
	if c.Pipeline.Overflow == "" {
		c.Pipeline.Overflow = "drop_oldest"
	}
	if c.Pipeline.ShutdownTimeout == 0 {
		c.Pipeline.ShutdownTimeout = 10 * time.Second
	}
	if c.Pipeline.Warmup == 0 {
		c.Pipeline.Warmup = 3
	}
	c.outputDefaults()
	c.shadowDefaults()
	c.consoleDefaults()
	c.goldenDefaults()
	c.driftDefaults()
}

// resolvePaths makes file paths relative to the config file's folder, so a
// config and its models can move together.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) { *p = resolvePath(dir, *p) }
	abs(&c.ONNXRuntime.Library)
	abs(&c.SegAD.Mask.File)
	abs(&c.SegAD.Mask.Model)
	abs(&c.SegAD.Model)
	abs(&c.SegAD.Bundle)
	for i := range c.Detectors {
		abs(&c.Detectors[i].Model)
	}
	if c.Classifier != nil {
		abs(&c.Classifier.Model)
	}
	abs(&c.Audit.Dir)
	abs(&c.MQTT.Outbox.Path)
	abs(&c.History.Path)
	abs(&c.Assurance.Golden.Dir)
	abs(&c.HTTP.TLSCert)
	abs(&c.HTTP.TLSKey)
	abs(&c.Capture.Align.Reference)
	c.shadowPaths(dir)
	switch c.Capture.Kind {
	case "video", "sequence", "folder", "watch":
		abs(&c.Capture.Path)
	}
}

// resolvePath joins a relative path to dir; empty, absolute and builtin:
// paths stay as they are.
func resolvePath(dir, p string) string {
	if p != "" && !filepath.IsAbs(p) && !strings.HasPrefix(p, "builtin:") {
		return filepath.Join(dir, p)
	}
	return p
}

// Validate checks every section and how they fit together. It does not open
// model, mask or bundle files: model.Build does (at start, reload and
// `segad config check`).
func (c *Config) Validate() error {
	var errs []error
	add := func(e error) {
		if e != nil {
			errs = append(errs, e)
		}
	}
	add(c.validateStation())
	if len(c.Detectors) > MaxDetectors {
		add(c.errorAt("detectors", "%d detectors: at most %d (each adds 4 features per segment and its own inference time; K = 1..3 is usual)", len(c.Detectors), MaxDetectors))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add(c.errorAt("log.level", "%q is not a level: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add(c.errorAt("log.format", "%q is not a format: want text or json", c.Log.Format))
	}
	if err := c.Capture.Validate(); err != nil {
		add(c.sectionError("capture", err))
	}
	if len(c.Detectors) == 0 {
		add(c.errorAt("detectors", "at least one detector is needed"))
	}
	seen := map[string]int{}
	for i := range c.Detectors {
		d := &c.Detectors[i]
		key := fmt.Sprintf("detectors[%d]", i)
		if err := d.Validate(); err != nil {
			add(c.sectionError(key, err))
		}
		if j, dup := seen[d.Name]; dup {
			add(c.errorAt(key+".name", "name %q is also used by detectors[%d]: names must be unique (they name features)", d.Name, j))
		}
		seen[d.Name] = i
	}
	if c.Classifier != nil {
		if err := c.Classifier.Validate(); err != nil {
			add(c.sectionError("classifier", err))
		}
	}
	add(c.validateSegAD())
	if c.MQTT.Station != c.Station {
		add(c.errorAt("mqtt.station", "%q differs from station %q: set the station once, at the top level (it names topics and results alike)", c.MQTT.Station, c.Station))
	}
	// An empty broker means "no MQTT" (segad inspect, segad bench); `segad
	// run` requires one (daemon.New says so).
	if c.MQTT.Broker != "" {
		if err := c.MQTT.Validate(); err != nil {
			add(c.sectionError("mqtt", err))
		}
	}
	add(c.validateHTTP())
	add(c.validateRanges())
	add(c.validateFit())
	add(c.validateOutputs())
	add(c.validateShadow())
	add(c.validateConsole())
	add(c.validateGolden())
	add(c.validateDrift())
	return errors.Join(errs...)
}

func (c *Config) validateSegAD() error {
	s := c.SegAD
	var errs []error
	errs = append(errs, c.validateMask()...)
	switch {
	case s.Model == "" && s.Bundle == "":
		errs = append(errs, c.errorAt("segad", "set model (a BRF file) or bundle (a folder from `segad fit`)"))
	case s.Model != "" && s.Bundle != "":
		errs = append(errs, c.errorAt("segad.bundle", "set model or bundle, not both"))
	case s.Model != "" && s.Threshold == nil:
		errs = append(errs, c.errorAt("segad", "threshold is required with model (the score at and above which a part fails)"))
	}
	for _, e := range []error{c.thresholdRange("segad.threshold", s.Threshold), c.thresholdRange("segad.warn_threshold", s.WarnThreshold)} {
		if e != nil {
			errs = append(errs, e)
		}
	}
	if len(s.Segments) > segad.MaxSegments {
		errs = append(errs, c.errorAt("segad.segments", "%d names: a mask has at most %d segments (labels 0..254; 255 = ignore)", len(s.Segments), segad.MaxSegments))
	} else {
		seen := map[string]int{}
		for i, n := range s.Segments {
			key := fmt.Sprintf("segad.segments[%d]", i)
			if err := segad.CheckName(n); err != nil {
				errs = append(errs, c.errorAt(key, "%v", err))
			} else if j, dup := seen[n]; dup {
				errs = append(errs, c.errorAt(key, "%q is also segad.segments[%d]: segment names must be unique (they name features)", n, j))
			}
			seen[n] = i
		}
	}
	if s.Threshold != nil && s.WarnThreshold != nil && *s.WarnThreshold >= *s.Threshold {
		errs = append(errs, c.errorAt("segad.warn_threshold", "%v must be below threshold %v (the warn band lies under the fail threshold)", *s.WarnThreshold, *s.Threshold))
	}
	return errors.Join(errs...)
}

func (c *Config) validateFit() error {
	f := c.Fit
	var errs []error
	add := func(e error) {
		if e != nil {
			errs = append(errs, e)
		}
	}
	ints := []struct {
		key    string
		v      *int
		lo, hi int
		why    string
	}{
		{"trees", f.Trees, 1, 10000, "parallel trees per round (the paper's 200)"},
		{"rounds", f.Rounds, 1, 10000, "boosting rounds (the paper's 10)"},
		{"max_depth", f.MaxDepth, 1, 16, "each tree has up to 2^max_depth leaves (the paper's 5); deeper trees overfit and slow every frame"},
		{"threads", f.Threads, 0, 1024, "0 uses all cores"},
		{"seed", f.Seed, 0, math.MaxInt32, "XGBoost takes a 32-bit seed"},
	}
	for _, k := range ints {
		if k.v != nil {
			add(c.intRange("fit."+k.key, int64(*k.v), int64(k.lo), int64(k.hi), k.why))
		}
	}
	if f.Trees != nil && f.Rounds != nil && *f.Trees >= 1 && *f.Rounds >= 1 && *f.Trees**f.Rounds > MaxForestTrees {
		add(c.errorAt("fit.trees", "trees %d x rounds %d = %d trees: at most %d (the paper's forest has 2000; every tree costs time on every frame)", *f.Trees, *f.Rounds, *f.Trees**f.Rounds, MaxForestTrees))
	}
	shares := []struct {
		key string
		v   *float64
	}{{"eta", f.Eta}, {"subsample", f.Subsample}, {"colsample_bytree", f.ColsampleByTree}, {"colsample_bynode", f.ColsampleByNode}}
	for _, k := range shares {
		if k.v != nil && !(*k.v > 0 && *k.v <= 1) {
			add(c.errorAt("fit."+k.key, "%v out of range (0, 1]: a share (learning rate, or part of the rows/features sampled)", *k.v))
		}
	}
	if f.RegAlpha != nil {
		add(c.floatRange("fit.reg_alpha", *f.RegAlpha, 0, 1e6, "L1 regularisation of leaf weights (the paper's 1)"))
	}
	if f.ScalePosWeight != nil {
		add(c.floatRange("fit.scale_pos_weight", *f.ScalePosWeight, 0, 1e6, "weight of bad images (0: n_good/n_bad)"))
	}
	if len(f.Recalls) > MaxRecalls {
		add(c.errorAt("fit.recalls", "%d operating points: at most %d", len(f.Recalls), MaxRecalls))
	}
	for i, r := range f.Recalls {
		if !(r > 0 && r < 1) {
			add(c.errorAt(fmt.Sprintf("fit.recalls[%d]", i), "%v out of range (0, 1): want a recall between 0 and 1 (e.g. 0.95)", r))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) validateHTTP() error {
	h := c.HTTP
	if h.Listen == "off" {
		return nil
	}
	host, port, err := net.SplitHostPort(h.Listen)
	if err != nil {
		return c.errorAt("http.listen", "%q: want host:port ([::1]:8080 for IPv6), or off", clip(h.Listen, 80))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return c.errorAt("http.listen", "port %q out of range [1, 65535]: give the TCP port as a number", clip(port, 20))
	}
	if (h.TLSCert == "") != (h.TLSKey == "") {
		return c.errorAt("http", "set both tls_cert and tls_key, or neither")
	}
	if err := errors.Join(
		c.intRange("http.max_body", h.MaxBody, 1<<20, 1<<30,
			"the largest /inspect upload in bytes (33554432 = 32 MiB holds a 20-megapixel PNG)"),
		c.intRange("http.max_inspect", int64(h.MaxInspect), 1, 64,
			"/inspect requests decoded and inspected at once; each holds an image in memory and competes with the line for the detectors"),
		c.intRange("http.max_connections", int64(h.MaxConnections), 4, 10000,
			"concurrent HTTP connections (health checks, metrics scrapes and consoles each hold one)"),
	); err != nil {
		return err
	}
	if h.Token != "" {
		if err := checkToken(h.Token); err != nil {
			return c.errorAt("http.token", "%v", err)
		}
	}
	if !loopbackHost(host) && h.Token == "" {
		return c.errorAt("http.token", "required when http.listen (%s) is not a loopback address: anyone on the network could trigger inspections (generate one with: %s)", h.Listen, tokenAdvice)
	}
	return nil
}

// OnLoopback reports whether http.listen serves loopback clients only.
func (h HTTPConfig) OnLoopback() bool {
	host, _, err := net.SplitHostPort(h.Listen)
	return err == nil && loopbackHost(host)
}

func loopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// Line returns the source line of a key ("segad.threshold"), 0 if unknown.
func (c *Config) Line(key string) int { return c.lines["$."+key] }
