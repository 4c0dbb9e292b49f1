// Package modbus is the Modbus TCP server a PLC uses to trigger inspections
// and read their results with the bit handshake vision systems use
// (TriggerEnable/Trigger/TriggerAck, ResultValid/ResultAck). It is an output
// of the daemon beside MQTT: Publish enqueues each result into a bounded
// buffer and never blocks; triggers go to the daemon through plc.Line.
//
// The register map, the handshake and the matching of triggers to results
// are documented in docs/plc.md; `segad plc map --json` prints the map.
//
// The Modbus TCP framing is implemented here rather than with a library
// server: the allow-list must refuse a connection at accept (before it takes
// one of the bounded slots), and lost PLC connections must be seen to be
// logged and counted; github.com/simonvetter/modbus's server offers neither
// hook. Its client is the Go peer in the tests and the benchmark, beside
// pymodbus and mbpoll.
package modbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segad-edge/segad-edge/partid"
	"github.com/segad-edge/segad-edge/plc"
	"github.com/segad-edge/segad-edge/result"
)

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("modbus server closed")

// Stats are the server's counters, for health and metrics.
type Stats struct {
	Parts, Fails, Errors uint64
	// Overruns counts results not shown because the buffer was full.
	Overruns uint64
	// TriggersAccepted and TriggersRefused count PLC trigger edges.
	TriggersAccepted, TriggersRefused uint64
	// Connections is the number of open client connections.
	Connections int
	// ConnectionsLost counts client connections that ended.
	ConnectionsLost uint64
	// ConnectionsRefused counts connections refused at accept.
	ConnectionsRefused uint64
	// Buffered is the number of results waiting for ResultAck.
	Buffered int
	// PendingTriggers is the number of accepted triggers without a result.
	PendingTriggers int
}

// pendingTrigger is a PLC trigger accepted and not yet answered.
type pendingTrigger struct {
	id     uint16
	partID string
	// edge is the Trigger edge number, so TriggerAck is only set while
	// the Trigger bit that caused it is still high.
	edge uint64
	// answered: its result arrived (possibly before Line.Trigger returned).
	answered bool
}

// entry is one buffered result in register form.
type entry struct {
	inspectionID uint16
	seq          uint16
	code         uint16
	reason       uint16
	flags        uint16
	score        float32
	threshold    float32
	partID       []uint16
}

// Server is the Modbus TCP server. Create it with Listen.
type Server struct {
	cfg    Config
	line   plc.Line
	log    *slog.Logger
	allow  []netip.Prefix
	ln     net.Listener
	start  time.Time
	token  string
	bigEnd bool

	trigCh chan pendingTrigger
	done   chan struct{}
	// ctx is cancelled by Close, so a Line.Trigger in progress ends.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	refusedLog, connLog, lostLog rateLog

	mu sync.Mutex
	// PLC-written state.
	control  uint16
	partIDIn []uint16
	edges    uint64
	// Trigger state.
	nextID         uint16
	triggerID      uint16
	triggerAck     bool
	triggerRefused bool
	overrun        bool
	errorCode      uint16
	overrunID      uint16
	pending        []pendingTrigger
	// Results.
	buf    []entry // buf[0] is shown while valid
	valid  bool
	shown  entry // the last result shown (kept after ResultAck)
	seq    uint16
	counts struct {
		parts, fails, errors, overruns, triggers, refused, connLost, connRefused uint64
	}
	bundle        string
	bundleSeen    bool
	bundleNumber  uint32
	bundleChanges uint16
	conns         map[net.Conn]*connState
}

// Listen validates cfg, binds cfg.Listen and serves until Close. line gives
// triggers and status; nil refuses triggers (results are still served).
func Listen(cfg Config, line plc.Line, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	allow, _ := ParseAllow(cfg.Allow)
	tok := make([]byte, 3)
	_, _ = rand.Read(tok)
	s := &Server{
		cfg:      cfg,
		line:     line,
		log:      log.With("output", "modbus"),
		allow:    allow,
		start:    time.Now(),
		token:    hex.EncodeToString(tok),
		bigEnd:   cfg.WordOrder == WordOrderBig,
		trigCh:   make(chan pendingTrigger, cfg.MaxPendingTriggers),
		done:     make(chan struct{}),
		partIDIn: make([]uint16, cfg.PartIDRegisters),
		conns:    map[net.Conn]*connState{},
		nextID:   1,
		buf:      make([]entry, 0, cfg.ResultBuffer),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.refusedLog.every = 10 * time.Second
	s.connLog.every, s.lostLog.every = time.Second, time.Second
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		s.cancel()
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("modbus listen %s: %w (ports below 1024 need root or CAP_NET_BIND_SERVICE; set plc.modbus.listen to a port such as 1502 and point the PLC at it)", cfg.Listen, err)
		}
		return nil, fmt.Errorf("modbus listen %s: %w", cfg.Listen, err)
	}
	s.ln = ln
	if len(allow) == 0 {
		s.log.Info("modbus server listening (loopback clients only)", "addr", ln.Addr().String())
	} else {
		s.log.Info("modbus server listening", "addr", ln.Addr().String(), "allow", cfg.Allow)
		for _, p := range allow {
			if p.Bits() == 0 {
				s.log.Warn("MODBUS SERVER IS OPEN: plc.modbus.allow contains " + p.String() + ": any host that reaches this port can trigger inspections and acknowledge results (Modbus has no authentication)")
			}
		}
	}
	s.wg.Add(2)
	go s.acceptLoop()
	go s.triggerLoop()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Name names the output.
