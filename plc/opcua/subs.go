package opcua

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// Why this package has its own subscription engine: gopcua v0.8.0's
// SubscriptionService keeps one value per monitored item per publishing
// cycle (a map keyed by client handle), so a subscriber misses results that
// land in the same cycle whatever queue size it asks for; it also panics on
// a publishing interval of 0 (time.NewTicker), reuses subscription IDs after
// a delete, and dereferences nil on unknown monitored item IDs. The engine
// below honours each monitored item's queue size (discardOldest and the
// overflow bit as OPC UA Part 4 defines them), bounds everything, and sends
// from per-subscription goroutines so that a slow client never holds up the
// request loop or Publish.

const (
	maxPublishRequestsPerSession = 32
	retransmitQueue              = 16
	maxNotificationsPerMessage   = 10000
	keepAliveMax                 = 10000
	sendTimeout                  = 10 * time.Second
	// overflowBits is the Overflow bit with InfoType DataValue (Part 4 7.39.1).
	overflowBits = 0x00000480
)

type pubReq struct {
	sc    *uasc.SecureChannel
	reqID uint32
	req   *ua.PublishRequest
	acks  []ua.StatusCode
}

type session struct {
	token     *ua.NodeID
	key       string
	user      string
	nonce     []byte
	activated bool
	sc        *uasc.SecureChannel
	created   time.Time
	lastUsed  time.Time
	timeout   time.Duration
	pubReqs   []*pubReq
	subs      map[uint32]*subscription
}

// entry is one queued notification; dropped entries stay in the
// subscription's FIFO and are skipped when sent.
type entry struct {
	it      *item
	dv      *ua.DataValue
	dropped bool
}

type item struct {
	id            uint32
	sub           *subscription
	key           string // space key, or "" for a node this engine does not update
	nodeID        *ua.NodeID
	attr          ua.AttributeID
	handle        uint32
	queueSize     int
	discardOldest bool
	mode          ua.MonitoringMode
	q             []*entry // this item's live entries, oldest first
}

type subscription struct {
	id         uint32
	sess       *session
	interval   time.Duration
	lifetime   uint32
	keepAlive  uint32
	maxNotif   int
	publishing bool
	items      map[uint32]*item
	fifo       []*entry
	seq        uint32
	lastSend   time.Time
	idleTicks  uint32 // intervals without sending anything
	lateTicks  uint32 // intervals with something to send but no publish request
	retrans    []*ua.NotificationMessage
	wake       chan struct{}
	done       chan struct{}
	closed     bool
}

// engine holds sessions, subscriptions and monitored items.
type engine struct {
	srv *Server

	mu       sync.Mutex
	sessions map[string]*session
	subs     map[uint32]*subscription
	byKey    map[string]map[*item]struct{}
	nextSub  uint32
	nextItem uint32
	wg       sync.WaitGroup
	stopped  bool
}

func newEngine(s *Server) *engine {
	return &engine{
		srv:      s,
		sessions: map[string]*session{},
		subs:     map[uint32]*subscription{},
		byKey:    map[string]map[*item]struct{}{},
	}
}

