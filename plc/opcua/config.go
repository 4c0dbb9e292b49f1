package opcua

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Security modes a Config may list in SecurityModes.
const (
	// SecurityNone: no signing, no encryption of messages. Passwords are
	// still encrypted (RSA-OAEP with the server certificate, the
	// Basic256Sha256 user token policy).
	SecurityNone = "None"
	// SecuritySign and SecuritySignAndEncrypt are Basic256Sha256 secure
	// channels. gopcua v0.8.0's server cannot open them (it does not decrypt
	// the OpenSecureChannel request: docs/opcua.md, Security), so Validate
	// refuses them until the stack is upgraded.
	SecuritySign           = "Basic256Sha256/Sign"
	SecuritySignAndEncrypt = "Basic256Sha256/SignAndEncrypt"
)

// User is one username/password pair allowed to open a session.
type User struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// Config is the `plc.opcua:` section.
type Config struct {
	// Enabled starts the OPC UA server as an output beside MQTT.
	Enabled bool `yaml:"enabled"`
	// Listen is host:port of the TCP listener (default 127.0.0.1:4840).
	Listen string `yaml:"listen"`
	// Hostname is the host written into the endpoint URL and the
	// certificate (default: the listen host, or os.Hostname() when the
	// listen host is unspecified such as 0.0.0.0).
	Hostname string `yaml:"hostname"`
	// EndpointPath is the path of the endpoint URL (default "/segad").
	EndpointPath string `yaml:"endpoint_path"`
	// Users may open sessions with username/password. Required when Listen
	// is not a loopback address (anonymous is only offered on loopback).
	Users []User `yaml:"users"`
	// SecurityModes lists the endpoints offered (default and, with gopcua
	// v0.8.0, only possible value: ["None"]; see SecuritySign).
	SecurityModes []string `yaml:"security_modes"`
	// CertFile and KeyFile are the server's application instance
	// certificate (DER or PEM) and RSA key (PEM). Default: opcua/server.der
	// and opcua/server.key in the state folder, generated (self-signed,
	// RSA 2048) on first start.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Limits bound what clients may hold.
	Limits Limits `yaml:"limits"`
}

// Limits bound sessions, subscriptions and queues.
type Limits struct {
	// MaxConnections: TCP connections at once (default 32, 1..1000).
	MaxConnections int `yaml:"max_connections"`
	// MaxSessions: sessions at once (default 16, 1..1000).
	MaxSessions int `yaml:"max_sessions"`
	// MaxSubscriptionsPerSession (default 8, 1..100).
	MaxSubscriptionsPerSession int `yaml:"max_subscriptions_per_session"`
	// MaxMonitoredItemsPerSubscription (default 256, 1..10000).
	MaxMonitoredItemsPerSubscription int `yaml:"max_monitored_items_per_subscription"`
	// MaxQueueSize: the largest queue a monitored item may ask for
	// (default 1000, 1..100000).
	MaxQueueSize int `yaml:"max_queue_size"`
	// MaxNodesPerRequest: nodes per Read, Browse or CreateMonitoredItems
	// request (default 1000, 1..100000).
	MaxNodesPerRequest int `yaml:"max_nodes_per_request"`
	// MaxMessageSize: the largest request message, all chunks together
	// (default and most 2 MiB, gopcua's own ceiling; 64 KiB..2 MiB).
	MaxMessageSize int `yaml:"max_message_size"`
	// MinPublishingInterval: the shortest publishing interval granted
	// (default 10ms, 1ms..10s).
	MinPublishingInterval time.Duration `yaml:"min_publishing_interval"`
	// HandshakeTimeout: time a new connection has to send its HEL
	// (default 10s, 100ms..1m).
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// StatusInterval: how often the line status is polled (default 250ms, 10ms..10s).
	StatusInterval time.Duration `yaml:"status_interval"`
	// MemoryLimitMB is the Go memory limit (debug.SetMemoryLimit) of the
	// server process `segad run` starts for OPC UA (default 256, 32..65536).
	MemoryLimitMB int `yaml:"memory_limit_mb"`
	// AddressSpaceGrowthMB bounds that process's address space (RLIMIT_AS,
	// on Linux) to its size once started plus this much: an allocation
	// beyond it fails at once inside the server process, which ends and is
	// restarted, instead of pressing on the machine's memory (default 2048,
	// 256..1048576). Relative, because the shared libraries of the segad
	// binary (OpenCV, ONNX Runtime, GStreamer) already map about 2 GiB.
	AddressSpaceGrowthMB int `yaml:"address_space_growth_mb"`
}

// DefaultConfig is the section with every default filled in.
func DefaultConfig() Config {
	var c Config
	c.ApplyDefaults()
	return c
}

