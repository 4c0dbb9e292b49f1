package modbus

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Word orders of 32-bit values (float32 score and threshold, uint32
// counters). Modbus fixes the byte order inside a register (big endian) but
// not the order of the two registers of a 32-bit value, and PLC vendors
// differ: Siemens, Rockwell and Beckhoff libraries mostly expect the high
// word first ("big", ABCD), Schneider/Modicon and many meters the low word
// first ("little", CDAB).
const (
	WordOrderBig    = "big"
	WordOrderLittle = "little"
)

// Config is the plc.modbus section of the configuration.
type Config struct {
	// Enabled starts the Modbus TCP server (default false: MQTT stays the
	// default output).
	Enabled bool `yaml:"enabled"`
	// Listen is the TCP address; default 127.0.0.1:502 (loopback only).
	// Ports below 1024 need root or CAP_NET_BIND_SERVICE.
	Listen string `yaml:"listen"`
	// Allow lists the client addresses (IPs or CIDRs) that may connect.
	// Empty: loopback clients only. Modbus has no authentication, so a
	// non-loopback Listen requires it.
	Allow []string `yaml:"allow"`
	// UnitID is the Modbus unit (slave) ID this server answers, 1..247;
	// requests for unit 0 and 255 (the Modbus TCP "this device" values) are
	// answered too. Default 1.
	UnitID int `yaml:"unit_id"`
	// WordOrder of 32-bit values: big (high word first, default) or little.
	WordOrder string `yaml:"word_order"`
	// ResultBuffer is how many results wait for the PLC's ResultAck,
	// including the one shown; a result beyond it sets ResultBufferOverrun.
	// Default 16, 1..1024.
	ResultBuffer int `yaml:"result_buffer"`
	// MaxPendingTriggers is how many PLC triggers may wait for their result;
	// a trigger beyond it is refused (TriggerRefused, ErrorCode 4).
	// Default 4, 1..256. 1 refuses every trigger while one is being answered.
	MaxPendingTriggers int `yaml:"max_pending_triggers"`
	// PartIDRegisters is the length of the part ID string areas in
	// registers (2 characters each). Default 16 (32 characters), 0..64;
	// 0 disables the part ID areas.
	PartIDRegisters int `yaml:"part_id_registers"`
	// MaxConnections bounds concurrent client connections. Default 4, 1..64.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a connection that sent no request for this long
	// (a half-open connection of a PLC that rebooted). Default 60s, 1s..1h.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// TriggerTimeout bounds one Line.Trigger call. Default 5s, 10ms..1m.
	TriggerTimeout time.Duration `yaml:"trigger_timeout"`
}

// Ranges of the numeric keys, used by Validate and the docs.
var (
	resultBufferRange   = [2]int{1, 1024}
	pendingRange        = [2]int{1, 256}
	partIDRegsRange     = [2]int{0, MaxPartIDRegisters}
	connectionsRange    = [2]int{1, 64}
	unitIDRange         = [2]int{1, 247}
	idleTimeoutRange    = [2]time.Duration{time.Second, time.Hour}
	triggerTimeoutRange = [2]time.Duration{10 * time.Millisecond, time.Minute}
)

// MaxPartIDRegisters is the size of each part ID area in the map: 64
// registers hold partid.MaxLen (128) bytes.
const MaxPartIDRegisters = 64

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{
		Listen:             "127.0.0.1:502",
		UnitID:             1,
		WordOrder:          WordOrderBig,
		ResultBuffer:       16,
		MaxPendingTriggers: 4,
		PartIDRegisters:    16,
		MaxConnections:     4,
		IdleTimeout:        60 * time.Second,
		TriggerTimeout:     5 * time.Second,
	}
}

// Validate checks every key and returns all problems at once, each naming
// its key (plc.modbus.<key>), the value and the accepted range. It is
// meaningful after Defaults (a zero value is a range error, not a default).
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("plc.modbus.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	host, _, err := splitListen(c.Listen)
	if err != nil {
		bad("listen", "%v", err)
	}
	nets, err := ParseAllow(c.Allow)
	if err != nil {
		bad("allow", "%v", err)
	}
	if err == nil && host != nil && !host.IsLoopback() && len(nets) == 0 {
		bad("allow", "empty while listen %q is not a loopback address: Modbus has no authentication, so list the PLC addresses that may connect (for example [192.168.0.10] or [192.168.0.0/24])", c.Listen)
	}
	intRange := func(key string, v int, r [2]int, why string) {
		if v < r[0] || v > r[1] {
			bad(key, "%d is outside %d..%d (%s)", v, r[0], r[1], why)
		}
	}
	intRange("unit_id", c.UnitID, unitIDRange, "a Modbus unit ID; 0 and 255 are always answered")
	intRange("result_buffer", c.ResultBuffer, resultBufferRange, "results waiting for ResultAck")
	intRange("max_pending_triggers", c.MaxPendingTriggers, pendingRange, "PLC triggers waiting for their result")
	intRange("part_id_registers", c.PartIDRegisters, partIDRegsRange, "2 characters per register; 64 hold the longest part ID")
	intRange("max_connections", c.MaxConnections, connectionsRange, "concurrent Modbus clients")
	durRange := func(key string, v time.Duration, r [2]time.Duration) {
		if v < r[0] || v > r[1] {
			bad(key, "%v is outside %v..%v", v, r[0], r[1])
		}
	}
	durRange("idle_timeout", c.IdleTimeout, idleTimeoutRange)
	durRange("trigger_timeout", c.TriggerTimeout, triggerTimeoutRange)
	if c.WordOrder != WordOrderBig && c.WordOrder != WordOrderLittle {
		bad("word_order", "%q: use %q (high word first, ABCD: Siemens, Rockwell, Beckhoff) or %q (low word first, CDAB: Schneider/Modicon)", c.WordOrder, WordOrderBig, WordOrderLittle)
	}
	return errors.Join(errs...)
}

// splitListen parses host:port; host is nil for an empty host (all
// interfaces), which is not loopback.
func splitListen(listen string) (net.IP, int, error) {
	h, p, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, 0, fmt.Errorf("%q is not host:port (for example 127.0.0.1:502): %v", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return nil, 0, fmt.Errorf("%q: port %q is not a number 0..65535", listen, p)
	}
	if h == "" {
		return net.IPv4zero, port, nil
	}
	if h == "localhost" {
		return net.IPv4(127, 0, 0, 1), port, nil
	}
	ip := net.ParseIP(h)
	if ip == nil {
		return nil, 0, fmt.Errorf("%q: host %q is not an IP address (give the address of the interface to listen on)", listen, h)
	}
	return ip, port, nil
}

// ParseAllow parses allow-list entries: single addresses (192.168.0.10,
// ::1) or CIDRs (192.168.0.0/24).
func ParseAllow(allow []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, a := range allow {
		a = strings.TrimSpace(a)
		if strings.Contains(a, "/") {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, fmt.Errorf("[%d] %q is not an address or CIDR (192.168.0.10, 192.168.0.0/24): %v", i, a, err)
			}
			out = append(out, p.Masked())
			continue
		}
		ad, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("[%d] %q is not an address or CIDR (192.168.0.10, 192.168.0.0/24): %v", i, a, err)
		}
		ad = ad.Unmap()
		out = append(out, netip.PrefixFrom(ad, ad.BitLen()))
	}
	return out, nil
}
