package testenv

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

// Mosquitto is a real broker started by a test on 127.0.0.1 and a free
// port, with a generated config and its own persistence folder. It can be
// stopped and restarted on the same port (fault tests).
type Mosquitto struct {
	t    testing.TB
	Port int
	// WSPort is the WebSockets listener's port (MosquittoOptions.WebSockets).
	WSPort int
	conf   string
	cmd    *exec.Cmd
	done   chan struct{}
	logMu  sync.Mutex
	log    bytes.Buffer
	tls    bool
	binary string
}

// MosquittoOptions configures a test broker.
type MosquittoOptions struct {
	// Passwords maps user -> password; when set, anonymous access is off.
	Passwords map[string]string
	// TLSCA, TLSCert and TLSKey enable a TLS listener.
	TLSCA, TLSCert, TLSKey string
	// WebSockets adds a second listener speaking MQTT over WebSockets, on
	// WSPort (ws://127.0.0.1:WSPort).
	WebSockets bool
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Tool returns the path of an installed command or fails the test saying
// which Debian package brings it.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	tb.Fatalf("%s not installed (make setup installs mosquitto and mosquitto-clients)", name)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// StartMosquitto starts a broker and stops it when the test ends.
func StartMosquitto(tb testing.TB, o MosquittoOptions) *Mosquitto {
	tb.Helper()
	dir := tb.TempDir()
	m := &Mosquitto{t: tb, Port: FreePort(tb), conf: filepath.Join(dir, "mosquitto.conf"), tls: o.TLSCert != "",
		binary: Tool(tb, "mosquitto")}
	var c strings.Builder
	fmt.Fprintf(&c, "listener %d 127.0.0.1\n", m.Port)
	// Started as root, mosquitto switches to user mosquitto, which cannot
	// write a root-owned temp dir and silently loses persistence: stay root.
	fmt.Fprintf(&c, "user %s\n", currentUser())
	fmt.Fprintf(&c, "persistence true\npersistence_location %s/\n", dir)
	// Unlimited queue for offline persistent subscribers: the default (1000)
	// drops QoS 1 messages, which would fail fault tests for the wrong reason.
	c.WriteString("max_queued_messages 0\n")
	c.WriteString("log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n")
	if o.Passwords != nil {
		pw := filepath.Join(dir, "passwd")
		if err := os.WriteFile(pw, nil, 0o600); err != nil {
			tb.Fatal(err)
		}
		for u, p := range o.Passwords {
			out, err := exec.Command(Tool(tb, "mosquitto_passwd"), "-b", pw, u, p).CombinedOutput()
			if err != nil {
				tb.Fatalf("mosquitto_passwd: %v: %s", err, out)
			}
		}
		fmt.Fprintf(&c, "allow_anonymous false\npassword_file %s\n", pw)
	} else {
		c.WriteString("allow_anonymous true\n")
	}
	if o.TLSCert != "" {
		fmt.Fprintf(&c, "cafile %s\ncertfile %s\nkeyfile %s\n", o.TLSCA, o.TLSCert, o.TLSKey)
	}
	if o.WebSockets {
		m.WSPort = FreePort(tb)
		// Per-listener settings need per_listener_settings off (the default):
		// the anonymous/password rules above apply to both listeners.
		fmt.Fprintf(&c, "listener %d 127.0.0.1\nprotocol websockets\n", m.WSPort)
	}
	if err := os.WriteFile(m.conf, []byte(c.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	m.Start()
	tb.Cleanup(m.Stop)
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

// URL is the broker URL for a client.
func (m *Mosquitto) URL() string {
	if m.tls {
		return fmt.Sprintf("ssl://127.0.0.1:%d", m.Port)
	}
	return fmt.Sprintf("tcp://127.0.0.1:%d", m.Port)
}

// Start starts (or restarts) the broker with the same config and port and
// waits until it accepts connections.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.cmd = exec.Command(m.binary, "-c", m.conf)
	m.cmd.Stdout = &lockedWriter{mu: &m.logMu, w: &m.log}
	m.cmd.Stderr = m.cmd.Stdout
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(m.cmd, m.done)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.Port), 100*time.Millisecond)
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
	m.t.Fatalf("mosquitto did not listen on %d within 10s:\n%s", m.Port, m.Log())
}

// Stop stops the broker gracefully (SIGTERM saves persistence) and waits.
func (m *Mosquitto) Stop() {
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
func (m *Mosquitto) Log() string {
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

// RunClient runs a mosquitto client tool (mosquitto_sub, mosquitto_pub) and
// returns its combined output.
func RunClient(tb testing.TB, ctx context.Context, tool string, args ...string) (string, error) {
	tb.Helper()
	out, err := exec.CommandContext(ctx, Tool(tb, tool), args...).CombinedOutput()
	return string(out), err
}
