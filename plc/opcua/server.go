// Package opcua is the OPC UA output of segad-edge: a read-only server
// whose address space follows the OPC UA Machine Vision companion
// specification (OPC 40100) as far as a data-access server can: the
// station's system state, the last result and counters as variables that
// clients read or subscribe to. It is an output peer beside MQTT (Name,
// Publish, Close) and reads the line's status from a func() plc.Status.
//
// The OPC UA binary protocol, secure channels (None, Basic256Sha256 Sign and
// SignAndEncrypt) and session creation come from github.com/gopcua/opcua;
// the services a client uses after that (read, browse, subscriptions,
// monitored items, identity checks, write refusal) are this package's own,
// because gopcua's do not check sessions or users and lose notifications.
// docs/opcua.md has the node tree and what is and is not supported.
package opcua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"

	"github.com/segad-edge/segad-edge/plc"
	"github.com/segad-edge/segad-edge/result"
)

// System states (OPC 40100 VisionStateMachine top-level states) and their
// SystemStateCode.
const (
	StatePreoperational = "Preoperational"
	StateOperational    = "Operational"
	StateError          = "Error"
	StateHalted         = "Halted"
)

var stateCodes = map[string]uint16{StatePreoperational: 0, StateOperational: 1, StateError: 2, StateHalted: 3}

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("opcua: server closed")

// Options are what the daemon hands the server besides its config section.
type Options struct {
	// StateDir is the daemon's state folder; the generated certificate is
	// kept in StateDir/opcua/. Required unless cert_file/key_file are set.
	StateDir string
	// Status returns the line's status; polled every
	// limits.status_interval. Nil: the line is taken as online and ready.
	// Use (plc.Line).Status for a plc.Line.
	Status func() plc.Status
	// Logger; nil: slog.Default().
	Logger *slog.Logger
	// Version is the software version shown in the server's BuildInfo.
	Version string
}

// Stats are the server's counters.
type Stats struct {
	Connections        int
	Sessions           int
	Subscriptions      int
	MonitoredItems     int
	Results            uint64
	ConnectionsRefused uint64 // over limits.max_connections
	BadInput           uint64 // connections closed for malformed transport messages
	AuthFailures       uint64 // sessions refused for their identity
	Refused            uint64 // requests refused by a limit or without a session
	WritesRefused      uint64
	Panics             uint64 // handler panics answered with BadInternalError
}

type stats struct {
	results, authFailures, refused, writesRefused, panics atomic.Uint64
}

// Server is the OPC UA server. Create it with New; it serves until Close.
type Server struct {
	cfg         Config
	opts        Options
	log         *slog.Logger
	ua          *server.Server
	sessSvc     *server.SessionService
	ns0         server.NameSpace
	space       *space
	engine      *engine
	front       *front
	key         rsaKey
	anonymous   bool
	endpointURL string // what clients connect to, with the path
	internalURL string // gopcua's own loopback listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
	stats  stats

	pubMu    sync.Mutex // serialises Publish so counters match values
	count    uint64
	passes   uint64
	fails    uint64
	errs     uint64
	closed   atomic.Bool
	closeErr error
	once     sync.Once

	stateMu sync.Mutex
	state   string
	last    plc.Status
}