func (s *Server) Name() string { return "modbus" }

// Close stops listening, closes every connection and waits for the
// server's goroutines. Results still buffered are dropped (MQTT and history
// have them).
func (s *Server) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.done)
	s.cancel()
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Parts: s.counts.parts, Fails: s.counts.fails, Errors: s.counts.errors,
		Overruns: s.counts.overruns, TriggersAccepted: s.counts.triggers, TriggersRefused: s.counts.refused,
		Connections: len(s.conns), ConnectionsLost: s.counts.connLost, ConnectionsRefused: s.counts.connRefused,
		Buffered: len(s.buf), PendingTriggers: len(s.pending),
	}
}

// Publish hands one result to the PLC: it is matched to a pending PLC
// trigger (by part ID), put into the result buffer and shown at once when
// the PLC is not holding an earlier one. It never blocks on the PLC: when
// the buffer is full the result is not shown, ResultBufferOverrun is set,
// the overrun is counted and an error is returned (the result is still in
// MQTT and history).
func (s *Server) Publish(_ context.Context, r result.Result) error {
	if s.closed.Load() {
		return ErrClosed
	}
	e := entry{
		code:      plc.ResultCode(r.Verdict),
		reason:    plc.ReasonNumber(r.ReasonCode),
		threshold: float32(r.Threshold),
		score:     float32(math.NaN()),
	}
	if r.Score != nil && !math.IsNaN(*r.Score) {
		e.score = float32(*r.Score)
		e.flags |= FlagScoreValid
	}
	if r.Warn {
		e.flags |= FlagWarn
	}
	var trunc bool
	e.partID, trunc = encodeString(r.PartID, s.cfg.PartIDRegisters)
	if trunc {
		e.flags |= FlagPartIDTruncated
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts.parts++
	switch e.code {
	case plc.CodeFail:
		s.counts.fails++
	case plc.CodeError:
		s.counts.errors++
	}
	s.seq++
	if s.seq == 0 {
		s.seq = 1
	}
	e.seq = s.seq
	// Only a result whose part ID is that of a pending PLC trigger answers
	// it: the part IDs of pending triggers are unique (duplicates are
	// refused, empty ones are generated), so a free-running frame or
	// another source's trigger cannot take a PLC trigger's InspectionID.
	// The daemon answers triggers in order, so the match is the oldest.
	for i := range s.pending {
		p := &s.pending[i]
		if !p.answered && p.partID == r.PartID {
			if s.unansweredBefore(i) {
				s.log.Warn("modbus: a result answers a PLC trigger out of order", "inspection_id", p.id, "part_id", r.PartID, "older_pending", i)
			}
			e.inspectionID = p.id
			e.flags |= FlagTriggered
			p.answered = true
			s.dropAnswered()
			break
		}
	}
	if len(s.buf) >= s.cfg.ResultBuffer {
		s.overrun = true
		s.errorCode = ErrOverrun
		s.counts.overruns++
		if e.inspectionID != 0 {
			s.overrunID = e.inspectionID
		}
		return fmt.Errorf("modbus result buffer full (%d results waiting for the PLC's ResultAck, plc.modbus.result_buffer): result seq %d (InspectionID %d, part %q) not shown, ResultBufferOverrun set", len(s.buf), e.seq, e.inspectionID, r.PartID)
	}
	s.buf = append(s.buf, e)
	s.showNext()
	return nil
}

// dropAnswered removes answered triggers from the FIFO; one answered while
// Line.Trigger is still running (edge != 0) stays until it returns.
func (s *Server) dropAnswered() {
	keep := s.pending[:0]
	for _, p := range s.pending {
		if !p.answered || p.edge != 0 {
			keep = append(keep, p)
		}
	}
	s.pending = keep
}

// showNext shows the oldest buffered result when none is shown and the
// PLC has cleared ResultAck (the four-phase handshake: a new result never
// replaces one the PLC is reading). Called with mu held.
func (s *Server) showNext() {
	if s.valid || s.control&CtlResultAck != 0 || len(s.buf) == 0 {
		return
	}
	s.shown = s.buf[0]
	s.valid = true
}

// writeControl applies a control word written by the PLC (register or
// coils). Called with mu held; v has only ctlMask bits.
func (s *Server) writeControl(v uint16) {
	old := s.control
	s.control = v
	rise, fall := v&^old, old&^v
	if fall&CtlTrigger != 0 {
		s.triggerAck = false
	}
	if rise&CtlResetError != 0 {
		s.overrun, s.triggerRefused, s.errorCode, s.overrunID = false, false, ErrNone, 0
		// The PLC gives up on triggers still waiting (its recovery after a
		// daemon restart lost them): their results, if they still come,
		// arrive with InspectionID 0.
		if n := len(s.pending); n > 0 {
			s.log.Warn("modbus: ResetError abandons PLC triggers still waiting for their result", "pending", n, "oldest_inspection_id", s.pending[0].id)
			s.pending = s.pending[:0]
		}
	}
	if rise&CtlTrigger != 0 {
		s.edges++
		s.takeTrigger(s.edges)
	}
	if rise&CtlResultAck != 0 && s.valid {
		s.valid = false
		s.buf = append(s.buf[:0], s.buf[1:]...)
	}
	if fall&CtlResultAck != 0 {
		s.showNext()
	}
}

func (s *Server) refuseTrigger(code uint16, why string, args ...any) {
	s.triggerRefused = true
	s.errorCode = code
	s.counts.refused++
	s.log.Warn("modbus: PLC trigger refused: "+why, args...)
}

// takeTrigger handles a Trigger rising edge. Called with mu held.
func (s *Server) takeTrigger(edge uint64) {
	s.triggerAck = false
	switch {
	case s.control&CtlTriggerEnable == 0:
		s.refuseTrigger(ErrTriggerNotEnabled, "Trigger rose without TriggerEnable")
		return
	case s.line == nil:
		s.refuseTrigger(ErrNoTriggerSource, "this server has no line to trigger")
		return
	case len(s.pending) >= s.cfg.MaxPendingTriggers:
		s.refuseTrigger(ErrTriggerBusy, "busy", "pending", len(s.pending), "max_pending_triggers", s.cfg.MaxPendingTriggers)
		return
	}
	id := decodeString(s.partIDIn)
	if _, err := partid.Check(id); err != nil {
		s.refuseTrigger(ErrPartIDInvalid, "part ID registers: "+err.Error())
		return
	}
	tid := s.nextID
	if id == "" {
		// Unique within this process and across restarts (random token),
		// so no other source can carry it by chance.
		id = fmt.Sprintf("plc-%s-%05d", s.token, tid)
	}
	for _, p := range s.pending {
		if p.partID == id {
			s.refuseTrigger(ErrPartIDPending, "a trigger for this part ID still waits for its result", "part_id", id, "inspection_id", p.id)
			return
		}
	}
	s.nextID++
	if s.nextID == 0 {
		s.nextID = 1
	}
	p := pendingTrigger{id: tid, partID: id, edge: edge}
	s.pending = append(s.pending, p)
	s.counts.triggers++
	s.trigCh <- p // never blocks: capacity max_pending_triggers
}

// triggerLoop calls Line.Trigger for accepted triggers in order, outside
// the register lock, so a slow daemon never delays a Modbus answer.
func (s *Server) triggerLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case p := <-s.trigCh:
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.TriggerTimeout)
			err := s.line.Trigger(ctx, p.partID)
			cancel()
			s.mu.Lock()
			i := s.pendingIndex(p.id)
			switch {
			case i < 0:
			case err != nil && !s.pending[i].answered:
				s.pending = append(s.pending[:i], s.pending[i+1:]...)
				s.counts.triggers--
				s.refuseTrigger(ErrTriggerRefused, "the line refused it", "inspection_id", p.id, "part_id", p.partID, "err", err)
			default:
				s.triggerID = p.id
				if s.edges == p.edge && s.control&CtlTrigger != 0 {
					s.triggerAck = true
				}
				s.pending[i].edge = 0
				s.dropAnswered()
			}
			s.mu.Unlock()
		}
	}
}

