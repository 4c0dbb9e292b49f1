package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	bolt "go.etcd.io/bbolt"

	"github.com/segad-edge/segad-edge/mqtt/internal/boltcheck"
	"github.com/segad-edge/segad-edge/mqtt/internal/ratelog"
)

// brokerBucket holds every record of the embedded broker's state file.
var brokerBucket = []byte("segad-broker")

// Key prefixes, as in mochi's own storage hooks.
const (
	keyClient   = storage.ClientKey + "_"
	keySub      = storage.SubscriptionKey + "_"
	keyRetained = storage.RetainedKey + "_"
	keyInflight = storage.InflightKey + "_"
)

// storeHook persists the embedded broker's sessions, subscriptions, queued
// (inflight) messages and retained messages in a bbolt file, so a PLC's
// persistent session, and every result queued for it, survives a daemon
// restart or a SIGKILL.
//
// It replaces mochi's bolt hook, which (besides one fsync per write)
// persists the acknowledgement state of every inbound QoS 1 publish (two
// fsyncs per trigger in a flood) and clean sessions that die anyway. Here:
//   - only what must survive is written: sessions with clean session off,
//     their subscriptions and queued PUBLISH packets, retained messages;
//   - a message queued for a session is on disk before the publish that
//     queued it returns (so before the outbox deletes the result);
//   - concurrent writes share one fsync (group commit), and deletions
//     (message acknowledged) ride along with the next write or within
//     100 ms: a deletion lost in a crash only causes a duplicate.
type storeHook struct {
	mochi.HookBase
	db   *bolt.DB
	path string
	log  *slog.Logger
	lim  *ratelog.Limiter

	ops  chan kvOp
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	have map[string]struct{} // keys on disk (or queued to be), so deletes of others cost nothing

	gate *sessionGate // tells inherited messages from dropped ones at a session takeover

	// Test hooks: called (when set) at the start of OnQosDropped, and for
	// every deletion of a record.
	testDropped atomic.Pointer[func(*mochi.Client, packets.Packet)]
	testDel     atomic.Pointer[func(key string)]
}

type kvOp struct {
	key  string
	val  []byte // nil deletes
	done chan error
}

// openBrokerStore checks and opens the state file at path. A damaged file
// is refused with instructions, or with quarantine moved aside (it holds
// broker state that the outbox cannot rebuild, so the loss is reported).
func openBrokerStore(path string, quarantine bool, log *slog.Logger, lim *ratelog.Limiter) (*storeHook, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("embedded broker state %s: %w", path, err)
	}
	if _, err := boltcheck.Check(path); err != nil {
		if !errors.Is(err, boltcheck.ErrCorrupt) {
			return nil, fmt.Errorf("embedded broker state %s: %w", path, err)
		}
		queued := 0
		_, _ = boltcheck.Salvage(path, brokerBucket, func(k, _ []byte) {
			if bytes.HasPrefix(k, []byte(keyInflight)) {
				queued++
			}
		})
		if !quarantine {
			return nil, fmt.Errorf("embedded broker state %s: %w. It still holds at least %d messages queued for offline clients. "+
				"To start anyway: stop segad, move the file aside (mv %s %s.corrupt) and start again: persistent client sessions "+
				"and their queued messages are lost, clients subscribe again on reconnect. "+
				"Or set mqtt.outbox.quarantine_corrupt: true to do this automatically", path, err, queued, path, path)
		}
		aside := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405Z"))
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("embedded broker state %s: %w; moving it aside to %s failed: %v", path, err, aside, rerr)
		}
		log.Error("embedded broker state file was damaged: moved it aside and started empty (mqtt.outbox.quarantine_corrupt); "+
			"persistent sessions and their queued messages are lost", "file", path, "moved_to", aside, "damage", err.Error(), "queued_lost", queued)
	}
	db, err := openStateDB(path)
	if err != nil {
		return nil, err
	}
	h := &storeHook{db: db, path: path, log: log, lim: lim, ops: make(chan kvOp, 4096),
		stop: make(chan struct{}), done: make(chan struct{}), have: map[string]struct{}{}}
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(brokerBucket).ForEach(func(k, _ []byte) error {
			h.have[string(k)] = struct{}{}
			return nil
		})
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("embedded broker state %s: read: %w", path, err)
	}
	go h.run()
	return h, nil
}

