package capture

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gocv.io/x/gocv"
)

// Kind names a source type in the YAML config (`kind:`).
type Kind string

// The source kinds. Live kinds (device, stream, gstreamer) run a grabber
// goroutine with a watchdog and reconnect; file kinds are read on demand and
// end with io.EOF (except watch, which waits for new files forever).
const (
	KindDevice    Kind = "device"    // V4L2 camera: index or /dev/videoN
	KindStream    Kind = "stream"    // RTSP/HTTP (or any FFMPEG URL)
	KindGStreamer Kind = "gstreamer" // raw GStreamer pipeline ending in appsink
	KindVideo     Kind = "video"     // recorded video file, replayed once
	KindSequence  Kind = "sequence"  // printf image sequence, e.g. frames/%04d.png
	KindFolder    Kind = "folder"    // batch: every image in a folder, sorted by name
	KindWatch     Kind = "watch"     // drop folder: new files inspected once complete
)

// Trigger modes (`trigger.mode:`).
const (
	TriggerFreeRun  = "free-run"  // every frame is a part
	TriggerOnDemand = "on-demand" // Trigger(partID) grabs the freshest frame
)

// Colour orders of Frame.Image (`preprocess.color:`).
const (
	ColorBGR  = "bgr"  // OpenCV's native order; what infer expects
	ColorRGB  = "rgb"  // swapped channels
	ColorGray = "gray" // luminance replicated into three channels (mono lines)
)