func (s *Server) unansweredBefore(i int) bool {
	for _, p := range s.pending[:i] {
		if !p.answered {
			return true
		}
	}
	return false
}

func (s *Server) pendingIndex(id uint16) int {
	for i, p := range s.pending {
		if p.id == id {
			return i
		}
	}
	return -1
}

// image builds the register image (holding = input registers) from the
// state and the line's status. Called with mu held.
func (s *Server) image(st plc.Status, img *[MapSize]uint16) {
	if st.Bundle != s.bundle || !s.bundleSeen {
		if s.bundleSeen {
			s.bundleChanges++
		}
		s.bundleSeen = true
		s.bundle = st.Bundle
		s.bundleNumber = 0
		if st.Bundle != "" {
			s.bundleNumber = crc32.ChecksumIEEE([]byte(st.Bundle))
		}
	}
	img[RegControl] = s.control
	img[RegStatus] = s.statusWord(st)
	img[RegTriggerID] = s.triggerID
	img[RegErrorCode] = s.errorCode
	if img[RegErrorCode] == ErrNone && st.Error != "" {
		img[RegErrorCode] = ErrLine
	}
	img[RegResultsBuffered] = uint16(len(s.buf))
	img[RegPendingTriggers] = uint16(len(s.pending))
	img[RegHeartbeat] = uint16(int64(time.Since(s.start) / time.Second))
	img[RegMapVersion] = MapVersion
	img[RegOverrunID] = s.overrunID
	e := &s.shown
	img[RegResultID] = e.inspectionID
	img[RegResultCode] = e.code
	img[RegReasonNumber] = e.reason
	img[RegResultFlags] = e.flags
	img[RegResultSeq] = e.seq
	s.put32(img, RegScore, math.Float32bits(e.score))
	s.put32(img, RegThreshold, math.Float32bits(e.threshold))
	for i, v := range []uint64{s.counts.parts, s.counts.fails, s.counts.errors, s.counts.overruns, s.counts.triggers, s.counts.refused, s.counts.connLost, s.counts.connRefused} {
		s.put32(img, RegCountParts+uint16(2*i), uint32(v))
	}
	s.put32(img, RegBundleNumber, s.bundleNumber)
	img[RegBundleChanges] = s.bundleChanges
	b, _ := encodeString(s.bundle, BundleIDRegisters)
	copy(img[RegBundleID:], b)
	copy(img[RegPartIDIn:], s.partIDIn)
	copy(img[RegResultPartID:], e.partID)
}

