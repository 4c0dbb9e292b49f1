package modbus

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

type counters struct {
	Parts       uint32 `json:"parts"`
	Fails       uint32 `json:"fails"`
	Errors      uint32 `json:"errors"`
	Overruns    uint32 `json:"overruns"`
	Triggers    uint32 `json:"triggers"`
	Refused     uint32 `json:"refused"`
	ConnLost    uint32 `json:"conn_lost"`
	ConnRefused uint32 `json:"conn_refused"`
}

// TestPLCHandshakePymodbus: a pymodbus PLC runs 1,000 trigger/result
// cycles (every 10th without a part ID, so the server makes one) while
// free-running and MQTT-triggered results are interleaved: every
// InspectionID is answered exactly once, in order, with the verdict, score
// and threshold of its part, every other result comes through the same
// valid/ack cycle with InspectionID 0, and no result sequence number is
// skipped. Run with both word orders.
func TestPLCHandshakePymodbus(t *testing.T) {
	for _, order := range []string{WordOrderBig, WordOrderLittle} {
		t.Run(order, func(t *testing.T) {
			n := 1000
			if testing.Short() || order == WordOrderLittle {
				n = 200
			}
			line := newFakeLine(t, 0)
			// result_buffer 64: free-running results published between the
			// script's last acknowledgement and stop() must not overrun.
			s := startServer(t, testConfig(func(c *Config) { c.WordOrder = order; c.ResultBuffer = 64 }), line)
			// Free-running results start once the PLC is connected (before,
			// they would fill the buffer: a correct overrun, not this test).
			stopc := make(chan func(), 1)
			go func() {
				for end := time.Now().Add(30 * time.Second); s.Stats().Connections == 0 && time.Now().Before(end); {
					time.Sleep(time.Millisecond)
				}
				stopc <- line.freeRun(7 * time.Millisecond)
			}()
			var out struct {
				Cycles   int      `json:"cycles"`
				FirstID  int      `json:"first_id"`
				LastID   int      `json:"last_id"`
				Free     int64    `json:"free"`
				Seconds  float64  `json:"seconds"`
				Counters counters `json:"counters"`
			}
			runPLC(t, s, 5*time.Minute, &out, "cycles", fmt.Sprint(n), "--order", order)
			(<-stopc)()
			if out.Cycles != n || out.FirstID != 1 || out.LastID != n {
				t.Fatalf("cycles %d, ids %d..%d; want %d cycles, ids 1..%d", out.Cycles, out.FirstID, out.LastID, n, n)
			}
			if line.pubErrs.Load() != 0 {
				t.Fatalf("%d Publish errors (overruns) with a PLC that acknowledges", line.pubErrs.Load())
			}
			if out.Counters.Triggers != uint32(n) || out.Counters.Overruns != 0 || out.Counters.Refused != 0 {
				t.Fatalf("counters %+v", out.Counters)
			}
			st := s.Stats()
			// Free results published after the script's last cycle stay
			// buffered; every one it saw was acknowledged in sequence.
			if st.Parts != uint64(line.published.Load()) || out.Free+int64(n)+int64(st.Buffered) != line.published.Load() {
				t.Fatalf("published %d (free %d), PLC saw %d triggered + %d free, %d still buffered", line.published.Load(), line.free.Load(), n, out.Free, st.Buffered)
			}
			t.Logf("%d cycles in %.2fs (%.2f ms/cycle, pymodbus), %d free-running results interleaved", n, out.Seconds, 1000*out.Seconds/float64(n), out.Free)
		})
	}
}

