package mqtt

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/segad-edge/segad-edge/mqtt/internal/ratelog"
)

// Broker is the embedded MQTT broker (mochi-mqtt) that lets a standalone
// cell run without any other server: the PLC connects straight to the daemon.
//
// The daemon's own publisher does not connect to it over the network: it
// publishes and subscribes in-process (mochi's inline client). An earlier
// version connected paho through an in-memory pipe; under a QoS 1 trigger
// flood mochi (which writes PUBACKs synchronously from a client's read loop)
// and paho (whose reader waits for its writer to take the PUBACK) each
// blocked writing to the other, and the daemon's link wedged for good.
// In-process, a published result is in every subscribed session (and, for
// persistent sessions, on disk) when Publish returns, and a trigger flood
// only slows the flooding client, whose own goroutine runs the handler.
type Broker struct {
	srv   *mochi.Server
	ln    *boundedListener
	guard *guardHook
	store *storeHook // nil when state is kept in memory
	gate  *sessionGate
	tls   bool
	log   *slog.Logger
	lim   *ratelog.Limiter
	stop  chan struct{}

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

// BrokerStats are the embedded broker's counters of refusals and drops.
type BrokerStats struct {
	// AuthFailures counts logins refused for a wrong or unknown user or password.
	AuthFailures uint64
	// AuthBlocked counts logins refused unchecked because their address (or
	// user) failed too often (mqtt.embedded.max_auth_failures).
	AuthBlocked uint64
	// RefusedClientIDs counts connections refused because their client ID
	// is the daemon's own, or belongs to another user's session.
	RefusedClientIDs uint64
	// RefusedConnections counts connections closed at once because
	// mqtt.embedded.max_clients were open.
	RefusedConnections uint64
	// Dropped counts messages the broker could not queue for a client (its
	// queue was at mqtt.embedded.max_queued, or its writes lagged).
	Dropped uint64
	// ACLDroppedQueued counts queued messages removed at reconnect because
	// the session's user may no longer read their topic.
	ACLDroppedQueued uint64
}

// StartBroker starts the embedded broker on cfg.Embedded.Listen with the
// configured users and ACLs, restoring persistent sessions and the messages
// queued for them from the state file (EmbeddedConfig.StorePath).
func StartBroker(cfg Config, logger *slog.Logger) (*Broker, error) {
	if logger == nil {
		logger = slog.Default()
	}
	e := cfg.Embedded
	log := logger.With("component", "mqtt-broker", "listen", e.Listen)
	lim := ratelog.New()
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumInflight = uint16(e.QueuedLimit())
	// Room for a full inflight window plus QoS 0 traffic: a QoS 1 message
	// that does not fit in a client's write queue is dropped by mochi.
	caps.MaximumClientWritesPending = int32(e.QueuedLimit() + 1024)
	caps.MaximumPacketSize = uint32(e.PacketSizeLimit())
	caps.MaximumClients = int64(e.ClientsLimit())
	// Queued messages live as long as the outbox would keep them (mochi's
	// default is one day: a PLC off over a weekend lost its results).
	caps.MaximumMessageExpiryInterval = int64(cfg.Outbox.MaxAge / time.Second)
	srv := mochi.New(&mochi.Options{
		InlineClient: true,
		Capabilities: caps,
		Logger:       slog.New(&brokerLogHandler{inner: log.Handler(), lim: lim}).With("lib", "mochi"),
		// $SYS every 30 s is enough for dashboards and quiet on the wire.
		SysTopicResendInterval: 30,
	})
	b := &Broker{srv: srv, log: log, lim: lim, stop: make(chan struct{}), gate: newSessionGate(srv, log)}
	b.guard = newGuardHook(cfg, srv, log, lim)
	b.guard.gate = b.gate
	if err := srv.AddHook(b.guard, nil); err != nil {
		return nil, fmt.Errorf("embedded broker: add auth hook: %w", err)
	}
	if path := cfg.StorePath(); path != "" {
		st, err := openBrokerStore(path, cfg.Outbox.QuarantineCorrupt, log, lim)
		if err != nil {
			return nil, err
		}
		if err := srv.AddHook(st, nil); err != nil {
			_ = st.Stop()
			return nil, fmt.Errorf("embedded broker: add state hook: %w", err)
		}
		st.gate = b.gate
		b.store = st
		b.guard.store = st
	} else {
		log.Warn("embedded broker keeps sessions in memory only: messages queued for offline clients are lost at restart (set mqtt.outbox.path or mqtt.embedded.store_path)")
	}
	var tlsCfg *tls.Config
	if e.TLS.Cert != "" {
		var err error
		if tlsCfg, err = serverTLS(e.TLS); err != nil {
			b.closeStore()
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	}
	nl, err := net.Listen("tcp", e.Listen)
	if err != nil {
		b.closeStore()
		return nil, fmt.Errorf("embedded broker: listen on %s (mqtt.embedded.listen): %w", e.Listen, err)
	}
	b.ln = &boundedListener{inner: nl, tls: tlsCfg, max: e.ClientsLimit(), connectTimeout: cfg.ConnectTimeout,
		log: log, lim: lim, done: make(chan struct{})}
	if err := srv.AddListener(b.ln); err != nil {
		_ = nl.Close()
		b.closeStore()
		return nil, fmt.Errorf("embedded broker: listen on %s (mqtt.embedded.listen): %w", e.Listen, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("embedded broker on %s: %w", e.Listen, err)
	}
	b.tls = tlsCfg != nil
	go lim.Run(b.stop)
	log.Info("embedded MQTT broker started", "address", b.Addr(), "users", len(e.Users), "allow_anonymous", e.AllowAnonymous,
		"state", cfg.StorePath(), "max_clients", e.ClientsLimit(), "max_queued", e.QueuedLimit())
	if e.AllowAnonymous && !loopbackListen(b.Addr()) {
		log.Warn("EMBEDDED BROKER IS OPEN: anonymous clients get full access (read every result, publish triggers) on a "+
			"non-loopback address; give the PLC a user (mqtt.embedded.users) and set allow_anonymous: false",
			"address", b.Addr())
	}
	return b, nil
}

func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (b *Broker) closeStore() {
	if b.store != nil {
		_ = b.store.Stop()
	}
}

// Addr returns the listening address (with the real port when listen used :0).
func (b *Broker) Addr() string { return b.ln.Address() }

// URL returns the tcp:// (or ssl://) URL of the listener.
func (b *Broker) URL() string {
	scheme := "tcp"
	if b.tls {
		scheme = "ssl"
	}
	return scheme + "://" + b.Addr()
}

// Server exposes the mochi server for in-process publish/subscribe (InlineClient).
func (b *Broker) Server() *mochi.Server { return b.srv }

// Stats returns the broker's refusal and drop counters.
func (b *Broker) Stats() BrokerStats {
	g := b.guard
	return BrokerStats{
		AuthFailures:       g.authFailures.Load(),
		AuthBlocked:        g.authBlocked.Load(),
		RefusedClientIDs:   g.refusedIDs.Load(),
		RefusedConnections: b.ln.refused.Load(),
		Dropped:            uint64(atomic.LoadInt64(&b.srv.Info.InflightDropped) + atomic.LoadInt64(&b.srv.Info.MessagesDropped)),
		ACLDroppedQueued:   g.aclDropped.Load(),
	}
}

// publish sends a message in-process: when it returns, the message is in
// every matching session's queue and, for persistent sessions, on disk.
// It waits while a session is being taken over (see sessionGate).
func (b *Broker) publish(topic string, payload []byte, retain bool, qos byte) error {
	if b.closed.Load() {
		return errors.New("embedded broker closed")
	}
	b.gate.rw.RLock()
	err := b.srv.Publish(topic, payload, retain, qos)
	b.gate.rw.RUnlock()
	if err != nil {
		return fmt.Errorf("embedded broker: publish to %s: %w", topic, err)
	}
	return nil
}

// subscribe calls fn in-process for each message on filter. It does not
// replay retained messages: a retained trigger would fire at every start.
func (b *Broker) subscribe(filter string, id int, fn mochi.InlineSubFn) {
	b.srv.Topics.InlineSubscribe(mochi.InlineSubscription{
		Subscription: packets.Subscription{Filter: filter, Identifier: id},
		Handler:      fn,
	})
}

// Close stops the listener, disconnects every client, and closes the state
// file. A client that stopped reading cannot hold it up: every connection
// gets a short write deadline first, and the whole close is bounded.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		deadline := time.Now().Add(time.Second)
		for _, cl := range b.srv.Clients.GetAll() {
			if cl.Net.Conn != nil {
				_ = cl.Net.Conn.SetWriteDeadline(deadline)
			}
		}
		done := make(chan struct{})
		go func() {
			_ = b.srv.Close() // also stops the state hook (flushes, closes the file)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			b.closeErr = fmt.Errorf("embedded broker on %s: close did not finish within 5 s; continuing shutdown", b.Addr())
			b.log.Error("embedded broker close timed out", "err", b.closeErr)
		}
		close(b.stop)
	})
	return b.closeErr
}