func openStateDB(path string) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("embedded broker state %s: %w: bbolt: %v", path, boltcheck.ErrCorrupt, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("embedded broker state %s: file is locked by another process (is another segad running with the same mqtt.embedded.store_path or outbox folder?)", path)
		}
		return nil, fmt.Errorf("embedded broker state %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(brokerBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("embedded broker state %s: create bucket: %w", path, err)
	}
	return db, nil
}

// ID names the hook for mochi.
func (h *storeHook) ID() string { return "segad-store" }

// Provides lists the events the hook persists and the loaders it offers.
func (h *storeHook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mochi.OnSessionEstablished, mochi.OnDisconnect, mochi.OnSubscribed, mochi.OnUnsubscribed,
		mochi.OnRetainMessage, mochi.OnWillSent, mochi.OnQosPublish, mochi.OnQosComplete, mochi.OnQosDropped,
		mochi.OnClientExpired, mochi.OnRetainedExpired,
		mochi.StoredClients, mochi.StoredInflightMessages, mochi.StoredRetainedMessages, mochi.StoredSubscriptions,
	}, []byte{b})
}

// Stop flushes pending writes and closes the file (mochi calls it at Close).
func (h *storeHook) Stop() error {
	select {
	case <-h.stop:
		return nil
	default:
	}
	close(h.stop)
	<-h.done
	if err := h.db.Close(); err != nil {
		return fmt.Errorf("embedded broker state %s: close: %w", h.path, err)
	}
	return nil
}

