package infer

import (
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/internal/testenv"
)

func TestInitErrors(t *testing.T) {
	lib := testenv.ORTLib(t)
	// Start from an unloaded runtime, and leave it loaded for the other tests.
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { setup(t) })
	dir := t.TempDir()
	notELF := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(notELF, []byte("not a shared library"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nope", "libonnxruntime.so.1")
	old := fakeOldORT(t, dir)
	tests := []struct {
		name, path string
		env        string
		want       []string
	}{
		{"missing", missing, "", []string{missing, "make setup", LibEnvVar, "onnxruntime.library"}},
		{"folder", dir, "", []string{dir, "folder"}},
		{"not a library", notELF, "", []string{notELF, "make setup"}},
		{"too old", old, "", []string{old, "older than " + MinORTVersion, "make setup"}},
		{"no path at all", "", "", []string{LibEnvVar, "make setup", "tried", "/usr/lib/libonnxruntime.so.1"}},
		{"env var used", "", missing, []string{missing}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(LibEnvVar, tc.env)
			err := Init(tc.path)
			if err == nil {
				t.Fatal("Init succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := Open(DetectorConfig{Name: "d", Model: fixture("meanstd_blur.onnx")}); err == nil || !strings.Contains(err.Error(), "infer.Init") {
		t.Fatalf("Open before Init: %v", err)
	}
	// After failures, the real library still loads, and only once.
	if err := Init(lib); err != nil {
		t.Fatal(err)
	}
	if err := Init(lib); err != nil {
		t.Fatalf("second Init with the same path: %v", err)
	}
	if err := Init(notELF); err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Fatalf("Init with another path: %v", err)
	}
}

func TestVersionAtLeast(t *testing.T) {
	tests := []struct {
		have string
		ok   bool
	}{{"1.24.1", true}, {"1.24.2", true}, {"1.25.0", true}, {"2.0", true}, {"1.24.0", false}, {"1.17.3", false}, {"1.24", false}, {"garbage", false}}
	for _, tc := range tests {
		if got := versionAtLeast(tc.have, MinORTVersion); got != tc.ok {
			t.Errorf("versionAtLeast(%q) = %v", tc.have, got)
		}
	}
}

// On this machine ONNX Runtime is a CPU build and there is no GPU: asking for
// tensorrt then cuda must end on CPU, say so in the log, and give the right map.
func TestProviderFallbackToCPU(t *testing.T) {
	setup(t)
	logs := captureLogs(t)
	cache := filepath.Join(t.TempDir(), "trt")
	d, err := Open(DetectorConfig{Name: "ms", Model: fixture("meanstd_blur.onnx"), Providers: []ProviderConfig{
		{Name: "tensorrt", FP16: true, EngineCache: cache, TimingCache: cache, Workspace: 1 << 30},
		{Name: "cuda", DeviceID: 0},
		{Name: "cpu", IntraOpThreads: 1},
	}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer d.Close()
	if p := d.Providers(); len(p) != 1 || p[0] != "cpu" {
		t.Fatalf("providers %v, want [cpu] on a machine without GPU execution providers", p)
	}
	l := logs.String()
	for _, w := range []string{
		"provider=tensorrt", "provider=cuda", "execution provider unavailable", "reason=",
		"session ready", "provider=cpu", "unavailable=\"[tensorrt cuda]\"",
	} {
		if !strings.Contains(l, w) {
			t.Errorf("log lacks %q:\n%s", w, l)
		}
	}
	t.Logf("fallback log:\n%s", l)
	out, err := d.Run(testImage(t))
	if err != nil {
		t.Fatal(err)
	}
	if e, at := maxRelErr(out.Map, readNpy(t, fixture("meanstd_blur.npy")).f32); e > 2e-5 {
		t.Fatalf("map after fallback differs: %g at %d", e, at)
	}
	// Go's SIGTERM handler survives the GPU attempt.
	if !signalHandledByGo(syscall.SIGTERM) {
		t.Fatal("SIGTERM handler lost after GPU provider attempt")
	}
}

// The CUDA runtime replaces signal handlers; with no GPU here, clobberSignal
// plays its part and the test checks that the save/restore around GPU
// session creation gives signals back to Go.
func TestSignalHandlersRestored(t *testing.T) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR2)
	defer signal.Stop(ch)
	received := func() bool {
		if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
			return true
		case <-time.After(300 * time.Millisecond):
			return false
		}
	}
	if !received() {
		t.Fatal("signal.Notify baseline: SIGUSR2 not received")
	}
	st := saveSignals()
	clobberSignal(syscall.SIGUSR2)
	if received() {
		t.Fatal("control: a clobbered handler still delivered the signal; the test proves nothing")
	}
	// Re-registering with signal.Notify does NOT reinstall Go's handler.
	signal.Notify(ch, syscall.SIGUSR2)
	if received() {
		t.Log("signal.Notify reinstalled the handler on this Go version")
	}
	st.restore()
	if !received() {
		t.Fatal("SIGUSR2 not delivered after restore")
	}
}

// fakeOldORT compiles a stand-in for an old ONNX Runtime: it exports
// OrtGetApiBase like the real library, reports version 1.16.3 and offers no
// C API as new as the one the wrapper asks for (GetApi returns NULL), as an
// old libonnxruntime does.
func fakeOldORT(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "oldort.c")
	code := `#include <stddef.h>
typedef struct { const void* (*GetApi)(unsigned int); const char* (*GetVersionString)(void); } OrtApiBase;
static const void* get_api(unsigned int v) { return NULL; }
static const char* version(void) { return "1.16.3"; }
static OrtApiBase base = { get_api, version };
const OrtApiBase* OrtGetApiBase(void) { return &base; }
`
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(dir, "libonnxruntime-old.so")
	if out, err := exec.Command("cc", "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("build the old-library stand-in: %v\n%s", err, out)
	}
	return lib
}
