// Package mqttconfig is the mqtt: section of the configuration: the broker
// connection, topics, outbox and embedded broker keys, their defaults and
// validation. It is a leaf, so the configuration (and every tool that reads
// it) does not depend on the MQTT client; package mqtt uses these types.
package mqttconfig

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Embedded is the Config.Broker value that starts the in-process broker.
const Embedded = "embedded"

// Config is the mqtt: section of the daemon's YAML config (config/ embeds it).
// Start from Defaults() and override; Validate says what is wrong by key.
type Config struct {
	// Broker is the broker URL (tcp://host:1883, ssl://host:8883, ws://...)
	// or "embedded" to run the broker inside the daemon.
	Broker string `yaml:"broker"`
	// FallbackBrokers are tried in order after Broker (not with embedded).
	FallbackBrokers []string `yaml:"fallback_brokers"`
	// ClientID must be fixed and unique per daemon: the broker keeps the
	// session (trigger subscription) under it. Default "segad-<station>".
	ClientID string `yaml:"client_id"`
	// Username and Password authenticate to the broker.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// TLS configures ssl:// brokers (and the embedded broker's listener when Embedded.TLS is set).
	TLS TLSConfig `yaml:"tls"`
	// KeepAlive is the MQTT keep-alive; a dead link is noticed within about 1.5x of it.
	KeepAlive time.Duration `yaml:"keepalive"`
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ConnectRetryInterval is the pause between connection attempts at start.
	ConnectRetryInterval time.Duration `yaml:"connect_retry_interval"`
	// MaxReconnectInterval caps the reconnect back-off (paho's default is 10 minutes).
	MaxReconnectInterval time.Duration `yaml:"max_reconnect_interval"`
	// AckTimeout is how long to wait for a PUBACK before re-sending from the outbox.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// MaxInflight is how many outbox entries may await PUBACK at once.
	MaxInflight int `yaml:"max_inflight"`
	// Prefix is the first topic level (default "segad").
	Prefix string `yaml:"prefix"`
	// Station is the second topic level and result.Result.Station.
	Station string `yaml:"station"`
	// Topics configures names, QoS and retain per topic.
	Topics Topics `yaml:"topics"`
	// PublishFeatures adds the feature vector to result payloads.
	PublishFeatures bool `yaml:"publish_features"`
	// StatusInterval is the period of the retained health JSON.
	StatusInterval time.Duration `yaml:"status_interval"`
	// Outbox configures the durable queue.
	Outbox OutboxConfig `yaml:"outbox"`
	// Embedded configures the in-process broker (Broker: embedded).
	Embedded EmbeddedConfig `yaml:"embedded"`
}