// persistent reports whether a client's session outlives its connection.
func persistent(cl *mochi.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// set stores key durably and returns once it is on disk.
func (h *storeHook) set(key string, v interface{ MarshalBinary() ([]byte, error) }) {
	data, err := v.MarshalBinary()
	if err != nil {
		h.lim.Log(h.log, slog.LevelError, "embedded broker state: encode failed", "key", ratelog.Excerpt(key), "err", err)
		return
	}
	h.mu.Lock()
	h.have[key] = struct{}{}
	h.mu.Unlock()
	done := make(chan error, 1)
	select {
	case h.ops <- kvOp{key: key, val: data, done: done}:
	case <-h.stop:
		return
	}
	select {
	case err = <-done:
	case <-h.done:
		return
	}
	if err != nil {
		h.lim.Log(h.log, slog.LevelError, "embedded broker state: write failed; this message is not safe against a crash",
			"file", h.path, "key", ratelog.Excerpt(key), "err", err)
	}
}

// del removes key without waiting for the disk.
func (h *storeHook) del(key string) {
	if f := h.testDel.Load(); f != nil {
		(*f)(key)
	}
	h.mu.Lock()
	_, ok := h.have[key]
	delete(h.have, key)
	h.mu.Unlock()
	if !ok {
		return
	}
	select {
	case h.ops <- kvOp{key: key}:
	case <-h.stop:
	}
}

func (h *storeHook) has(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.have[key]
	return ok
}

// run is the single committer (group commit, in arrival order).
func (h *storeHook) run() {
	defer close(h.done)
	var pending []kvOp
	var due <-chan time.Time
	for {
		flush := false
		select {
		case op := <-h.ops:
			pending = append(pending, op)
			if op.done != nil {
				flush = true
			}
		case <-due:
			flush = true
		case <-h.stop:
			for {
				select {
				case op := <-h.ops:
					pending = append(pending, op)
					continue
				default:
				}
				break
			}
			h.commit(pending)
			return
		}
	gather:
		for len(pending) < 4096 {
			select {
			case op := <-h.ops:
				pending = append(pending, op)
				if op.done != nil {
					flush = true
				}
			default:
				break gather
			}
		}
		if !flush && len(pending) < 4096 {
			if due == nil {
				due = time.After(100 * time.Millisecond)
			}
			continue
		}
		h.commit(pending)
		pending, due = pending[:0], nil
	}
}

func (h *storeHook) commit(ops []kvOp) {
	if len(ops) == 0 {
		return
	}
	err := h.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(brokerBucket)
		for _, op := range ops {
			var err error
			if op.val == nil {
				err = b.Delete([]byte(op.key))
			} else {
				err = b.Put([]byte(op.key), op.val)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, bolt.ErrDatabaseNotOpen) {
		h.lim.Log(h.log, slog.LevelError, "embedded broker state: commit failed", "file", h.path, "err", err, "writes", len(ops))
	}
	for _, op := range ops {
		if op.done != nil {
			op.done <- err
		}
	}
}

func clientRecord(cl *mochi.Client) *storage.Client {
	props := cl.Properties.Props.Copy(false)
	return &storage.Client{
		ID: cl.ID, T: storage.ClientKey, Remote: cl.Net.Remote, Listener: cl.Net.Listener,
		Username: cl.Properties.Username, Clean: cl.Properties.Clean, ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval: props.SessionExpiryInterval, SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod: props.AuthenticationMethod, AuthenticationData: props.AuthenticationData,
			RequestProblemInfo: props.RequestProblemInfo, RequestProblemInfoFlag: props.RequestProblemInfoFlag,
			RequestResponseInfo: props.RequestResponseInfo, ReceiveMaximum: props.ReceiveMaximum,
			TopicAliasMaximum: props.TopicAliasMaximum, User: props.User, MaximumPacketSize: props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}
}

func messageRecord(id, t string, cl *mochi.Client, pk packets.Packet, sent int64) *storage.Message {
	props := pk.Properties.Copy(false)
	return &storage.Message{
		ID: id, T: t, Client: cl.ID, Origin: pk.Origin, FixedHeader: pk.FixedHeader, TopicName: pk.TopicName,
		Payload: pk.Payload, PacketID: pk.PacketID, Sent: sent, Created: pk.Created,
		Properties: storage.MessageProperties{
			PayloadFormat: props.PayloadFormat, PayloadFormatFlag: props.PayloadFormatFlag,
			MessageExpiryInterval: props.MessageExpiryInterval, ContentType: props.ContentType,
			ResponseTopic: props.ResponseTopic, CorrelationData: props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier, TopicAlias: props.TopicAlias, User: props.User,
		},
	}
}

func inflightKey(clientID string, packetID uint16) string {
	return fmt.Sprintf("%s%s:%d", keyInflight, clientID, packetID)
}

// OnSessionEstablished stores a persistent session (clean ones die with
// their connection and are not written).
func (h *storeHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if persistent(cl) {
		h.set(keyClient+cl.ID, clientRecord(cl))
	} else {
		h.del(keyClient + cl.ID)
	}
}

// OnWillSent updates the stored session (its will is gone).
func (h *storeHook) OnWillSent(cl *mochi.Client, _ packets.Packet) {
	if h.has(keyClient + cl.ID) {
		h.set(keyClient+cl.ID, clientRecord(cl))
	}
}

// OnDisconnect forgets a session that ends with its connection.
func (h *storeHook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	if expire && cl.StopCause() != packets.ErrSessionTakenOver {
		h.del(keyClient + cl.ID)
	}
}

// OnClientExpired forgets an expired session.
func (h *storeHook) OnClientExpired(cl *mochi.Client) { h.del(keyClient + cl.ID) }

// OnSubscribed stores the subscriptions of persistent sessions.
func (h *storeHook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	if !persistent(cl) || cl.Net.Inline {
		return
	}
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
			continue // refused (ACL): nothing to restore
		}
		h.set(keySub+cl.ID+":"+f.Filter, &storage.Subscription{
			ID: keySub + cl.ID + ":" + f.Filter, T: storage.SubscriptionKey, Client: cl.ID, Qos: codes[i],
			Filter: f.Filter, Identifier: f.Identifier, NoLocal: f.NoLocal,
			RetainHandling: f.RetainHandling, RetainAsPublished: f.RetainAsPublished,
		})
	}
}

