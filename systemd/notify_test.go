package systemd

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listen creates the real unixgram socket systemd would own and points
// $NOTIFY_SOCKET at it.
func listen(t *testing.T, abstract bool) *net.UnixConn {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify.sock")
	if abstract {
		name = fmt.Sprintf("@segad-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no datagram on the notify socket: %v", err)
	}
	return string(buf[:n])
}

func TestNotifierMessages(t *testing.T) {
	tests := []struct {
		name string
		send func(*Notifier) error
		want string
	}{
		{"ready", (*Notifier).Ready, "READY=1"},
		{"stopping", (*Notifier).Stopping, "STOPPING=1"},
		{"watchdog", (*Notifier).Watchdog, "WATCHDOG=1"},
		{"status", func(n *Notifier) error { return n.Status("inspecting, 9.8 fps") }, "STATUS=inspecting, 9.8 fps"},
		{"status newline flattened", func(n *Notifier) error { return n.Status("config rejected:\nline 3") }, "STATUS=config rejected: line 3"},
		{"extend timeout", func(n *Notifier) error { return n.ExtendTimeout(90 * time.Second) }, "EXTEND_TIMEOUT_USEC=90000000"},
		{"several at once", func(n *Notifier) error { return n.Notify("READY=1", "STATUS=up") }, "READY=1\nSTATUS=up"},
	}
	for _, abstract := range []bool{false, true} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/abstract=%v", tc.name, abstract), func(t *testing.T) {
				conn := listen(t, abstract)
				n, err := NewNotifier()
				if err != nil {
					t.Fatal(err)
				}
				if !n.Enabled() {
					t.Fatal("notifier disabled with NOTIFY_SOCKET set")
				}
				if err := tc.send(n); err != nil {
					t.Fatalf("send: %v", err)
				}
				if got := receive(t, conn); got != tc.want {
					t.Errorf("datagram %q, want %q", got, tc.want)
				}
			})
		}
	}
}

func TestNotifierReloading(t *testing.T) {
	conn := listen(t, false)
	n, _ := NewNotifier()
	before := monotonicUsec()
	if err := n.Reloading(); err != nil {
		t.Fatal(err)
	}
	after := monotonicUsec()
	got := receive(t, conn)
	first, rest, _ := strings.Cut(got, "\n")
	key, val, _ := strings.Cut(rest, "=")
	usec, err := strconv.ParseInt(val, 10, 64)
	if first != "RELOADING=1" || key != "MONOTONIC_USEC" || err != nil || usec < before || usec > after {
		t.Errorf("datagram %q, want RELOADING=1 and MONOTONIC_USEC in [%d, %d]", got, before, after)
	}
}

func TestNotifierOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "30000000")
	n, err := NewNotifier()
	if err != nil {
		t.Fatal(err)
	}
	var nilN *Notifier
	for _, x := range []*Notifier{n, nilN} {
		if x.Enabled() || x.WatchdogInterval() != 0 {
			t.Errorf("%v: enabled or watchdog on without NOTIFY_SOCKET", x)
		}
		for _, err := range []error{x.Ready(), x.Stopping(), x.Reloading(), x.Status("x"), x.Watchdog()} {
			if err != nil {
				t.Errorf("no-op notifier returned %v", err)
			}
		}
	}
}

func TestNotifierSocketGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone.sock")
	t.Setenv("NOTIFY_SOCKET", path)
	n, _ := NewNotifier()
	if err := n.Ready(); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Ready to a missing socket: %v, want an error naming %s", err, path)
	}
}

func TestNewNotifierEnv(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		name                string
		socket, usec, wdPID string
		wantEnabled         bool
		wantWatchdog        time.Duration
		wantErr             string
	}{
		{name: "watchdog for us", socket: "@x", usec: "30000000", wdPID: pid, wantEnabled: true, wantWatchdog: 30 * time.Second},
		{name: "watchdog without pid", socket: "/run/x.sock", usec: "1500000", wantEnabled: true, wantWatchdog: 1500 * time.Millisecond},
		{name: "watchdog for our parent", socket: "@x", usec: "30000000", wdPID: "1", wantEnabled: true},
		{name: "no watchdog", socket: "@x", wantEnabled: true},
		{name: "relative socket", socket: "run/x.sock", usec: "30000000", wantErr: "NOTIFY_SOCKET"},
		{name: "garbage usec", socket: "@x", usec: "30s", wantEnabled: true, wantErr: "WATCHDOG_USEC"},
		{name: "zero usec", socket: "@x", usec: "0", wantEnabled: true, wantErr: "WATCHDOG_USEC"},
		{name: "garbage pid", socket: "@x", usec: "1000000", wdPID: "me", wantEnabled: true, wantErr: "WATCHDOG_PID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NOTIFY_SOCKET", tc.socket)
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.wdPID)
			n, err := NewNotifier()
			if n == nil {
				t.Fatal("nil notifier")
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("error %v, want containing %q", err, tc.wantErr)
			}
			if n.Enabled() != tc.wantEnabled || n.WatchdogInterval() != tc.wantWatchdog {
				t.Errorf("Enabled %v watchdog %v, want %v %v", n.Enabled(), n.WatchdogInterval(), tc.wantEnabled, tc.wantWatchdog)
			}
		})
	}
}

// TestHeartbeat checks that pings flow while the pipeline is alive and stop
// when it is not, which is what gets a stuck pipeline restarted.
func TestHeartbeat(t *testing.T) {
	conn := listen(t, false)
	t.Setenv("WATCHDOG_USEC", "40000") // ping every 20 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n, err := NewNotifier()
	if err != nil {
		t.Fatal(err)
	}
	var alive atomic.Bool
	alive.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Heartbeat(ctx, nil, alive.Load); close(done) }()

	count := func(d time.Duration) int {
		buf := make([]byte, 64)
		deadline := time.Now().Add(d)
		c := 0
		for {
			if err := conn.SetReadDeadline(deadline); err != nil {
				t.Fatal(err)
			}
			n, err := conn.Read(buf)
			if err != nil {
				return c
			}
			if string(buf[:n]) != "WATCHDOG=1" {
				t.Errorf("unexpected datagram %q", buf[:n])
			}
			c++
		}
	}
	if c := count(300 * time.Millisecond); c < 5 {
		t.Errorf("%d pings in 300ms while alive, want about 15", c)
	}
	alive.Store(false)
	count(50 * time.Millisecond) // a tick already in flight may still land
	if c := count(200 * time.Millisecond); c != 0 {
		t.Errorf("%d pings while the pipeline is stuck, want 0", c)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Heartbeat did not return after cancel")
	}

	// Without a watchdog Heartbeat returns at once.
	t.Setenv("WATCHDOG_USEC", "")
	off, _ := NewNotifier()
	ret := make(chan struct{})
	go func() { off.Heartbeat(context.Background(), nil, alive.Load); close(ret) }()
	select {
	case <-ret:
	case <-time.After(time.Second):
		t.Fatal("Heartbeat blocked with the watchdog off")
	}
}
