package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mosquitto is a real broker started by a test on 127.0.0.1 and a free port,
// with a generated config and its own persistence folder.
type mosquitto struct {
	t       testing.TB
	port    int
	conf    string
	cmd     *exec.Cmd
	done    chan struct{}
	logMu   sync.Mutex
	log     bytes.Buffer
	tlsPort bool
	bin     string
}

type mosqOpts struct {
	// passwords maps user -> password; when set, anonymous access is off.
	passwords map[string]string
	// tls holds ca, cert, key files for a TLS listener.
	tlsCA, tlsCert, tlsKey string
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not installed (apt-get install mosquitto mosquitto-clients): %v", name, err)
	}
	return p
}

func startMosquitto(t testing.TB, o mosqOpts) *mosquitto {
	t.Helper()
	bin := "mosquitto"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("mosquitto not installed (apt-get install mosquitto): %v", err)
		}
	}
	dir := t.TempDir()
	m := &mosquitto{t: t, port: freePort(t), conf: filepath.Join(dir, "mosquitto.conf"), tlsPort: o.tlsCert != ""}
	var c strings.Builder
	fmt.Fprintf(&c, "listener %d 127.0.0.1\n", m.port)
	// Root makes mosquitto switch to user mosquitto, which cannot write a
	// root-owned temp dir and silently loses persistence: stay root.
	fmt.Fprintf(&c, "user %s\n", currentUser())
	fmt.Fprintf(&c, "persistence true\npersistence_location %s/\n", dir)
	// Unlimited queue for offline persistent subscribers: the default (1000)
	// drops QoS 1 messages, which would fail the fault test for the wrong reason.
	c.WriteString("max_queued_messages 0\n")
	c.WriteString("log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n")
	if o.passwords != nil {
		pw := filepath.Join(dir, "passwd")
		if err := os.WriteFile(pw, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		for u, p := range o.passwords {
			out, err := exec.Command(needTool(t, "mosquitto_passwd"), "-b", pw, u, p).CombinedOutput()
			if err != nil {
				t.Fatalf("mosquitto_passwd: %v: %s", err, out)
			}
		}
		fmt.Fprintf(&c, "allow_anonymous false\npassword_file %s\n", pw)
	} else {
		c.WriteString("allow_anonymous true\n")
	}
	if o.tlsCert != "" {
		fmt.Fprintf(&c, "cafile %s\ncertfile %s\nkeyfile %s\n", o.tlsCA, o.tlsCert, o.tlsKey)
	}
	if err := os.WriteFile(m.conf, []byte(c.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	m.bin = bin
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

func currentUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "mosquitto"
}

// URL is the broker URL for our client.
func (m *mosquitto) URL() string {
	if m.tlsPort {
		return fmt.Sprintf("ssl://127.0.0.1:%d", m.port)
	}
	return fmt.Sprintf("tcp://127.0.0.1:%d", m.port)
}

// Start starts (or restarts) the broker with the same config and port and
// waits until it accepts connections.
func (m *mosquitto) Start() {
	m.t.Helper()
	m.cmd = exec.Command(m.bin, "-c", m.conf)
	m.cmd.Stdout = &lockedWriter{mu: &m.logMu, w: &m.log}
	m.cmd.Stderr = m.cmd.Stdout
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(m.cmd, m.done)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.port), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-m.done:
			m.t.Fatalf("mosquitto exited at start:\n%s", m.Log())
		case <-time.After(20 * time.Millisecond):
		}
	}
	m.t.Fatalf("mosquitto did not listen on %d within 10s:\n%s", m.port, m.Log())
}

// Stop stops the broker gracefully (SIGTERM saves persistence) and waits.
func (m *mosquitto) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// Log returns what mosquitto wrote so far.
func (m *mosquitto) Log() string {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return m.log.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// runClient runs a mosquitto client tool (mosquitto_sub, mosquitto_pub) and
// returns its combined output.
func runClient(t testing.TB, ctx context.Context, tool string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.CommandContext(ctx, needTool(t, tool), args...).CombinedOutput()
	return string(out), err
}
