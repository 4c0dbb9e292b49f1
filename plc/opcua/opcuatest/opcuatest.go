// Package opcuatest installs and locates node-opcua, the independent OPC UA
// client (npm node-opcua-client) that the tests of plc/opcua and the
// end-to-end tests of cmd/segad drive with plc/opcua/testdata/client.js.
// It is for tests only.
package opcuatest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/internal/testenv"
)

// Version is the npm package the peer tests install.
const Version = "node-opcua-client@2.x"

var (
	once    sync.Once
	dir     string
	instErr error
	skip    string
)

// NodeModules returns the folder whose node_modules holds
// node-opcua-client, installing it once into the git-ignored
// .cache/node-opcua at the repository root. It skips the test when node or
// npm is absent.
func NodeModules(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		if _, err := exec.LookPath("node"); err != nil {
			skip = "node not found on PATH: install Node.js and npm (Debian: apt-get install nodejs npm) to run the node-opcua peer tests"
			return
		}
		d := filepath.Join(testenv.RepoRoot(t), ".cache", "node-opcua")
		if err := os.MkdirAll(d, 0o755); err != nil {
			instErr = err
			return
		}
		// go test runs packages in parallel processes, and both plc/opcua
		// and cmd/segad need the client: without a lock across processes,
		// one saw node-opcua-client's package.json while the other's
		// install was still unpacking it ("Cannot find module"). The
		// marker is written only after an install finished.
		unlock, err := lockFile(filepath.Join(d, "install.lock"))
		if err != nil {
			instErr = err
			return
		}
		defer unlock()
		marker := filepath.Join(d, "installed")
		if b, err := os.ReadFile(marker); err == nil && string(b) == Version {
			dir = d
			return
		}
		npm, err := exec.LookPath("npm")
		if err != nil {
			skip = "npm not found on PATH and node-opcua-client is not installed in " + d + ": install npm (Debian: apt-get install npm) to run the node-opcua peer tests"
			return
		}
		pkg := filepath.Join(d, "package.json")
		if _, err := os.Stat(pkg); err != nil {
			if err := os.WriteFile(pkg, []byte(`{"name":"segad-opcua-test","private":true}`+"\n"), 0o644); err != nil {
				instErr = err
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", Version)
		cmd.Dir = d
		if out, err := cmd.CombinedOutput(); err != nil {
			instErr = fmt.Errorf("npm install %s in %s: %v\n%s", Version, d, err, out)
			return
		}
		if err := os.WriteFile(marker, []byte(Version), 0o644); err != nil {
			instErr = err
			return
		}
		dir = d
	})
	if skip != "" {
		t.Skip(skip)
	}
	if instErr != nil {
		t.Fatal(instErr)
	}
	return dir
}

// lockFile takes an exclusive advisory lock on path (created if absent),
// waiting for another test process that holds it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opcuatest: open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("opcuatest: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

// ClientScript is the absolute path of plc/opcua/testdata/client.js.
func ClientScript(t testing.TB) string {
	return filepath.Join(testenv.RepoRoot(t), "plc", "opcua", "testdata", "client.js")
}

// Command is `node client.js ARGS` with NODE_PATH set to the installed
// node-opcua (it skips the test as NodeModules does).
func Command(ctx context.Context, t testing.TB, argsJSON string) *exec.Cmd {
	t.Helper()
	d := NodeModules(t)
	cmd := exec.CommandContext(ctx, "node", ClientScript(t), argsJSON)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(d, "node_modules"))
	return cmd
}
