// Package mqtt publishes inspection results to PLCs and dashboards without
// losing any, receives capture triggers, and can run an embedded broker.
//
// Delivery: Publish appends the result (and, for rejected parts, the reject
// payload) to a durable bbolt outbox and returns once it is fsynced. A sender
// goroutine publishes the outbox in order at QoS 1 and deletes each entry
// when its PUBACK arrives. On reconnect or restart it resends everything not
// acknowledged, so delivery is at-least-once; subscribers drop duplicates by
// result ID.
//
// paho is used with CleanSession=false and a fixed client ID (so the broker
// keeps the trigger subscription), but paho's own outbound message store is
// bypassed: its FileStore panics on I/O errors, and its resume on reconnect
// completes the original tokens without a PUBACK, which would make us delete
// results the broker may never have received. The outbox is the only source
// of truth.
//
// With the embedded broker there is no network link: results are published
// in-process (see Broker), so when a publish returns the result is queued
// in every subscribed session, and on disk for persistent ones.
package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segad-edge/segad-edge/result"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	mochi "github.com/mochi-mqtt/server/v2"
	mpackets "github.com/mochi-mqtt/server/v2/packets"

	"github.com/segad-edge/segad-edge/mqtt/internal/ratelog"
	"github.com/segad-edge/segad-edge/mqtt/outbox"
)

// Trigger handling bounds. A trigger is queued for the OnTrigger handlers
// (triggerQueue); when they lag it is kept as an overflowed trigger
// (maxOverflow) that the handlers get with Overflow=true and answer at once
// with an error result; beyond that it is counted and logged as lost.
const (
	triggerQueue = 256
	maxOverflow  = 1024
	// maxTriggerPayload bounds what is parsed at all: a part ID is at most
	// 128 characters, so a larger payload is ignored before decoding.
	maxTriggerPayload = 16 << 10
)

// Stats is a snapshot of the publisher for health reports and tests.
type Stats struct {
	// Backlog is the number of results waiting in the outbox for a PUBACK.
	Backlog int
	// BacklogBytes is their stored size.
	BacklogBytes int64
	// Published counts results acknowledged by the broker since start.
	Published uint64
	// Resent counts results sent again after a connection loss or ack timeout.
	Resent uint64
	// DroppedPass, DroppedFail and Expired count results the bounded outbox dropped.
	DroppedPass, DroppedFail, Expired uint64
	// Drops is their sum.
	Drops uint64
	// Connected reports whether the MQTT connection is up now.
	Connected bool
	// ConnectionLosses counts connection losses since start.
	ConnectionLosses uint64
	// TriggersReceived counts valid trigger messages queued for the
	// handlers; TriggersIgnored malformed (or retained) ones;
	// TriggersOverflowed valid ones handed to the handlers with
	// Overflow=true because triggers arrived faster than the line took
	// them; TriggersDropped valid ones lost because even the overflow list
	// (1024) was full (counted and logged, never silent).
	TriggersReceived, TriggersIgnored, TriggersOverflowed, TriggersDropped uint64
	// LastError is the last connect or publish error ("" when none yet).
	LastError string
	// Stalled is true when the link cannot publish: not connected to the
	// broker, or results are waiting and none was acknowledged (PUBACK, or
	// taken by the embedded broker) for longer than mqtt.ack_timeout. The
	// daemon's /readyz answers 503 while it is true.
	Stalled bool
	// StalledReason says why Stalled is true, in words; "" otherwise.
	StalledReason string
	// Broker holds the embedded broker's refusal and drop counters (zero
	// with an external broker).
	Broker BrokerStats
}

// link is what the sender needs from the connection: paho's client for an
// external broker, the in-process broker for the embedded one.
type link interface {
	Publish(topic string, qos byte, retained bool, payload interface{}) paho.Token
	IsConnectionOpen() bool
	Disconnect(quiesce uint)
}