// Config selects and tunes one frame source. config/ embeds it under a
// source entry; every field has a working default so that a config naming
// only kind and its target (device/url/pipeline/path) is complete.
type Config struct {
	// Name identifies the source in frames, logs and metrics; defaults to
	// "<kind>:<target>".
	Name string `yaml:"name"`
	Kind Kind   `yaml:"kind"`

	// Device is a V4L2 index ("0") or a device node ("/dev/video0").
	Device string `yaml:"device"`
	// Width/Height/FPS request a capture mode from the camera (0 = leave).
	Width  int     `yaml:"width"`
	Height int     `yaml:"height"`
	FPS    float64 `yaml:"fps"`
	// Exposure is handed to CAP_PROP_EXPOSURE as is (units are driver
	// specific); nil leaves the camera's automatic exposure alone.
	Exposure *float64 `yaml:"exposure"`

	// URL of a network stream, opened with OpenCV's FFMPEG backend.
	URL string `yaml:"url"`
	// Pipeline is a GStreamer launch line that must end in appsink.
	Pipeline string `yaml:"pipeline"`
	// Path is the file, printf pattern or folder for video, sequence,
	// folder and watch.
	Path string `yaml:"path"`
	// Pattern filters file names in folder and watch (path.Match syntax);
	// empty means every regular, non-hidden file.
	Pattern string `yaml:"pattern"`

	// Limits bound image files and decodes (process-wide; see Limits).
	Limits Limits `yaml:"limits"`

	Watch      WatchConfig      `yaml:"watch"`
	Preprocess PreprocessConfig `yaml:"preprocess"`
	Trigger    TriggerConfig    `yaml:"trigger"`
	Reconnect  ReconnectConfig  `yaml:"reconnect"`
	// Align is fixturing: frames registered to a reference part image and
	// warped into its pose (align.go, docs/fixturing.md). Defaults copies
	// it into Preprocess.Align, so every path that preprocesses frames
	// with this config's PreprocessConfig registers them the same way.
	Align AlignConfig `yaml:"align"`

	// Watchdog is the longest a single Read of a live source may block before
	// the source counts as stalled and is reopened (default 5s).
	Watchdog time.Duration `yaml:"watchdog"`
	// OpenTimeout bounds opening a live source (RTSP connects, GStreamer
	// preroll); default 30s.
	OpenTimeout time.Duration `yaml:"open_timeout"`

	// Logger receives the source's structured logs; nil means slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// WatchConfig tunes the watch folder.
type WatchConfig struct {
	// DoneDir and FailedDir receive acknowledged files; relative paths are
	// relative to the watch folder (defaults "done" and "failed").
	DoneDir   string `yaml:"done_dir"`
	FailedDir string `yaml:"failed_dir"`
	// Poll is the interval between directory scans (default 200ms); fsnotify
	// events wake the scanner earlier.
	Poll time.Duration `yaml:"poll"`
	// StablePolls is how many consecutive scans must see the same size and
	// modification time before a file counts as complete (default 2).
	StablePolls int `yaml:"stable_polls"`
	// Grace is how long a file that still decodes as truncated is given to
	// be completed by a slow writer before it is reported as an error frame
	// (default 10s).
	Grace time.Duration `yaml:"grace"`
}

// PreprocessConfig describes Frame.Image: ROI crop, then resize, then colour.
type PreprocessConfig struct {
	// Width and Height of Frame.Image (default 256x256, the detectors' input).
	Width  int `yaml:"width"`
	Height int `yaml:"height"`
	// Interpolation: area (default, closest to anomalib's antialiased
	// resize), linear, cubic, nearest, lanczos.
	Interpolation string `yaml:"interpolation"`
	// ROI crops the original frame before resizing; nil = whole frame.
	ROI *ROI `yaml:"roi"`
	// Color: bgr (default), rgb or gray.
	Color string `yaml:"color"`
	// Align is set from capture.align by Config.Defaults (not a key of its
	// own): registration is the last preprocessing step, after colour.
	Align AlignConfig `yaml:"-"`
}

// ROI is a fixed rectangle in original-frame pixels.
type ROI struct {
	X      int `yaml:"x"`
	Y      int `yaml:"y"`
	Width  int `yaml:"width"`
	Height int `yaml:"height"`
}

// TriggerConfig selects when a frame becomes a part.
type TriggerConfig struct {
	// Mode: free-run (default) or on-demand (live kinds only).
	Mode string `yaml:"mode"`
	// MaxRate caps free-run frames per second (0 = unlimited); frames in
	// between are dropped at the grabber so they cost no preprocessing.
	MaxRate float64 `yaml:"max_rate"`
	// Timeout is how long an on-demand trigger waits for a fresh frame before
	// Next returns an error frame for that part (default 2s).
	Timeout time.Duration `yaml:"timeout"`
}

// ReconnectConfig is the exponential backoff between reopen attempts.
type ReconnectConfig struct {
	Initial time.Duration `yaml:"initial"` // default 500ms
	Max     time.Duration `yaml:"max"`     // default 30s
}

// defaultFrameSize is the side of Frame.Image when neither the
// configuration nor the model sets one.
const defaultFrameSize = 256

// Defaults fills every unset key with its default (config.Parse applies it
// to the file's capture: section). Two keys are left alone: preprocess
// width and height stay 0 when unset, because the model completes them with
// the first detector's input size (model.Model.Preprocess); a source opened
// with 0 takes defaultFrameSize. The name is derived from the kind and its
// target, so call Defaults after relative paths are resolved.
func (c *Config) Defaults() {
	if c.Preprocess.Interpolation == "" {
		c.Preprocess.Interpolation = "area"
	}
	if c.Preprocess.Color == "" {
		c.Preprocess.Color = ColorBGR
	}
	if c.Trigger.Mode == "" {
		c.Trigger.Mode = TriggerFreeRun
	}
	if c.Trigger.Timeout == 0 {
		c.Trigger.Timeout = 2 * time.Second
	}
	if c.Reconnect.Initial == 0 {
		c.Reconnect.Initial = 500 * time.Millisecond
	}
	if c.Reconnect.Max == 0 {
		c.Reconnect.Max = 30 * time.Second
	}
	if c.Watchdog == 0 {
		c.Watchdog = 5 * time.Second
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = 30 * time.Second
	}
	if c.Watch.DoneDir == "" {
		c.Watch.DoneDir = "done"
	}
	if c.Watch.FailedDir == "" {
		c.Watch.FailedDir = "failed"
	}
	if c.Watch.Poll == 0 {
		c.Watch.Poll = 200 * time.Millisecond
	}
	if c.Watch.StablePolls == 0 {
		c.Watch.StablePolls = 2
	}
	if c.Watch.Grace == 0 {
		c.Watch.Grace = 10 * time.Second
	}
	c.Limits.Defaults()
	c.Align.Defaults()
	// Preprocess.Align is not a YAML key: a config sets capture.align, and
	// code that builds a PreprocessConfig by hand (DecodeFrame callers)
	// sets Preprocess.Align, which a Config around it must not clear.
	if c.Align.Enabled() || !c.Preprocess.Align.Enabled() {
		c.Preprocess.Align = c.Align
	} else {
		c.Preprocess.Align.Defaults()
	}
	if c.Name == "" {
		c.Name = string(c.Kind) + ":" + c.target()
	}
}

// withDefaults returns a copy ready to open: Defaults, the default frame
// size where neither the configuration nor the model set one, and the
// logger.
func (c Config) withDefaults() Config {
	c.Defaults()
	if c.Preprocess.Width == 0 {
		c.Preprocess.Width = defaultFrameSize
	}
	if c.Preprocess.Height == 0 {
		c.Preprocess.Height = defaultFrameSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// target is the one field that says what to open for the configured kind.
func (c Config) target() string {
	switch c.Kind {
	case KindDevice:
		return c.Device
	case KindStream:
		return redactURL(c.URL)
	case KindGStreamer:
		return c.Pipeline
	default:
		return c.Path
	}
}

// Validate reports every problem in the config at once, naming the YAML key,
// so an operator can fix the file in one go. Defaults are applied first.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("capture source %q: %s: %s", c.Name, key, fmt.Sprintf(format, a...)))
	}
	live := false
	switch c.Kind {
	case KindDevice:
		live = true
		if _, err := parseDevice(c.Device); err != nil {
			bad("device", "%v", err)
		}
	case KindStream:
		live = true
		if c.URL == "" {
			bad("url", "required for kind stream (rtsp://..., http://...)")
		}
	case KindGStreamer:
		live = true
		if c.Pipeline == "" {
			bad("pipeline", "required for kind gstreamer")
		} else if !strings.Contains(c.Pipeline, "appsink") {
			bad("pipeline", "must end in appsink so OpenCV can pull frames, got %q", c.Pipeline)
		}
	case KindVideo, KindSequence, KindFolder, KindWatch:
		if c.Path == "" {
			bad("path", "required for kind %s", c.Kind)
		}
	case "":
		bad("kind", "required: one of device, stream, gstreamer, video, sequence, folder, watch")
	default:
		bad("kind", "unknown kind %q: want device, stream, gstreamer, video, sequence, folder or watch", c.Kind)
	}
	// Every number gets a range: an unbounded one is a way to spin a core
	// (poll 1ns), allocate gigabytes (preprocess 100000x100000) or never
	// recover (a reconnect delay of a year).
	intIn := func(key string, v, lo, hi int) {
		if v < lo || v > hi {
			bad(key, "%d is outside %d..%d", v, lo, hi)
		}
	}
	durIn := func(key string, v, lo, hi time.Duration) {
		if v < lo || v > hi {
			bad(key, "%s is outside %s..%s", v, lo, hi)
		}
	}
	intIn("width", c.Width, 0, maxCameraSide)
	intIn("height", c.Height, 0, maxCameraSide)
	if math.IsNaN(c.FPS) || c.FPS < 0 || c.FPS > maxFPS {
		bad("fps", "%v is outside 0..%d", c.FPS, maxFPS)
	}
	if c.Exposure != nil && (math.IsNaN(*c.Exposure) || math.IsInf(*c.Exposure, 0)) {
		bad("exposure", "must be a finite number, got %v", *c.Exposure)
	}
	p := c.Preprocess
	intIn("preprocess.width", p.Width, 1, maxPreprocessSide)
	intIn("preprocess.height", p.Height, 1, maxPreprocessSide)
	if _, err := interpolation(p.Interpolation); err != nil {
		bad("preprocess.interpolation", "%v", err)
	}
	switch p.Color {
	case ColorBGR, ColorRGB, ColorGray:
	default:
		bad("preprocess.color", "unknown colour %q: want bgr, rgb or gray", p.Color)
	}
	if r := p.ROI; r != nil && (r.X < 0 || r.Y < 0 || r.Width <= 0 || r.Height <= 0 ||
		r.X > maxSide || r.Y > maxSide || r.Width > maxSide || r.Height > maxSide) {
		bad("preprocess.roi", "needs 0 <= x,y <= %d and 0 < width,height <= %d, got %+v", maxSide, maxSide, *r)
	}
	switch c.Trigger.Mode {
	case TriggerFreeRun:
	case TriggerOnDemand:
		if !live {
			bad("trigger.mode", "on-demand needs a live source (device, stream, gstreamer); file kinds deliver every file")
		}
	default:
		bad("trigger.mode", "unknown mode %q: want free-run or on-demand", c.Trigger.Mode)
	}
	if math.IsNaN(c.Trigger.MaxRate) || c.Trigger.MaxRate < 0 || c.Trigger.MaxRate > maxFPS {
		bad("trigger.max_rate", "%v is outside 0..%d frames per second", c.Trigger.MaxRate, maxFPS)
	}
	durIn("trigger.timeout", c.Trigger.Timeout, 10*time.Millisecond, time.Hour)
	durIn("reconnect.initial", c.Reconnect.Initial, 10*time.Millisecond, 10*time.Minute)
	durIn("reconnect.max", c.Reconnect.Max, 10*time.Millisecond, time.Hour)
	if c.Reconnect.Max < c.Reconnect.Initial {
		bad("reconnect", "need initial <= max, got initial %s max %s", c.Reconnect.Initial, c.Reconnect.Max)
	}
	durIn("watchdog", c.Watchdog, 50*time.Millisecond, time.Hour)
	durIn("open_timeout", c.OpenTimeout, 100*time.Millisecond, time.Hour)
	durIn("watch.poll", c.Watch.Poll, 10*time.Millisecond, time.Minute)
	intIn("watch.stable_polls", c.Watch.StablePolls, 1, 100)
	durIn("watch.grace", c.Watch.Grace, time.Millisecond, 24*time.Hour)
	for _, err := range c.Limits.validate() {
		bad("limits", "%v", err)
	}
	for _, err := range c.Align.validate() {
		errs = append(errs, fmt.Errorf("capture source %q: %w", c.Name, err))
	}
	return errors.Join(errs...)
}

// Ranges of the numeric keys that have no better home.
const (
	maxCameraSide     = 65535 // width/height requested from a camera
	maxFPS            = 10000 // fps and trigger.max_rate
	maxPreprocessSide = 4096  // preprocess.width/height: detector inputs
)

// parseDevice accepts "0" or "/dev/video0" and returns the V4L2 index.
func parseDevice(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("required for kind device (an index like 0 or a node like /dev/video0)")
	}
	num := strings.TrimPrefix(s, "/dev/video")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is neither a camera index nor /dev/videoN", s)
	}
	return n, nil
}

// interpolation maps the config word to OpenCV's flag.
func interpolation(s string) (gocv.InterpolationFlags, error) {
	switch strings.ToLower(s) {
	case "area", "":
		return gocv.InterpolationArea, nil
	case "linear":
		return gocv.InterpolationLinear, nil
	case "cubic":
		return gocv.InterpolationCubic, nil
	case "nearest":
		return gocv.InterpolationNearestNeighbor, nil
	case "lanczos", "lanczos4":
		return gocv.InterpolationLanczos4, nil
	}
	return 0, fmt.Errorf("unknown interpolation %q: want area, linear, cubic, nearest or lanczos", s)
}

// redactURL hides a password in a stream URL before it reaches logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
