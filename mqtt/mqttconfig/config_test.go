package mqttconfig

import (
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

func TestValidate(t *testing.T) {
	valid := func() Config {
		c := Defaults()
		c.Broker, c.Station = "tcp://broker:1883", "line1"
		return c
	}
	tests := []struct {
		name string
		edit func(*Config)
		want []string // substrings of the error; nil = valid
	}{
		{"defaults plus broker and station", func(*Config) {}, nil},
		{"missing broker and station", func(c *Config) { c.Broker, c.Station = "", "" }, []string{"mqtt.broker: required", "mqtt.station: required"}},
		{"bad scheme", func(c *Config) { c.Broker = "http://x" }, []string{"mqtt.broker", "scheme"}},
		{"wildcard in station", func(c *Config) { c.Station = "a/+" }, []string{"mqtt.station"}},
		{"result qos 0", func(c *Config) { c.Topics.Result.QoS = 0 }, []string{"mqtt.topics.result.qos", "lost"}},
		{"qos 3", func(c *Config) { c.Topics.Reject.QoS = 3 }, []string{"mqtt.topics.reject.qos"}},
		{"cert without key", func(c *Config) { c.TLS.Cert = "c.pem" }, []string{"mqtt.tls"}},
		{"no outbox path", func(c *Config) { c.Outbox.Path = "" }, []string{"mqtt.outbox.path"}},
		{"memory outbox", func(c *Config) { c.Outbox.Path, c.Outbox.Memory = "", true }, nil},
		{"zero keepalive", func(c *Config) { c.KeepAlive = 0 }, []string{"mqtt.keepalive"}},
		{"embedded without users", func(c *Config) { c.Broker = Embedded }, []string{"mqtt.embedded.users"}},
		{"embedded anonymous", func(c *Config) { c.Broker, c.Embedded.AllowAnonymous = Embedded, true }, nil},
		{"embedded bad acl", func(c *Config) {
			c.Broker = Embedded
			c.Embedded.Users = []User{{Username: "plc", Password: "x", ACL: []ACLRule{{Topic: "a/#/b", Access: "all"}}}}
		}, []string{"mqtt.embedded.users[0].acl[0].topic", "mqtt.embedded.users[0].acl[0].access"}},
		{"embedded limits at their bounds", func(c *Config) {
			c.Broker, c.Embedded.AllowAnonymous = Embedded, true
			c.Embedded.MaxQueued, c.Embedded.MaxPacketSize, c.Embedded.MaxClients = 65535, 1024, 10000
			c.Embedded.MaxAuthFailures, c.Embedded.AuthBlock = 1, 24*time.Hour
		}, nil},
		{"embedded limits zero mean defaults", func(c *Config) {
			c.Broker, c.Embedded.AllowAnonymous = Embedded, true
			c.Embedded.MaxQueued, c.Embedded.MaxPacketSize, c.Embedded.MaxClients, c.Embedded.MaxAuthFailures, c.Embedded.AuthBlock = 0, 0, 0, 0, 0
		}, nil},
		{"embedded limits out of range", func(c *Config) {
			c.Broker, c.Embedded.AllowAnonymous = Embedded, true
			c.Embedded.MaxQueued, c.Embedded.MaxPacketSize, c.Embedded.MaxClients = 70000, 100, -1
			c.Embedded.MaxAuthFailures, c.Embedded.AuthBlock = 5000, time.Millisecond
		}, []string{"mqtt.embedded.max_queued", "mqtt.embedded.max_packet_size", "mqtt.embedded.max_clients",
			"mqtt.embedded.max_auth_failures", "mqtt.embedded.auth_block"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.edit(&c)
			err := c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", c)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestYAML decodes the documented example with the project's YAML library.
func TestYAML(t *testing.T) {
	src := `
broker: ssl://broker.plant:8883
station: line1
username: segad
password: pw
tls: {ca: /etc/segad/ca.pem}
keepalive: 15s
topics:
  reject: {name: reject, qos: 2}
outbox: {path: /var/lib/segad/outbox.db, max_results: 5000, max_age: 24h}
`
	c := Defaults()
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.KeepAlive != 15*time.Second || c.Topics.Reject.QoS != 2 || c.Topics.Result.QoS != 1 ||
		c.Outbox.MaxAge != 24*time.Hour || c.Outbox.MaxResults != 5000 || c.TLS.CA != "/etc/segad/ca.pem" {
		t.Fatalf("decoded %+v", c)
	}
	if got := c.Resolve().Reject; got != "segad/line1/reject" {
		t.Fatalf("reject topic %q", got)
	}
}