// Publisher publishes results through the durable outbox, subscribes to
// triggers and reports health. Create it with New; Close it once.
type Publisher struct {
	cfg     Config
	topics  ResolvedTopics
	log     *slog.Logger
	ob      *outbox.Outbox
	broker  *Broker
	client  link
	brokers string
	started time.Time

	published, resent, losses    atomic.Uint64
	trigOK, trigBad, trigDropped atomic.Uint64
	trigOverflowed               atomic.Uint64
	ovMu                         sync.Mutex
	overflow                     []Trigger
	ovWake                       chan struct{}
	lim                          *ratelog.Limiter
	// progress is when the sender last made progress (an acknowledgement,
	// or nothing left to send), in Unix nanoseconds: Stats().Stalled.
	progress                          atomic.Int64
	connected                         atomic.Bool
	lost                              atomic.Pointer[chan struct{}]
	wake                              chan struct{}
	errMu                             sync.Mutex
	lastErr                           error
	lastLogged                        string
	trigMu                            sync.Mutex
	trigFns                           []func(Trigger)
	trigCh                            chan Trigger
	healthMu                          sync.Mutex
	healthFn                          func() Health
	closing, hardStop, stopBackground chan struct{}
	senderDone                        chan struct{}
	bg                                sync.WaitGroup
	closeOnce                         sync.Once
	closeErr                          error
	// ackHook, when set (tests, benchmarks), is called with each result ID
	// as its PUBACK arrives.
	ackHook atomic.Pointer[func(id string)]
	// golden is the golden-sample challenge command handler (golden.go).
	golden goldenCmd
}

// New validates cfg, opens the outbox (recovering pending results), starts
// the embedded broker when cfg.Broker is "embedded", and starts connecting.
// It does not wait for the broker: results queue in the outbox meanwhile.
// Use WaitConnected to wait (and to get a clear error, such as a wrong
// password or an untrusted certificate, naming the broker).
func New(cfg Config, logger *slog.Logger) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mqtt config: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	p := &Publisher{
		cfg:            cfg,
		topics:         cfg.Resolve(),
		log:            logger.With("component", "mqtt", "station", cfg.Station),
		started:        time.Now(),
		wake:           make(chan struct{}, 1),
		trigCh:         make(chan Trigger, triggerQueue),
		ovWake:         make(chan struct{}, 1),
		lim:            ratelog.New(),
		closing:        make(chan struct{}),
		hardStop:       make(chan struct{}),
		stopBackground: make(chan struct{}),
		senderDone:     make(chan struct{}),
	}
	lost := make(chan struct{})
	p.lost.Store(&lost)
	p.progress.Store(time.Now().UnixNano())

	obOpt := outbox.Options{
		Limits:            outbox.Limits{MaxEntries: cfg.Outbox.MaxResults, MaxBytes: cfg.Outbox.MaxBytes, MaxAge: cfg.Outbox.MaxAge},
		Logger:            p.log,
		QuarantineCorrupt: cfg.Outbox.QuarantineCorrupt,
	}
	if cfg.Outbox.Memory {
		p.log.Warn("mqtt outbox kept in memory only (mqtt.outbox.memory): results pending at a crash will be lost")
		p.ob = outbox.OpenMemory(obOpt)
	} else {
		ob, err := outbox.Open(cfg.Outbox.Path, obOpt)
		if err != nil {
			return nil, fmt.Errorf("mqtt.outbox.path: %w", err)
		}
		p.ob = ob
	}

	if cfg.Broker == Embedded {
		b, err := StartBroker(cfg, p.log)
		if err != nil {
			_ = p.ob.Close()
			return nil, err
		}
		p.broker = b
		p.brokers = "embedded broker on " + b.Addr()
		p.client = &inlineLink{b: b}
	} else {
		opts, err := p.clientOptions()
		if err != nil {
			_ = p.ob.Close()
			return nil, err
		}
		c := paho.NewClient(opts)
		p.client = c
		// With ConnectRetry the token completes only once connected; failures
		// are reported through the connection notification handler.
		c.Connect()
	}

	go p.sender()
	p.bg.Add(3)
	go p.dispatchTriggers()
	go p.statusLoop()
	go func() {
		defer p.bg.Done()
		p.lim.Run(p.stopBackground)
	}()
	if p.broker != nil {
		p.inlineConnected()
	}
	return p, nil
}

