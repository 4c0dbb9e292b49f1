package modbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/segad-edge/segad-edge/plc"
	"github.com/segad-edge/segad-edge/result"
)

const holding = mb.HOLDING_REGISTER

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustCode(r result.Result) uint16 { return plc.ResultCode(r.Verdict) }

// goClient is a github.com/simonvetter/modbus client (a Go peer written
// independently of this server) connected to s.
func goClient(t testing.TB, s *Server) *mb.ModbusClient {
	t.Helper()
	c, err := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + s.Addr().String(), Timeout: 3 * time.Second})
	must(t, err)
	must(t, c.Open())
	must(t, c.SetUnitId(1))
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		want string // "" valid; else a substring of the error
	}{
		{"defaults", nil, ""},
		{"all interfaces without allow", func(c *Config) { c.Listen = ":502" }, "plc.modbus.allow: empty while listen \":502\" is not a loopback address"},
		{"all interfaces with allow", func(c *Config) { c.Listen = "0.0.0.0:502"; c.Allow = []string{"192.168.0.10", "10.0.0.0/8"} }, ""},
		{"ipv6 loopback", func(c *Config) { c.Listen = "[::1]:1502" }, ""},
		{"hostname", func(c *Config) { c.Listen = "plc.local:502" }, "is not an IP address"},
		{"no port", func(c *Config) { c.Listen = "127.0.0.1" }, "plc.modbus.listen: \"127.0.0.1\" is not host:port"},
		{"bad allow", func(c *Config) { c.Allow = []string{"192.168.0.300"} }, "plc.modbus.allow: [0] \"192.168.0.300\" is not an address or CIDR"},
		{"bad cidr", func(c *Config) { c.Allow = []string{"10.0.0.0/33"} }, "not an address or CIDR"},
		{"unit 0", func(c *Config) { c.UnitID = 0 }, "plc.modbus.unit_id: 0 is outside 1..247"},
		{"unit 248", func(c *Config) { c.UnitID = 248 }, "unit_id: 248 is outside 1..247"},
		{"word order", func(c *Config) { c.WordOrder = "ABCD" }, "plc.modbus.word_order: \"ABCD\": use \"big\""},
		{"buffer 0", func(c *Config) { c.ResultBuffer = 0 }, "plc.modbus.result_buffer: 0 is outside 1..1024"},
		{"buffer 1025", func(c *Config) { c.ResultBuffer = 1025 }, "result_buffer: 1025 is outside 1..1024"},
		{"pending 257", func(c *Config) { c.MaxPendingTriggers = 257 }, "max_pending_triggers: 257 is outside 1..256"},
		{"part id 65", func(c *Config) { c.PartIDRegisters = 65 }, "part_id_registers: 65 is outside 0..64"},
		{"part id 0", func(c *Config) { c.PartIDRegisters = 0 }, ""},
		{"connections 0", func(c *Config) { c.MaxConnections = 0 }, "max_connections: 0 is outside 1..64"},
		{"idle 10ms", func(c *Config) { c.IdleTimeout = 10 * time.Millisecond }, "plc.modbus.idle_timeout: 10ms is outside 1s..1h0m0s"},
		{"trigger timeout 0", func(c *Config) { c.TriggerTimeout = 0 }, "trigger_timeout: 0s is outside 10ms..1m0s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Defaults()
			if c.mod != nil {
				c.mod(&cfg)
			}
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v; want one containing %q", err, c.want)
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	s := &Server{}
	for a, want := range map[string]bool{"127.0.0.1": true, "127.0.0.9": true, "::1": true, "::ffff:127.0.0.1": true, "192.168.0.10": false} {
		if got := s.allowed(netip.MustParseAddr(a)); got != want {
			t.Errorf("empty allow-list: %s allowed %v, want %v", a, got, want)
		}
	}
	s.allow, _ = ParseAllow([]string{"192.168.0.0/24", "10.1.2.3"})
	for a, want := range map[string]bool{"127.0.0.1": false, "192.168.0.77": true, "::ffff:192.168.0.5": true, "192.168.1.1": false, "10.1.2.3": true, "10.1.2.4": false} {
		if got := s.allowed(netip.MustParseAddr(a)); got != want {
			t.Errorf("allow-list: %s allowed %v, want %v", a, got, want)
		}
	}
}

// TestRegisterMap: signals lie inside the map, multi-register values do
// not overlap, the part ID areas fit the largest part ID, bits have unique
// numbers, and the map is valid JSON.
func TestRegisterMap(t *testing.T) {
	m := RegisterMap(Defaults())
	used := map[uint16]string{}
	for _, s := range m.Signals {
		if s.Table != TableHolding {
			if int(s.Address) >= BitCount {
				t.Errorf("%s: bit address %d beyond %d", s.Name, s.Address, BitCount)
			}
			continue
		}
		if int(s.Address)+s.Words > int(MapSize) {
			t.Errorf("%s: %d+%d beyond the map (%d)", s.Name, s.Address, s.Words, MapSize)
		}
		if s.Bit != nil {
			continue
		}
		for a := s.Address; a < s.Address+uint16(s.Words); a++ {
			if o, ok := used[a]; ok {
				t.Errorf("%s overlaps %s at %d", s.Name, o, a)
			}
			used[a] = s.Name
		}
	}
	if RegResultPartID-RegPartIDIn < MaxPartIDRegisters || 2*MaxPartIDRegisters < 128 {
		t.Error("part ID areas do not hold partid.MaxLen bytes")
	}
	if _, err := json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if len(m.ReasonCodes) == 0 || m.ErrorCodes["trigger_busy"] != ErrTriggerBusy {
		t.Fatal("codes missing from the map")
	}
	var txt strings.Builder
	must(t, m.WriteText(&txt))
	for _, w := range []string{"holding_register  16    40017       float32 (big)", "discrete_input    4     10005", "ReasonCode: 0 (none) 1 anomaly", "ErrorCode: 0 none 1 line_error"} {
		if !strings.Contains(txt.String(), w) {
			t.Errorf("text map has no %q:\n%s", w, txt.String())
		}
	}
}

func TestStringEncoding(t *testing.T) {
	regs, trunc := encodeString("AB-Ä1", 4)
	if trunc || decodeString(regs) != "AB-Ä1" || regs[0] != 'A'<<8|'B' {
		t.Fatalf("round trip: %x %v %q", regs, trunc, decodeString(regs))
	}
	// Cut inside "Ä" (2 bytes at 3..4 of a 4-byte area): cut before it.
	regs, trunc = encodeString("ABCÄ", 2)
	if !trunc || decodeString(regs) != "ABC" {
		t.Fatalf("truncation: %q %v", decodeString(regs), trunc)
	}
	if got := decodeString([]uint16{'P'<<8 | '1', ' '<<8 | ' ', 0}); got != "P1" {
		t.Fatalf("space padded: %q", got)
	}
}

// TestWordOrder: a Go client set to each word order reads back the score,
// threshold and counters the server wrote in that order.
func TestWordOrder(t *testing.T) {
	for _, c := range []struct {
		order string
		wo    mb.WordOrder
	}{{WordOrderBig, mb.HIGH_WORD_FIRST}, {WordOrderLittle, mb.LOW_WORD_FIRST}} {
		t.Run(c.order, func(t *testing.T) {
			s := startServer(t, testConfig(func(cf *Config) { cf.WordOrder = c.order }), nil)
			score := -1234.5
			must(t, s.Publish(context.Background(), result.Result{Verdict: result.VerdictFail, ReasonCode: result.ReasonAnomaly, Score: &score, Threshold: 0.125}))
			cl := goClient(t, s)
			must(t, cl.SetEncoding(mb.BIG_ENDIAN, c.wo))
			f, err := cl.ReadFloat32s(RegScore, 2, holding)
			must(t, err)
			if f[0] != -1234.5 || f[1] != 0.125 {
				t.Fatalf("score, threshold %v", f)
			}
			n, err := cl.ReadUint32s(RegCountParts, 3, mb.INPUT_REGISTER)
			must(t, err)
			if fmt.Sprint(n) != "[1 1 0]" {
				t.Fatalf("parts, fails, errors %v", n)
			}
		})
	}
}

// TestHandshakeGoClient walks the handshake step by step with the Go
// client, checking each bit, including coils and discrete inputs as the
// alternative view of the same words, and a NaN score.
func TestHandshakeGoClient(t *testing.T) {
	line := newFakeLine(t, 0)
	s := startServer(t, testConfig(nil), line)
	c := goClient(t, s)
	status := func() uint16 {
		t.Helper()
		v, err := c.ReadRegister(RegStatus, holding)
		must(t, err)
		return v
	}
	waitBit := func(bit uint16, on bool) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); (status()&bit != 0) != on; time.Sleep(time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("status %#x: bit %#x not %v", status(), bit, on)
			}
		}
	}
	if st := status(); st&(StOnline|StReady) != StOnline|StReady || st&StResultValid != 0 {
		t.Fatalf("idle status %#x", st)
	}
	must(t, c.WriteCoil(0, true)) // TriggerEnable as a coil
	must(t, c.WriteRegisters(RegPartIDIn, []uint16{'X'<<8 | '1'}))
	must(t, c.WriteCoil(1, true)) // Trigger
	waitBit(StTriggerAck, true)
	di, err := c.ReadDiscreteInputs(0, 8)
	must(t, err)
	if !di[0] || !di[3] {
		t.Fatalf("discrete inputs %v: Online and TriggerAck expected", di)
	}
	id, _ := c.ReadRegister(RegTriggerID, holding)
	must(t, c.WriteCoil(1, false))
	waitBit(StTriggerAck, false)
	waitBit(StResultValid, true)
	regs, err := c.ReadRegisters(RegResultID, 5, mb.INPUT_REGISTER)
	must(t, err)
	want := resultFor("X1")
	if regs[0] != id || id != 1 || regs[1] != plc.ResultCode(want.Verdict) || regs[2] != plc.ReasonNumber(want.ReasonCode) || regs[3]&FlagTriggered == 0 || regs[4] != 1 {
		t.Fatalf("result block %v (trigger id %d)", regs, id)
	}
	// A second result arrives while the first is shown: it waits.
	must(t, s.Publish(context.Background(), result.Result{Verdict: result.VerdictError, ReasonCode: "from-the-future"}))
	if n, _ := c.ReadRegister(RegResultsBuffered, holding); n != 2 {
		t.Fatalf("buffered %d", n)
	}
	must(t, c.WriteCoil(2, true)) // ResultAck
	if status()&StResultValid != 0 {
		t.Fatal("ResultValid still set after ResultAck")
	}
	// Not shown while ResultAck is still high (four-phase handshake).
	time.Sleep(5 * time.Millisecond)
	if status()&StResultValid != 0 {
		t.Fatal("next result shown before ResultAck was cleared")
	}
	must(t, c.WriteCoil(2, false))
	waitBit(StResultValid, true)
	regs, _ = c.ReadRegisters(RegResultID, 8, holding)
	if regs[0] != 0 || regs[1] != plc.CodeError || regs[2] != plc.ReasonUnknown || regs[3] != 0 || regs[4] != 2 {
		t.Fatalf("second result block %v", regs)
	}
	if f := math.Float32frombits(uint32(regs[6])<<16 | uint32(regs[7])); !math.IsNaN(float64(f)) {
		t.Fatalf("score without a number: %v, want NaN", f)
	}
	bid, _ := c.ReadUint32(RegBundleNumber, holding)
	if bid == 0 {
		t.Fatal("BundleNumber 0 with a bundle loaded")
	}
	line.bundle.Store("demo-bundle-2")
	if n, _ := c.ReadRegister(RegBundleChanges, holding); n != 1 {
		t.Fatalf("bundle changes %d", n)
	}
}

