package capture

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"
)

// rawFrame is a frame as read, before preprocessing (which runs in Next, on
// the consumer's goroutine, so frames that are dropped cost nothing).
type rawFrame struct {
	m  gocv.Mat
	at time.Time
}

// trigger is one on-demand request.
type trigger struct {
	partID string
	at     time.Time
}

// Blocking operations a reader can be in, watched by the supervisor.
const (
	opNone int32 = iota
	opOpen
	opRead
)

// reader is one open-and-read run of a live source. OpenCV's Open and Read
// can block forever (RTSP, GStreamer), and a VideoCapture must not be closed
// while another thread is inside Read, so a stalled reader is abandoned
// rather than interrupted: it frees its capture itself if Read ever returns.
type reader struct {
	op        atomic.Int32
	opStart   atomic.Int64 // unix nanoseconds
	delivered atomic.Bool
	abandoned chan struct{}
	done      chan error    // the reader's failure, buffered
	exited    chan struct{} // closed when the reader goroutine has returned
}

func (r *reader) begin(op int32) { r.opStart.Store(time.Now().UnixNano()); r.op.Store(op) }
func (r *reader) end()           { r.op.Store(opNone) }
func (r *reader) gone() bool {
	select {
	case <-r.abandoned:
		return true
	default:
		return false
	}
}

// liveSource is a camera, stream or GStreamer pipeline: a grabber goroutine
// reads continuously, a supervisor goroutine enforces the watchdog and
// reopens with exponential backoff.
type liveSource struct {
	base
	target   string
	open     func() (*gocv.VideoCapture, error)
	onDemand bool
	minGap   time.Duration

	ctx     context.Context
	cancel  context.CancelFunc
	supDone chan struct{}
	readers sync.WaitGroup

	frames   chan rawFrame // free-run hand-over
	triggers chan trigger  // on-demand requests

	mu        sync.Mutex
	latest    *rawFrame     // on-demand: only the freshest frame is kept
	fresh     chan struct{} // closed and replaced whenever latest changes
	state     SourceState
	lastFrame time.Time
	closed    bool
}