// inlineLink publishes through the embedded broker in-process. Its tokens
// are complete when returned: the broker has queued the message for every
// subscribed session (and stored it for persistent ones).
type inlineLink struct{ b *Broker }

func (l *inlineLink) Publish(topic string, qos byte, retained bool, payload interface{}) paho.Token {
	var body []byte
	switch v := payload.(type) {
	case []byte:
		body = v
	case string:
		body = []byte(v)
	default:
		return doneToken{fmt.Errorf("publish to %s: unsupported payload type %T", topic, payload)}
	}
	return doneToken{l.b.publish(topic, body, retained, qos)}
}

func (l *inlineLink) IsConnectionOpen() bool { return !l.b.closed.Load() }
func (l *inlineLink) Disconnect(uint)        {}

// doneToken is a paho.Token that is already complete.
type doneToken struct{ err error }

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (t doneToken) Wait() bool                     { return true }
func (t doneToken) WaitTimeout(time.Duration) bool { return true }
func (t doneToken) Done() <-chan struct{}          { return closedCh }
func (t doneToken) Error() error                   { return t.err }

// inlineConnected is onConnect for the embedded broker: the link is up for
// the life of the broker.
func (p *Publisher) inlineConnected() {
	p.connected.Store(true)
	p.log.Info("publishing through the embedded broker in-process", "broker", p.brokers)
	if t := p.client.Publish(p.topics.Status, p.cfg.Topics.Status.QoS, p.cfg.Topics.Status.Retain, "online"); t.Error() != nil {
		p.log.Warn("publish online status failed", "topic", p.topics.Status, "err", t.Error())
	}
	// The handler runs on the publishing client's own goroutine (after its
	// PUBACK): it only parses and enqueues, so a flood slows the flooder.
	p.broker.subscribe(p.topics.Trigger, 1, func(_ *mochi.Client, _ mpackets.Subscription, pk mpackets.Packet) {
		p.handleTrigger(pk.TopicName, pk.Payload, false)
	})
	p.publishHealth()
}

func (p *Publisher) clientOptions() (*paho.ClientOptions, error) {
	cfg := p.cfg
	opts := paho.NewClientOptions()
	user, pass := cfg.Username, cfg.Password
	{
		all := append([]string{cfg.Broker}, cfg.FallbackBrokers...)
		tlsNeeded := cfg.TLS.Enabled()
		for _, b := range all {
			opts.AddBroker(b)
			if s := strings.SplitN(b, ":", 2)[0]; s == "ssl" || s == "tls" || s == "mqtts" || s == "tcps" || s == "wss" {
				tlsNeeded = true
			}
		}
		if tlsNeeded {
			tc, err := clientTLS(cfg.TLS)
			if err != nil {
				return nil, err
			}
			opts.SetTLSConfig(tc)
		}
		p.brokers = strings.Join(all, ", ")
	}
	opts.SetClientID(cfg.ClientIDOrDefault())
	opts.SetUsername(user)
	opts.SetPassword(pass)
	opts.SetCleanSession(false)
	opts.SetResumeSubs(true)
	// In order: the trigger handler only parses and enqueues (never blocks),
	// so ordered delivery cannot hold up paho's network loop.
	opts.SetOrderMatters(true)
	opts.SetAutoReconnect(true)
	opts.SetConnectRetry(true)
	opts.SetConnectRetryInterval(cfg.ConnectRetryInterval)
	opts.SetMaxReconnectInterval(cfg.MaxReconnectInterval)
	opts.SetKeepAlive(cfg.KeepAlive)
	opts.SetPingTimeout(min(cfg.KeepAlive, 10*time.Second))
	opts.SetConnectTimeout(cfg.ConnectTimeout)
	opts.SetWriteTimeout(cfg.AckTimeout)
	opts.SetStore(&publishlessStore{Store: paho.NewOrderedMemoryStore()})
	opts.SetWill(p.topics.Status, "offline", cfg.Topics.Status.QoS, true)
	opts.SetDefaultPublishHandler(p.handleMessage)
	opts.SetOnConnectHandler(p.onConnect)
	opts.SetConnectionLostHandler(p.onLost)
	opts.SetConnectionNotificationHandler(p.onNotification)
	return opts, nil
}