// TLSConfig holds TLS file paths and switches.
type TLSConfig struct {
	// CA is a PEM file of the CA(s) that signed the broker's certificate; empty means the system pool.
	CA string `yaml:"ca"`
	// Cert and Key are the client certificate and key (PEM) for mutual TLS.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks. Never in production.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// enabled reports whether any TLS setting was given.
func (t TLSConfig) Enabled() bool {
	return t.CA != "" || t.Cert != "" || t.Key != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// Topic is one topic's name (the last level, under prefix/station), QoS and retain flag.
type Topic struct {
	Name   string `yaml:"name"`
	QoS    byte   `yaml:"qos"`
	Retain bool   `yaml:"retain"`
}

// Topics lists the topics the publisher uses.
type Topics struct {
	Result  Topic `yaml:"result"`
	Reject  Topic `yaml:"reject"`
	Status  Topic `yaml:"status"`
	Health  Topic `yaml:"health"`
	Trigger Topic `yaml:"trigger"`
}

// OutboxConfig bounds the durable queue.
type OutboxConfig struct {
	// Path of the bbolt file; its folder must exist and be writable.
	Path string `yaml:"path"`
	// Memory keeps the outbox in RAM only: results pending at a crash are lost.
	Memory bool `yaml:"memory"`
	// MaxResults caps pending results (0: unbounded).
	MaxResults int `yaml:"max_results"`
	// MaxBytes caps their stored size (0: unbounded).
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxAge drops results older than this (0: never).
	MaxAge time.Duration `yaml:"max_age"`
	// QuarantineCorrupt: when the outbox file (or the embedded broker's
	// state file) is damaged, move it aside as <path>.corrupt-<time>, start
	// a new one and re-queue what is still readable. Off by default: the
	// daemon then refuses to start and says what to do.
	QuarantineCorrupt bool `yaml:"quarantine_corrupt"`
}

// EmbeddedConfig configures the in-process broker.
type EmbeddedConfig struct {
	// Listen is the TCP address; default 127.0.0.1:1883 (loopback only).
	Listen string `yaml:"listen"`
	// AllowAnonymous lets clients without credentials connect (full access).
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// Users are the accounts PLCs and dashboards log in with.
	Users []User `yaml:"users"`
	// TLS, when Cert and Key are set, serves the listener over TLS; a CA
	// there requires client certificates signed by it.
	TLS TLSConfig `yaml:"tls"`
	// StorePath is the bbolt file holding the broker's persistent sessions,
	// subscriptions, queued messages and retained messages, so a PLC's
	// session survives a daemon restart or crash. Empty: embedded-broker.db
	// next to outbox.path (in memory when outbox.memory is true).
	StorePath string `yaml:"store_path"`
	// MaxQueued caps the QoS 1/2 messages held for one client session
	// (queued while it is offline plus awaiting its PUBACK); more are
	// dropped, counted and logged. 0 means 10000; at most 65535.
	MaxQueued int `yaml:"max_queued"`
	// MaxPacketSize caps one MQTT packet a client may send, in bytes;
	// larger packets close the connection. 0 means 1 MiB.
	MaxPacketSize int `yaml:"max_packet_size"`
	// MaxClients caps concurrent network connections (including ones not
	// yet logged in). 0 means 100.
	MaxClients int `yaml:"max_clients"`
	// MaxAuthFailures is how many failed logins from one address (or for
	// one user) within AuthBlock start a block of AuthBlock. 0 means 5.
	MaxAuthFailures int `yaml:"max_auth_failures"`
	// AuthBlock is how long an address that failed MaxAuthFailures logins
	// is refused without checking its password. 0 means 1m.
	AuthBlock time.Duration `yaml:"auth_block"`
}

// Embedded broker limits: defaults and ranges (see EmbeddedConfig).
const (
	defaultMaxQueued       = 10000
	defaultMaxPacketSize   = 1 << 20
	defaultMaxClients      = 100
	defaultMaxAuthFailures = 5
	defaultAuthBlock       = time.Minute
)

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func (e EmbeddedConfig) QueuedLimit() int { return orDefault(e.MaxQueued, defaultMaxQueued) }
func (e EmbeddedConfig) PacketSizeLimit() int {
	return orDefault(e.MaxPacketSize, defaultMaxPacketSize)
}
func (e EmbeddedConfig) ClientsLimit() int { return orDefault(e.MaxClients, defaultMaxClients) }
func (e EmbeddedConfig) AuthFailuresLimit() int {
	return orDefault(e.MaxAuthFailures, defaultMaxAuthFailures)
}
func (e EmbeddedConfig) AuthBlockTime() time.Duration {
	return orDefault(e.AuthBlock, defaultAuthBlock)
}

// storePath is where the embedded broker keeps its state; "" means memory.
func (c *Config) StorePath() string {
	if c.Embedded.StorePath != "" {
		return c.Embedded.StorePath
	}
	if c.Outbox.Memory || c.Outbox.Path == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(c.Outbox.Path), "embedded-broker.db")
}

// User is one embedded-broker account with its topic ACL.
type User struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// ACL lists allowed topic filters; empty means full access.
	ACL []ACLRule `yaml:"acl"`
}

// ACLRule grants access to a topic filter (MQTT wildcards + and # allowed).
type ACLRule struct {
	Topic string `yaml:"topic"`
	// Access is read, write or readwrite.
	Access string `yaml:"access"`
}