// TestPLCNoAckOverrun: a PLC that triggers but never acknowledges gets the
// overrun flag (ErrorCode 2, Overruns counter, the lost InspectionID), and
// the results that fit the buffer are all there, in order, after it
// acknowledges; ResetError clears the flag.
func TestPLCNoAckOverrun(t *testing.T) {
	const n, buf = 20, 8
	line := newFakeLine(t, 0)
	s := startServer(t, testConfig(func(c *Config) { c.ResultBuffer = buf }), line)
	var out struct {
		TriggerIDs []int `json:"trigger_ids"`
		Before     struct {
			Status    uint16   `json:"status"`
			ErrorCode uint16   `json:"error_code"`
			Buffered  int      `json:"buffered"`
			OverrunID int      `json:"overrun_id"`
			Counters  counters `json:"counters"`
		} `json:"before"`
		Results     [][3]any `json:"results"`
		StatusAfter uint16   `json:"status_after_reset"`
	}
	runPLC(t, s, time.Minute, &out, "noack", fmt.Sprint(n))
	b := out.Before
	if b.Status&StOverrun == 0 || b.Status&StError == 0 || b.ErrorCode != ErrOverrun {
		t.Fatalf("status %#x error code %d: want ResultBufferOverrun, Error, ErrorCode %d", b.Status, b.ErrorCode, ErrOverrun)
	}
	if b.Buffered != buf || b.Counters.Overruns != n-buf || b.OverrunID != n {
		t.Fatalf("buffered %d, overruns %d, overrun id %d; want %d, %d, %d", b.Buffered, b.Counters.Overruns, b.OverrunID, buf, n-buf, n)
	}
	if len(out.Results) != buf {
		t.Fatalf("PLC read %d results after acknowledging; want the %d buffered: %v", len(out.Results), buf, out.Results)
	}
	for i, r := range out.Results {
		id, seq, part := int(r[0].(float64)), int(r[1].(float64)), r[2].(string)
		if id != i+1 || seq != i+1 || part != fmt.Sprintf("N%04d", i+1) {
			t.Fatalf("result %d: id %d seq %d part %s; want the oldest results in order", i, id, seq, part)
		}
	}
	if out.StatusAfter&(StOverrun|StError) != 0 {
		t.Fatalf("status after ResetError %#x", out.StatusAfter)
	}
	if line.pubErrs.Load() != n-buf {
		t.Fatalf("Publish returned %d errors; want %d (one per overrun)", line.pubErrs.Load(), n-buf)
	}
}

// TestPLCBadInput: writes to read-only registers, out-of-range addresses
// and quantities, reserved bits, a wrong unit ID, an unknown function and a
// short PDU get the Modbus exception the spec gives; garbage ends only
// that connection; the server keeps serving.
func TestPLCBadInput(t *testing.T) {
	line := newFakeLine(t, 0)
	s := startServer(t, testConfig(nil), line)
	var out map[string]any
	runPLC(t, s, time.Minute, &out, "badinput")
	want := map[string]any{
		"write_status":           2.0,
		"write_result":           2.0,
		"write_counters":         2.0,
		"write_span_ro":          2.0,
		"control_after_span":     0.0, // all or nothing: TriggerEnable not written
		"control_reserved_bit":   3.0,
		"read_past_end":          2.0,
		"read_across_end":        2.0,
		"read_input_past_end":    2.0,
		"read_126":               3.0,
		"write_coil_reserved":    2.0,
		"read_coil_past_end":     2.0,
		"read_discrete_past_end": 2.0,
		"write_part_id_past_n":   2.0,
		"wrong_unit":             11.0,
		"unit_255":               nil,
		"read_discrete_ok":       nil,
		"read_input_ok":          nil,
		"raw_function_08":        []any{float64(0x88), 1.0},
		"raw_short_read":         []any{float64(0x83), 3.0},
		"raw_garbage_closed":     true,
		"still_serving":          true,
	}
	for k, w := range want {
		if fmt.Sprint(out[k]) != fmt.Sprint(w) {
			t.Errorf("%s: got %v, want %v", k, out[k], w)
		}
	}
}