// TestPublishNeverBlocks: with no PLC at all, 100,000 results are taken
// without waiting; the buffer holds result_buffer of them and
// the rest are counted overruns, each an error to the caller.
func TestPublishNeverBlocks(t *testing.T) {
	s := startServer(t, testConfig(func(c *Config) { c.ResultBuffer = 32 }), nil)
	var worst time.Duration
	errs := 0
	start := time.Now()
	for i := 0; i < 100000; i++ {
		t0 := time.Now()
		if err := s.Publish(context.Background(), resultFor("p")); err != nil {
			errs++
		}
		worst = max(worst, time.Since(t0))
	}
	st := s.Stats()
	if st.Buffered != 32 || st.Overruns != 100000-32 || errs != 100000-32 {
		t.Fatalf("stats %+v, %d errors", st, errs)
	}
	// Publish takes only the register lock (no I/O, no channel): waiting
	// on a PLC would show as seconds; a shared CI machine's scheduling
	// and GC pauses stay well under this.
	if worst > time.Second {
		t.Fatalf("slowest Publish %v", worst)
	}
	t.Logf("100000 Publish in %v, slowest %v", time.Since(start), worst)
	must(t, s.Close())
	if err := s.Publish(context.Background(), resultFor("p")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
}

// TestLostConnectionCounted: a PLC connection that ends (closed, or idle
// past idle_timeout) is counted; results keep being taken meanwhile.
func TestLostConnectionCounted(t *testing.T) {
	s := startServer(t, testConfig(func(c *Config) { c.IdleTimeout = time.Second }), nil)
	c1, err := net.Dial("tcp", s.Addr().String())
	must(t, err)
	c2, err := net.Dial("tcp", s.Addr().String())
	must(t, err)
	defer c2.Close()
	c1.Close()
	must(t, s.Publish(context.Background(), resultFor("a")))
	for end := time.Now().Add(5 * time.Second); s.Stats().ConnectionsLost < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("stats %+v: want 2 lost connections (one closed, one idle)", s.Stats())
		}
	}
	c2.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle connection not closed")
	}
}