// Defaults returns the configuration used for keys the YAML leaves out.
func Defaults() Config {
	return Config{
		KeepAlive:            30 * time.Second,
		ConnectTimeout:       10 * time.Second,
		ConnectRetryInterval: time.Second,
		MaxReconnectInterval: 10 * time.Second,
		AckTimeout:           10 * time.Second,
		MaxInflight:          32,
		Prefix:               "segad",
		Topics: Topics{
			Result:  Topic{Name: "result", QoS: 1},
			Reject:  Topic{Name: "reject", QoS: 1},
			Status:  Topic{Name: "status", QoS: 1, Retain: true},
			Health:  Topic{Name: "health", QoS: 1, Retain: true},
			Trigger: Topic{Name: "trigger", QoS: 1},
		},
		StatusInterval: 10 * time.Second,
		Outbox: OutboxConfig{
			Path:       "/var/lib/segad/outbox.db",
			MaxResults: 100000,
			MaxBytes:   256 << 20,
			MaxAge:     7 * 24 * time.Hour,
		},
		Embedded: EmbeddedConfig{
			Listen:          "127.0.0.1:1883",
			MaxQueued:       defaultMaxQueued,
			MaxPacketSize:   defaultMaxPacketSize,
			MaxClients:      defaultMaxClients,
			MaxAuthFailures: defaultMaxAuthFailures,
			AuthBlock:       defaultAuthBlock,
		},
	}
}

// Validate checks the configuration and returns every problem found, each
// naming its key under mqtt.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("mqtt.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	switch {
	case c.Broker == "":
		bad("broker", "required: a broker URL such as tcp://plc-gw:1883, or %q", Embedded)
	case c.Broker == Embedded:
		if len(c.FallbackBrokers) > 0 {
			bad("fallback_brokers", "not allowed with broker: embedded")
		}
	default:
		for i, b := range append([]string{c.Broker}, c.FallbackBrokers...) {
			key := "broker"
			if i > 0 {
				key = fmt.Sprintf("fallback_brokers[%d]", i-1)
			}
			if err := checkBrokerURL(b); err != nil {
				bad(key, "%v", err)
			}
		}
	}
	if c.Station == "" {
		bad("station", "required (it names the topics %s/<station>/...)", c.Prefix)
	} else if err := checkLevel(c.Station); err != nil {
		bad("station", "%v", err)
	}
	if c.Prefix == "" {
		bad("prefix", "must not be empty")
	} else {
		for _, lvl := range strings.Split(c.Prefix, "/") {
			if err := checkLevel(lvl); err != nil {
				bad("prefix", "%v", err)
				break
			}
		}
	}
	if (c.Username == "") != (c.Password == "") && c.Password != "" {
		bad("username", "a password is set but no username")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls", "cert and key must be given together")
	}
	for name, t := range map[string]Topic{"result": c.Topics.Result, "reject": c.Topics.Reject,
		"status": c.Topics.Status, "health": c.Topics.Health, "trigger": c.Topics.Trigger} {
		if t.Name == "" {
			bad("topics."+name+".name", "must not be empty")
		} else {
			for _, lvl := range strings.Split(t.Name, "/") {
				if err := checkLevel(lvl); err != nil {
					bad("topics."+name+".name", "%v", err)
					break
				}
			}
		}
		if t.QoS > 2 {
			bad("topics."+name+".qos", "%d is not 0, 1 or 2", t.QoS)
		}
	}
	if c.Topics.Result.QoS == 0 {
		bad("topics.result.qos", "must be 1 or 2: QoS 0 has no acknowledgement, so results could be lost")
	}
	if c.Topics.Trigger.Retain {
		bad("topics.trigger.retain", "a subscription has no retain flag; remove it")
	}
	for key, d := range map[string]time.Duration{"keepalive": c.KeepAlive, "connect_timeout": c.ConnectTimeout,
		"connect_retry_interval": c.ConnectRetryInterval, "max_reconnect_interval": c.MaxReconnectInterval,
		"ack_timeout": c.AckTimeout, "status_interval": c.StatusInterval} {
		if d <= 0 {
			bad(key, "must be a positive duration such as 10s, got %v", d)
		}
	}
	if c.KeepAlive > 0 && c.KeepAlive < time.Second {
		bad("keepalive", "%v is below MQTT's 1 s resolution", c.KeepAlive)
	}
	if c.MaxInflight < 1 || c.MaxInflight > 1000 {
		bad("max_inflight", "%d is outside 1..1000", c.MaxInflight)
	}
	if !c.Outbox.Memory && c.Outbox.Path == "" {
		bad("outbox.path", "required (or set outbox.memory: true to accept losing pending results on a crash)")
	}
	if c.Outbox.MaxResults < 0 || c.Outbox.MaxBytes < 0 || c.Outbox.MaxAge < 0 {
		bad("outbox", "max_results, max_bytes and max_age must not be negative")
	}
	if c.Broker == Embedded {
		if _, _, err := net.SplitHostPort(c.Embedded.Listen); err != nil {
			bad("embedded.listen", "%q is not host:port: %v", c.Embedded.Listen, err)
		}
		if (c.Embedded.TLS.Cert == "") != (c.Embedded.TLS.Key == "") {
			bad("embedded.tls", "cert and key must be given together")
		}
		seen := map[string]bool{}
		for i, u := range c.Embedded.Users {
			key := fmt.Sprintf("embedded.users[%d]", i)
			if u.Username == "" {
				bad(key+".username", "must not be empty")
			}
			if seen[u.Username] {
				bad(key+".username", "%q is listed twice", u.Username)
			}
			seen[u.Username] = true
			if u.Password == "" {
				bad(key+".password", "must not be empty (set embedded.allow_anonymous for open access)")
			}
			for j, r := range u.ACL {
				rk := fmt.Sprintf("%s.acl[%d]", key, j)
				if !ValidFilter(r.Topic) {
					bad(rk+".topic", "%q is not a valid MQTT topic filter", r.Topic)
				}
				switch r.Access {
				case "read", "write", "readwrite":
				default:
					bad(rk+".access", "%q is not read, write or readwrite", r.Access)
				}
			}
		}
		e := c.Embedded
		if e.MaxQueued != 0 && (e.MaxQueued < 100 || e.MaxQueued > 65535) {
			bad("embedded.max_queued", "%d is outside 100..65535 (MQTT packet IDs allow at most 65535 messages in flight per client)", e.MaxQueued)
		}
		if e.MaxPacketSize != 0 && (e.MaxPacketSize < 1024 || e.MaxPacketSize > 256<<20) {
			bad("embedded.max_packet_size", "%d is outside 1024..268435456 bytes", e.MaxPacketSize)
		}
		if e.MaxClients != 0 && (e.MaxClients < 1 || e.MaxClients > 10000) {
			bad("embedded.max_clients", "%d is outside 1..10000", e.MaxClients)
		}
		if e.MaxAuthFailures != 0 && (e.MaxAuthFailures < 1 || e.MaxAuthFailures > 1000) {
			bad("embedded.max_auth_failures", "%d is outside 1..1000", e.MaxAuthFailures)
		}
		if e.AuthBlock != 0 && (e.AuthBlock < time.Second || e.AuthBlock > 24*time.Hour) {
			bad("embedded.auth_block", "%v is outside 1s..24h", e.AuthBlock)
		}
		if len(c.Embedded.Users) == 0 && !c.Embedded.AllowAnonymous {
			bad("embedded.users", "no users and allow_anonymous is false: only this daemon could connect; add a user for the PLC")
		}
	}
	return errors.Join(errs...)
}

func checkBrokerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", s, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "tcps", "ws", "wss":
	default:
		return fmt.Errorf("%q: scheme must be tcp, ssl, ws or wss (e.g. tcp://host:1883)", s)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%q has no host", s)
	}
	return nil
}

func checkLevel(s string) error {
	if s == "" {
		return errors.New("empty topic level")
	}
	if strings.ContainsAny(s, "+#/\x00") {
		return fmt.Errorf("%q must not contain +, #, / or NUL", s)
	}
	return nil
}

// ResolvedTopics are the full topic names.
type ResolvedTopics struct {
	Result, Reject, Status, Health, Trigger string
}

// Resolve returns the full topic names: <prefix>/<station>/<name>.
func (c *Config) Resolve() ResolvedTopics {
	base := c.Prefix + "/" + c.Station + "/"
	return ResolvedTopics{
		Result:  base + c.Topics.Result.Name,
		Reject:  base + c.Topics.Reject.Name,
		Status:  base + c.Topics.Status.Name,
		Health:  base + c.Topics.Health.Name,
		Trigger: base + c.Topics.Trigger.Name,
	}
}

func (c *Config) ClientIDOrDefault() string {
	if c.ClientID != "" {
		return c.ClientID
	}
	return "segad-" + c.Station
}

// ValidFilter reports whether f is a valid MQTT topic filter.
func ValidFilter(f string) bool {
	if f == "" {
		return false
	}
	lv := strings.Split(f, "/")
	for i, l := range lv {
		if strings.Contains(l, "#") && (l != "#" || i != len(lv)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}
