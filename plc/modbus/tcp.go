package modbus

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Modbus exception codes.
const (
	exIllegalFunction    byte = 0x01
	exIllegalDataAddress byte = 0x02
	exIllegalDataValue   byte = 0x03
	exGatewayTarget      byte = 0x0B // gateway target device failed to respond: another unit ID
)

// Function codes served.
const (
	fcReadCoils          byte = 0x01
	fcReadDiscrete       byte = 0x02
	fcReadHolding        byte = 0x03
	fcReadInput          byte = 0x04
	fcWriteCoil          byte = 0x05
	fcWriteRegister      byte = 0x06
	fcWriteCoils         byte = 0x0F
	fcWriteRegisters     byte = 0x10
	fcReadWriteRegisters byte = 0x17
)

// mbapLen is the Modbus TCP header size; maxPDU the largest PDU (spec).
const (
	mbapLen      = 7
	maxPDU       = 253
	writeTimeout = 5 * time.Second
)

// connState is one client connection.
type connState struct {
	addr  string
	since time.Time
}

// rateLog lets one log line through per interval and counts the rest.
type rateLog struct {
	mu         sync.Mutex
	every      time.Duration
	last       time.Time
	suppressed int
}

func (r *rateLog) allow() (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.suppressed++
		return false, 0
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	return true, n
}

// allowed reports whether a client address may connect: the allow-list
// when set, else loopback only.
func (s *Server) allowed(a netip.Addr) bool {
	a = a.Unmap()
	if len(s.allow) == 0 {
		return a.IsLoopback()
	}
	for _, p := range s.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.closed.Load() {
				return
			}
			// EMFILE and the like: wait instead of spinning.
			s.log.Warn("modbus accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.done:
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		if !s.allowed(ap.Addr()) {
			s.refuse(c, "client address not in plc.modbus.allow")
			continue
		}
		s.mu.Lock()
		if s.closed.Load() {
			s.mu.Unlock()
			c.Close()
			return
		}
		if len(s.conns) >= s.cfg.MaxConnections {
			s.mu.Unlock()
			s.refuse(c, "plc.modbus.max_connections reached")
			continue
		}
		st := &connState{addr: c.RemoteAddr().String(), since: time.Now()}
		s.conns[c] = st
		s.wg.Add(1)
		s.mu.Unlock()
		if ok, n := s.connLog.allow(); ok {
			s.log.Info("modbus client connected", "client", st.addr, "connected_since_last_log", n)
		}
		go s.serveConn(c, st)
	}
}

// refuse closes a connection at accept, counted and logged (rate-limited:
// a scanner or a misconfigured PLC must not flood the log).
func (s *Server) refuse(c net.Conn, why string) {
	addr := c.RemoteAddr().String()
	c.Close()
	s.mu.Lock()
	s.counts.connRefused++
	s.mu.Unlock()
	if ok, n := s.refusedLog.allow(); ok {
		s.log.Warn("modbus connection refused: "+why, "client", addr, "refused_since_last_log", n)
	}
}

func (s *Server) serveConn(c net.Conn, st *connState) {
	defer s.wg.Done()
	reason := s.serveRequests(c)
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	closing := s.closed.Load()
	if !closing {
		s.counts.connLost++
	}
	s.mu.Unlock()
	if ok, n := s.lostLog.allow(); ok && !closing {
		// The PLC is gone: results keep flowing into the buffer (and MQTT),
		// the daemon keeps inspecting.
		s.log.Warn("modbus PLC connection lost", "client", st.addr, "reason", reason, "connected_for", time.Since(st.since).Round(time.Millisecond), "lost_since_last_log", n)
	}
}

