package mqtt

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	mpackets "github.com/mochi-mqtt/server/v2/packets"

	"github.com/segad-edge/segad-edge/mqtt/internal/ratelog"
)

// Golden-sample challenge topics (docs/assurance.md), beside result,
// health and trigger under <prefix>/<station>/: the retained summary of
// the last challenge, and the command topic that asks for one. They are
// fixed names rather than mqtt.topics keys so that one ACL rule
// (segad/<station>/#) covers them as it covers the others.
const (
	goldenLevel    = "golden"
	goldenRunLevel = "golden/run"
	// goldenSubID is the embedded broker's inline subscription identifier
	// for the command topic (the trigger's is 1).
	goldenSubID = 2
)

// GoldenHealth is the last golden-sample challenge as the health JSON
// shows it.
type GoldenHealth struct {
	// Passed is true when the last challenge judged every image right.
	Passed bool `json:"passed"`
	// At is when it ran; zero when none has run yet.
	At time.Time `json:"at,omitempty"`
	// Failing names the images it judged wrongly.
	Failing []string `json:"failing,omitempty"`
	// Reason is the summary in words.
	Reason string `json:"reason,omitempty"`
}

// goldenCmd holds the command handler; it is separate from the trigger
// machinery because a challenge request carries no part and must never
// become a frame.
type goldenCmd struct {
	mu sync.Mutex
	fn func()
}

func (p *Publisher) goldenCmd() *goldenCmd { return &p.golden }

// GoldenTopic is the retained summary topic: <prefix>/<station>/golden.
func (p *Publisher) GoldenTopic() string {
	return p.cfg.Prefix + "/" + p.cfg.Station + "/" + goldenLevel
}

// GoldenRunTopic is the command topic: <prefix>/<station>/golden/run. Any
// non-retained message on it asks for a challenge; its payload is ignored.
func (p *Publisher) GoldenRunTopic() string {
	return p.cfg.Prefix + "/" + p.cfg.Station + "/" + goldenRunLevel
}

// PublishGolden publishes a challenge summary retained (QoS 1) on
// GoldenTopic, so a dashboard or MES that connects later still sees the
// last one. It waits at most mqtt.ack_timeout; a summary lost in an outage
// is replaced by the next challenge's.
func (p *Publisher) PublishGolden(body []byte) error {
	if !p.connected.Load() {
		return errors.New("not connected to the MQTT broker")
	}
	t := p.client.Publish(p.GoldenTopic(), 1, true, body)
	if !t.WaitTimeout(p.cfg.AckTimeout) {
		return fmt.Errorf("publish to %s: no acknowledgement within %s", p.GoldenTopic(), p.cfg.AckTimeout)
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("publish to %s: %w", p.GoldenTopic(), err)
	}
	return nil
}

// OnGoldenRun subscribes to GoldenRunTopic and calls fn (on its own
// goroutine, so a challenge never holds up the MQTT client) for every
// non-retained message on it. A retained command is ignored and logged: it
// would start a challenge at every reconnect.
func (p *Publisher) OnGoldenRun(fn func()) {
	c := p.goldenCmd()
	c.mu.Lock()
	c.fn = fn
	c.mu.Unlock()
	if p.broker != nil {
		p.broker.subscribe(p.GoldenRunTopic(), goldenSubID, func(_ *mochi.Client, _ mpackets.Subscription, pk mpackets.Packet) {
			p.goldenMessage(pk.TopicName, pk.FixedHeader.Retain)
		})
		return
	}
	if cl, ok := p.client.(paho.Client); ok && p.connected.Load() {
		go p.subscribeGolden(cl)
	}
}

// subscribeGolden (re)subscribes the command topic on a connection; the
// connect handler calls it, as it does for the trigger topic.
func (p *Publisher) subscribeGolden(c paho.Client) {
	gc := p.goldenCmd()
	gc.mu.Lock()
	on := gc.fn != nil
	gc.mu.Unlock()
	if !on {
		return
	}
	st := c.Subscribe(p.GoldenRunTopic(), 1, func(_ paho.Client, m paho.Message) {
		p.goldenMessage(m.Topic(), m.Retained())
	})
	if !st.WaitTimeout(p.cfg.AckTimeout) {
		p.log.Warn("subscribe to golden command topic timed out", "topic", p.GoldenRunTopic())
	} else if err := st.Error(); err != nil {
		p.log.Warn("subscribe to golden command topic failed", "topic", p.GoldenRunTopic(), "err", err)
	}
}

func (p *Publisher) goldenMessage(topic string, retained bool) {
	if topic != p.GoldenRunTopic() {
		return
	}
	if retained {
		p.lim.Log(p.log, slog.LevelWarn, "ignored retained golden command (clear it: mosquitto_pub -r -n -t <topic>)", "topic", ratelog.Excerpt(topic))
		return
	}
	gc := p.goldenCmd()
	gc.mu.Lock()
	fn := gc.fn
	gc.mu.Unlock()
	if fn != nil {
		go fn()
	}
}