// OnUnsubscribed forgets subscriptions.
func (h *storeHook) OnUnsubscribed(cl *mochi.Client, pk packets.Packet) {
	for _, f := range pk.Filters {
		h.del(keySub + cl.ID + ":" + f.Filter)
	}
}

// OnRetainMessage stores or clears a retained message.
func (h *storeHook) OnRetainMessage(cl *mochi.Client, pk packets.Packet, r int64) {
	if strings.HasPrefix(pk.TopicName, "$SYS") {
		return
	}
	key := keyRetained + pk.TopicName
	if r == -1 {
		h.del(key)
		return
	}
	h.set(key, messageRecord(key, storage.RetainedKey, cl, pk, 0))
}

// OnRetainedExpired forgets an expired retained message.
func (h *storeHook) OnRetainedExpired(topic string) { h.del(keyRetained + topic) }

// OnQosPublish stores a message queued or sent to a persistent session,
// before the publish that queued it returns. Inbound acknowledgement
// states (PUBACK/PUBREC of a client's own publish) are not stored: a QoS 1
// flood would cost two fsyncs per message for nothing.
func (h *storeHook) OnQosPublish(cl *mochi.Client, pk packets.Packet, sent int64, _ int) {
	if pk.FixedHeader.Type != packets.Publish || !persistent(cl) || cl.Net.Inline {
		return
	}
	key := inflightKey(cl.ID, pk.PacketID)
	if h.has(key) && pk.FixedHeader.Dup {
		return // a resend of what is stored: same message
	}
	h.set(key, messageRecord(key, storage.InflightKey, cl, pk, sent))
}

// OnQosComplete forgets an acknowledged message.
func (h *storeHook) OnQosComplete(cl *mochi.Client, pk packets.Packet) {
	h.del(inflightKey(cl.ID, pk.PacketID))
}

// OnQosDropped forgets a dropped or expired message. At a session takeover
// mochi "drops" every message of the old client after cloning them into
// the new one: those records (same client ID, same packet ID) are the new
// session's and stay. Deleting them, and writing them again when mochi
// resends them, left them off disk until the resend, though the PLC had
// not acknowledged them.
func (h *storeHook) OnQosDropped(cl *mochi.Client, pk packets.Packet) {
	if f := h.testDropped.Load(); f != nil {
		(*f)(cl, pk)
	}
	if h.gate != nil && h.gate.inherited(cl, pk) {
		return
	}
	h.del(inflightKey(cl.ID, pk.PacketID))
}

// load decodes every record under prefix; undecodable records are
// skipped and reported (one damaged record must not stop the broker).
func load[T any, P interface {
	*T
	UnmarshalBinary([]byte) error
}](h *storeHook, prefix string) ([]T, error) {
	var out []T
	bad := 0
	err := h.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(brokerBucket).Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
			var rec T
			if err := P(&rec).UnmarshalBinary(v); err != nil {
				bad++
				continue
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("embedded broker state %s: read %s records: %w", h.path, prefix, err)
	}
	if bad > 0 {
		h.log.Error("embedded broker state: skipped undecodable records", "file", h.path, "kind", prefix, "count", bad)
	}
	return out, nil
}

// StoredClients returns the persisted sessions.
func (h *storeHook) StoredClients() ([]storage.Client, error) {
	return load[storage.Client](h, keyClient)
}

// StoredSubscriptions returns the persisted subscriptions.
func (h *storeHook) StoredSubscriptions() ([]storage.Subscription, error) {
	return load[storage.Subscription](h, keySub)
}

// StoredInflightMessages returns the messages queued for persistent sessions.
func (h *storeHook) StoredInflightMessages() ([]storage.Message, error) {
	return load[storage.Message](h, keyInflight)
}

// StoredRetainedMessages returns the retained messages.
func (h *storeHook) StoredRetainedMessages() ([]storage.Message, error) {
	return load[storage.Message](h, keyRetained)
}