// boundedListener is the broker's TCP (or TLS) listener with the limits
// mochi's own lacks: at most max open connections (more are closed at
// once), a deadline for the CONNECT packet (a client that connects and
// sends nothing no longer holds a goroutine and buffers forever; mochi
// replaces the deadline with the keep-alive once connected), and Accept
// errors (EMFILE) retried with a pause instead of ending the listener.
type boundedListener struct {
	inner          net.Listener
	tls            *tls.Config
	max            int
	connectTimeout time.Duration
	log            *slog.Logger
	lim            *ratelog.Limiter
	open           atomic.Int64
	refused        atomic.Uint64
	done           chan struct{}
	closeOnce      sync.Once
}

func (l *boundedListener) ID() string       { return "segad" }
func (l *boundedListener) Address() string  { return l.inner.Addr().String() }
func (l *boundedListener) Protocol() string { return "tcp" }

func (l *boundedListener) Init(*slog.Logger) error { return nil }

func (l *boundedListener) Serve(establish listeners.EstablishFn) {
	pause := 5 * time.Millisecond
	for {
		conn, err := l.inner.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.lim.Log(l.log, slog.LevelError, "embedded broker: accept failed; retrying", "err", err)
			time.Sleep(pause)
			pause = min(2*pause, time.Second)
			continue
		}
		pause = 5 * time.Millisecond
		if int(l.open.Add(1)) > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			l.lim.Log(l.log, slog.LevelWarn, "embedded broker refused a connection: mqtt.embedded.max_clients connections are open",
				"remote", conn.RemoteAddr().String(), "max_clients", l.max)
			_ = conn.Close()
			continue
		}
		if l.tls != nil {
			conn = tls.Server(conn, l.tls)
		}
		// Covers the TLS handshake and the CONNECT packet.
		_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
		go func(c net.Conn) {
			defer l.open.Add(-1)
			_ = establish(l.ID(), c) // refusals are logged by the guard hook
			_ = c.Close()
		}(conn)
	}
}