// TestPLCTriggerWhileBusy: with max_pending_triggers 1, a trigger while
// one waits is refused with TriggerRefused and ErrorCode 4 (never silently
// queued or lost), as are a trigger without TriggerEnable (3) and a part
// ID with a control character (5); the first trigger is still answered,
// the refused ones never are, and ResetError clears the flag.
func TestPLCTriggerWhileBusy(t *testing.T) {
	line := newFakeLine(t, 400*time.Millisecond)
	s := startServer(t, testConfig(func(c *Config) { c.MaxPendingTriggers = 1 }), line)
	type flagged struct {
		Status    uint16 `json:"status"`
		ErrorCode uint16 `json:"error_code"`
		TriggerID int    `json:"trigger_id"`
	}
	var out struct {
		NoEnable        flagged  `json:"no_enable"`
		WhileBusy       flagged  `json:"while_busy"`
		FirstAnswer     [3]any   `json:"first_answer"`
		RefusedNoResult bool     `json:"refused_no_result"`
		AfterReset      uint16   `json:"after_reset"`
		BadPartID       flagged  `json:"bad_part_id"`
		After           [3]any   `json:"after"`
		Counters        counters `json:"counters"`
	}
	runPLC(t, s, time.Minute, &out, "busy")
	for name, c := range map[string]struct {
		got  flagged
		code uint16
	}{"no enable": {out.NoEnable, ErrTriggerNotEnabled}, "while busy": {out.WhileBusy, ErrTriggerBusy}, "bad part id": {out.BadPartID, ErrPartIDInvalid}} {
		if c.got.Status&StTriggerRefused == 0 || c.got.Status&StError == 0 || c.got.ErrorCode != c.code {
			t.Errorf("%s: status %#x error code %d; want TriggerRefused, Error, code %d", name, c.got.Status, c.got.ErrorCode, c.code)
		}
	}
	if out.WhileBusy.Status&StBusy == 0 || out.WhileBusy.TriggerID != 1 {
		t.Errorf("while busy: status %#x trigger id %d; want Busy and TriggerID still 1", out.WhileBusy.Status, out.WhileBusy.TriggerID)
	}
	if fmt.Sprint(out.FirstAnswer) != "[1 B0002 1]" || !out.RefusedNoResult || fmt.Sprint(out.After) != "[2 B0005 2]" {
		t.Errorf("answers: first %v, refused had no result %v, after %v", out.FirstAnswer, out.RefusedNoResult, out.After)
	}
	if out.AfterReset&(StTriggerRefused|StError) != 0 {
		t.Errorf("after ResetError: status %#x", out.AfterReset)
	}
	if out.Counters.Refused != 3 || out.Counters.Triggers != 2 {
		t.Errorf("counters %+v: want 3 refused, 2 accepted", out.Counters)
	}
	line.mu.Lock()
	defer line.mu.Unlock()
	if strings.Join(line.triggered, ",") != "B0002,B0005" {
		t.Errorf("the line was triggered for %v; refused triggers must not reach it", line.triggered)
	}
}

