package opcua

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/segad-edge/segad-edge/plc"
	"github.com/segad-edge/segad-edge/result"
)

// ProcessOptions configure StartProcess.
type ProcessOptions struct {
	// Options of the server (StateDir, Status, Logger, Version) as for New;
	// Status is polled in this process and sent to the server process.
	Options
	// Command is the server process's argv. Default: this executable with
	// the argument "opcua-serve" (segad's hidden command that runs
	// ServeChild); on Linux run through /proc/self/exe, so a restart runs
	// the same binary even after a package upgrade replaced the file.
	Command []string
	// Env is the server process's environment (nil: this process's).
	Env []string
	// LogLevel and LogFormat are the server process's log settings
	// (log.level, log.format of the config).
	LogLevel, LogFormat string
	// Stderr receives the server process's log lines (default os.Stderr).
	Stderr io.Writer
	// QueueSize bounds the results waiting for the server process (default
	// 1024); beyond it results are dropped and counted (Publish never
	// waits).
	QueueSize int
	// Backoff is the first restart delay (default 1 s), doubled after each
	// crash up to MaxBackoff (default 30 s); a process that served for
	// MaxBackoff resets it.
	Backoff, MaxBackoff time.Duration
	// StartTimeout bounds a start (default 30 s); StopTimeout bounds the
	// graceful stop in Close before the process is killed (default 5 s).
	StartTimeout, StopTimeout time.Duration
}

// ProcessStats are the supervisor's counters.
type ProcessStats struct {
	// Up: a server process is serving.
	Up bool
	// Pid of the server process (0 when none runs).
	Pid int
	// Restarts since start (after exits or crashes of the server process).
	Restarts uint64
	// Dropped: results not handed to the server process because its queue
	// was full.
	Dropped uint64
	// LastExit says how the last server process ended ("" if none did).
	LastExit string
}

// Process is the OPC UA output of `segad run`: the server runs in a child
// process (ServeChild) so that whatever a network peer makes it do (gopcua
// allocating an array of any declared length, a panic outside the
// handlers) can only end that process, never the inspection daemon.
// Process implements the daemon's output interface (Name, Publish, Close):
// Publish never waits, results go to the child as JSON lines through a
// bounded queue; the child is restarted with capped backoff when it exits
// and shows the latest result and the counters of this process again.
type Process struct {
	cfg      Config
	opts     ProcessOptions
	log      *slog.Logger
	endpoint string
	self     bool // run /proc/self/exe (with Command[0] as argv[0])

	mu       sync.Mutex
	cur      *child // serving child, nil while down
	last     []byte // the latest result line, replayed after a restart
	counts   Counts
	dropped  uint64
	dropLog  time.Time
	stale    bool // the latest result was dropped: resent by statusLoop
	restarts uint64
	lastExit string
	closed   bool

	stop   chan struct{} // closed by Close
	done   chan struct{} // closed when supervise returns
	closeO sync.Once
}

// child is one server process.
type child struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	queue    chan []byte
	events   chan childEvent
	exited   chan struct{} // closed after Wait
	err      error         // Wait's error
	tail     tailBuffer
	endpoint string
}

// StartProcess validates cfg, starts the server process and waits until it
// serves (or fails: then its error is returned, as New's would be).
func StartProcess(cfg Config, opts ProcessOptions) (*Process, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	self := false
	if len(opts.Command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("opcua: the server process is this executable: %w", err)
		}
		opts.Command = []string{exe, "opcua-serve"}
		if _, err := os.Stat("/proc/self/exe"); err == nil {
			self = true
		}
	}
	setInt(&opts.QueueSize, 1024)
	setDur(&opts.Backoff, time.Second)
	setDur(&opts.MaxBackoff, 30*time.Second)
	setDur(&opts.StartTimeout, 30*time.Second)
	setDur(&opts.StopTimeout, 5*time.Second)
	p := &Process{cfg: cfg, opts: opts, log: opts.Logger, self: self, stop: make(chan struct{}), done: make(chan struct{})}
	c, err := p.start()
	if err != nil {
		close(p.done)
		return nil, err
	}
	p.up(c)
	go p.supervise(c)
	go p.statusLoop()
	return p, nil
}