// serveRequests answers requests until the connection ends; it returns why.
func (s *Server) serveRequests(c net.Conn) string {
	r := bufio.NewReaderSize(c, 512)
	var hdr [mbapLen]byte
	var pdu [maxPDU]byte
	out := make([]byte, 0, mbapLen+maxPDU)
	for {
		c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return readReason(err, s.cfg.IdleTimeout)
		}
		tid := binary.BigEndian.Uint16(hdr[0:])
		proto := binary.BigEndian.Uint16(hdr[2:])
		n := int(binary.BigEndian.Uint16(hdr[4:]))
		unit := hdr[6]
		if proto != 0 || n < 2 || n-1 > maxPDU {
			// Not Modbus TCP (or a desynchronised stream): there is no
			// way to find the next frame, so the connection ends.
			return "malformed Modbus TCP header (protocol id or length); connection closed"
		}
		req := pdu[:n-1]
		if _, err := io.ReadFull(r, req); err != nil {
			return readReason(err, s.cfg.IdleTimeout)
		}
		out = out[:mbapLen]
		if unit != byte(s.cfg.UnitID) && unit != 0 && unit != 0xFF {
			out = append(out, req[0]|0x80, exGatewayTarget)
		} else {
			out = s.handlePDU(req, out)
		}
		binary.BigEndian.PutUint16(out[0:], tid)
		binary.BigEndian.PutUint16(out[2:], 0)
		binary.BigEndian.PutUint16(out[4:], uint16(len(out)-6))
		out[6] = unit
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.Write(out); err != nil {
			return "write: " + err.Error()
		}
	}
}

func readReason(err error, idle time.Duration) string {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by the client"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "no request for " + idle.String() + " (plc.modbus.idle_timeout)"
	case errors.Is(err, net.ErrClosed):
		return "server closing"
	default:
		return err.Error()
	}
}

// handlePDU answers one request PDU, appending the response PDU to out.
// Checks follow the Modbus order: function (01), quantity and length (03),
// address (02).
func (s *Server) handlePDU(req, out []byte) []byte {
	fc, d := req[0], req[1:]
	exc := func(code byte) []byte { return append(out, fc|0x80, code) }
	u16 := func(i int) uint16 { return binary.BigEndian.Uint16(d[i:]) }
	switch fc {
	case fcReadCoils, fcReadDiscrete:
		if len(d) != 4 {
			return exc(exIllegalDataValue)
		}
		addr, qty := u16(0), u16(2)
		if qty < 1 || qty > 2000 {
			return exc(exIllegalDataValue)
		}
		if int(addr)+int(qty) > BitCount {
			return exc(exIllegalDataAddress)
		}
		var word uint16
		if fc == fcReadDiscrete {
			st := s.status()
			s.mu.Lock()
			word = s.statusWord(st)
			s.mu.Unlock()
		} else {
			s.mu.Lock()
			word = s.control
			s.mu.Unlock()
		}
		nb := (int(qty) + 7) / 8
		out = append(out, fc, byte(nb))
		start := len(out)
		out = append(out, make([]byte, nb)...)
		for i := 0; i < int(qty); i++ {
			if word&(1<<(int(addr)+i)) != 0 {
				out[start+i/8] |= 1 << (i % 8)
			}
		}
		return out
	case fcReadHolding, fcReadInput:
		if len(d) != 4 {
			return exc(exIllegalDataValue)
		}
		addr, qty := u16(0), u16(2)
		if qty < 1 || qty > 125 {
			return exc(exIllegalDataValue)
		}
		if int(addr)+int(qty) > int(MapSize) {
			return exc(exIllegalDataAddress)
		}
		return s.readRegs(append(out, fc, byte(2*qty)), addr, qty)
	case fcWriteCoil:
		if len(d) != 4 {
			return exc(exIllegalDataValue)
		}
		addr, v := u16(0), u16(2)
		if v != 0xFF00 && v != 0 {
			return exc(exIllegalDataValue)
		}
		if code := s.writeCoils(addr, 1, func(int) bool { return v == 0xFF00 }); code != 0 {
			return exc(code)
		}
		return append(out, req...)
	case fcWriteRegister:
		if len(d) != 4 {
			return exc(exIllegalDataValue)
		}
		if code := s.writeRegs(u16(0), d[2:4]); code != 0 {
			return exc(code)
		}
		return append(out, req...)
	case fcWriteCoils:
		if len(d) < 5 {
			return exc(exIllegalDataValue)
		}
		addr, qty, bc := u16(0), u16(2), int(d[4])
		if qty < 1 || qty > 1968 || bc != (int(qty)+7)/8 || len(d) != 5+bc {
			return exc(exIllegalDataValue)
		}
		bits := d[5:]
		if code := s.writeCoils(addr, qty, func(i int) bool { return bits[i/8]&(1<<(i%8)) != 0 }); code != 0 {
			return exc(code)
		}
		return append(out, req[:5]...)
	case fcWriteRegisters:
		if len(d) < 5 {
			return exc(exIllegalDataValue)
		}
		addr, qty, bc := u16(0), u16(2), int(d[4])
		if qty < 1 || qty > 123 || bc != 2*int(qty) || len(d) != 5+bc {
			return exc(exIllegalDataValue)
		}
		if code := s.writeRegs(addr, d[5:]); code != 0 {
			return exc(code)
		}
		return append(out, req[:5]...)
	case fcReadWriteRegisters:
		if len(d) < 9 {
			return exc(exIllegalDataValue)
		}
		raddr, rqty, waddr, wqty, bc := u16(0), u16(2), u16(4), u16(6), int(d[8])
		if rqty < 1 || rqty > 125 || wqty < 1 || wqty > 121 || bc != 2*int(wqty) || len(d) != 9+bc {
			return exc(exIllegalDataValue)
		}
		if int(raddr)+int(rqty) > int(MapSize) {
			return exc(exIllegalDataAddress)
		}
		if code := s.writeRegs(waddr, d[9:]); code != 0 {
			return exc(code)
		}
		return s.readRegs(append(out, fc, byte(2*rqty)), raddr, rqty)
	default:
		return exc(exIllegalFunction)
	}
}

