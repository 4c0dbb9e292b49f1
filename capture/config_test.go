package capture

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// TestConfigYAML: the YAML the README documents decodes into Config,
// durations included.
func TestConfigYAML(t *testing.T) {
	doc := `
name: line1
kind: gstreamer
pipeline: videotestsrc ! videoconvert ! appsink
watchdog: 2s
open_timeout: 10s
exposure: 120
preprocess:
  width: 224
  height: 224
  interpolation: linear
  roi: {x: 10, y: 20, width: 640, height: 480}
  color: rgb
trigger:
  mode: on-demand
  timeout: 1500ms
reconnect:
  initial: 250ms
  max: 8s
limits: {max_pixels: 20000000, max_bytes: 104857600, max_concurrent_decodes: 3}
`
	var c Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Watchdog != 2*time.Second || c.Trigger.Timeout != 1500*time.Millisecond || c.Reconnect.Max != 8*time.Second ||
		c.Preprocess.ROI == nil || c.Preprocess.ROI.Height != 480 || c.Exposure == nil || *c.Exposure != 120 ||
		c.Trigger.Mode != TriggerOnDemand || c.Preprocess.Color != ColorRGB ||
		c.Limits != (Limits{MaxPixels: 20_000_000, MaxBytes: 100 << 20, MaxConcurrentDecodes: 3}) {
		t.Fatalf("decoded %+v", c)
	}
	d := Config{Kind: KindDevice, Device: "/dev/video0"}.withDefaults()
	if d.Preprocess.Width != 256 || d.Preprocess.Interpolation != "area" || d.Name != "device:/dev/video0" || d.Trigger.Mode != TriggerFreeRun {
		t.Fatalf("defaults %+v", d)
	}
}