func (l *boundedListener) Close(closeClients listeners.CloseFn) {
	l.closeOnce.Do(func() {
		close(l.done)
		_ = l.inner.Close()
		closeClients(l.ID())
	})
}

// sessionGate makes a session takeover atomic for in-process publishes.
//
// When a client connects with the ID of an existing session, mochi
// (inheritClientSession) clones the old session's queued messages into the
// new client, clears the old client's queue (OnQosDropped for each message)
// and only then puts the new client in its client map. A publish in between
// found the old client by ID and queued the message there: stored on disk
// and reported done (the outbox deleted it), but the message was either
// dropped by that ClearInflights (and deleted from the state file) or left
// behind in a client object nobody uses any more, its record overwritten
// when the new client reused the packet ID. A PLC reconnecting to a
// restarted daemon (while the outbox drains what the crash left) hit it:
// TestEmbeddedBrokerNoLossUnderSIGKILL lost a result on a loaded machine.
//
// So a takeover holds the gate's write lock from OnSessionEstablish (just
// before inheritClientSession) until the client map holds the new client;
// in-process publishes hold the read lock (they only wait during a
// takeover). heirs tells the state hook which messages the old client
// "drops" only because the new one inherited them: their records stay.
type sessionGate struct {
	rw  sync.RWMutex
	srv *mochi.Server
	log *slog.Logger

	mu    sync.Mutex
	heirs map[string]*mochi.Client // client ID -> connection taking the session over
}