// notify queues new values of space variables for every monitored item on
// them, all under one lock so that one result's fields reach each
// subscription together and in order.
func (e *engine) notify(keys []string, values map[string]*ua.DataValue) {
	var wake []*subscription
	e.mu.Lock()
	for _, k := range keys {
		for it := range e.byKey[k] {
			if it.mode != ua.MonitoringModeReporting || it.attr != ua.AttributeIDValue {
				continue
			}
			if it.sub.enqueue(it, values[k]) {
				wake = append(wake, it.sub)
			}
		}
	}
	e.mu.Unlock()
	for _, s := range wake {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// enqueue adds a value to an item's queue; called with the engine lock.
func (s *subscription) enqueue(it *item, dv *ua.DataValue) bool {
	en := &entry{it: it, dv: dv}
	if len(it.q) >= it.queueSize {
		if it.discardOldest {
			old := it.q[0]
			old.dropped = true
			it.q = it.q[1:]
			if len(it.q) > 0 {
				it.q[0].dv = withOverflow(it.q[0].dv)
			} else {
				en.dv = withOverflow(en.dv)
			}
		} else {
			last := it.q[len(it.q)-1]
			last.dropped = true
			it.q = it.q[:len(it.q)-1]
			en.dv = withOverflow(en.dv)
		}
	}
	it.q = append(it.q, en)
	s.fifo = append(s.fifo, en)
	return true
}

func withOverflow(dv *ua.DataValue) *ua.DataValue {
	c := *dv
	c.Status |= overflowBits
	c.EncodingMask |= ua.DataValueStatusCode
	return &c
}

// pending counts live queued notifications; called with the engine lock.
func (s *subscription) pending() int {
	n := 0
	for _, en := range s.fifo {
		if !en.dropped {
			n++
		}
	}
	return n
}

// take removes up to max live notifications from the FIFO.
func (s *subscription) take(max int) (out []*ua.MonitoredItemNotification, more bool) {
	i := 0
	for ; i < len(s.fifo) && len(out) < max; i++ {
		en := s.fifo[i]
		if en.dropped {
			continue
		}
		it := en.it
		if len(it.q) > 0 && it.q[0] == en {
			it.q = it.q[1:]
		}
		out = append(out, &ua.MonitoredItemNotification{ClientHandle: it.handle, Value: en.dv})
	}
	s.fifo = s.fifo[i:]
	if len(s.fifo) == 0 {
		s.fifo = nil
	}
	for _, en := range s.fifo {
		if !en.dropped {
			more = true
			break
		}
	}
	return out, more
}

// popPubReq takes the session's oldest publish request.
func (s *session) popPubReq() *pubReq {
	if len(s.pubReqs) == 0 {
		return nil
	}
	p := s.pubReqs[0]
	s.pubReqs = s.pubReqs[1:]
	return p
}

// outgoing is a response to send outside the lock.
type outgoing struct {
	pr   *pubReq
	resp *ua.PublishResponse
}

// step decides what a subscription sends now; called with the engine lock.
func (e *engine) step(s *subscription, tick bool, now time.Time) (out []outgoing, expired bool) {
	if s.closed {
		return nil, true
	}
	if tick {
		s.idleTicks++
	}
	for {
		ready := s.publishing && s.pending() > 0 && (now.Sub(s.lastSend) >= s.interval || tick)
		if !ready {
			break
		}
		pr := s.sess.popPubReq()
		if pr == nil {
			if tick {
				s.lateTicks++
			}
			break
		}
		items, more := s.take(s.maxNotif)
		s.seq++
		if s.seq == 0 {
			s.seq = 1
		}
		dcn := &ua.DataChangeNotification{MonitoredItems: items, DiagnosticInfos: []*ua.DiagnosticInfo{}}
		eo := ua.NewExtensionObject(dcn)
		eo.UpdateMask()
		msg := &ua.NotificationMessage{SequenceNumber: s.seq, PublishTime: now, NotificationData: []*ua.ExtensionObject{eo}}
		s.retrans = append(s.retrans, msg)
		if len(s.retrans) > retransmitQueue {
			s.retrans = s.retrans[len(s.retrans)-retransmitQueue:]
		}
		out = append(out, outgoing{pr, s.publishResponse(pr, msg, more)})
		s.lastSend, s.idleTicks, s.lateTicks = now, 0, 0
		if !more {
			break
		}
	}
	if len(out) == 0 && tick && s.idleTicks >= s.keepAlive {
		if pr := s.sess.popPubReq(); pr != nil {
			next := s.seq + 1
			if next == 0 {
				next = 1
			}
			msg := &ua.NotificationMessage{SequenceNumber: next, PublishTime: now, NotificationData: []*ua.ExtensionObject{}}
			out = append(out, outgoing{pr, s.publishResponse(pr, msg, false)})
			s.lastSend, s.idleTicks, s.lateTicks = now, 0, 0
		} else {
			s.lateTicks++
		}
	}
	if s.lateTicks >= s.lifetime {
		e.deleteSub(s)
		return out, true
	}
	return out, false
}

func (s *subscription) publishResponse(pr *pubReq, msg *ua.NotificationMessage, more bool) *ua.PublishResponse {
	avail := make([]uint32, 0, len(s.retrans))
	for _, m := range s.retrans {
		avail = append(avail, m.SequenceNumber)
	}
	acks := pr.acks
	if acks == nil {
		acks = []ua.StatusCode{}
	}
	return &ua.PublishResponse{
		ResponseHeader:           header(pr.req.RequestHeader, ua.StatusOK),
		SubscriptionID:           s.id,
		AvailableSequenceNumbers: avail,
		MoreNotifications:        more,
		NotificationMessage:      msg,
		Results:                  acks,
		DiagnosticInfos:          []*ua.DiagnosticInfo{},
	}
}

// run is the subscription's goroutine.
func (e *engine) run(s *subscription) {
	defer e.wg.Done()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		tick := false
		select {
		case <-s.done:
			return
		case <-s.wake:
		case <-t.C:
			tick = true
		}
		e.mu.Lock()
		out, expired := e.step(s, tick, time.Now())
		e.mu.Unlock()
		for _, o := range out {
			ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
			if err := o.pr.sc.SendResponseWithContext(ctx, o.pr.reqID, o.resp); err != nil {
				e.srv.log.Debug("opcua: publish response not sent", "subscription", s.id, "err", err)
			}
			cancel()
		}
		if expired {
			return
		}
	}
}

// deleteSub removes a subscription and its items; called with the lock.
func (e *engine) deleteSub(s *subscription) {
	if s.closed {
		return
	}
	s.closed = true
	close(s.done)
	for _, it := range s.items {
		e.unindex(it)
	}
	delete(s.sess.subs, s.id)
	delete(e.subs, s.id)
}

func (e *engine) unindex(it *item) {
	if it.key == "" {
		return
	}
	if m := e.byKey[it.key]; m != nil {
		delete(m, it)
		if len(m) == 0 {
			delete(e.byKey, it.key)
		}
	}
}

// closeSession drops a session, its subscriptions and its queued publish
// requests; called with the lock.
func (e *engine) closeSession(ss *session) {
	for _, s := range ss.subs {
		e.deleteSub(s)
	}
	delete(e.sessions, ss.key)
}

// reviseInterval bounds a requested publishing interval.
func (e *engine) reviseInterval(ms float64) time.Duration {
	min := e.srv.cfg.Limits.MinPublishingInterval
	if math.IsNaN(ms) || ms <= 0 {
		return min
	}
	d := time.Duration(ms * float64(time.Millisecond))
	if ms > float64(time.Hour/time.Millisecond) {
		d = time.Hour
	}
	if d < min {
		d = min
	}
	return d
}

// stop ends every subscription goroutine.
func (e *engine) stop() {
	e.mu.Lock()
	e.stopped = true
	for _, ss := range e.sessions {
		e.closeSession(ss)
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// counts returns sessions, subscriptions and monitored items.
func (e *engine) counts() (sessions, subs, items int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.subs {
		items += len(s.items)
	}
	return len(e.sessions), len(e.subs), items
}
