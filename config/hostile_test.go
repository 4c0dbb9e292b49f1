package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/internal/testenv"
)

// bounded runs f and fails the test when it took longer than maxTime
// (scaled by testenv.TimeBound under the race detector) or
// allocated more than maxAlloc bytes (runtime.MemStats.TotalAlloc, which
// counts every allocation, freed or not: the YAML parser's blow-ups were
// gigabytes).
func bounded(t *testing.T, maxTime time.Duration, maxAlloc uint64, f func()) {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > maxAlloc {
		t.Errorf("allocated %d MB, want at most %d MB", alloc>>20, maxAlloc>>20)
	}
	if maxTime = testenv.TimeBound(maxTime); took > maxTime {
		t.Errorf("took %v, want at most %v", took, maxTime)
	}
}

// laughs is an alias "billion laughs": each level repeats the previous one
// ten times, so the decoder would build 10^levels values from a few hundred
// bytes.
func laughs(levels int, into string) string {
	var b strings.Builder
	b.WriteString(minimal)
	b.WriteString("x0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "x%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	fmt.Fprintf(&b, "%s *a%d\n", into, levels)
	return b.String()
}

// TestHostileYAML: files that made the YAML parser take gigabytes and
// seconds (or never finish) are refused before parsing, quickly, with
// little memory, and with an error that names the file, the line where it
// can tell, and the limit.
func TestHostileYAML(t *testing.T) {
	deepIndent := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString(strings.Repeat(" ", i) + "a:\n")
		}
		return b.String()
	}
	tests := []struct {
		name string
		text string
		line int // 0: not checked
		want []string
	}{
		{"flow nesting [[[[", "x: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n", 1,
			[]string{"nested 33 levels deep", "at most 32"}},
		{"flow mapping nesting {a: {a:", "x: " + strings.Repeat("{a: ", 50000) + strings.Repeat("}", 50000) + "\n", 1,
			[]string{"nested 33 levels deep"}},
		{"indentation nesting", deepIndent(1000), 33,
			[]string{"nested 33 levels deep"}},
		{"compact sequences - - - -", "x:\n  " + strings.Repeat("- ", 5000) + "1\n", 2,
			[]string{"levels deep"}},
		{"flow nesting over lines", "x:\n" + strings.Repeat("  [\n", 40) + strings.Repeat("  ]\n", 40), 0,
			[]string{"levels deep"}},
		{"huge list", "fit:\n  recalls:\n" + strings.Repeat("- 1\n", 20000), MaxLines + 1,
			[]string{fmt.Sprintf("more than %d lines", MaxLines)}},
		{"huge flow list", "fit:\n  recalls: [" + strings.Repeat("1,", 30000) + "1]\n", 2,
			[]string{fmt.Sprintf("more than %d values", MaxNodes)}},
		{"billion laughs", laughs(9, "y:"), 0,
			[]string{fmt.Sprintf("more than %d values (aliases counted expanded)", MaxNodes)}},
		{"billion laughs into a known key", laughs(9, "fit:\n  recalls:"), 0,
			[]string{"aliases counted expanded"}},
		{"merge key bomb", minimal + "b0: &b0 {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1, k9: 1}\n" +
			func() string {
				var b strings.Builder
				for i := 1; i <= 8; i++ {
					fmt.Fprintf(&b, "b%d: &b%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("{<<: *b%d}, ", i-1), 10), ", "))
				}
				return b.String()
			}(), 0, []string{"aliases counted expanded"}},
		{"too big", minimal + "# " + strings.Repeat("x", MaxFileBytes) + "\n", 0,
			[]string{"bytes: a configuration is at most 524288 bytes (512 KiB)"}},
		{"NUL bytes", minimal + "\x00\x00\x00", 12,
			[]string{"contains a NUL byte"}},
		{"one long unknown key", minimal + strings.Repeat("k", 500000) + ": 1\n", 12,
			[]string{"unknown key", "bytes)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			bounded(t, 2*time.Second, 64<<20, func() { _, err = Parse("cfg.yaml", []byte(tc.text)) })
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "cfg.yaml") {
				t.Errorf("error %q does not name the file", clip(msg, 200))
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", clip(msg, 300), w)
				}
			}
			if len(msg) > 1000 {
				t.Errorf("error is %d bytes long: it echoes the hostile input", len(msg))
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *config.Error", err)
			}
			if tc.line > 0 && ce.Line != tc.line {
				t.Errorf("line %d, want %d (%s)", ce.Line, tc.line, clip(msg, 200))
			}
		})
	}
}