// TestPLCLineRefusesTrigger: when Line.Trigger fails (the daemon cannot
// take it), the PLC sees TriggerRefused with ErrorCode 7, not TriggerAck.
func TestPLCLineRefusesTrigger(t *testing.T) {
	line := newFakeLine(t, 0)
	line.refuse.Store(true)
	s := startServer(t, testConfig(nil), line)
	c := goClient(t, s)
	must(t, c.WriteRegister(RegControl, CtlTriggerEnable))
	must(t, c.WriteRegister(RegControl, CtlTriggerEnable|CtlTrigger))
	deadline := time.Now().Add(5 * time.Second)
	for {
		regs, err := c.ReadRegisters(RegStatus, 3, holding)
		must(t, err)
		if regs[0]&StTriggerRefused != 0 {
			if regs[0]&StTriggerAck != 0 || regs[2] != ErrTriggerRefused {
				t.Fatalf("status %#x error code %d", regs[0], regs[2])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TriggerRefused: status %#x", regs[0])
		}
		time.Sleep(time.Millisecond)
	}
	if st := s.Stats(); st.TriggersAccepted != 0 || st.TriggersRefused != 1 || st.PendingTriggers != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMbpollReadsMap: mbpoll (libmodbus) reads the status bits, the
// result block as 16-bit registers, the score as a float in both word
// orders (-B is big-endian word order), and the counters as 32-bit
// integers from input registers.
func TestMbpollReadsMap(t *testing.T) {
	mbpoll, err := exec.LookPath("mbpoll")
	if err != nil {
		t.Fatal("mbpoll not installed (apt-get install mbpoll)")
	}
	for _, order := range []string{WordOrderBig, WordOrderLittle} {
		t.Run(order, func(t *testing.T) {
			line := newFakeLine(t, 0)
			s := startServer(t, testConfig(func(c *Config) { c.WordOrder = order }), line)
			r := resultFor("P00042")
			*r.Score = 6.25
			must(t, s.Publish(context.Background(), r))
			run := func(args ...string) string {
				t.Helper()
				args = append([]string{"-m", "tcp", "-p", port(s), "-a", "1", "-0", "-1"}, append(args, "127.0.0.1")...)
				out, err := exec.Command(mbpoll, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("mbpoll %v: %v\n%s", args, err, out)
				}
				return string(out)
			}
			wordFlag := []string{}
			if order == WordOrderBig {
				wordFlag = []string{"-B"}
			}
			for _, c := range []struct {
				args []string
				want []string
			}{
				{[]string{"-t", "1", "-r", "0", "-c", "8"}, []string{"[0]: \t1", "[1]: \t1", "[4]: \t1", "[5]: \t0"}},
				{[]string{"-t", "4", "-r", "11", "-c", "1"}, []string{fmt.Sprintf("[11]: \t%d", mustCode(r))}},
				{append([]string{"-t", "4:float", "-r", "16", "-c", "2"}, wordFlag...), []string{"[16]: \t6.25", "[18]: \t7"}},
				{append([]string{"-t", "3:int", "-r", "30", "-c", "1"}, wordFlag...), []string{"[30]: \t1"}},
			} {
				out := run(c.args...)
				for _, w := range c.want {
					if !strings.Contains(out, w) {
						t.Errorf("mbpoll %v: no %q in\n%s", c.args, w, out)
					}
				}
			}
		})
	}
}

// TestAllowListRefused: with allow [127.0.0.2], a client from 127.0.0.2
// is served and one from 127.0.0.3 is refused at accept (counted); the
// refusal does not take a connection slot.
func TestAllowListRefused(t *testing.T) {
	line := newFakeLine(t, 0)
	s := startServer(t, testConfig(func(c *Config) { c.Allow = []string{"127.0.0.2"}; c.MaxConnections = 1 }), line)
	var ok, refused struct {
		Connected bool `json:"connected"`
		Answered  bool `json:"answered"`
	}
	runPLC(t, s, time.Minute, &refused, "connect", "--source", "127.0.0.3")
	runPLC(t, s, time.Minute, &ok, "connect", "--source", "127.0.0.2")
	if !ok.Answered {
		t.Fatalf("client from 127.0.0.2 (allowed) was not answered: %+v", ok)
	}
	if refused.Answered {
		t.Fatalf("client from 127.0.0.3 (not allowed) was answered")
	}
	if st := s.Stats(); st.ConnectionsRefused < 1 {
		t.Fatalf("stats %+v: refusal not counted", st)
	}
	// The same from Go for the default (empty allow: loopback only) is in
	// TestAllowed; here a raw connection from a refused address is closed
	// without a byte.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
	conn, err := d.Dial("tcp", s.Addr().String())
	must(t, err)
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("refused connection read %d bytes, err %v", n, err)
	}
}

// floodMax bounds each flooding client's requests.
const floodMax = 200000

// TestPLCFloodKeepsServing: three loopback clients flood the server with
// pipelined requests (reads, writes to read-only registers, out-of-range
// reads, then garbage; at most floodMax each) for as long as a pymodbus PLC
// runs 200 handshake cycles, and 300 more connections are opened at once against
// max_connections 6: the PLC's cycles all complete, the connections beyond
// the limit are refused and counted, and a fresh client is served
// afterwards.
func TestPLCFloodKeepsServing(t *testing.T) {
	line := newFakeLine(t, 0)
	s := startServer(t, testConfig(func(c *Config) { c.MaxConnections = 6 }), line)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	waitConns := func(n int) {
		t.Helper()
		for end := time.Now().Add(20 * time.Second); s.Stats().Connections < n; time.Sleep(2 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%d connections, want %d", s.Stats().Connections, n)
			}
		}
	}
	var wg sync.WaitGroup
	var flooded [3]int
	floodCtx, stopFlood := context.WithCancel(ctx)
	defer stopFlood()
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			flooded[i] = flood(floodCtx, s.Addr().String(), floodMax)
		}(i)
	}
	waitConns(3)
	var out struct {
		Cycles int `json:"cycles"`
	}
	plcErr := make(chan error, 1)
	go func() { plcErr <- plcScript(s, 2*time.Minute, &out, "cycles", "200") }()
	waitConns(4)
	var held []net.Conn
	for i := 0; i < 300; i++ {
		if c, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
			held = append(held, c)
		}
	}
	time.Sleep(100 * time.Millisecond)
	for _, c := range held {
		c.Close()
	}
	err := <-plcErr
	stopFlood()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if out.Cycles != 200 {
		t.Fatalf("PLC completed %d cycles", out.Cycles)
	}
	for i, n := range flooded {
		if n < 1000 {
			t.Errorf("flooder %d got only %d answers", i, n)
		}
	}
	st := s.Stats()
	if st.ConnectionsRefused < 250 {
		t.Errorf("%d connections refused by max_connections 6 of 300 opened at once: %+v", st.ConnectionsRefused, st)
	}
	c := goClient(t, s)
	if _, err := c.ReadRegisters(0, 10, holding); err != nil {
		t.Fatalf("after the flood: %v", err)
	}
	t.Logf("flood answers %v, stats %+v", flooded, st)
}