func (s *Server) statusWord(st plc.Status) uint16 {
	var w uint16
	set := func(b uint16, on bool) {
		if on {
			w |= b
		}
	}
	if s.line == nil {
		st.Online = true
	}
	set(StOnline, st.Online)
	set(StReady, st.Ready)
	set(StBusy, st.Busy || len(s.pending) > 0)
	set(StTriggerAck, s.triggerAck)
	set(StResultValid, s.valid)
	set(StError, st.Error != "" || s.overrun || s.triggerRefused)
	set(StOverrun, s.overrun)
	set(StTriggerRefused, s.triggerRefused)
	return w
}

func (s *Server) put32(img *[MapSize]uint16, at uint16, v uint32) {
	hi, lo := uint16(v>>16), uint16(v)
	if s.bigEnd {
		img[at], img[at+1] = hi, lo
	} else {
		img[at], img[at+1] = lo, hi
	}
}

func (s *Server) status() plc.Status {
	if s.line == nil {
		return plc.Status{Online: true}
	}
	return s.line.Status()
}

// encodeString packs s into n registers, 2 bytes each, first byte high,
// NUL padded; truncated reports that s did not fit (cut at a UTF-8
// boundary).
func encodeString(str string, n int) (regs []uint16, truncated bool) {
	regs = make([]uint16, n)
	b := []byte(str)
	if len(b) > 2*n {
		truncated = true
		cut := 2 * n
		for cut > 0 && cut < len(b) && b[cut]&0xC0 == 0x80 {
			cut--
		}
		b = b[:cut]
	}
	for i, c := range b {
		if i%2 == 0 {
			regs[i/2] |= uint16(c) << 8
		} else {
			regs[i/2] |= uint16(c)
		}
	}
	return regs, truncated
}

// decodeString unpacks registers written by a PLC: up to the first NUL,
// trailing spaces removed (PLC character arrays are often space padded).
func decodeString(regs []uint16) string {
	b := make([]byte, 0, 2*len(regs))
	for _, r := range regs {
		b = append(b, byte(r>>8), byte(r))
	}
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimRight(string(b), " ")
}
