package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/segad"
)

// binRun is one run of the segad binary: its output, exit error, wall time
// and peak resident memory (getrusage's ru_maxrss of the child).
type binRun struct {
	out    string
	err    error
	took   time.Duration
	maxRSS int64 // bytes
}

func runBinary(t *testing.T, timeout time.Duration, args ...string) binRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, segadBinary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	r := binRun{out: out.String(), err: err, took: time.Since(start)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss << 10 // kilobytes on Linux
	}
	if ctx.Err() != nil {
		t.Fatalf("segad %s did not finish within %v; output:\n%s", strings.Join(args, " "), timeout, clipOut(r.out))
	}
	return r
}

func clipOut(s string) string {
	if len(s) > 2000 {
		return s[:2000] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}

// hostileBase is a valid config for the hostile tests: one fixture
// detector, builtin:vad, a trained forest. %s is replaced by the
// detector model path.
const hostileBase = `station: hostile
onnxruntime:
  library: %q
capture:
  kind: folder
  path: imgs
detectors:
  - name: ms
    model: %q
segad:
  mask: builtin:vad
  model: brf.json
  threshold: 1000
mqtt:
  broker: tcp://127.0.0.1:1
  outbox: {path: outbox.db}
http:
  listen: "off"
pipeline:
  warmup: 1
`

// hostileDir writes the base config's files (forest, image folder) into a
// fresh folder and returns it with the config text.
func hostileDir(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "imgs"), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.TrainForest(t, filepath.Join(dir, "brf.json"), 7*4+1)
	det := filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx")
	return dir, fmt.Sprintf(hostileBase, testenv.ORTLib(t), det)
}

// TestConfigCheckHostileFiles: `segad config check` on files that used to
// take gigabytes or never end (the YAML findings of issue #12) exits with a
// clear error, quickly, with the process's peak memory bounded.
func TestConfigCheckHostileFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	laughs := "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
	for i := 1; i <= 9; i++ {
		laughs += fmt.Sprintf("a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	big := write("big.yaml", "station: s\n")
	if err := os.Truncate(big, 50<<20); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"/dev/zero", "/dev/zero", "/dev/zero: is a character device, not a regular file"},
		{"fifo", fifo, "is a named pipe (FIFO), not a regular file"},
		{"directory", dir, "is a directory, not a regular file"},
		{"50 MB file", big, "file is 52428800 bytes: a configuration is at most 524288 bytes"},
		{"flow nesting 200 KB", write("flow.yaml", "x: "+strings.Repeat("[", 100000)+strings.Repeat("]", 100000)+"\n"), "flow.yaml:1: nested 33 levels deep: at most 32"},
		{"indentation nesting", write("indent.yaml", func() string {
			var b strings.Builder
			for i := 0; i < 600; i++ {
				b.WriteString(strings.Repeat(" ", i) + "a:\n")
			}
			return b.String()
		}()), "indent.yaml:33: nested 33 levels deep"},
		{"huge list", write("list.yaml", "fit:\n  recalls:\n"+strings.Repeat("- 0.5\n", 60000)), "list.yaml:10001: more than 10000 lines"},
		{"billion laughs", write("laughs.yaml", laughs), "more than 20000 values (aliases counted expanded)"},
	}
	base := runBinary(t, 30*time.Second, "config", "example")
	if base.err != nil {
		t.Fatalf("config example: %v", base.err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runBinary(t, 30*time.Second, "config", "check", tc.path)
			if r.err == nil {
				t.Fatalf("accepted; output:\n%s", clipOut(r.out))
			}
			if !strings.Contains(r.out, tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, clipOut(r.out))
			}
			if len(r.out) > 2000 {
				t.Errorf("output is %d bytes: the error echoes the input", len(r.out))
			}
			// Startup of a binary linking OpenCV is the baseline; the file
			// may add little on top.
			if r.maxRSS > base.maxRSS+100<<20 {
				t.Errorf("peak RSS %d MB, baseline (config example) %d MB", r.maxRSS>>20, base.maxRSS>>20)
			}
			if r.took > base.took+3*time.Second {
				t.Errorf("took %v (baseline %v)", r.took, base.took)
			}
		})
	}
}

// hostileBinCase is a config edit that `segad config check` and `segad run`
// must both refuse, with what the error must say.
type hostileBinCase struct {
	name  string
	setup func(t *testing.T, dir string)
	edit  func(string) string
	want  []string
}

