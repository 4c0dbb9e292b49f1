package capture

import (
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
		c.Trigger.Mode != TriggerOnDemand || c.Preprocess.Color != ColorRGB {
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