// ApplyDefaults fills every zero field with its default.
func (c *Config) ApplyDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:4840"
	}
	if c.EndpointPath == "" {
		c.EndpointPath = "/segad"
	}
	if len(c.SecurityModes) == 0 {
		c.SecurityModes = []string{SecurityNone}
	}
	l := &c.Limits
	setInt(&l.MaxConnections, 32)
	setInt(&l.MaxSessions, 16)
	setInt(&l.MaxSubscriptionsPerSession, 8)
	setInt(&l.MaxMonitoredItemsPerSubscription, 256)
	setInt(&l.MaxQueueSize, 1000)
	setInt(&l.MaxNodesPerRequest, 1000)
	setInt(&l.MaxMessageSize, 2<<20)
	setDur(&l.MinPublishingInterval, 10*time.Millisecond)
	setDur(&l.HandshakeTimeout, 10*time.Second)
	setDur(&l.StatusInterval, 250*time.Millisecond)
	setInt(&l.MemoryLimitMB, 256)
	setInt(&l.AddressSpaceGrowthMB, 2048)
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setDur(p *time.Duration, v time.Duration) {
	if *p == 0 {
		*p = v
	}
}

// loopback reports whether Listen is a loopback address (127.0.0.0/8,
// ::1 or "localhost").
func (c *Config) loopback() bool {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Loopback reports whether the server listens on loopback only, where
// anonymous sessions are allowed.
func (c *Config) Loopback() bool { return c.loopback() }

// Validate checks the section (after ApplyDefaults). Each error names the
// key, the value and the allowed range.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("plc.opcua."+format, args...))
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		bad("listen: %q is not host:port (for example 127.0.0.1:4840): %v", c.Listen, err)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("listen: port %q is outside 0..65535 (0: a free port)", port)
	} else if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		bad("listen: host %q is not an IP address or localhost", host)
	}
	if !strings.HasPrefix(c.EndpointPath, "/") || len(c.EndpointPath) > 128 || strings.ContainsAny(c.EndpointPath, " ?#") {
		bad("endpoint_path: %q must start with '/', be at most 128 bytes and contain no space, '?' or '#'", c.EndpointPath)
	}
	if c.Hostname != "" && (len(c.Hostname) > 253 || strings.ContainsAny(c.Hostname, " /:")) {
		bad("hostname: %q is not a host name", c.Hostname)
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		switch {
		case u.Username == "" || len(u.Username) > 64 || !printable(u.Username):
			bad("users[%d].username: 1 to 64 printable characters are needed", i)
		case seen[u.Username]:
			bad("users[%d].username: %q is listed twice", i, u.Username)
		case len(u.Password) < 8 || len(u.Password) > 128:
			bad("users[%d].password: %d characters; 8 to 128 are needed", i, len(u.Password))
		}
		seen[u.Username] = true
	}
	if !c.loopback() && len(c.Users) == 0 {
		bad("users: none configured, but listen %s is not a loopback address: anonymous sessions are only allowed on loopback; add users (username, password) or listen on 127.0.0.1", c.Listen)
	}
	for _, m := range c.SecurityModes {
		switch m {
		case SecurityNone:
		case SecuritySign, SecuritySignAndEncrypt:
			bad("security_modes: %q is not available: gopcua v0.8.0's server cannot open Basic256Sha256 secure channels (it leaves the OpenSecureChannel request encrypted; see docs/opcua.md, Security); use %q (passwords are still encrypted)", m, SecurityNone)
		default:
			bad("security_modes: %q is not one of %q, %q, %q", m, SecurityNone, SecuritySign, SecuritySignAndEncrypt)
		}
	}
	if len(c.SecurityModes) == 0 {
		bad("security_modes: empty: list %q", SecurityNone)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		bad("cert_file and key_file: give both or neither (neither: a self-signed certificate is generated in the state folder)")
	}
	l := c.Limits
	intRange := func(key string, v, lo, hi int) {
		if v < lo || v > hi {
			bad("limits.%s: %d is outside %d..%d", key, v, lo, hi)
		}
	}
	durRange := func(key string, v, lo, hi time.Duration) {
		if v < lo || v > hi {
			bad("limits.%s: %s is outside %s..%s", key, v, lo, hi)
		}
	}
	intRange("max_connections", l.MaxConnections, 1, 1000)
	intRange("max_sessions", l.MaxSessions, 1, 1000)
	intRange("max_subscriptions_per_session", l.MaxSubscriptionsPerSession, 1, 100)
	intRange("max_monitored_items_per_subscription", l.MaxMonitoredItemsPerSubscription, 1, 10000)
	intRange("max_queue_size", l.MaxQueueSize, 1, 100000)
	intRange("max_nodes_per_request", l.MaxNodesPerRequest, 1, 100000)
	intRange("max_message_size", l.MaxMessageSize, 64<<10, 2<<20)
	durRange("min_publishing_interval", l.MinPublishingInterval, time.Millisecond, 10*time.Second)
	durRange("handshake_timeout", l.HandshakeTimeout, 100*time.Millisecond, time.Minute)
	durRange("status_interval", l.StatusInterval, 10*time.Millisecond, 10*time.Second)
	intRange("memory_limit_mb", l.MemoryLimitMB, 32, 65536)
	intRange("address_space_growth_mb", l.AddressSpaceGrowthMB, 256, 1<<20)
	return errors.Join(errs...)
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