func openLive(cfg Config, pre *preprocessor) (Source, error) {
	s := &liveSource{
		base:     newBase(cfg, pre),
		target:   cfg.target(),
		onDemand: cfg.Trigger.Mode == TriggerOnDemand,
		supDone:  make(chan struct{}),
		frames:   make(chan rawFrame, 1),
		triggers: make(chan trigger, 64),
		fresh:    make(chan struct{}),
	}
	if cfg.Trigger.MaxRate > 0 {
		s.minGap = time.Duration(float64(time.Second) / cfg.Trigger.MaxRate)
	}
	switch cfg.Kind {
	case KindDevice:
		idx, err := parseDevice(cfg.Device)
		if err != nil {
			return nil, fmt.Errorf("capture source %q: device: %w", cfg.Name, err)
		}
		s.open = func() (*gocv.VideoCapture, error) { return openDevice(cfg, idx) }
	case KindStream:
		s.target = redactURL(cfg.URL)
		s.open = func() (*gocv.VideoCapture, error) {
			return openCapture(cfg.URL, gocv.VideoCaptureFFmpeg, "stream "+s.target)
		}
	case KindGStreamer:
		s.open = func() (*gocv.VideoCapture, error) {
			return openCapture(cfg.Pipeline, gocv.VideoCaptureGstreamer, "GStreamer pipeline "+cfg.Pipeline)
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.supervise()
	return s, nil
}

// openCapture opens a URL or pipeline with one backend; gocv returns a
// capture object even on failure, which must still be closed.
func openCapture(uri string, api gocv.VideoCaptureAPI, what string) (*gocv.VideoCapture, error) {
	vc, err := gocv.VideoCaptureFileWithAPI(uri, api)
	if err != nil || !vc.IsOpened() {
		vc.Close()
		return nil, fmt.Errorf("open %s: OpenCV could not open it (check the address, the pipeline syntax with gst-launch-1.0, and that the camera is reachable)", what)
	}
	return vc, nil
}

// openDevice opens a V4L2 camera and applies the configured mode.
func openDevice(cfg Config, idx int) (*gocv.VideoCapture, error) {
	vc, err := gocv.VideoCaptureDeviceWithAPI(idx, gocv.VideoCaptureV4L2)
	if err != nil || !vc.IsOpened() {
		vc.Close()
		return nil, fmt.Errorf("open camera %s (V4L2 index %d): not available (is it plugged in, and is the user in group video?)", cfg.Device, idx)
	}
	// One driver buffer: a deep queue would hand out frames seconds old.
	vc.Set(gocv.VideoCaptureBufferSize, 1)
	if cfg.Width > 0 {
		vc.Set(gocv.VideoCaptureFrameWidth, float64(cfg.Width))
	}
	if cfg.Height > 0 {
		vc.Set(gocv.VideoCaptureFrameHeight, float64(cfg.Height))
	}
	if cfg.FPS > 0 {
		vc.Set(gocv.VideoCaptureFPS, cfg.FPS)
	}
	if cfg.Exposure != nil {
		// OpenCV's V4L2 backend maps 1 to V4L2_EXPOSURE_MANUAL.
		vc.Set(gocv.VideoCaptureAutoExposure, 1)
		vc.Set(gocv.VideoCaptureExposure, *cfg.Exposure)
	}
	return vc, nil
}

// nextBackoff doubles the wait, capped at max.
func nextBackoff(cur, max time.Duration) time.Duration {
	if cur <= 0 {
		return max
	}
	if cur > max/2 {
		return max
	}
	return cur * 2
}

// supervise runs readers one after another until Close: each failure
// (open error, end of stream, empty frame, watchdog) closes the reader and
// opens a new one after the backoff.
func (s *liveSource) supervise() {
	defer close(s.supDone)
	backoff := s.cfg.Reconnect.Initial
	var prev *reader
	for attempt := 0; ; attempt++ {
		// Never stack a new open on a reader still blocked inside OpenCV:
		// each hung open or read holds OpenCV's and GStreamer's threads and
		// descriptors until it returns, so starting another per timeout
		// leaked them without bound. One blocked call per source at most.
		if prev != nil && !s.waitExited(prev) {
			return
		}
		if attempt > 0 {
			s.mu.Lock()
			s.state.Reconnects++
			s.mu.Unlock()
		}
		r := &reader{abandoned: make(chan struct{}), done: make(chan error, 1), exited: make(chan struct{})}
		prev = r
		s.readers.Add(1)
		go s.read(r)
		err := s.watch(r)
		close(r.abandoned)
		if s.ctx.Err() != nil {
			return
		}
		if r.delivered.Load() {
			backoff = s.cfg.Reconnect.Initial
		}
		s.mu.Lock()
		s.state.Connected = false
		s.state.Reconnecting = true
		s.state.LastError = err.Error()
		s.mu.Unlock()
		s.log.Warn("capture source failed; reopening", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
		backoff = nextBackoff(backoff, s.cfg.Reconnect.Max)
	}
}

// waitExited waits until r's goroutine has returned from OpenCV, reporting
// the wait in the state and the log (once). False when the source closes.
func (s *liveSource) waitExited(r *reader) bool {
	select {
	case <-r.exited:
		return true
	default:
	}
	since := time.Unix(0, r.opStart.Load())
	what := "open"
	if r.op.Load() == opRead {
		what = "read"
	}
	msg := fmt.Sprintf("%s of %s still blocked in OpenCV since %s; not starting another until it returns (check the camera, network or pipeline)",
		what, s.target, since.Format(time.RFC3339))
	s.mu.Lock()
	s.state.LastError = msg
	s.mu.Unlock()
	s.log.Error("capture source call hung in OpenCV; waiting for it before reopening", "op", what, "since", since)
	select {
	case <-r.exited:
		s.log.Info("hung capture call returned; reopening", "op", what, "after", time.Since(since).Round(time.Millisecond))
		return true
	case <-s.ctx.Done():
		return false
	}
}

// watch waits for the reader to fail, or for it to sit in Open or Read past
// its limit (the frame-age watchdog).
func (s *liveSource) watch(r *reader) error {
	tick := min(s.cfg.Watchdog, s.cfg.OpenTimeout) / 5
	tick = max(tick, 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case err := <-r.done:
			return err
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-t.C:
			age := time.Since(time.Unix(0, r.opStart.Load()))
			switch r.op.Load() {
			case opRead:
				if age > s.cfg.Watchdog {
					return fmt.Errorf("%s stalled: no frame for %s (watchdog %s)", s.target, age.Round(time.Millisecond), s.cfg.Watchdog)
				}
			case opOpen:
				if age > s.cfg.OpenTimeout {
					return fmt.Errorf("open %s: no answer within %s (open_timeout)", s.target, s.cfg.OpenTimeout)
				}
			}
		}
	}
}

// read is the grabber goroutine: open, then read as fast as the source
// delivers, handing frames over (free-run) or keeping only the latest
// (on-demand). It owns its VideoCapture and closes it on the way out.
func (s *liveSource) read(r *reader) {
	defer s.readers.Done()
	defer close(r.exited)
	r.begin(opOpen)
	vc, err := s.open()
	r.end()
	if err != nil {
		r.done <- err
		return
	}
	defer vc.Close()
	if r.gone() {
		return
	}
	s.mu.Lock()
	s.state.Connected, s.state.Reconnecting = true, false
	s.mu.Unlock()
	s.log.Info("capture source connected", "target", s.target)
	var lastAccepted time.Time
	for {
		m := gocv.NewMat()
		r.begin(opRead)
		ok := vc.Read(&m)
		r.end()
		now := time.Now()
		if r.gone() {
			m.Close()
			return
		}
		if !ok || m.Empty() {
			m.Close()
			r.done <- fmt.Errorf("read %s: no frame (stream ended, device gone or empty frame)", s.target)
			return
		}
		r.delivered.Store(true)
		s.mu.Lock()
		s.lastFrame = now
		s.mu.Unlock()
		if s.onDemand {
			s.setLatest(rawFrame{m: m, at: now})
			continue
		}
		if s.minGap > 0 && now.Sub(lastAccepted) < s.minGap {
			m.Close() // over the rate limit: drop before any preprocessing
			continue
		}
		lastAccepted = now
		select {
		case s.frames <- rawFrame{m: m, at: now}:
		case <-r.abandoned:
			m.Close()
			return
		}
	}
}

// setLatest replaces the on-demand slot; the frame it replaces is stale and
// is freed, which is what keeps a trigger from seeing an old image.
func (s *liveSource) setLatest(rf rawFrame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		rf.m.Close()
		return
	}
	if s.latest != nil {
		s.latest.m.Close()
	}
	s.latest = &rf
	close(s.fresh)
	s.fresh = make(chan struct{})
}

// Next implements Source.
func (s *liveSource) Next(ctx context.Context) (*Frame, error) {
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if s.onDemand {
		return s.nextOnDemand(ctx)
	}
	select {
	case rf := <-s.frames:
		return s.frame(rf.m, rf.at, "", ""), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.ctx.Done():
		return nil, ErrClosed
	}
}

// nextOnDemand waits for a trigger, then for a frame read at or after it.
func (s *liveSource) nextOnDemand(ctx context.Context) (*Frame, error) {
	var tr trigger
	select {
	case tr = <-s.triggers:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.ctx.Done():
		return nil, ErrClosed
	}
	deadline := time.NewTimer(time.Until(tr.at.Add(s.cfg.Trigger.Timeout)))
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if s.latest != nil && !s.latest.at.Before(tr.at) {
			rf := *s.latest
			s.latest = nil
			s.mu.Unlock()
			return s.frame(rf.m, rf.at, tr.partID, ""), nil
		}
		fresh, lastErr := s.fresh, s.state.LastError
		s.mu.Unlock()
		select {
		case <-fresh:
		case <-deadline.C:
			err := fmt.Errorf("trigger for part %q: no fresh frame from %s within %s", tr.partID, s.name, s.cfg.Trigger.Timeout)
			if lastErr != "" {
				err = fmt.Errorf("%w (last error: %s)", err, lastErr)
			}
			return s.errorFrame(time.Now(), tr.partID, "", err), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// Trigger implements Triggerer.
func (s *liveSource) Trigger(partID string) error {
	if !s.onDemand {
		return fmt.Errorf("trigger %s: source runs free-run; set trigger.mode: on-demand", s.name)
	}
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	select {
	case s.triggers <- trigger{partID: partID, at: time.Now()}:
		return nil
	default:
		return fmt.Errorf("trigger %s for part %q: %d triggers already waiting; the pipeline is not keeping up", s.name, partID, cap(s.triggers))
	}
}

// State implements Source.
func (s *liveSource) State() SourceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	if !s.lastFrame.IsZero() {
		st.LastFrameAge = time.Since(s.lastFrame)
	}
	return st
}

// closeWait bounds how long Close waits for a reader stuck inside OpenCV.
const closeWait = 3 * time.Second

// Close implements Source. A reader stuck in a blocking Read cannot be
// interrupted; Close waits a few seconds for it and then returns, and the
// reader frees its capture when (if) OpenCV returns.
func (s *liveSource) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	<-s.supDone
	done := make(chan struct{})
	go func() { s.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		s.log.Warn("capture reader still blocked in OpenCV after close; it frees its capture when the call returns")
	}
	for {
		select {
		case rf := <-s.frames:
			rf.m.Close()
			continue
		default:
		}
		break
	}
	s.mu.Lock()
	if s.latest != nil {
		s.latest.m.Close()
		s.latest = nil
	}
	s.state.Connected = false
	s.mu.Unlock()
	return nil
}