func newSessionGate(srv *mochi.Server, log *slog.Logger) *sessionGate {
	return &sessionGate{srv: srv, log: log, heirs: map[string]*mochi.Client{}}
}

// takeover closes the gate for cl's session establishment; it opens again
// once mochi's client map holds cl (which mochi does unconditionally right
// after inheriting the session). Nothing in that stretch publishes
// in-process, so waiting for it cannot deadlock.
func (g *sessionGate) takeover(cl *mochi.Client) {
	g.rw.Lock()
	g.mu.Lock()
	g.heirs[cl.ID] = cl
	g.mu.Unlock()
	go func() {
		start := time.Now()
		for pause := 20 * time.Microsecond; ; pause = min(2*pause, 2*time.Millisecond) {
			if c, ok := g.srv.Clients.Get(cl.ID); ok && c == cl {
				break
			}
			if time.Since(start) > 10*time.Second {
				g.log.Error("embedded broker: a session takeover did not finish within 10 s; publishing again", "client_id", ratelog.Excerpt(cl.ID))
				break
			}
			time.Sleep(pause)
		}
		g.mu.Lock()
		if g.heirs[cl.ID] == cl {
			delete(g.heirs, cl.ID)
		}
		g.mu.Unlock()
		g.rw.Unlock()
	}()
}

// inherited reports whether old's message pk now belongs to the connection
// taking old's session over (so "dropping" it from old is no drop at all).
func (g *sessionGate) inherited(old *mochi.Client, pk packets.Packet) bool {
	if !old.IsTakenOver() {
		return false
	}
	g.mu.Lock()
	heir := g.heirs[old.ID]
	g.mu.Unlock()
	if heir == nil || heir == old {
		return false
	}
	m, ok := heir.State.Inflight.Get(pk.PacketID)
	return ok && m.FixedHeader.Type == pk.FixedHeader.Type && m.Created == pk.Created && m.TopicName == pk.TopicName
}

// guardHook implements the config's users and ACLs, and guards sessions.
// mochi refuses every client until a hook says otherwise (the safe
// default). On top of authentication it:
//   - limits failed logins per address and per user (brute force);
//   - reserves the daemon's client ID (and mochi's inline client's);
//   - refuses taking over a session that belongs to another user, so one
//     PLC login cannot kick another client off or read its queued messages;
//   - re-checks queued messages against the ACL when a session resumes.
type guardHook struct {
	mochi.HookBase
	srv       *mochi.Server
	store     *storeHook
	gate      *sessionGate
	users     map[string]User
	anonymous bool
	reserved  map[string]bool
	log       *slog.Logger
	lim       *ratelog.Limiter
	fails     *failTracker

	authFailures, authBlocked, refusedIDs, aclDropped atomic.Uint64
}

func newGuardHook(cfg Config, srv *mochi.Server, log *slog.Logger, lim *ratelog.Limiter) *guardHook {
	h := &guardHook{
		srv: srv, users: map[string]User{}, anonymous: cfg.Embedded.AllowAnonymous,
		reserved: map[string]bool{cfg.ClientIDOrDefault(): true, mochi.InlineClientId: true},
		log:      log, lim: lim,
		fails: newFailTracker(cfg.Embedded.AuthFailuresLimit(), cfg.Embedded.AuthBlockTime()),
	}
	for _, u := range cfg.Embedded.Users {
		h.users[u.Username] = u
		h.fails.users[u.Username] = &failRec{}
	}
	return h
}

func (h *guardHook) ID() string { return "segad-guard" }

func (h *guardHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnect, mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnSessionEstablish,
		mochi.OnPublishDropped}, []byte{b})
}

// OnConnect refuses the reserved client IDs before anything else, with
// "identifier rejected" (a PLC configured with the daemon's ID learns why).
func (h *guardHook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	if !h.reserved[cl.ID] {
		return nil
	}
	h.refusedIDs.Add(1)
	h.lim.Log(h.log, slog.LevelWarn, "embedded broker refused a client using a reserved client ID (the daemon's own); give the client another ID",
		"client_id", ratelog.Excerpt(cl.ID), "remote", cl.Net.Remote)
	_ = h.srv.SendConnack(cl, packets.ErrClientIdentifierNotValid, false, nil)
	return packets.ErrClientIdentifierNotValid
}

