package infer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// LibEnvVar names the environment variable that points at the ONNX Runtime
// shared library (the config key onnxruntime.library overrides it in the daemon).
const LibEnvVar = "SEGAD_ONNXRUNTIME_LIB"

// MinORTVersion is the oldest ONNX Runtime the pinned onnxruntime_go v1.27.0
// works with: it asks the library for C API version 24.
const MinORTVersion = "1.24.1"

var (
	initMu   sync.Mutex
	initPath string
)

// Init loads the ONNX Runtime shared library and creates the process-wide
// environment. Call it once per process before Open; a second call with the
// same path is a no-op, with another path an error (ORT cannot be loaded
// twice). libPath "" means $SEGAD_ONNXRUNTIME_LIB.
func Init(libPath string) error {
	initMu.Lock()
	defer initMu.Unlock()
	if libPath == "" {
		libPath = os.Getenv(LibEnvVar)
	}
	if libPath == "" {
		var tried []string
		libPath, tried = findLibrary()
		if libPath == "" {
			return fmt.Errorf("onnxruntime: library not found (tried %s): set the config key onnxruntime.library or $%s (`make setup` installs it under .deps/onnxruntime/)",
				strings.Join(tried, ", "), LibEnvVar)
		}
	}
	if initPath != "" {
		if initPath == libPath {
			return nil
		}
		return fmt.Errorf("onnxruntime: already initialised with %s, cannot load %s too", initPath, libPath)
	}
	hint := fmt.Sprintf("install ONNX Runtime >= %s with `make setup`, or point the config key onnxruntime.library / $%s at it", MinORTVersion, LibEnvVar)
	st, err := os.Stat(libPath)
	if err != nil {
		return fmt.Errorf("onnxruntime library %s: %w (%s)", libPath, err, hint)
	}
	if st.IsDir() {
		return fmt.Errorf("onnxruntime library %s is a folder, not the .so file (%s)", libPath, hint)
	}
	ort.SetSharedLibraryPath(libPath)
	if err := guardedInit(); err != nil {
		msg := err.Error()
		if strings.Contains(msg, "ORT API base: 2") || strings.Contains(msg, "API version") {
			return fmt.Errorf("onnxruntime library %s is older than %s (it does not offer the C API version onnxruntime_go v1.27.0 needs): %w; %s", libPath, MinORTVersion, err, hint)
		}
		return fmt.Errorf("onnxruntime library %s: %w; %s", libPath, err, hint)
	}
	v := ort.GetVersion()
	if !versionAtLeast(v, MinORTVersion) {
		_ = ort.DestroyEnvironment()
		return fmt.Errorf("onnxruntime library %s is version %s, older than %s; %s", libPath, v, MinORTVersion, hint)
	}
	initPath = libPath
	slog.Info("infer: onnxruntime loaded", "lib", libPath, "version", v)
	return nil
}

// findLibrary looks for the library where installs put it: beside the
// binary, in the project's .deps/ (bin/segad in a checkout after `make
// setup`), and in the system library folders.
func findLibrary() (string, []string) {
	const name = "libonnxruntime.so.1"
	var cands []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		cands = append(cands, filepath.Join(dir, name), filepath.Join(dir, "..", ".deps", "onnxruntime", name),
			filepath.Join(dir, "..", "lib", "segad", name))
	}
	cands = append(cands, filepath.Join("/usr/local/lib", name), filepath.Join("/usr/lib/segad", name), filepath.Join("/usr/lib", name))
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return filepath.Clean(c), cands
		}
	}
	return "", cands
}

// guardedInit turns a panic inside onnxruntime_go (older wrappers panic on an
// API version mismatch) into an error so the daemon can report it.
func guardedInit() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("API version check failed: %v", r)
		}
	}()
	return ort.InitializeEnvironment(ort.WithLogLevelError())
}

// Shutdown destroys the environment; every Detector must be closed first.
// Tests and tools call it; the daemon lets process exit do it.
func Shutdown() error {
	initMu.Lock()
	defer initMu.Unlock()
	if initPath == "" {
		return nil
	}
	initPath = ""
	return ort.DestroyEnvironment()
}

var errNotInit = errors.New("onnxruntime not initialised: call infer.Init first")

func initialised() bool {
	initMu.Lock()
	defer initMu.Unlock()
	return initPath != ""
}

// versionAtLeast compares dotted numeric versions ("1.24.1").
func versionAtLeast(have, want string) bool {
	h := strings.Split(strings.TrimSpace(have), ".")
	w := strings.Split(want, ".")
	for i := range w {
		wi, _ := strconv.Atoi(w[i])
		hi := 0
		if i < len(h) {
			var err error
			if hi, err = strconv.Atoi(h[i]); err != nil {
				return false
			}
		}
		if hi != wi {
			return hi > wi
		}
	}
	return true
}