// TestConfigValidate: each mistake is reported with its YAML key.
func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"device index", Config{Kind: KindDevice, Device: "0"}, ""},
		{"device node", Config{Kind: KindDevice, Device: "/dev/video2"}, ""},
		{"device bad", Config{Kind: KindDevice, Device: "/dev/sda"}, "device"},
		{"no kind", Config{Path: "x"}, "kind"},
		{"unknown kind", Config{Kind: "usb3", Path: "x"}, "unknown kind"},
		{"stream no url", Config{Kind: KindStream}, "url"},
		{"pipeline without appsink", Config{Kind: KindGStreamer, Pipeline: "videotestsrc ! autovideosink"}, "appsink"},
		{"folder no path", Config{Kind: KindFolder}, "path"},
		{"bad interpolation", Config{Kind: KindFolder, Path: "x", Preprocess: PreprocessConfig{Interpolation: "bilinear"}}, "interpolation"},
		{"bad colour", Config{Kind: KindFolder, Path: "x", Preprocess: PreprocessConfig{Color: "hsv"}}, "color"},
		{"bad roi", Config{Kind: KindFolder, Path: "x", Preprocess: PreprocessConfig{ROI: &ROI{Width: 0, Height: 5}}}, "roi"},
		{"on-demand on files", Config{Kind: KindFolder, Path: "x", Trigger: TriggerConfig{Mode: TriggerOnDemand}}, "on-demand"},
		{"bad mode", Config{Kind: KindStream, URL: "rtsp://x", Trigger: TriggerConfig{Mode: "hardware"}}, "trigger.mode"},
		{"backoff inverted", Config{Kind: KindStream, URL: "rtsp://x", Reconnect: ReconnectConfig{Initial: time.Minute, Max: time.Second}}, "reconnect"},
		// Ranges: every numeric key refuses what would spin, exhaust or stall.
		{"poll 1ns spins a core", Config{Kind: KindWatch, Path: "x", Watch: WatchConfig{Poll: 1}}, "watch.poll: 1ns is outside 10ms..1m0s"},
		{"poll negative", Config{Kind: KindWatch, Path: "x", Watch: WatchConfig{Poll: -time.Second}}, "watch.poll"},
		{"poll 20ms ok", Config{Kind: KindWatch, Path: "x", Watch: WatchConfig{Poll: 20 * time.Millisecond}}, ""},
		{"stable polls huge", Config{Kind: KindWatch, Path: "x", Watch: WatchConfig{StablePolls: 1000000}}, "watch.stable_polls: 1000000 is outside 1..100"},
		{"grace a year", Config{Kind: KindWatch, Path: "x", Watch: WatchConfig{Grace: 8760 * time.Hour}}, "watch.grace"},
		{"preprocess 100000", Config{Kind: KindFolder, Path: "x", Preprocess: PreprocessConfig{Width: 100000, Height: 256}}, "preprocess.width: 100000 is outside 1..4096"},
		{"preprocess negative", Config{Kind: KindFolder, Path: "x", Preprocess: PreprocessConfig{Height: -5}}, "preprocess.height: -5 is outside 1..4096"},
		{"roi huge", Config{Kind: KindFolder, Path: "x", Preprocess: PreprocessConfig{ROI: &ROI{Width: 1 << 30, Height: 5}}}, "roi"},
		{"camera width huge", Config{Kind: KindDevice, Device: "0", Width: 1 << 20}, "width: 1048576 is outside 0..65535"},
		{"fps NaN", Config{Kind: KindDevice, Device: "0", FPS: math.NaN()}, "fps"},
		{"fps huge", Config{Kind: KindDevice, Device: "0", FPS: 1e9}, "fps"},
		{"exposure inf", Config{Kind: KindDevice, Device: "0", Exposure: ptr(math.Inf(1))}, "exposure"},
		{"max rate huge", Config{Kind: KindDevice, Device: "0", Trigger: TriggerConfig{MaxRate: 1e7}}, "trigger.max_rate"},
		{"trigger timeout 1ns", Config{Kind: KindDevice, Device: "0", Trigger: TriggerConfig{Timeout: 1}}, "trigger.timeout"},
		{"reconnect a week", Config{Kind: KindDevice, Device: "0", Reconnect: ReconnectConfig{Initial: time.Second, Max: 168 * time.Hour}}, "reconnect.max"},
		{"watchdog 1ns", Config{Kind: KindDevice, Device: "0", Watchdog: 1}, "watchdog: 1ns is outside"},
		{"open timeout a day", Config{Kind: KindDevice, Device: "0", OpenTimeout: 24 * time.Hour}, "open_timeout"},
		{"max pixels over OpenCV", Config{Kind: KindFolder, Path: "x", Limits: Limits{MaxPixels: 1 << 31}}, "limits.max_pixels: 2147483648 is outside 1..1073741824"},
		{"max pixels negative", Config{Kind: KindFolder, Path: "x", Limits: Limits{MaxPixels: -1}}, "limits.max_pixels"},
		{"max bytes tiny", Config{Kind: KindFolder, Path: "x", Limits: Limits{MaxBytes: 10}}, "limits.max_bytes: 10 is outside 1024..2147483647"},
		{"decodes 1000", Config{Kind: KindFolder, Path: "x", Limits: Limits{MaxConcurrentDecodes: 1000}}, "limits.max_concurrent_decodes: 1000 is outside 1..64"},
		{"limits ok", Config{Kind: KindFolder, Path: "x", Limits: Limits{MaxPixels: 100_000_000, MaxBytes: 1 << 30, MaxConcurrentDecodes: 4}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("valid config rejected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestBackoffAndRedaction covers the small pure helpers.
func TestBackoffAndRedaction(t *testing.T) {
	seq := []time.Duration{}
	b := 100 * time.Millisecond
	for i := 0; i < 7; i++ {
		seq = append(seq, b)
		b = nextBackoff(b, time.Second)
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i := range want {
		if seq[i] != want[i]*time.Millisecond {
			t.Fatalf("backoff sequence %v", seq)
		}
	}
	if got := redactURL("rtsp://admin:secret@10.0.0.5/stream1"); strings.Contains(got, "secret") {
		t.Fatalf("password leaked: %s", got)
	}
	if got := (Config{Kind: KindStream, URL: "rtsp://u:pw@cam/1"}).withDefaults().Name; strings.Contains(got, "pw") {
		t.Fatalf("default name leaks password: %s", got)
	}
}