// TestLargestAcceptedFilesStayCheap: files just inside every limit (the
// most lines, values, bytes and depth the pre-scan lets through) are parsed
// and refused or accepted within a bounded time and memory: the limits are
// what bounds the parser, not luck.
func TestLargestAcceptedFilesStayCheap(t *testing.T) {
	tests := map[string]string{
		"most lines":             "fit:\n  recalls:\n" + strings.Repeat("    - 0.5\n", MaxLines-3),
		"most flow values":       "fit:\n  recalls: [" + strings.Repeat("0.5,", MaxNodes-10) + "0.5]\n",
		"longest value":          "station: \"" + strings.Repeat("a", MaxFileBytes-20) + "\"\n",
		"deepest and widest":     "x: " + strings.Repeat("[", MaxDepth-1) + strings.Repeat("1,", MaxNodes-100) + strings.Repeat("]", MaxDepth-1) + "\n",
		"aliases below the bomb": laughs(3, "y:"),
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			if len(text) > MaxFileBytes {
				t.Fatalf("test input is %d bytes, over the limit", len(text))
			}
			if err := prescan("cfg.yaml", []byte(text)); err != nil {
				t.Fatalf("the pre-scan refused an input inside the limits: %v", err)
			}
			var err error
			bounded(t, 2*time.Second, 96<<20, func() { _, err = Parse("cfg.yaml", []byte(text)) })
			if err == nil {
				t.Fatal("accepted a config without capture, detectors and segad")
			}
		})
	}
}

// TestPrescanAcceptsRealConfigs: the pre-scan is conservative, not
// paranoid: YAML that a person writes (comments, quoted brackets, block
// scalars with deep indentation, anchors used a few times, flow maps,
// GStreamer pipelines full of '!' and ',') passes, and deep-looking text
// inside block scalars and quotes is not mistaken for structure.
func TestPrescanAcceptsRealConfigs(t *testing.T) {
	tests := []struct{ name, text string }{
		{"example", string(Example)},
		{"quoted brackets", minimal + "log: {level: \"info\", format: '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['}\n"},
		{"brackets inside plain scalars", "x: a[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[b\n"},
		{"comment with brackets", minimal + "# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n"},
		{"block scalar with deep text", "x: |\n" + func() string {
			var b strings.Builder
			for i := 1; i < 200; i++ {
				b.WriteString(strings.Repeat(" ", i) + "- [[[[ text\n")
			}
			return b.String()
		}() + "y: 1\n"},
		{"multi-line quoted", "x: \"a [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n  b ]]]]]]]]]] c\"\ny: 1\n"},
		{"single quotes with ''", "x: 'it''s [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['\n"},
		{"anchors used a few times", "p: &p [{name: cpu, intra_op_threads: 1}]\nq: *p\nr: *p\n"},
		{"gstreamer pipeline", "capture:\n  pipeline: \"filesrc location=a.avi ! avidemux ! jpegdec ! video/x-raw,format=BGR ! appsink sync=true\"\n"},
		{"31 levels", func() string {
			var b strings.Builder
			for i := 0; i < 31; i++ {
				b.WriteString(strings.Repeat("  ", i) + "a:\n")
			}
			return b.String()
		}()},
		{"crlf line ends", strings.ReplaceAll(minimal, "\n", "\r\n")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := prescan("cfg.yaml", []byte(tc.text)); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
	// The example still loads end to end with the limits in place.
	if _, err := Parse("/etc/segad/segad.yaml", Example); err != nil {
		t.Fatal(err)
	}
}

// TestLoadRefusesNonRegularFiles: Load reads only regular files, so
// `segad config check /dev/zero` (which ran out of memory), a FIFO (which
// would block forever) and a directory get a clear error at once.
func TestLoadRefusesNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	// A 50 MB file (sparse: the size is what Load must look at first).
	if err := os.WriteFile(big, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 50<<20); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want string
	}{
		{"/dev/zero", "is a character device, not a regular file"},
		{link, "is a character device, not a regular file"},
		{fifo, "is a named pipe (FIFO), not a regular file"},
		{dir, "is a directory, not a regular file"},
		{big, "file is 52428800 bytes: a configuration is at most 524288 bytes"},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			var err error
			done := make(chan struct{})
			bounded(t, 2*time.Second, 4<<20, func() {
				go func() { _, err = Load(tc.path); close(done) }()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("Load blocked")
				}
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), tc.path) {
				t.Fatalf("Load(%s) = %v, want an error naming the file and saying %q", tc.path, err, tc.want)
			}
		})
	}
}