// TestGeneratedPartIDNotMistaken: a PLC trigger without a part ID gets a
// generated one; results with an empty part ID or the same part ID as a
// PLC trigger that is not pending never take an InspectionID.
func TestGeneratedPartIDNotMistaken(t *testing.T) {
	line := newFakeLine(t, 50*time.Millisecond)
	s := startServer(t, testConfig(nil), line)
	c := goClient(t, s)
	must(t, c.WriteRegister(RegControl, CtlTriggerEnable))
	must(t, c.WriteRegister(RegControl, CtlTriggerEnable|CtlTrigger))
	// Before the line answers, a free-running result (empty part ID) lands.
	must(t, s.Publish(context.Background(), resultFor("")))
	time.Sleep(200 * time.Millisecond)
	line.mu.Lock()
	trig := append([]string(nil), line.triggered...)
	line.mu.Unlock()
	if len(trig) != 1 || !strings.HasPrefix(trig[0], "plc-") {
		t.Fatalf("line triggered with %q; want one generated plc-... part ID", trig)
	}
	regs, _ := c.ReadRegisters(RegResultID, 1, holding)
	if regs[0] != 0 {
		t.Fatalf("free-running result shown with InspectionID %d", regs[0])
	}
	must(t, c.WriteRegister(RegControl, CtlTriggerEnable|CtlResultAck))
	must(t, c.WriteRegister(RegControl, CtlTriggerEnable))
	regs, _ = c.ReadRegisters(RegResultID, 1, holding)
	if regs[0] != 1 {
		t.Fatalf("PLC's result shown with InspectionID %d, want 1", regs[0])
	}
}

