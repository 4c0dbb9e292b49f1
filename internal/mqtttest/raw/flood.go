// Package raw is a hostile MQTT 3.1.1 peer for tests: it writes packets
// straight to the socket, without the flow control a real client library
// would apply.
package raw

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// FloodResult says what a Flood run did.
type FloodResult struct {
	// Sent is the number of PUBLISH packets written.
	Sent int
	// Acked is the number of PUBACKs read back (QoS 1).
	Acked int
	// Elapsed is the time from CONNACK to the last write.
	Elapsed time.Duration
}

// Flood connects to addr (host:port) as a raw MQTT 3.1.1 client and writes n
// PUBLISH packets to topic at qos (0 or 1) as fast as the connection takes
// them, with payload(i) as the i-th payload, while a reader counts PUBACKs.
// It is a hostile peer: it does not wait for acknowledgements, so it is
// bounded only by n and by within, after which it stops writing. It returns
// once everything is written and, for QoS 1, all PUBACKs arrived or
// ackWait passed.
func Flood(addr, clientID, user, password, topic string, qos byte, n int, payload func(i int) []byte, within, ackWait time.Duration) (FloodResult, error) {
	var res FloodResult
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return res, fmt.Errorf("flood: dial %s: %w", addr, err)
	}
	defer c.Close()
	if err := writeConnect(c, clientID, user, password); err != nil {
		return res, fmt.Errorf("flood: connect: %w", err)
	}
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := readPacket(r)
	if err != nil {
		return res, fmt.Errorf("flood: read CONNACK: %w", err)
	}
	if typ != 2 || len(body) < 2 || body[1] != 0 {
		return res, fmt.Errorf("flood: connection refused (packet type %d, body %v)", typ, body)
	}
	_ = c.SetReadDeadline(time.Time{})
	var acked atomic.Int64
	go func() {
		for {
			typ, _, err := readPacket(r)
			if err != nil {
				return
			}
			if typ == 4 {
				acked.Add(1)
			}
		}
	}()
	w := bufio.NewWriterSize(c, 64<<10)
	start := time.Now()
	deadline := start.Add(within)
	_ = c.SetWriteDeadline(deadline.Add(5 * time.Second))
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		if err := writePublish(w, topic, qos, uint16(i%65535+1), payload(i)); err != nil {
			break
		}
		res.Sent++
	}
	_ = w.Flush()
	res.Elapsed = time.Since(start)
	if qos == 0 {
		return res, nil
	}
	end := time.Now().Add(ackWait)
	for acked.Load() < int64(res.Sent) && time.Now().Before(end) {
		time.Sleep(5 * time.Millisecond)
	}
	res.Acked = int(acked.Load())
	return res, nil
}

func remainingLength(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func str(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

func writeConnect(w io.Writer, id, user, pass string) error {
	var vh []byte
	vh = append(vh, str("MQTT")...)
	flags := byte(0x02) // clean session
	if user != "" {
		flags |= 0x80 | 0x40
	}
	vh = append(vh, 4, flags, 0, 60)
	vh = append(vh, str(id)...)
	if user != "" {
		vh = append(vh, str(user)...)
		vh = append(vh, str(pass)...)
	}
	pkt := append([]byte{0x10}, remainingLength(len(vh))...)
	_, err := w.Write(append(pkt, vh...))
	return err
}

func writePublish(w io.Writer, topic string, qos byte, id uint16, payload []byte) error {
	vh := str(topic)
	if qos > 0 {
		vh = binary.BigEndian.AppendUint16(vh, id)
	}
	body := append(vh, payload...)
	pkt := append([]byte{0x30 | qos<<1}, remainingLength(len(body))...)
	_, err := w.Write(append(pkt, body...))
	return err
}

func readPacket(r *bufio.Reader) (byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; i < 4; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return h >> 4, body, nil
}

// Conn is a raw MQTT connection (see Connect).
type Conn struct {
	net.Conn
	r *bufio.Reader
}

// Connect opens a raw MQTT 3.1.1 connection to addr from local address
// laddr ("" for any; e.g. "127.0.0.2" to come from another loopback
// address) and returns the CONNACK return code: 0 accepted, 2 identifier
// rejected, 4 bad user name or password, 5 not authorised. The connection
// is returned open only when accepted.
func Connect(addr, laddr, clientID, user, password string) (*Conn, byte, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if laddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(laddr)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, 0, fmt.Errorf("raw connect: dial %s: %w", addr, err)
	}
	if err := writeConnect(c, clientID, user, password); err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("raw connect: %w", err)
	}
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, body, err := readPacket(r)
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("raw connect: read CONNACK: %w", err)
	}
	if typ != 2 || len(body) < 2 {
		c.Close()
		return nil, 0, fmt.Errorf("raw connect: got packet type %d, want CONNACK", typ)
	}
	_ = c.SetReadDeadline(time.Time{})
	if body[1] != 0 {
		c.Close()
		return nil, body[1], nil
	}
	return &Conn{Conn: c, r: r}, 0, nil
}

// Publish writes one PUBLISH packet (packet ID 1 for QoS 1) without waiting.
func (c *Conn) Publish(topic string, qos byte, payload []byte) error {
	return writePublish(c, topic, qos, 1, payload)
}

// SilentBroker accepts MQTT connections, answers CONNECT and SUBSCRIBE, and
// never acknowledges a PUBLISH: a broker that wedged. Close stops it.
type SilentBroker struct {
	ln net.Listener
}

// StartSilentBroker listens on 127.0.0.1 on a free port.
func StartSilentBroker() (*SilentBroker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("silent broker: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					typ, body, err := readPacket(r)
					if err != nil {
						return
					}
					switch typ {
					case 1: // CONNECT
						_, _ = c.Write([]byte{0x20, 2, 0, 0})
					case 8: // SUBSCRIBE: grant QoS 1
						if len(body) >= 2 {
							_, _ = c.Write([]byte{0x90, 3, body[0], body[1], 1})
						}
					case 12: // PINGREQ
						_, _ = c.Write([]byte{0xd0, 0})
					}
				}
			}(c)
		}
	}()
	return &SilentBroker{ln: ln}, nil
}

// URL is the broker's tcp:// URL.
func (b *SilentBroker) URL() string { return "tcp://" + b.ln.Addr().String() }

// Close stops accepting (open connections end with the test process).
func (b *SilentBroker) Close() error { return b.ln.Close() }
