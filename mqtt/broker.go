package mqtt

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Broker is the embedded MQTT broker (mochi-mqtt) that lets a standalone
// cell run without any other server: the PLC connects straight to the daemon.
type Broker struct {
	srv  *mochi.Server
	tcp  *listeners.TCP
	auth *authHook
	tls  bool
	log  *slog.Logger
}

// StartBroker starts the embedded broker on cfg.Embedded.Listen with the
// configured users and ACLs. Besides those users it accepts one internal
// account, with a random password, for the daemon's own client.
func StartBroker(cfg Config, logger *slog.Logger) (*Broker, error) {
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("component", "mqtt-broker", "listen", cfg.Embedded.Listen)
	var pw [16]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, fmt.Errorf("embedded broker: generate internal password: %w", err)
	}
	hook := &authHook{
		users:     map[string]User{},
		anonymous: cfg.Embedded.AllowAnonymous,
		internal:  User{Username: "segad-internal-" + cfg.Station, Password: hex.EncodeToString(pw[:])},
		log:       log,
	}
	for _, u := range cfg.Embedded.Users {
		hook.users[u.Username] = u
	}
	srv := mochi.New(&mochi.Options{
		InlineClient: true,
		Logger:       slog.New(quietClosed{log.Handler()}).With("lib", "mochi"),
		// $SYS every 30 s is enough for dashboards and quiet on the wire.
		SysTopicResendInterval: 30,
	})
	if err := srv.AddHook(hook, nil); err != nil {
		return nil, fmt.Errorf("embedded broker: add auth hook: %w", err)
	}
	var tlsCfg *tls.Config
	if cfg.Embedded.TLS.Cert != "" {
		var err error
		tlsCfg, err = serverTLS(cfg.Embedded.TLS)
		if err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	}
	tcp := listeners.NewTCP(listeners.Config{Type: "tcp", ID: "segad", Address: cfg.Embedded.Listen, TLSConfig: tlsCfg})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("embedded broker: listen on %s (mqtt.embedded.listen): %w", cfg.Embedded.Listen, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("embedded broker on %s: %w", cfg.Embedded.Listen, err)
	}
	log.Info("embedded MQTT broker started", "address", tcp.Address(), "users", len(hook.users), "allow_anonymous", hook.anonymous)
	return &Broker{srv: srv, tcp: tcp, auth: hook, tls: tlsCfg != nil, log: log}, nil
}

// Addr returns the listening address (with the real port when listen used :0).
func (b *Broker) Addr() string { return b.tcp.Address() }

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

// internalCredentials returns the daemon's own account.
func (b *Broker) internalCredentials() (string, string) {
	return b.auth.internal.Username, b.auth.internal.Password
}

// Close stops the listener and disconnects every client.
func (b *Broker) Close() error {
	if err := b.srv.Close(); err != nil {
		return fmt.Errorf("embedded broker on %s: close: %w", b.Addr(), err)
	}
	return nil
}

// authHook implements the config's users and ACLs. mochi refuses every
// client until a hook says otherwise, which is the safe default we want.
type authHook struct {
	mochi.HookBase
	users     map[string]User
	anonymous bool
	internal  User
	log       *slog.Logger
}

func (h *authHook) ID() string { return "segad-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}

func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	name := string(pk.Connect.Username)
	pass := pk.Connect.Password
	if name == "" && len(pass) == 0 {
		if !h.anonymous {
			h.log.Warn("embedded broker refused anonymous client (set mqtt.embedded.allow_anonymous or give it a user)",
				"client_id", cl.ID, "remote", cl.Net.Remote)
		}
		return h.anonymous
	}
	if name == h.internal.Username {
		return subtle.ConstantTimeCompare(pass, []byte(h.internal.Password)) == 1
	}
	u, ok := h.users[name]
	if !ok || subtle.ConstantTimeCompare(pass, []byte(u.Password)) != 1 {
		h.log.Warn("embedded broker refused client: bad username or password", "client_id", cl.ID, "username", name, "remote", cl.Net.Remote)
		return false
	}
	return true
}

func (h *authHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	name := string(cl.Properties.Username)
	if name == h.internal.Username {
		return true
	}
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
	h.log.Warn("embedded broker denied topic by ACL", "username", name, "topic", topic, "write", write)
	return false
}

// validFilter reports whether f is a valid MQTT topic filter.
func validFilter(f string) bool {
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

// quietClosed drops mochi's warnings about reads on connections that were
// closed, which it logs for every client at shutdown: noise, not a fault.
type quietClosed struct{ slog.Handler }

func (q quietClosed) Handle(ctx context.Context, r slog.Record) error {
	closed := false
	r.Attrs(func(a slog.Attr) bool {
		if strings.Contains(a.Value.String(), "use of closed network connection") {
			closed = true
			return false
		}
		return true
	})
	if closed {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietClosed) WithAttrs(as []slog.Attr) slog.Handler {
	return quietClosed{q.Handler.WithAttrs(as)}
}
func (q quietClosed) WithGroup(g string) slog.Handler { return quietClosed{q.Handler.WithGroup(g)} }