// TestResetErrorAbandonsPending: a PLC that gives up on a trigger (after a
// daemon restart, say) clears the pending FIFO with ResetError; a late
// result for it then comes with InspectionID 0, never with an ID the PLC
// might reuse.
func TestResetErrorAbandonsPending(t *testing.T) {
	line := newFakeLine(t, 300*time.Millisecond)
	s := startServer(t, testConfig(func(c *Config) { c.MaxPendingTriggers = 1 }), line)
	c := goClient(t, s)
	must(t, c.WriteRegister(RegControl, CtlTriggerEnable))
	must(t, c.WriteRegister(RegControl, CtlTriggerEnable|CtlTrigger))
	must(t, c.WriteRegister(RegControl, CtlTriggerEnable|CtlResetError))
	must(t, c.WriteRegister(RegControl, CtlTriggerEnable))
	if st := s.Stats(); st.PendingTriggers != 0 {
		t.Fatalf("pending %d after ResetError", st.PendingTriggers)
	}
	for end := time.Now().Add(5 * time.Second); s.Stats().Buffered == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("no result")
		}
	}
	regs, _ := c.ReadRegisters(RegResultID, 4, holding)
	if regs[0] != 0 || regs[3]&FlagTriggered != 0 {
		t.Fatalf("abandoned trigger's result: id %d flags %#x", regs[0], regs[3])
	}
}

// TestListenErrors: an invalid configuration and a port in use are
// refused with the key or the address named.
func TestListenErrors(t *testing.T) {
	if _, err := Listen(testConfig(func(c *Config) { c.Listen = "0.0.0.0:0" }), nil, nil); err == nil || !strings.Contains(err.Error(), "plc.modbus.allow: empty") {
		t.Fatalf("open listen without allow: %v", err)
	}
	s := startServer(t, testConfig(nil), nil)
	_, err := Listen(testConfig(func(c *Config) { c.Listen = s.Addr().String() }), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "modbus listen "+s.Addr().String()) {
		t.Fatalf("port in use: %v", err)
	}
}