// flood sends n requests pipelined in bursts of 50 on one connection (a
// mix of valid reads, writes to read-only registers and out-of-range
// reads), then a garbage frame; it returns the number of answers read.
func flood(ctx context.Context, addr string, n int) int {
	var c net.Conn
	var err error
	for ctx.Err() == nil {
		if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c == nil {
		return 0
	}
	defer c.Close()
	answers := 0
	buf := make([]byte, 0, 64*50)
	resp := make([]byte, 4096)
	for sent := 0; sent < n && ctx.Err() == nil; {
		buf = buf[:0]
		k := min(50, n-sent)
		for j := 0; j < k; j++ {
			var pdu []byte
			switch (sent + j) % 3 {
			case 0:
				pdu = []byte{fcReadHolding, 0, 0, 0, 125}
			case 1:
				pdu = []byte{fcWriteRegister, 0, byte(RegResultCode), 0, 1}
			case 2:
				pdu = []byte{fcReadHolding, 0xFF, 0, 0, 1}
			}
			buf = binary.BigEndian.AppendUint16(buf, uint16(sent+j))
			buf = append(buf, 0, 0)
			buf = binary.BigEndian.AppendUint16(buf, uint16(len(pdu)+1))
			buf = append(buf, 1)
			buf = append(buf, pdu...)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(buf); err != nil {
			return answers
		}
		sent += k
		for got := 0; got < k; {
			if _, err := readFrame(c, resp); err != nil {
				return answers
			}
			got++
			answers++
		}
	}
	c.Write([]byte("\x00\x01\x00\x07\xff\xff garbage"))
	return answers
}

func readFrame(c net.Conn, b []byte) (int, error) {
	if _, err := readFull(c, b[:7]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(b[4:])) - 1
	return readFull(c, b[7:7+n])
}

func readFull(c net.Conn, b []byte) (int, error) {
	got := 0
	for got < len(b) {
		n, err := c.Read(b[got:])
		got += n
		if err != nil {
			return got, err
		}
	}
	return got, nil
}
