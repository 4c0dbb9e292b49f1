package opcua

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"
)

// Why a front listener: gopcua v0.8.0's listener performs the HEL/ACK
// handshake inside its accept loop without a deadline (one silent TCP
// connection stops every later client from connecting), dials out to any
// address a ReverseHello names, and keeps partial multi-chunk messages of
// every request ID without a bound. The front accepts on the configured
// address, bounds connections, requires a HEL within the handshake timeout,
// refuses every other first message, checks each chunk header (type, size,
// chunks per message) and only then relays the bytes to gopcua, which
// listens on an ephemeral loopback port. Encryption stays end to end: the
// front never needs to read a message body.

const (
	uacpHeader      = 8
	uacpChunkMax    = 0xffff // gopcua's receive buffer: no chunk is larger
	helloMax        = uacpHeader + 20 + 4 + 4096
	idleTimeout     = 10 * time.Minute
	internalDialMax = 5 * time.Second
)

type front struct {
	ln       net.Listener
	backend  string
	max      int
	shake    time.Duration
	maxChunk int // chunks per message
	log      *slog.Logger

	active   atomic.Int64
	refused  atomic.Uint64
	badInput atomic.Uint64

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	clients map[string]string // backend-side local address -> client address
	closed  bool
	wg      sync.WaitGroup
}

func (f *front) serve() {
	defer f.wg.Done()
	var delay time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off instead of spinning.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			f.log.Warn("opcua: accept failed", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if int(f.active.Load()) >= f.max {
			f.refused.Add(1)
			sendErr(c, ua.StatusBadTCPServerTooBusy, "too many connections (plc.opcua.limits.max_connections)")
			c.Close()
			continue
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.active.Add(1)
		f.wg.Add(1)
		go f.handle(c)
	}
}

func (f *front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *front) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// clientOf maps the address gopcua sees (the front's side of the relay)
// to the real client address, for logs.
func (f *front) clientOf(addr string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[addr]; ok {
		return c
	}
	return addr
}

func (f *front) close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.ln.Close()
	f.wg.Wait()
}

// sendErr writes a UACP ERR message (Part 6 7.1.2.5).
func sendErr(c net.Conn, code ua.StatusCode, reason string) {
	b := make([]byte, uacpHeader+8+len(reason))
	copy(b, "ERRF")
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[8:], uint32(code))
	binary.LittleEndian.PutUint32(b[12:], uint32(len(reason)))
	copy(b[16:], reason)
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(b)
}

func (f *front) handle(c net.Conn) {
	defer f.wg.Done()
	defer f.active.Add(-1)
	defer f.untrack(c)
	defer c.Close()
	client := c.RemoteAddr().String()
	bad := func(code ua.StatusCode, reason string) {
		f.badInput.Add(1)
		f.log.Debug("opcua: connection refused", "client", client, "reason", reason)
		sendErr(c, code, reason)
	}

	_ = c.SetReadDeadline(time.Now().Add(f.shake))
	hdr := make([]byte, uacpHeader)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return
	}
	size := int(binary.LittleEndian.Uint32(hdr[4:]))
	if string(hdr[:4]) != "HELF" {
		bad(ua.StatusBadTCPMessageTypeInvalid, "the first message must be HEL")
		return
	}
	if size < uacpHeader+32 || size > helloMax {
		bad(ua.StatusBadTCPMessageTooLarge, "HEL size out of range")
		return
	}
	hello := make([]byte, size)
	copy(hello, hdr)
	if _, err := io.ReadFull(c, hello[uacpHeader:]); err != nil {
		return
	}

	var d net.Dialer
	d.Timeout = internalDialMax
	b, err := d.Dial("tcp", f.backend)
	if err != nil {
		f.log.Error("opcua: internal listener unreachable", "err", err)
		sendErr(c, ua.StatusBadTCPInternalError, "server unavailable")
		return
	}
	if !f.track(b) {
		b.Close()
		return
	}
	defer f.untrack(b)
	defer b.Close()
	local := b.LocalAddr().String()
	f.mu.Lock()
	f.clients[local] = client
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.clients, local)
		f.mu.Unlock()
	}()
	if _, err := b.Write(hello); err != nil {
		return
	}

	// Server to client: plain copy; closing either side ends both.
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(c, b)
		c.Close()
	}()
	defer func() { b.Close(); <-done }()

	buf := make([]byte, uacpChunkMax)
	chunks := 0
	for {
		_ = c.SetReadDeadline(time.Now().Add(idleTimeout))
		if _, err := io.ReadFull(c, buf[:uacpHeader]); err != nil {
			return
		}
		typ := string(buf[:3])
		ct := buf[3]
		size := int(binary.LittleEndian.Uint32(buf[4:8]))
		switch {
		case typ != "MSG" && typ != "OPN" && typ != "CLO":
			bad(ua.StatusBadTCPMessageTypeInvalid, "unknown message type")
			return
		case ct != 'F' && ct != 'C' && ct != 'A':
			bad(ua.StatusBadTCPMessageTypeInvalid, "unknown chunk type")
			return
		case size < uacpHeader+4 || size > uacpChunkMax:
			bad(ua.StatusBadTCPMessageTooLarge, "chunk size out of range")
			return
		}
		if ct == 'C' {
			chunks++
			if chunks >= f.maxChunk {
				bad(ua.StatusBadTCPMessageTooLarge, "message over plc.opcua.limits.max_message_size")
				return
			}
		} else {
			chunks = 0
		}
		if _, err := io.ReadFull(c, buf[uacpHeader:size]); err != nil {
			return
		}
		if _, err := b.Write(buf[:size]); err != nil {
			return
		}
	}
}