// publishlessStore keeps paho's store for everything except outbound
// PUBLISH packets. Without them paho has nothing to resend on reconnect, so
// a publish token completes only on a real PUBACK; the outbox resends instead.
type publishlessStore struct{ paho.Store }

func (s *publishlessStore) Put(key string, m packets.ControlPacket) {
	if _, ok := m.(*packets.PublishPacket); ok && strings.HasPrefix(key, "o.") {
		return
	}
	s.Store.Put(key, m)
}

func (p *Publisher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Publisher) onConnect(c paho.Client) {
	p.connected.Store(true)
	p.progress.Store(time.Now().UnixNano())
	p.setErr(nil)
	p.log.Info("connected to MQTT broker", "broker", p.brokers, "client_id", p.cfg.ClientIDOrDefault())
	p.poke()
	go func() {
		t := c.Publish(p.topics.Status, p.cfg.Topics.Status.QoS, p.cfg.Topics.Status.Retain, "online")
		if !t.WaitTimeout(p.cfg.AckTimeout) || t.Error() != nil {
			p.log.Warn("publish online status failed", "topic", p.topics.Status, "err", t.Error())
		}
		st := c.Subscribe(p.topics.Trigger, p.cfg.Topics.Trigger.QoS, p.handleMessage)
		if !st.WaitTimeout(p.cfg.AckTimeout) {
			p.log.Warn("subscribe to trigger topic timed out", "topic", p.topics.Trigger)
		} else if err := st.Error(); err != nil {
			p.log.Warn("subscribe to trigger topic failed", "topic", p.topics.Trigger, "err", err)
		}
		p.subscribeGolden(c)
		p.publishHealth()
	}()
}

func (p *Publisher) onLost(_ paho.Client, err error) {
	p.connected.Store(false)
	p.losses.Add(1)
	fresh := make(chan struct{})
	old := p.lost.Swap(&fresh)
	close(*old)
	p.setErr(fmt.Errorf("connection to MQTT broker %s lost: %w", p.brokers, err))
	p.log.Warn("MQTT connection lost; results queue in the outbox", "broker", p.brokers, "err", err, "backlog", p.ob.Stats().Entries)
	p.poke()
}

func (p *Publisher) onNotification(_ paho.Client, n paho.ConnectionNotification) {
	switch n := n.(type) {
	case paho.ConnectionNotificationBrokerFailed:
		p.setErr(explainConnectError(redact(n.Broker), n.Reason))
	case paho.ConnectionNotificationFailed:
		if p.lastError() == nil {
			p.setErr(explainConnectError(p.brokers, n.Reason))
		}
	}
}

// redact drops credentials from a broker URL before it goes into an error.
func redact(u *url.URL) string {
	if u == nil {
		return "<nil>"
	}
	if u.Scheme == "tcp" && u.Host == "embedded" {
		return "embedded broker"
	}
	c := *u
	c.User = nil
	return c.String()
}

func (p *Publisher) setErr(err error) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	p.lastErr = err
	if err != nil && err.Error() != p.lastLogged {
		// Log each distinct error once, not once per retry.
		p.lastLogged = err.Error()
		p.log.Warn("MQTT error", "err", err)
	}
	if err == nil {
		p.lastLogged = ""
	}
}

func (p *Publisher) lastError() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.lastErr
}

