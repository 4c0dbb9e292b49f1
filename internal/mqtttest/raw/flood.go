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
	acks := make(chan int, 1)
	go func() {
		got := 0
		for {
			typ, _, err := readPacket(r)
			if err != nil {
				acks <- got
				return
			}
			if typ == 4 {
				got++
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
	_ = c.SetReadDeadline(time.Now().Add(ackWait))
	// The reader ends at the deadline (or when all acks came and the
	// connection is closed below).
	done := time.After(ackWait + time.Second)
	for {
		select {
		case res.Acked = <-acks:
			return res, nil
		case <-done:
			return res, nil
		}
	}
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