// New validates cfg, prepares the certificate and starts listening. The
// server runs until Close.
func New(cfg Config, opts Options) (*Server, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, opts: opts, log: log, anonymous: cfg.Loopback(), state: StatePreoperational}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("opcua: listen on %s (plc.opcua.listen): %w", cfg.Listen, err)
	}
	fail := func(err error) (*Server, error) {
		ln.Close()
		return nil, err
	}
	lhost, lport, _ := net.SplitHostPort(ln.Addr().String())
	host := cfg.Hostname
	if host == "" {
		host, _, _ = net.SplitHostPort(cfg.Listen)
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			if h, err := os.Hostname(); err == nil && h != "" {
				host = h
			} else {
				host = lhost
			}
		}
	}
	s.endpointURL = "opc.tcp://" + net.JoinHostPort(host, lport) + cfg.EndpointPath

	appURI := "urn:segad-edge:" + host + ":opcua"
	der, key, err := loadOrCreateCert(cfg.CertFile, cfg.KeyFile, opts.StateDir, appURI, []string{host, "localhost", "127.0.0.1", lhost})
	if err != nil {
		return fail(fmt.Errorf("opcua: %w", err))
	}
	s.key = key

	internal, err := freeLoopbackPort()
	if err != nil {
		return fail(fmt.Errorf("opcua: internal listener: %w", err))
	}
	uopts := []server.Option{
		server.EndPoint("127.0.0.1", internal),
		server.PrivateKey(key),
		server.Certificate(der),
		server.ServerName("segad-edge"),
		server.ManufacturerName("segad-edge"),
		server.ProductName("segad-edge"),
		server.SoftwareVersion(opts.Version),
		server.SetLogger(stackLogger{log}),
	}
	uopts = append(uopts, server.EnableSecurity("None", ua.MessageSecurityModeNone))
	if len(cfg.Users) > 0 {
		// Enabled only for the username token policy it brings (passwords
		// RSA-OAEP encrypted with the server certificate); the channel
		// endpoints it adds are not advertised (see endpoints()).
		uopts = append(uopts, server.EnableSecurity("Basic256Sha256", ua.MessageSecurityModeSignAndEncrypt))
	}
	if s.anonymous {
		uopts = append(uopts, server.EnableAuthMode(ua.UserTokenTypeAnonymous))
	}
	if len(cfg.Users) > 0 {
		uopts = append(uopts, server.EnableAuthMode(ua.UserTokenTypeUserName))
	}
	s.ua = server.New(uopts...)
	s.internalURL = "opc.tcp://127.0.0.1:" + strconv.Itoa(internal)
	if s.ns0, err = s.ua.Namespace(0); err != nil {
		return fail(fmt.Errorf("opcua: %w", err))
	}
	g := &gopcuaNamespace{}
	idx := s.ua.AddNamespace(g)
	s.space = newSpace(uint16(idx))
	g.root = server.NewNode(s.space.root.id, server.Attributes{
		ua.AttributeIDNodeClass:   server.DataValueFromValue(uint32(ua.NodeClassObject)),
		ua.AttributeIDBrowseName:  server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: uint16(idx), Name: s.space.root.def.browse}),
		ua.AttributeIDDisplayName: server.DataValueFromValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: s.space.root.def.browse}),
		ua.AttributeIDDataType:    server.DataValueFromValue(ua.NewNumericExpandedNodeID(0, id.BaseObjectType)),
	}, nil, nil)
	objects := s.ns0.Node(ua.NewNumericNodeID(0, id.ObjectsFolder))
	if objects == nil {
		return fail(errors.New("opcua: gopcua's namespace 0 has no Objects folder"))
	}
	objects.AddRef(g.root, server.RefTypeIDOrganizes, true)

	s.engine = newEngine(s)
	if s.sessSvc, err = bindSessionService(s.ua); err != nil {
		return fail(fmt.Errorf("opcua: %w", err))
	}
	s.registerHandlers()

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if err := s.ua.Start(ctx); err != nil {
		cancel()
		return fail(fmt.Errorf("opcua: start internal listener %s: %w", s.internalURL, err))
	}
	s.front = &front{
		ln: ln, backend: net.JoinHostPort("127.0.0.1", strconv.Itoa(internal)),
		max: cfg.Limits.MaxConnections, shake: cfg.Limits.HandshakeTimeout,
		maxChunk: cfg.Limits.MaxMessageSize/uacpChunkMax + 1, log: log,
		conns: map[net.Conn]struct{}{}, clients: map[string]string{},
	}
	s.front.wg.Add(1)
	go s.front.serve()

	s.pollStatus()
	s.wg.Add(2)
	go s.statusLoop(ctx)
	go s.janitor(ctx)
	if !s.anonymous {
		log.Warn("opcua: listening beyond loopback without message encryption (gopcua v0.8.0 cannot encrypt secure channels): passwords are encrypted, results and status travel in clear text; keep the port on a trusted network", "listen", cfg.Listen)
	}
	log.Info("opcua: server listening", "endpoint", s.endpointURL, "security", cfg.SecurityModes,
		"anonymous", s.anonymous, "users", len(cfg.Users))
	return s, nil
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Name identifies this output in logs and health.
func (s *Server) Name() string { return "opcua" }

// Endpoint is the endpoint URL clients connect to.
func (s *Server) Endpoint() string { return s.endpointURL }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.front.ln.Addr() }

// Publish makes r the last result: every field changes under one lock and
// is queued for every monitored item on it, ResultCounter last. It never
// waits on the network (two in-memory locks held for microseconds); slow
// or absent clients cost nothing here.
func (s *Server) Publish(ctx context.Context, r result.Result) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.count++
	switch r.Verdict {
	case result.VerdictPass:
		s.passes++
	case result.VerdictFail:
		s.fails++
	default:
		s.errs++
	}
	score, has := math.NaN(), false
	if r.Score != nil {
		score, has = *r.Score, true
	}
	state := int32(0)
	switch r.Verdict {
	case result.VerdictPass:
		state = 1
	case result.VerdictFail:
		state = 2
	}
	at := r.DecidedAt
	if at.IsZero() {
		at = time.Now()
	}
	kv := map[string]any{
		KeyResultID: r.ID, KeyPartID: r.PartID, KeyResultState: state, KeyVerdict: string(r.Verdict),
		KeyResultCode: plc.ResultCode(r.Verdict), KeyReasonCode: r.ReasonCode, KeyReasonNumber: plc.ReasonNumber(r.ReasonCode),
		KeyReason: r.Reason, KeyScore: score, KeyHasScore: has, KeyThreshold: r.Threshold, KeyBundle: r.Bundle,
		KeyDecidedAt: at.UTC(), KeySeq: r.Seq, KeySource: r.Source, KeyStation: r.Station,
		KeyParts: s.count, KeyPasses: s.passes, KeyFails: s.fails, KeyErrors: s.errs,
		KeyResultCounter: s.count,
	}
	vals := s.space.set(at, kv)
	s.engine.notify(resultKeys, vals)
	s.stats.results.Add(1)
	return nil
}