// start starts one server process and waits until it serves.
func (p *Process) start() (*child, error) {
	cmd := exec.Command(p.opts.Command[0], p.opts.Command[1:]...)
	if p.self {
		cmd.Path = "/proc/self/exe"
	}
	cmd.Env = p.opts.Env
	setParentDeath(cmd)
	c := &child{cmd: cmd, queue: make(chan []byte, p.opts.QueueSize), events: make(chan childEvent, 4), exited: make(chan struct{})}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	c.stdin = stdin
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("opcua: start the server process %s: %w", p.opts.Command[0], err)
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { // the child's log: relayed, the last lines kept
		defer readers.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 4096), 64<<10)
		crash, hidden := -1, 0 // lines since a crash header; trace lines not relayed
		for sc.Scan() {
			line := sc.Text()
			if crash < 0 && (strings.HasPrefix(line, "fatal error:") || strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "runtime: ")) {
				crash = 0
			}
			if crash >= 0 {
				// A Go crash trace lists every goroutine: the head
				// is relayed and kept, the rest counted.
				if crash++; crash > crashLines {
					hidden++
					continue
				}
			}
			if crash <= 2 { // the exit log names the crash, not its trace
				c.tail.add(line)
			}
			fmt.Fprintln(p.opts.Stderr, line)
		}
		io.Copy(io.Discard, stderr)
		if hidden > 0 {
			fmt.Fprintf(p.opts.Stderr, "(%d more lines of the OPC UA server process's crash trace not shown)\n", hidden)
		}
	}()
	go func() {
		defer readers.Done()
		defer close(c.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			var e childEvent
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				select {
				case c.events <- e:
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		c.err = cmd.Wait()
		close(c.exited)
	}()
	hello, _ := json.Marshal(childHello{Config: p.cfg, StateDir: p.opts.StateDir, Version: p.opts.Version,
		LogLevel: p.opts.LogLevel, LogFormat: p.opts.LogFormat})
	go c.write(append(hello, '\n'))

	timer := time.NewTimer(p.opts.StartTimeout)
	defer timer.Stop()
	select {
	case e, ok := <-c.events:
		if ok && e.Listening != "" {
			c.endpoint = e.Listening
			return c, nil
		}
		c.kill()
		<-c.exited
		if ok && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("opcua: the server process ended before serving (%s)%s", exitText(c.err), c.tail.text())
	case <-timer.C:
		c.kill()
		<-c.exited
		return nil, fmt.Errorf("opcua: the server process did not serve within %s%s", p.opts.StartTimeout, c.tail.text())
	}
}

// write sends the hello line, then the queue, to the child's stdin until
// the child exits or the queue is closed (Close): then stdin is closed,
// which asks the child to stop.
func (c *child) write(hello []byte) {
	defer c.stdin.Close()
	if _, err := c.stdin.Write(hello); err != nil {
		return
	}
	for {
		select {
		case line, ok := <-c.queue:
			if !ok {
				return
			}
			if _, err := c.stdin.Write(line); err != nil {
				return
			}
		case <-c.exited:
			return
		}
	}
}

func (c *child) kill() {
	if c.cmd.Process != nil {
		c.cmd.Process.Kill()
	}
}

// up makes c the serving child: the latest result and the line status go
// to it first.
func (p *Process) up(c *child) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range [][]byte{p.last, p.statusLine()} {
		if line != nil {
			select {
			case c.queue <- line:
			default:
			}
		}
	}
	p.cur = c
	p.stale = false
	p.endpoint = c.endpoint
}

// supervise restarts the server process whenever it exits, until Close.
func (p *Process) supervise(c *child) {
	defer close(p.done)
	backoff := p.opts.Backoff
	for {
		started := time.Now()
		select {
		case <-c.exited:
		case <-p.stop:
			p.stopChild(c)
			return
		}
		p.mu.Lock()
		p.cur = nil
		p.restarts++
		p.lastExit = exitText(c.err)
		n := p.restarts
		p.mu.Unlock()
		if time.Since(started) >= p.opts.MaxBackoff {
			backoff = p.opts.Backoff
		}
		// One line per exit; the backoff (at least 1 s by default) bounds
		// their rate.
		p.log.Error("opcua: the OPC UA server process ended; inspection goes on, the server is restarted",
			"exit", exitText(c.err), "restarts", n, "restart_in", backoff, "last_output", c.tail.lines())
		for {
			select {
			case <-time.After(backoff):
			case <-p.stop:
				return
			}
			backoff = min(2*backoff, p.opts.MaxBackoff)
			var err error
			if c, err = p.start(); err == nil {
				break
			}
			p.log.Error("opcua: the OPC UA server process did not start again", "err", err, "retry_in", backoff)
		}
		p.up(c)
		p.log.Info("opcua: OPC UA server process restarted", "endpoint", c.endpoint, "pid", c.cmd.Process.Pid, "restarts", n)
	}
}