func (h *guardHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	name := string(pk.Connect.Username)
	pass := pk.Connect.Password
	addr := remoteHost(cl.Net.Remote)
	if until, why := h.fails.blocked(addr, name); why != "" {
		h.authBlocked.Add(1)
		h.lim.Log(h.log, slog.LevelWarn, "embedded broker refused a login without checking it: too many failed logins (mqtt.embedded.max_auth_failures)",
			"blocked", why, "remote", cl.Net.Remote, "username", ratelog.Excerpt(name), "until", until.Format(time.RFC3339))
		return false
	}
	ok := false
	switch u, known := h.users[name]; {
	case name == "" && len(pass) == 0:
		ok = h.anonymous
		if !ok {
			h.lim.Log(h.log, slog.LevelWarn, "embedded broker refused anonymous client (set mqtt.embedded.allow_anonymous or give it a user)",
				"client_id", ratelog.Excerpt(cl.ID), "remote", cl.Net.Remote)
		}
	case known:
		ok = subtle.ConstantTimeCompare(pass, []byte(u.Password)) == 1
	}
	if !ok {
		h.authFailures.Add(1)
		if n, started := h.fails.fail(addr, name); started {
			h.lim.Log(h.log, slog.LevelWarn, "embedded broker blocks logins after repeated failures (password guessing?)",
				"remote", cl.Net.Remote, "username", ratelog.Excerpt(name), "failures", n, "blocked_for", h.fails.block.String())
		}
		if name != "" || len(pass) > 0 {
			h.lim.Log(h.log, slog.LevelWarn, "embedded broker refused client: bad username or password",
				"client_id", ratelog.Excerpt(cl.ID), "username", ratelog.Excerpt(name), "remote", cl.Net.Remote)
		}
		return false
	}
	h.fails.success(addr)
	// A client ID belongs to the user whose session it is: taking it over
	// would disconnect that client and hand over its subscriptions and
	// queued messages.
	if old, exists := h.srv.Clients.Get(cl.ID); exists && string(old.Properties.Username) != name {
		h.refusedIDs.Add(1)
		h.lim.Log(h.log, slog.LevelWarn, "embedded broker refused a client ID that belongs to another user's session",
			"client_id", ratelog.Excerpt(cl.ID), "username", ratelog.Excerpt(name), "owner", ratelog.Excerpt(string(old.Properties.Username)),
			"remote", cl.Net.Remote)
		return false
	}
	return true
}

// OnSessionEstablish runs before mochi resumes a session: it closes the
// session gate until the new connection holds the session (no in-process
// publish can land on the old one meanwhile), and queued messages on topics
// the user may not read (now) are dropped, not delivered.
func (h *guardHook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	old, ok := h.srv.Clients.Get(cl.ID)
	if h.gate != nil {
		h.gate.takeover(cl)
	}
	if !ok || old == cl {
		return
	}
	name := string(cl.Properties.Username)
	for _, m := range old.State.Inflight.GetAll(false) {
		if m.FixedHeader.Type != packets.Publish || h.allowed(name, m.TopicName, false) {
			continue
		}
		if old.State.Inflight.Delete(m.PacketID) {
			h.aclDropped.Add(1)
			if h.store != nil {
				h.store.del(inflightKey(cl.ID, m.PacketID))
			}
			h.lim.Log(h.log, slog.LevelWarn, "embedded broker dropped a queued message the session's user may not read (ACL)",
				"client_id", ratelog.Excerpt(cl.ID), "username", ratelog.Excerpt(name), "topic", ratelog.Excerpt(m.TopicName))
		}
	}
}

// OnPublishDropped reports a message mochi could not hand to a client.
func (h *guardHook) OnPublishDropped(cl *mochi.Client, pk packets.Packet) {
	h.lim.Log(h.log, slog.LevelWarn, "embedded broker dropped a message for a client that does not keep up",
		"client_id", ratelog.Excerpt(cl.ID), "topic", ratelog.Excerpt(pk.TopicName))
}