// WaitConnected blocks until the client is connected or ctx ends; then it
// returns the last connect error (wrong password, untrusted certificate,
// nothing listening), which names the broker.
func (p *Publisher) WaitConnected(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !p.connected.Load() {
		select {
		case <-ctx.Done():
			if err := p.lastError(); err != nil {
				return err
			}
			return fmt.Errorf("connect to MQTT broker %s: %w", p.brokers, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Publish stores r durably in the outbox (with its reject payload when the
// part is rejected) and returns; the sender delivers it. It fills Schema,
// Station, ID and DecidedAt when they are zero. An error means the result is
// not stored (disk full, outbox closed) and the caller must fail closed.
func (p *Publisher) Publish(ctx context.Context, r result.Result) error {
	if r.Station == "" {
		r.Station = p.cfg.Station
	}
	if r.DecidedAt.IsZero() {
		r.DecidedAt = time.Now()
	}
	if r.ID == "" {
		r.ID = result.NewID(r.DecidedAt)
	}
	switch r.Verdict {
	case result.VerdictPass, result.VerdictFail, result.VerdictError:
	default:
		return fmt.Errorf("publish result %s: verdict %q is not pass, fail or error", r.ID, r.Verdict)
	}
	// Features are published as given: the daemon fills them only while
	// mqtt.publish_features is on, which a reload can change.
	e, err := entry(&r)
	if err != nil {
		return fmt.Errorf("publish result %s: %w", r.ID, err)
	}
	if _, err := p.ob.Append(ctx, e); err != nil {
		err = fmt.Errorf("publish result %s: %w", r.ID, err)
		// The outbox could not store it (disk full, closed): send it
		// straight to the broker so a PLC connected now still hears of a
		// reject, and report the failure (the result is not durable).
		if derr := p.sendDirect(e); derr != nil {
			p.log.Error("result not delivered either", "id", r.ID, "err", derr)
		}
		return err
	}
	return nil
}

// entry encodes a result (and its reject) for the outbox and the wire,
// filling the schema version and ID when they are unset.
func entry(r *result.Result) (outbox.Entry, error) {
	if r.Schema == 0 {
		r.Schema = result.SchemaVersion
	}
	if r.ID == "" {
		r.ID = result.NewID(time.Now())
	}
	body, err := json.Marshal(wireResult(r))
	if err != nil {
		return outbox.Entry{}, fmt.Errorf("encode: %w", err)
	}
	e := outbox.Entry{ID: r.ID, Fail: r.Rejected(), Result: body}
	if r.Rejected() {
		if e.Reject, err = json.Marshal(RejectFor(r)); err != nil {
			return outbox.Entry{}, fmt.Errorf("encode reject: %w", err)
		}
	}
	return e, nil
}

// PublishDirect sends a result (and its reject) straight to the broker,
// bypassing the outbox, and waits up to the ack timeout for the PUBACKs.
// Publish falls back to it when the outbox cannot store a result (disk
// full): not durable, but a PLC connected now still hears of the reject.
func (p *Publisher) PublishDirect(r result.Result) error {
	e, err := entry(&r)
	if err != nil {
		return fmt.Errorf("publish result %s directly: %w", r.ID, err)
	}
	return p.sendDirect(e)
}

func (p *Publisher) sendDirect(e outbox.Entry) error {
	if !p.connected.Load() {
		return fmt.Errorf("publish result %s directly: not connected to %s", e.ID, p.brokers)
	}
	for _, t := range p.send(e) {
		if !t.WaitTimeout(p.cfg.AckTimeout) {
			return fmt.Errorf("publish result %s directly: no PUBACK from %s within %s", e.ID, p.brokers, p.cfg.AckTimeout)
		}
		if err := t.Error(); err != nil {
			return fmt.Errorf("publish result %s directly: %w", e.ID, err)
		}
	}
	return nil
}

// OnTrigger registers fn for trigger messages. Callbacks run one at a time
// on a dedicated goroutine, so a slow callback delays later triggers but
// never the MQTT client. Beyond 256 waiting triggers, new ones are handed
// to fn with Overflow=true (fn must answer them at once, with an error
// result for their part ID); beyond 1024 such overflowed triggers waiting,
// new ones are counted (Stats.TriggersDropped) and logged.
func (p *Publisher) OnTrigger(fn func(Trigger)) {
	p.trigMu.Lock()
	defer p.trigMu.Unlock()
	p.trigFns = append(p.trigFns, fn)
}

// SetHealth sets the callback that fills the daemon's part of the periodic
// retained health JSON (frames, fails, queue depth, camera state, config
// errors). The publisher adds backlog, drops and its own counters.
func (p *Publisher) SetHealth(fn func() Health) {
	p.healthMu.Lock()
	p.healthFn = fn
	p.healthMu.Unlock()
}

// Topics returns the resolved topic names.
func (p *Publisher) Topics() ResolvedTopics { return p.topics }

// Broker returns the embedded broker, or nil when an external one is used.
func (p *Publisher) Broker() *Broker { return p.broker }

// Stats returns the current counters.
func (p *Publisher) Stats() Stats {
	os := p.ob.Stats()
	s := Stats{
		Backlog:            os.Entries,
		BacklogBytes:       os.Bytes,
		Published:          p.published.Load(),
		Resent:             p.resent.Load(),
		DroppedPass:        os.DroppedPass,
		DroppedFail:        os.DroppedFail,
		Expired:            os.Expired,
		Drops:              os.Drops(),
		Connected:          p.connected.Load(),
		ConnectionLosses:   p.losses.Load(),
		TriggersReceived:   p.trigOK.Load(),
		TriggersIgnored:    p.trigBad.Load(),
		TriggersDropped:    p.trigDropped.Load(),
		TriggersOverflowed: p.trigOverflowed.Load(),
	}
	if err := p.lastError(); err != nil {
		s.LastError = err.Error()
	}
	if p.broker != nil {
		s.Broker = p.broker.Stats()
	}
	switch idle := time.Since(time.Unix(0, p.progress.Load())); {
	case !s.Connected:
		s.Stalled = true
		s.StalledReason = fmt.Sprintf("not connected to MQTT broker %s", p.brokers)
		if s.LastError != "" {
			s.StalledReason += ": " + s.LastError
		}
	case s.Backlog > 0 && idle > p.cfg.AckTimeout:
		s.Stalled = true
		s.StalledReason = fmt.Sprintf("%d results waiting and none acknowledged by %s for %s (mqtt.ack_timeout %s)",
			s.Backlog, p.brokers, idle.Round(time.Second), p.cfg.AckTimeout)
	}
	return s
}

func (p *Publisher) handleMessage(_ paho.Client, m paho.Message) {
	p.handleTrigger(m.Topic(), m.Payload(), m.Retained())
}

// handleTrigger parses a trigger and hands it to the dispatcher without
// ever blocking: it runs on paho's router or on a publishing client's
// goroutine in the embedded broker.
func (p *Publisher) handleTrigger(topic string, payload []byte, retained bool) {
	if topic != p.topics.Trigger {
		return
	}
	if retained {
		// A retained trigger would fire at every (re)connect.
		p.trigBad.Add(1)
		p.lim.Log(p.log, slog.LevelWarn, "ignored retained trigger (clear it: mosquitto_pub -r -n -t <topic>)", "topic", ratelog.Excerpt(topic))
		return
	}
	var id string
	err := fmt.Errorf("payload of %d bytes is larger than %d", len(payload), maxTriggerPayload)
	if len(payload) <= maxTriggerPayload {
		id, err = ParseTrigger(payload)
	}
	if err != nil {
		p.trigBad.Add(1)
		p.lim.Log(p.log, slog.LevelWarn, "ignored malformed trigger", "topic", ratelog.Excerpt(topic), "err", err,
			"payload", ratelog.ExcerptBytes(payload), "bytes", len(payload))
		return
	}
	t := Trigger{PartID: id, Topic: topic, ReceivedAt: time.Now()}
	select {
	case p.trigCh <- t:
		p.trigOK.Add(1)
		return
	default:
	}
	t.Overflow = true
	p.ovMu.Lock()
	kept := len(p.overflow) < maxOverflow
	if kept {
		p.overflow = append(p.overflow, t)
	}
	p.ovMu.Unlock()
	if !kept {
		p.trigDropped.Add(1)
		p.lim.Log(p.log, slog.LevelError, "trigger lost: more triggers waiting than the line can answer (1024 overflowed already)",
			"part_id", id, "lost_total", p.trigDropped.Load())
		return
	}
	p.trigOverflowed.Add(1)
	select {
	case p.ovWake <- struct{}{}:
	default:
	}
	p.lim.Log(p.log, slog.LevelWarn, "trigger overflow: triggers arrive faster than the line takes them; answered with an error result",
		"part_id", id, "overflowed_total", p.trigOverflowed.Load())
}

func (p *Publisher) takeOverflow() []Trigger {
	p.ovMu.Lock()
	defer p.ovMu.Unlock()
	ov := p.overflow
	p.overflow = nil
	return ov
}

func (p *Publisher) dispatchTriggers() {
	defer p.bg.Done()
	call := func(t Trigger) {
		p.trigMu.Lock()
		fns := append([]func(Trigger){}, p.trigFns...)
		p.trigMu.Unlock()
		for _, fn := range fns {
			fn(t)
		}
	}
	for {
		// Overflowed triggers first: the handlers answer them at once
		// (no capture), so the PLC hears about them early.
		for _, t := range p.takeOverflow() {
			if isClosed(p.stopBackground) {
				return
			}
			call(t)
		}
		select {
		case t := <-p.trigCh:
			call(t)
		case <-p.ovWake:
		case <-p.stopBackground:
			return
		}
	}
}

func (p *Publisher) statusLoop() {
	defer p.bg.Done()
	t := time.NewTicker(p.cfg.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.publishHealth()
		case <-p.stopBackground:
			return
		}
	}
}

// Health returns the health JSON the publisher would publish now.
func (p *Publisher) Health() Health {
	p.healthMu.Lock()
	fn := p.healthFn
	p.healthMu.Unlock()
	var h Health
	if fn != nil {
		h = fn()
	}
	s := p.Stats()
	h.Schema = result.SchemaVersion
	h.Station = p.cfg.Station
	h.Time = time.Now()
	if h.UptimeS == 0 {
		h.UptimeS = time.Since(p.started).Seconds()
	}
	h.BrokerBacklog = s.Backlog
	h.OutboxDrops = s.Drops
	h.Published = s.Published
	h.TriggersIgnored = s.TriggersIgnored
	h.TriggersOverflowed = s.TriggersOverflowed
	h.TriggersLost = s.TriggersDropped
	h.LastError = s.LastError
	return h
}

func (p *Publisher) publishHealth() {
	if !p.connected.Load() {
		return
	}
	body, err := json.Marshal(p.Health())
	if err != nil {
		p.log.Error("encode health", "err", err)
		return
	}
	// Not waited for: a health report lost in a reconnect is replaced by
	// the next one.
	p.client.Publish(p.topics.Health, p.cfg.Topics.Health.QoS, p.cfg.Topics.Health.Retain, body)
}

type flight struct {
	seq  uint64
	id   string
	toks []paho.Token
	lost chan struct{}
	sent time.Time
}

// sender publishes the outbox in order with up to MaxInflight entries
// awaiting PUBACK, acknowledges them in order, and on any doubt (connection
// lost, error, ack timeout) starts again after the last acknowledged entry.
func (p *Publisher) sender() {
	defer close(p.senderDone)
	var (
		inflight  []flight
		cursor    uint64 // last seq handed to paho
		lastAcked uint64 // every seq <= lastAcked is acknowledged
		maxSent   uint64
	)
	reset := func(why error) {
		if len(inflight) > 0 {
			p.log.Info("resending unacknowledged results", "count", len(inflight), "why", why)
		}
		inflight = inflight[:0]
		cursor = lastAcked
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	wait := func(d time.Duration, extra <-chan struct{}, extra2 <-chan struct{}) (hard bool) {
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(d)
		select {
		case <-p.hardStop:
			return true
		case <-p.wake:
		case <-p.ob.Notify():
		case <-extra:
		case <-extra2:
		case <-timer.C:
		}
		return false
	}
	for {
		lost := *p.lost.Load()
		if !p.client.IsConnectionOpen() {
			reset(errors.New("not connected"))
			if isClosed(p.closing) && p.ob.Stats().Entries == 0 {
				return
			}
			if wait(200*time.Millisecond, nil, nil) {
				return
			}
			continue
		}
		if n := p.cfg.MaxInflight - len(inflight); n > 0 {
			es, err := p.ob.Next(cursor, n)
			if err != nil {
				p.setErr(err)
				if wait(time.Second, nil, nil) {
					return
				}
				continue
			}
			for _, e := range es {
				inflight = append(inflight, flight{seq: e.Seq, id: e.ID, toks: p.send(e), lost: lost, sent: time.Now()})
				cursor = e.Seq
				if e.Seq <= maxSent {
					p.resent.Add(1)
				}
				maxSent = max(maxSent, e.Seq)
			}
		}
		if len(inflight) == 0 {
			// Nothing left to send: the link is not behind.
			p.progress.Store(time.Now().UnixNano())
			if isClosed(p.closing) {
				return
			}
			if wait(time.Second, p.closing, nil) {
				return
			}
			continue
		}
		h := inflight[0]
		var pending paho.Token
		var tokErr error
		for _, t := range h.toks {
			select {
			case <-t.Done():
				if tokErr == nil {
					tokErr = t.Error()
				}
			default:
				if pending == nil {
					pending = t
				}
			}
		}
		if pending == nil {
			if tokErr != nil {
				p.setErr(fmt.Errorf("publish to MQTT broker %s: %w", p.brokers, tokErr))
				reset(tokErr)
				if wait(100*time.Millisecond, nil, nil) {
					return
				}
				continue
			}
			p.ob.Ack(h.seq)
			lastAcked = h.seq
			p.published.Add(1)
			p.progress.Store(time.Now().UnixNano())
			if hook := p.ackHook.Load(); hook != nil {
				(*hook)(h.id)
			}
			inflight = inflight[1:]
			continue
		}
		remaining := time.Until(h.sent.Add(p.cfg.AckTimeout))
		if remaining <= 0 {
			err := fmt.Errorf("publish to MQTT broker %s: no PUBACK within %v (mqtt.ack_timeout)", p.brokers, p.cfg.AckTimeout)
			p.setErr(err)
			reset(err)
			continue
		}
		select {
		case <-h.lost:
			reset(errors.New("connection lost"))
			continue
		default:
		}
		if wait(remaining, pending.Done(), h.lost) {
			return
		}
	}
}

func (p *Publisher) send(e outbox.Entry) []paho.Token {
	toks := make([]paho.Token, 0, 2)
	// Reject first: the PLC acts on it within a cycle; the result can follow.
	if len(e.Reject) > 0 {
		toks = append(toks, p.client.Publish(p.topics.Reject, p.cfg.Topics.Reject.QoS, p.cfg.Topics.Reject.Retain, e.Reject))
	}
	return append(toks, p.client.Publish(p.topics.Result, p.cfg.Topics.Result.QoS, p.cfg.Topics.Result.Retain, e.Result))
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Close delivers what it can until ctx ends, leaves the rest in the outbox
// for the next start, publishes "offline", disconnects and closes the outbox
// and the embedded broker. It returns ctx's error when results were left.
func (p *Publisher) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		close(p.closing)
		p.poke()
		select {
		case <-p.senderDone:
		case <-ctx.Done():
		}
		close(p.hardStop)
		<-p.senderDone
		close(p.stopBackground)
		// A trigger handler that does not return must not hold up the
		// shutdown (SIGTERM): wait for it only until ctx ends.
		bgDone := make(chan struct{})
		go func() { p.bg.Wait(); close(bgDone) }()
		select {
		case <-bgDone:
		case <-ctx.Done():
			p.log.Warn("closing while a trigger handler is still running")
		}
		if p.client.IsConnectionOpen() {
			t := p.client.Publish(p.topics.Status, p.cfg.Topics.Status.QoS, p.cfg.Topics.Status.Retain, "offline")
			t.WaitTimeout(time.Second)
		}
		// paho's Disconnect waits for its network goroutines; bounded here
		// in case the connection is wedged.
		discDone := make(chan struct{})
		go func() { p.client.Disconnect(250); close(discDone) }()
		select {
		case <-discDone:
		case <-time.After(2 * time.Second):
			p.log.Warn("MQTT disconnect did not finish within 2 s; closing anyway", "broker", p.brokers)
		}
		var errs []error
		if err := p.ob.Close(); err != nil {
			errs = append(errs, err)
		}
		if p.broker != nil {
			if err := p.broker.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		// After the outbox closed, so acknowledgements still queued are counted.
		if left := p.ob.Stats().Entries; left > 0 {
			p.log.Warn("closed with results left in the outbox; they are sent at next start", "left", left)
			errs = append(errs, fmt.Errorf("mqtt close: %d results left in the outbox for the next start", left))
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}
