// Package mqtttest holds MQTT test helpers that need the mqtt package's
// payload types (internal/testenv cannot: mqtt's own tests import it).
package mqtttest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/segad-edge/segad-edge/mqtt"
)

// Subscriber follows a station's topics on a broker the way a PLC or MES
// would, and keeps the decoded result, reject and health messages.
type Subscriber struct {
	mu      sync.Mutex
	results []result.Result
	rejects []mqtt.Reject
	health  []mqtt.Health
	client  paho.Client
}

// Subscribe connects to broker (tcp://host:port) with the given credentials
// ("" for none) and subscribes to topic at QoS 1 with a persistent session.
// It disconnects when the test ends.
func Subscribe(tb testing.TB, broker, user, password, topic string) *Subscriber {
	tb.Helper()
	s := &Subscriber{}
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("sub-%d", time.Now().UnixNano())).
		SetUsername(user).SetPassword(password).SetCleanSession(false).
		SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond)
	s.client = paho.NewClient(o)
	if tok := s.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("subscriber connect to %s: %v", broker, tok.Error())
	}
	tok := s.client.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case strings.HasSuffix(m.Topic(), "/result"):
			var r result.Result
			if json.Unmarshal(m.Payload(), &r) == nil {
				s.results = append(s.results, r)
			}
		case strings.HasSuffix(m.Topic(), "/reject"):
			var r mqtt.Reject
			if json.Unmarshal(m.Payload(), &r) == nil {
				s.rejects = append(s.rejects, r)
			}
		case strings.HasSuffix(m.Topic(), "/health"):
			var h mqtt.Health
			if json.Unmarshal(m.Payload(), &h) == nil {
				s.health = append(s.health, h)
			}
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
	tb.Cleanup(func() { s.client.Disconnect(100) })
	return s
}

// Results returns the results received so far, in arrival order.
func (s *Subscriber) Results() []result.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]result.Result(nil), s.results...)
}

// Rejects returns the reject messages received so far.
func (s *Subscriber) Rejects() []mqtt.Reject {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mqtt.Reject(nil), s.rejects...)
}

// Health returns the health messages received so far.
func (s *Subscriber) Health() []mqtt.Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mqtt.Health(nil), s.health...)
}

// WaitResults waits until n results arrived or within passed, and returns
// what arrived.
func (s *Subscriber) WaitResults(n int, within time.Duration) []result.Result {
	deadline := time.Now().Add(within)
	for {
		got := s.Results()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}