// resultKeys is the order a subscriber receives one result's fields in:
// ResultCounter last, so that when it arrives the other fields of the
// same result have arrived before it.
var resultKeys = []string{
	KeyResultID, KeyPartID, KeyResultState, KeyVerdict, KeyResultCode, KeyReasonCode, KeyReasonNumber,
	KeyReason, KeyScore, KeyHasScore, KeyThreshold, KeyBundle, KeyDecidedAt, KeySeq, KeySource, KeyStation,
	KeyParts, KeyPasses, KeyFails, KeyErrors, KeyResultCounter,
}

var healthKeys = []string{KeyOnline, KeyReady, KeyBusy, KeyHealthError, KeyHealthBundle, KeySystemState, KeySystemStateCode}

func systemState(st plc.Status) string {
	switch {
	case !st.Online:
		return StateHalted
	case st.Error != "":
		return StateError
	case !st.Ready:
		return StatePreoperational
	default:
		return StateOperational
	}
}

// pollStatus reads the line's status and publishes what changed.
func (s *Server) pollStatus() {
	st := plc.Status{Online: true, Ready: true}
	if s.opts.Status != nil {
		func() {
			defer func() {
				if p := recover(); p != nil {
					st = plc.Status{Online: true, Error: fmt.Sprintf("status unavailable: %v", p)}
				}
			}()
			st = s.opts.Status()
		}()
	}
	s.setStatus(st, systemState(st))
}

func (s *Server) setStatus(st plc.Status, state string) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if st == s.last && state == s.state && s.space.value(KeySystemState).Value.Value() == state {
		return
	}
	s.last, s.state = st, state
	vals := s.space.set(time.Now(), map[string]any{
		KeyOnline: st.Online, KeyReady: st.Ready, KeyBusy: st.Busy, KeyHealthError: st.Error, KeyHealthBundle: st.Bundle,
		KeySystemState: state, KeySystemStateCode: stateCodes[state],
	})
	s.engine.notify(healthKeys, vals)
}

func (s *Server) statusLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Limits.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !s.closed.Load() {
				s.pollStatus()
			}
		}
	}
}

// janitor closes sessions that were never activated or timed out.
func (s *Server) janitor(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var drop []*ua.NodeID
			e := s.engine
			e.mu.Lock()
			for _, ss := range e.sessions {
				timeout := ss.timeout
				if !ss.activated && timeout > activationTimeout {
					timeout = activationTimeout
				}
				if now.Sub(ss.lastUsed) > timeout {
					s.log.Info("opcua: session timed out", "user", ss.user, "activated", ss.activated, "idle", now.Sub(ss.lastUsed).Round(time.Millisecond))
					e.closeSession(ss)
					drop = append(drop, ss.token)
				}
			}
			e.mu.Unlock()
			for _, tok := range drop {
				s.dropGopcuaSession(tok)
			}
		}
	}
}

const activationTimeout = 30 * time.Second

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	sess, subs, items := s.engine.counts()
	return Stats{
		Connections: int(s.front.active.Load()), Sessions: sess, Subscriptions: subs, MonitoredItems: items,
		Results: s.stats.results.Load(), ConnectionsRefused: s.front.refused.Load(), BadInput: s.front.badInput.Load(),
		AuthFailures: s.stats.authFailures.Load(), Refused: s.stats.refused.Load(),
		WritesRefused: s.stats.writesRefused.Load(), Panics: s.stats.panics.Load(),
	}
}

// Close sets SystemState to Halted, closes every connection and stops the
// server. Publish returns ErrClosed afterwards.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		s.setStatus(plc.Status{}, StateHalted)
		s.front.close()
		s.cancel()
		s.engine.stop()
		s.closeErr = s.ua.Close()
		s.wg.Wait()
	})
	return s.closeErr
}

// stackLogger sends gopcua's printf-style log lines to slog at debug
// level: they are per-request traces and client-caused channel errors.
type stackLogger struct{ l *slog.Logger }

func (g stackLogger) Debug(string, ...any) {}

// (Debug is dropped: gopcua logs every request at debug level.)
func (g stackLogger) Info(msg string, args ...any) {
	g.l.Debug("opcua stack: " + fmt.Sprintf(msg, args...))
}
func (g stackLogger) Warn(msg string, args ...any) {
	g.l.Debug("opcua stack: " + fmt.Sprintf(msg, args...))
}
func (g stackLogger) Error(msg string, args ...any) {
	g.l.Debug("opcua stack: " + fmt.Sprintf(msg, args...))
}