func hostileBinCases(t *testing.T) []hostileBinCase {
	nanMap := filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "nan_map.onnx")
	writeBundleFor := func(t *testing.T, dir string, edit func(*bundle.Manifest), raw func(map[string]any)) {
		model, err := os.ReadFile(filepath.Join(dir, "brf.json"))
		if err != nil {
			t.Fatal(err)
		}
		det := filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx")
		sum, err := bundle.FileSHA256(det)
		if err != nil {
			t.Fatal(err)
		}
		mask := segad.VADTemplate(256, 256, segad.DefaultVADGeometry())
		m := &bundle.Manifest{Tool: "test", Features: segad.FeatureNames(mask.Names, []string{"ms"}, ""),
			Detectors: []bundle.Detector{{Name: "ms", SHA256: sum}},
			Mask:      bundle.Mask{Source: "builtin:vad", Hash: mask.Hash(), Width: 256, Height: 256, Segments: mask.Names},
			Threshold: bundle.Threshold{Suggested: 0.25}}
		if edit != nil {
			edit(m)
		}
		out := filepath.Join(dir, "bundle")
		if err := bundle.Write(out, model, m); err != nil {
			t.Fatal(err)
		}
		if raw != nil {
			mp := filepath.Join(out, bundle.ManifestFile)
			data, _ := os.ReadFile(mp)
			var g map[string]any
			json.Unmarshal(data, &g)
			raw(g)
			data, _ = json.Marshal(g)
			os.WriteFile(mp, data, 0o644)
		}
	}
	toBundle := func(threshold string) func(string) string {
		return func(s string) string {
			return strings.Replace(s, "  model: brf.json\n  threshold: 1000\n", "  bundle: bundle\n"+threshold, 1)
		}
	}
	return []hostileBinCase{
		{"NaN detector", nil, func(s string) string {
			return strings.Replace(s, filepath.Join("infer", "testdata", "meanstd_blur.onnx"), filepath.Join("infer", "testdata", "nan_map.onnx"), 1)
		}, []string{"detector ms (model " + nanMap + ", map_output #0) gives NaN", "test frame"}},
		{"all-ignored mask", func(t *testing.T, dir string) {
			img := image.NewGray(image.Rect(0, 0, 64, 64))
			for i := range img.Pix {
				img.Pix[i] = segad.Ignore
			}
			f, err := os.Create(filepath.Join(dir, "ignored.png"))
			if err != nil {
				t.Fatal(err)
			}
			png.Encode(f, img)
			f.Close()
		}, func(s string) string {
			return strings.Replace(s, "mask: builtin:vad", "mask: ignored.png\n  segments: [a, b, c]", 1)
		},
			[]string{"ignored.png", "no pixel belongs to any of the 3 segments"}},
		{"bundle without threshold", func(t *testing.T, dir string) {
			writeBundleFor(t, dir, nil, func(g map[string]any) { delete(g, "threshold") })
		}, toBundle(""), []string{filepath.Join("bundle", "manifest.json") + " has no threshold.suggested", "re-run `segad fit`", "set segad.threshold explicitly"}},
		{"bundle feature list changed", func(t *testing.T, dir string) {
			writeBundleFor(t, dir, func(m *bundle.Manifest) { m.Features[0] = "background.ms.mean"; m.Features[3] = "background.ms.q995" }, nil)
		}, toBundle("  threshold: 0.5\n"), []string{filepath.Join("bundle", "manifest.json"), `feature 0 is "background.ms.mean" in the manifest but "background.ms.q995" in this configuration`}},
		{"warmup 1e9", nil, func(s string) string { return strings.Replace(s, "warmup: 1", "warmup: 1000000000", 1) },
			[]string{"segad.yaml:20: pipeline.warmup: 1000000000 out of range [1, 100]"}},
		{"1-character token", nil, func(s string) string {
			return strings.Replace(s, `listen: "off"`, "listen: 0.0.0.0:8080\n  token: x", 1)
		},
			[]string{"http.token: 1 characters: at least 16", "openssl rand -hex 32"}},
		{"station with a wildcard", nil, func(s string) string { return strings.Replace(s, "station: hostile", `station: "line/#"`, 1) },
			[]string{"segad.yaml:1: station:", "has '/' at byte 4"}},
		{"100-byte station", nil, func(s string) string {
			return strings.Replace(s, "station: hostile", "station: "+strings.Repeat("s", 100), 1)
		}, []string{"station: 100 bytes long: at most 64"}},
	}
}

// TestHostileConfigRefusedByCheckAndRun: each model, mask, bundle and value
// finding of issue #12 is refused by `segad config check` and by `segad
// run` at start, with the same message naming the file, and `run` exits
// (with an error) instead of starting the line. (Reload goes through the
// same model.Build; daemon's TestHostileModelsRefusedAtReload covers
// it.)
func TestHostileConfigRefusedByCheckAndRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	for _, tc := range hostileBinCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			dir, text := hostileDir(t)
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			edited := tc.edit(text)
			if edited == text {
				t.Fatal("the edit changed nothing")
			}
			cfg := filepath.Join(dir, "segad.yaml")
			if err := os.WriteFile(cfg, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"config", "check", cfg}, {"run", "--config", cfg}} {
				r := runBinary(t, 60*time.Second, args...)
				if r.err == nil {
					t.Fatalf("segad %s accepted it; output:\n%s", args[0], clipOut(r.out))
				}
				for _, w := range tc.want {
					if !strings.Contains(r.out, w) {
						t.Errorf("segad %s: output does not say %q:\n%s", args[0], w, clipOut(r.out))
					}
				}
				if args[0] == "run" && strings.Contains(r.out, "ready: inspecting") {
					t.Errorf("segad run started the line:\n%s", clipOut(r.out))
				}
			}
		})
	}
	// The unedited base config passes check (the cases fail for their edit).
	dir, text := hostileDir(t)
	cfg := filepath.Join(dir, "segad.yaml")
	os.WriteFile(cfg, []byte(text), 0o644)
	if r := runBinary(t, 60*time.Second, "config", "check", cfg); r.err != nil || !strings.Contains(r.out, "segad.yaml: ok") {
		t.Fatalf("base config: %v\n%s", r.err, r.out)
	}
}
