package opcua

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"

	"github.com/segad-edge/segad-edge/plc"
	"github.com/segad-edge/segad-edge/result"
)

// The pipe between `segad run` (the parent, Process) and the OPC UA server
// process (`segad opcua-serve`, ServeChild) carries JSON lines:
//
//	parent -> child stdin:  childHello (first line), then childMsg lines
//	child stdout -> parent: childEvent lines ("listening" or "error")
//	child stderr:           the child's log, relayed by the parent
//
// The child exits when its stdin ends (the parent closed it or died).

// childHello is the first line on the child's stdin.
type childHello struct {
	Config    Config `json:"config"`
	StateDir  string `json:"state_dir"`
	Version   string `json:"version"`
	LogLevel  string `json:"log_level"`
	LogFormat string `json:"log_format"`
}

// childMsg is one result (with the parent's counters after it) or one line
// status.
type childMsg struct {
	Result *result.Result `json:"r,omitempty"`
	Counts *Counts        `json:"c,omitempty"`
	Status *plc.Status    `json:"s,omitempty"`
}

// Counts are the result counters the parent keeps and the child shows
// (Counters.Parts..Errors, Result.ResultCounter = Parts).
type Counts struct {
	Parts, Passes, Fails, Errors uint64
}

// childEvent is one line on the child's stdout.
type childEvent struct {
	Listening string `json:"listening,omitempty"` // the endpoint URL, once serving
	Error     string `json:"error,omitempty"`     // why the server could not start
}

// maxChildLine bounds one line on the pipe (results are small: their
// features, maps and explanation are not sent).
const maxChildLine = 4 << 20

// ServeChild is the OPC UA server process (`segad opcua-serve`): it reads
// its configuration from the first line of stdin, sets its memory limits,
// starts the server (New, in this process), reports the endpoint on
// stdout, then publishes the results and line status that arrive on stdin
// until stdin ends, and closes the server. It returns the exit code;
// newLogger builds the process's logger (on stderr) from the level and
// format the parent sends.
func ServeChild(stdin io.Reader, stdout io.Writer, newLogger func(level, format string) *slog.Logger) int {
	// segad run stops this process by closing its stdin, after the
	// daemon's last result. Signals meant for the daemon also reach it (a
	// terminal's Ctrl-C, systemd's stop of the whole unit): ignored, so the
	// parent does not see an early exit and restart it. A dead parent ends
	// it through stdin's end (and, on Linux, the parent-death signal).
	signal.Ignore(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), maxChildLine)
	enc := json.NewEncoder(stdout)
	fail := func(format string, args ...any) int {
		enc.Encode(childEvent{Error: fmt.Sprintf(format, args...)})
		return 1
	}
	if !sc.Scan() {
		return fail("opcua-serve: no configuration on stdin (it is started by segad run): %v", sc.Err())
	}
	var h childHello
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
		return fail("opcua-serve: configuration line: %v", err)
	}
	log := newLogger(h.LogLevel, h.LogFormat)
	cfg := h.Config
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return fail("%v", err)
	}
	debug.SetMemoryLimit(int64(cfg.Limits.MemoryLimitMB) << 20)
	if base, limit, err := limitAddressSpace(uint64(cfg.Limits.AddressSpaceGrowthMB) << 20); err != nil {
		log.Warn("opcua: cannot limit the address space (plc.opcua.limits.address_space_growth_mb)", "err", err)
	} else if limit > 0 {
		log.Info("opcua: server process memory limits", "go_memory_limit_mb", cfg.Limits.MemoryLimitMB, "mapped_mb", base>>20, "limit_mb", limit>>20)
	}
	var status atomic.Pointer[plc.Status]
	status.Store(&plc.Status{Online: true, Error: "starting"})
	s, err := New(cfg, Options{StateDir: h.StateDir, Logger: log, Version: h.Version,
		Status: func() plc.Status { return *status.Load() }})
	if err != nil {
		return fail("%v", err)
	}
	defer s.Close()
	if err := enc.Encode(childEvent{Listening: s.Endpoint()}); err != nil {
		return 1
	}
	for sc.Scan() {
		var m childMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			log.Warn("opcua: bad line from segad run", "err", err)
			continue
		}
		if m.Status != nil {
			st := *m.Status
			status.Store(&st)
		}
		if m.Result != nil {
			s.publishCounted(*m.Result, m.Counts)
		}
	}
	if err := sc.Err(); err != nil {
		log.Warn("opcua: reading from segad run", "err", err)
	}
	return 0
}

// publishCounted publishes r so that the counters after it are c (the
// parent's counts, which go on across restarts of this process and count
// results it dropped); nil c: Publish's own counting.
func (s *Server) publishCounted(r result.Result, c *Counts) {
	if c != nil && c.Parts > 0 {
		s.pubMu.Lock()
		s.count, s.passes, s.fails, s.errs = c.Parts-1, c.Passes, c.Fails, c.Errors
		// Publish adds this result to its verdict's counter.
		switch r.Verdict {
		case result.VerdictPass:
			s.passes = max(s.passes, 1) - 1
		case result.VerdictFail:
			s.fails = max(s.fails, 1) - 1
		default:
			s.errs = max(s.errs, 1) - 1
		}
		s.pubMu.Unlock()
	}
	s.Publish(context.Background(), r)
}