func (h *guardHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	name := string(cl.Properties.Username)
	if h.allowed(name, topic, write) {
		return true
	}
	h.lim.Log(h.log, slog.LevelWarn, "embedded broker denied topic by ACL", "username", ratelog.Excerpt(name),
		"client_id", ratelog.Excerpt(cl.ID), "topic", ratelog.Excerpt(topic), "write", write)
	return false
}

func (h *guardHook) allowed(name, topic string, write bool) bool {
	u, ok := h.users[name]
	if !ok {
		return h.anonymous && name == ""
	}
	if len(u.ACL) == 0 {
		return true
	}
	for _, r := range u.ACL {
		if write && r.Access == "read" || !write && r.Access == "write" {
			continue
		}
		// For subscriptions topic is the requested filter: allow it when the
		// rule's filter covers it.
		if filterCovers(r.Topic, topic) {
			return true
		}
	}
	return false
}

func remoteHost(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// failTracker counts failed logins per address and per configured user.
// An address that failed max times within block is refused unchecked for
// block. A user that failed max times is refused unchecked for block, but
// only from addresses that failed recently themselves: a PLC that never
// got its password wrong still logs in while someone guesses its user's
// password from elsewhere.
type failTracker struct {
	mu    sync.Mutex
	max   int
	block time.Duration
	now   func() time.Time
	addrs map[string]*failRec
	users map[string]*failRec // configured users only: bounded by the config
}

type failRec struct {
	fails        int
	first        time.Time
	blockedUntil time.Time
}

// maxTrackedAddrs bounds the address table; when full, entries whose window
// ended are dropped first, then the oldest.
const maxTrackedAddrs = 4096

func newFailTracker(max int, block time.Duration) *failTracker {
	return &failTracker{max: max, block: block, now: time.Now, addrs: map[string]*failRec{}, users: map[string]*failRec{}}
}

func (f *failTracker) blocked(addr, user string) (time.Time, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	a := f.addrs[addr]
	if a != nil && now.Before(a.blockedUntil) {
		return a.blockedUntil, "address"
	}
	if u := f.users[user]; u != nil && now.Before(u.blockedUntil) && a != nil && a.fails > 0 && now.Sub(a.first) < f.block {
		return u.blockedUntil, "username"
	}
	return time.Time{}, ""
}

// fail records a failure; it returns the address's count and whether a
// block started now.
func (f *failTracker) fail(addr, user string) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	a := f.addrs[addr]
	if a == nil {
		f.makeRoom(now)
		a = &failRec{first: now}
		f.addrs[addr] = a
	}
	started := f.count(a, now)
	if u := f.users[user]; u != nil {
		started = f.count(u, now) || started
	}
	return a.fails, started
}

func (f *failTracker) count(r *failRec, now time.Time) bool {
	if now.Sub(r.first) >= f.block {
		r.fails, r.first = 0, now
	}
	r.fails++
	if r.fails >= f.max && !now.Before(r.blockedUntil) {
		r.blockedUntil = now.Add(f.block)
		r.fails, r.first = 0, now
		return true
	}
	return false
}

func (f *failTracker) success(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.addrs[addr]; a != nil && !f.now().Before(a.blockedUntil) {
		delete(f.addrs, addr)
	}
}

func (f *failTracker) makeRoom(now time.Time) {
	if len(f.addrs) < maxTrackedAddrs {
		return
	}
	var oldest string
	var oldestT time.Time
	for k, r := range f.addrs {
		if now.Sub(r.first) >= f.block && !now.Before(r.blockedUntil) {
			delete(f.addrs, k)
			continue
		}
		if oldest == "" || r.first.Before(oldestT) {
			oldest, oldestT = k, r.first
		}
	}
	if len(f.addrs) >= maxTrackedAddrs {
		delete(f.addrs, oldest)
	}
}

// filterCovers reports whether every topic matched by sub (a topic or a
// filter) is matched by filter.
func filterCovers(filter, sub string) bool {
	f := strings.Split(filter, "/")
	s := strings.Split(sub, "/")
	for i, fl := range f {
		if fl == "#" {
			return true
		}
		if i >= len(s) {
			return false
		}
		switch {
		case fl == "+":
			if s[i] == "#" {
				return false
			}
		case fl != s[i]:
			return false
		}
	}
	return len(f) == len(s)
}