// TestValueRanges: every numeric key of config's own sections has a range;
// a value outside it is refused with the file, line, key, value, range and
// why, and the edges of each range are accepted.
func TestValueRanges(t *testing.T) {
	tests := []struct {
		name string
		add  string // appended to minimal
		ok   bool
		want string
	}{
		{"warmup 1e9", "pipeline:\n  warmup: 1000000000\n", false, "cfg.yaml:13: pipeline.warmup: 1000000000 out of range [1, 100]: warm-up runs"},
		{"warmup 100", "pipeline:\n  warmup: 100\n", true, ""},
		{"warmup negative", "pipeline:\n  warmup: -1\n", false, "pipeline.warmup: -1 out of range [1, 100]"},
		{"queue 0 is the default", "pipeline:\n  queue: 0\n", true, ""},
		{"queue 1025", "pipeline:\n  queue: 1025\n", false, "pipeline.queue: 1025 out of range [1, 1024]"},
		{"shutdown 1ns", "pipeline:\n  shutdown_timeout: 1ns\n", false, "pipeline.shutdown_timeout: 1ns out of range [100ms, 10m0s]"},
		{"shutdown 10m", "pipeline:\n  shutdown_timeout: 10m\n", true, ""},
		{"shutdown 1000h", "pipeline:\n  shutdown_timeout: 1000h\n", false, "out of range [100ms, 10m0s]"},
		{"sample_pass NaN", "audit:\n  sample_pass: .nan\n", false, "audit.sample_pass: NaN out of range [0, 1]"},
		{"sample_pass 1.5", "audit:\n  sample_pass: 1.5\n", false, "audit.sample_pass: 1.5 out of range [0, 1]"},
		{"max_bytes 1", "audit:\n  max_bytes: 1\n", false, "audit.max_bytes: 1 out of range [1048576, 17592186044416]"},
		{"max_bytes negative", "audit:\n  max_bytes: -5\n", false, "audit.max_bytes: -5 out of range"},
		{"max_age 1s", "audit:\n  max_age: 1s\n", false, "audit.max_age: 1s out of range [1m0s, 87600h0m0s]"},
		{"max_age 1 year", "audit:\n  max_age: 8760h\n", true, ""},
		{"threshold 1e300", "", false, "segad.threshold: 1e+300 out of range [-1e+06, 1e+06]"},
		{"threshold inf", "", false, "segad.threshold: +Inf is not a finite number"},
		{"warn threshold -1e7", "  warn_threshold: -1e7\n", false, "segad.warn_threshold: -1e+07 out of range"},
		{"token 1 char", "http:\n  token: x\n", false, "cfg.yaml:13: http.token: 1 characters: at least 16 are needed so it cannot be guessed (generate one with: openssl rand -hex 32"},
		{"token 15 chars", "http:\n  token: 0123456789abcde\n", false, "at least 16"},
		{"token 16 chars", "http:\n  token: 0123456789abcdef\n", true, ""},
		{"token with space", "http:\n  token: \"0123456789 abcdef\"\n", false, "has whitespace at byte 10"},
		{"token with newline", "http:\n  token: \"0123456789abcdef\\n\"\n", false, "has whitespace at byte 16"},
		{"listen port 0", "http:\n  listen: 127.0.0.1:0\n", false, "http.listen: port \"0\" out of range [1, 65535]"},
		{"listen port 99999", "http:\n  listen: 127.0.0.1:99999\n", false, "out of range [1, 65535]"},
		{"listen port name", "http:\n  listen: 127.0.0.1:http\n", false, "give the TCP port as a number"},
		{"http max_body 1 KiB", "http:\n  max_body: 1024\n", false, "http.max_body: 1024 out of range [1048576, 1073741824]"},
		{"http max_body 64 MiB", "http:\n  max_body: 67108864\n", true, ""},
		{"http max_inspect 1000", "http:\n  max_inspect: 1000\n", false, "http.max_inspect: 1000 out of range [1, 64]"},
		{"http max_connections 1", "http:\n  max_connections: 1\n", false, "http.max_connections: 1 out of range [4, 10000]"},
		{"history queue 10", "history:\n  queue_size: 10\n", false, "history.queue_size: 10 out of range [100, 1000000]"},
		{"history retention 1m", "history:\n  retention: {max_age: 1m}\n", false, "history.retention.max_age: 1m0s is under 1h"},
		{"history not postgres", "history:\n  url: mysql://x\n", false, "history.url: want a postgres://"},
		{"history off", "history:\n  enabled: false\n  queue_size: 10\n", true, ""},
		{"modbus open without allow-list", "plc:\n  modbus: {enabled: true, listen: 0.0.0.0:502}\n", false, "plc.modbus.allow: empty while listen"},
		{"modbus loopback", "plc:\n  modbus: {enabled: true, listen: 127.0.0.1:1502}\n", true, ""},
		{"opcua open without users", "plc:\n  opcua: {enabled: true, listen: 0.0.0.0:4840}\n", false, "plc.opcua"},
		{"fit threads 5000", "fit:\n  threads: 5000\n", false, "fit.threads: 5000 out of range [0, 1024]"},
		{"fit max_depth 30", "fit:\n  max_depth: 30\n", false, "fit.max_depth: 30 out of range [1, 16]"},
		{"fit seed negative", "fit:\n  seed: -1\n", false, "fit.seed: -1 out of range [0, 2147483647]"},
		{"fit trees x rounds", "fit:\n  trees: 10000\n  rounds: 10000\n", false, "= 100000000 trees: at most 100000"},
		{"fit paper forest", "fit:\n  trees: 200\n  rounds: 10\n  max_depth: 5\n", true, ""},
		{"fit reg_alpha inf", "fit:\n  reg_alpha: .inf\n", false, "fit.reg_alpha: +Inf out of range [0, 1e+06]"},
		{"fit scale_pos_weight NaN", "fit:\n  scale_pos_weight: .nan\n", false, "fit.scale_pos_weight: NaN out of range"},
		{"fit subsample NaN", "fit:\n  subsample: .nan\n", false, "fit.subsample: NaN out of range (0, 1]"},
		{"fit recalls 1", "fit:\n  recalls: [0.95, 1]\n", false, "fit.recalls[1]: 1 out of range (0, 1)"},
		{"fit 17 recalls", "fit:\n  recalls: [" + strings.TrimSuffix(strings.Repeat("0.9, ", 17), ", ") + "]\n", false, "17 operating points: at most 16"},
		{"17 detectors", "", false, "17 detectors: at most 16"},
		{"segment name with a dot", "  segments: [a.b]\n", false, "segad.segments[0]: name \"a.b\": only letters"},
		{"duplicate segment names", "  segments: [a, b, a]\n", false, "segad.segments[2]: \"a\" is also segad.segments[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := minimal + tc.add
			switch tc.name {
			case "threshold 1e300":
				text = strings.Replace(text, "threshold: 0.5", "threshold: 1e300", 1)
			case "threshold inf":
				text = strings.Replace(text, "threshold: 0.5", "threshold: .inf", 1)
			case "17 detectors":
				var b strings.Builder
				for i := 2; i <= 17; i++ {
					fmt.Fprintf(&b, "  - name: d%d\n    model: d%d.onnx\n", i, i)
				}
				text = strings.Replace(text, "segad:", b.String()+"segad:", 1)
			}
			_, err := Parse("cfg.yaml", []byte(text))
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestStationNames: the station is an MQTT topic level, a metric label and
// part of file names: wildcards, separators, NUL, whitespace and huge names
// are refused (naming the offending byte, never echoing a huge value).
func TestStationNames(t *testing.T) {
	tests := []struct {
		station string // YAML scalar
		ok      bool
		want    string
	}{
		{"line1-cam1", true, ""},
		{"Line_2.cam-3", true, ""},
		{strings.Repeat("a", 64), true, ""},
		{strings.Repeat("a", 65), false, "65 bytes long: at most 64"},
		{strings.Repeat("a", 500000), false, "500000 bytes long: at most 64"},
		{`"a/b"`, false, `has '/' at byte 1`},
		{`"line+"`, false, `has '+' at byte 4`},
		{`"line#"`, false, `has '#' at byte 4`},
		{`"a\0b"`, false, "has a NUL byte at byte 1"},
		{`"line 1"`, false, "has whitespace at byte 4"},
		{`"line\t1"`, false, "has whitespace at byte 4"},
		{`"caf\u00e9"`, false, "has a non-ASCII character at byte 3"},
		{`".hidden"`, false, "must start with a letter, digit or '_'"},
		{`"-x"`, false, "must start with a letter, digit or '_'"},
	}
	for _, tc := range tests {
		name := tc.station
		if len(name) > 20 {
			name = fmt.Sprintf("%d bytes", len(name))
		}
		t.Run(name, func(t *testing.T) {
			text := strings.Replace(minimal, "station: s1", "station: "+tc.station, 1)
			_, err := Parse("cfg.yaml", []byte(text))
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "cfg.yaml:1: station: ") {
				t.Fatalf("error %v, want cfg.yaml:1: station: ...%s", err, tc.want)
			}
			if len(err.Error()) > 500 {
				t.Errorf("error is %d bytes: it echoes the station name", len(err.Error()))
			}
		})
	}
}