// readRegs appends qty registers from addr (already range-checked). The
// whole image is built under one lock, so a block read is consistent: a
// PLC never sees half of one result and half of the next.
func (s *Server) readRegs(out []byte, addr, qty uint16) []byte {
	st := s.status()
	var img [MapSize]uint16
	s.mu.Lock()
	s.image(st, &img)
	s.mu.Unlock()
	for _, v := range img[addr : addr+qty] {
		out = binary.BigEndian.AppendUint16(out, v)
	}
	return out
}

// writable reports whether the PLC may write holding register a.
func (s *Server) writable(a int) bool {
	return a == int(RegControl) || (a >= int(RegPartIDIn) && a < int(RegPartIDIn)+s.cfg.PartIDRegisters)
}

// writeRegs writes big-endian register values at addr, all or nothing:
// every address must be writable (else 02) and a control word must have
// only defined bits (else 03). The control word is applied last, so part
// ID and Trigger may come in one request.
func (s *Server) writeRegs(addr uint16, vals []byte) byte {
	n := len(vals) / 2
	ctl, hasCtl := uint16(0), false
	for i := 0; i < n; i++ {
		a := int(addr) + i
		if a >= int(MapSize) || !s.writable(a) {
			return exIllegalDataAddress
		}
		if a == int(RegControl) {
			ctl, hasCtl = binary.BigEndian.Uint16(vals[2*i:]), true
			if ctl&^ctlMask != 0 {
				return exIllegalDataValue
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		a := int(addr) + i
		if a != int(RegControl) {
			s.partIDIn[a-int(RegPartIDIn)] = binary.BigEndian.Uint16(vals[2*i:])
		}
	}
	if hasCtl {
		s.writeControl(ctl)
	}
	return 0
}

// writeCoils writes qty control bits from addr; only the defined control
// bits (coils 0..3) are writable.
func (s *Server) writeCoils(addr, qty uint16, bit func(int) bool) byte {
	if int(addr)+int(qty) > BitCount {
		return exIllegalDataAddress
	}
	for i := 0; i < int(qty); i++ {
		if ctlMask&(1<<(int(addr)+i)) == 0 {
			return exIllegalDataAddress
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.control
	for i := 0; i < int(qty); i++ {
		b := uint16(1) << (int(addr) + i)
		if bit(i) {
			v |= b
		} else {
			v &^= b
		}
	}
	s.writeControl(v)
	return 0
}