// stopChild asks c to stop (its stdin ends) and kills it after
// StopTimeout.
func (p *Process) stopChild(c *child) {
	close(c.queue)
	select {
	case <-c.exited:
	case <-time.After(p.opts.StopTimeout):
		p.log.Warn("opcua: the OPC UA server process did not stop in time; killed", "timeout", p.opts.StopTimeout)
		c.kill()
		<-c.exited
	}
}

// statusLoop sends the line status every limits.status_interval.
func (p *Process) statusLoop() {
	t := time.NewTicker(p.cfg.Limits.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			line := p.statusLine()
			p.mu.Lock()
			if p.cur != nil && !p.closed {
				// The latest result, when it was dropped, so the server
				// shows it once it catches up (its counters say what was
				// missed); then the status. Full: the next tick.
				if p.stale {
					select {
					case p.cur.queue <- p.last:
						p.stale = false
					default:
					}
				}
				if line != nil {
					select {
					case p.cur.queue <- line:
					default:
					}
				}
			}
			p.mu.Unlock()
		}
	}
}

// statusLine is the line status as a pipe line; nil without a Status func.
func (p *Process) statusLine() []byte {
	if p.opts.Status == nil {
		return nil
	}
	var st plc.Status
	func() {
		defer func() {
			if r := recover(); r != nil {
				st = plc.Status{Online: true, Error: fmt.Sprintf("status unavailable: %v", r)}
			}
		}()
		st = p.opts.Status()
	}()
	b, _ := json.Marshal(childMsg{Status: &st})
	return append(b, '\n')
}

// Name identifies this output in logs and health.
func (p *Process) Name() string { return "opcua" }

// Endpoint is the endpoint URL clients connect to.
func (p *Process) Endpoint() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.endpoint
}

// Publish hands r to the server process. It never waits: when the
// process's queue is full, r is dropped and counted (logged at most every
// 10 s); while the process is down (restarting) only the latest result is
// kept, shown by the restarted server. The counters go on across restarts.
func (p *Process) Publish(ctx context.Context, r result.Result) error {
	// What the server shows; the rest (features, maps, explanation) stays
	// here.
	r.Features, r.MapMax, r.LatencyMS, r.Explain = nil, nil, nil, nil
	rb, err := json.Marshal(&r)
	if err != nil {
		return fmt.Errorf("opcua: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	c := &p.counts
	c.Parts++
	switch r.Verdict {
	case result.VerdictPass:
		c.Passes++
	case result.VerdictFail:
		c.Fails++
	default:
		c.Errors++
	}
	cb, _ := json.Marshal(c)
	line := make([]byte, 0, len(rb)+len(cb)+16)
	line = append(append(append(append(append(line, `{"c":`...), cb...), `,"r":`...), rb...), "}\n"...)
	p.last = line
	p.stale = false
	if p.cur == nil {
		return nil
	}
	select {
	case p.cur.queue <- line:
	default:
		p.dropped++
		p.stale = true
		if time.Since(p.dropLog) >= 10*time.Second {
			p.dropLog = time.Now()
			p.log.Warn("opcua: the OPC UA server process is behind; results dropped (OPC UA clients see a ResultCounter gap)",
				"dropped", p.dropped, "queue", p.opts.QueueSize)
		}
	}
	return nil
}

// ProcessStats returns the supervisor's counters.
func (p *Process) ProcessStats() ProcessStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ProcessStats{Up: p.cur != nil, Restarts: p.restarts, Dropped: p.dropped, LastExit: p.lastExit}
	if p.cur != nil {
		s.Pid = p.cur.cmd.Process.Pid
	}
	return s
}

// Close stops the server process gracefully (SystemState Halted, its
// connections closed), killing it after StopTimeout. Publish returns
// ErrClosed afterwards.
func (p *Process) Close() error {
	p.closeO.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		close(p.stop)
	})
	<-p.done
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// tailBuffer keeps the last lines a child wrote on stderr.
type tailBuffer struct {
	mu sync.Mutex
	l  []string
}

const (
	tailLines  = 10 // stderr lines kept for the exit log
	crashLines = 12 // lines of a crash trace relayed
)

func (t *tailBuffer) add(s string) {
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.l) == tailLines {
		t.l = t.l[1:]
	}
	t.l = append(t.l, s)
}

func (t *tailBuffer) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.l...)
}

func (t *tailBuffer) text() string {
	l := t.lines()
	if len(l) == 0 {
		return ""
	}
	return ":\n" + strings.Join(l, "\n")
}
