// Package testenv locates what the tests need outside the Go toolchain: the
// repository root, the ONNX Runtime library installed by `make setup`, and the
// shared data folder (../shared) that holds real images and models which must
// never be copied into the repository.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// RepoRoot returns the folder holding go.mod, found by walking up from the
// working directory (go test runs in the package folder).
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatalf("testenv: working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatalf("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// ORTLib returns the ONNX Runtime shared library path: $SEGAD_ONNXRUNTIME_LIB,
// else the copy `make setup` puts under .deps/. It fails the test when the
// library is absent, because every machine that runs the tests has run setup.
func ORTLib(tb testing.TB) string {
	tb.Helper()
	p := os.Getenv("SEGAD_ONNXRUNTIME_LIB")
	if p == "" {
		p = filepath.Join(RepoRoot(tb), ".deps", "onnxruntime", "libonnxruntime.so.1")
	}
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("testenv: ONNX Runtime library %s: %v (run `make setup`)", p, err)
	}
	return p
}

// SharedDir returns the shared data folder: $SEGAD_SHARED, else ../shared
// beside the repository. Tests that need it skip when it is absent (a
// developer's checkout elsewhere); CI always has it.
func SharedDir(tb testing.TB) string {
	tb.Helper()
	p := os.Getenv("SEGAD_SHARED")
	if p == "" {
		p = filepath.Join(RepoRoot(tb), "..", "shared")
	}
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("testenv: shared data folder %s not found; set SEGAD_SHARED", p)
	}
	return p
}

// Python returns Debian's python3, which has numpy, scipy, xgboost and onnx
// from apt; a python3 earlier on PATH (pyenv, venvs) usually lacks them.
func Python() string {
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return "python3"
}

// Pymodbus returns Debian's python3 once it has checked that pymodbus's
// client imports there; otherwise an error carrying Python's own traceback.
// The import is checked whole because Debian's python3-pymodbus only
// recommends python3-serial-asyncio, which pymodbus.client imports, so a
// --no-install-recommends install leaves a package that is present but
// cannot be used. The check runs once per test process: the Modbus tests
// start the PLC script many times, some of them concurrently.
var Pymodbus = sync.OnceValues(func() (string, error) {
	py := Python()
	var stderr bytes.Buffer
	cmd := exec.Command(py, "-c", "import pymodbus.client")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("testenv: %s cannot import pymodbus.client (%v): run `make setup`, which installs python3-pymodbus and python3-serial-asyncio\n%s",
			py, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return py, nil
})
