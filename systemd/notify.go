package systemd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier speaks systemd's sd_notify protocol: one datagram of
// newline-separated KEY=VALUE assignments to the unixgram socket named by
// $NOTIFY_SOCKET. Outside systemd (no $NOTIFY_SOCKET) every method is a no-op
// that returns nil, so the daemon calls it unconditionally. A nil *Notifier
// is also a valid no-op notifier. Methods are safe for concurrent use.
//
// It is hand-written (about what github.com/coreos/go-systemd/daemon does)
// to keep the dependency set to what go.mod pins.
type Notifier struct {
	addr     *net.UnixAddr // nil: not under systemd (or NOTIFY_SOCKET unusable)
	watchdog time.Duration // 0: no watchdog for this process
}

// NewNotifier reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID. It
// always returns a usable Notifier; the error says why notifications or the
// watchdog are off when the variables are set but malformed (log it: systemd
// will otherwise time the service out with no hint).
func NewNotifier() (*Notifier, error) {
	n := &Notifier{}
	var errs []error
	if sock := os.Getenv("NOTIFY_SOCKET"); sock != "" {
		// Absolute path, or '@' for a Linux abstract socket (Go's net
		// package maps a leading '@' to the abstract namespace's NUL).
		if sock[0] != '/' && sock[0] != '@' {
			errs = append(errs, fmt.Errorf("NOTIFY_SOCKET=%q: want an absolute path or @abstract name; sd_notify disabled", sock))
		} else {
			n.addr = &net.UnixAddr{Name: sock, Net: "unixgram"}
		}
	}
	wd, err := watchdogFromEnv()
	if err != nil {
		errs = append(errs, err)
	}
	if n.addr != nil {
		n.watchdog = wd
	}
	return n, errors.Join(errs...)
}

// watchdogFromEnv implements sd_watchdog_enabled(): WATCHDOG_USEC applies to
// this process only when WATCHDOG_PID is unset or names it (a child that
// inherited the environment must not ping for its parent).
func watchdogFromEnv() (time.Duration, error) {
	s := os.Getenv("WATCHDOG_USEC")
	if s == "" {
		return 0, nil
	}
	usec, err := strconv.ParseUint(s, 10, 63)
	if err != nil || usec == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC=%q: want a positive integer of microseconds; watchdog pings disabled", s)
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("WATCHDOG_PID=%q: want a process id; watchdog pings disabled", p)
		}
		if pid != os.Getpid() {
			return 0, nil
		}
	}
	return time.Duration(usec) * time.Microsecond, nil
}

// Enabled reports whether notifications go anywhere (running under systemd
// with Type=notify).
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// WatchdogInterval is systemd's WatchdogSec= for this process, 0 when the
// watchdog is off. Ping (Watchdog) at about half of it.
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Notify sends the given KEY=VALUE assignments in one datagram.
func (n *Notifier) Notify(assignments ...string) error {
	if !n.Enabled() || len(assignments) == 0 {
		return nil
	}
	msg := strings.Join(assignments, "\n")
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify to %s: %w", n.addr.Name, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sd_notify %q to %s: %w", firstKey(msg), n.addr.Name, err)
	}
	return nil
}

func firstKey(msg string) string {
	if i := strings.IndexAny(msg, "=\n"); i >= 0 {
		return msg[:i]
	}
	return msg
}

// Ready tells systemd that start-up (model load, warm-up) is complete:
// `systemctl start` returns and units ordered after segad start.
func (n *Notifier) Ready() error { return n.Notify("READY=1") }

// Stopping tells systemd that a graceful shutdown has begun.
func (n *Notifier) Stopping() error { return n.Notify("STOPPING=1") }

// Reloading tells systemd that the configuration is being reloaded; send
// Ready when done. MONOTONIC_USEC is what systemd 253+ requires to match a
// reload to its request.
func (n *Notifier) Reloading() error {
	return n.Notify("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10))
}

// Status sets the one-line text `systemctl status` shows ("inspecting,
// 12.3 fps", "config rejected: ..."). Newlines would end the assignment, so
// they become spaces.
func (n *Notifier) Status(text string) error {
	return n.Notify("STATUS=" + strings.NewReplacer("\n", " ", "\r", " ").Replace(text))
}

// Watchdog pings systemd's watchdog. Call it only when the pipeline is
// demonstrably alive: a missed deadline makes systemd kill and restart us.
func (n *Notifier) Watchdog() error { return n.Notify("WATCHDOG=1") }

// ExtendTimeout asks for d more time for the current start-up, reload or
// shutdown phase (a TensorRT engine build can take minutes on first start).
func (n *Notifier) ExtendTimeout(d time.Duration) error {
	return n.Notify("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(d.Microseconds(), 10))
}

// Heartbeat pings the watchdog every half WatchdogInterval for as long as
// alive returns true, until ctx is done. When alive is false (the pipeline
// made no progress), it skips the ping so systemd restarts the service, and
// logs why. It returns at once when the watchdog is off.
func (n *Notifier) Heartbeat(ctx context.Context, log *slog.Logger, alive func() bool) {
	every := n.WatchdogInterval() / 2
	if every <= 0 {
		return
	}
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	stuck := false // log transitions only, not every tick
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !alive() {
				if !stuck {
					log.Warn("pipeline not alive: withholding systemd watchdog pings; systemd restarts the service if it stays stuck", "watchdog", n.WatchdogInterval())
				}
				stuck = true
				continue
			}
			if stuck {
				log.Info("pipeline alive again: systemd watchdog pings resumed")
				stuck = false
			}
			if err := n.Watchdog(); err != nil {
				log.Warn("systemd watchdog ping failed", "err", err)
			}
		}
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd uses.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}
