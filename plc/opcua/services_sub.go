package opcua

import (
	"context"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

func (s *Server) createSubscription(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.CreateSubscriptionRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	e := s.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return fault(req.RequestHeader, ua.StatusBadShutdown)
	}
	if len(ss.subs) >= s.cfg.Limits.MaxSubscriptionsPerSession {
		s.stats.refused.Add(1)
		return fault(req.RequestHeader, ua.StatusBadTooManySubscriptions)
	}
	e.nextSub++
	if e.nextSub == 0 {
		e.nextSub = 1
	}
	sub := &subscription{
		id: e.nextSub, sess: ss, publishing: req.PublishingEnabled,
		items: map[uint32]*item{}, wake: make(chan struct{}, 1), done: make(chan struct{}),
		lastSend: time.Now(),
	}
	e.revise(sub, req.RequestedPublishingInterval, req.RequestedLifetimeCount, req.RequestedMaxKeepAliveCount, req.MaxNotificationsPerPublish)
	ss.subs[sub.id] = sub
	e.subs[sub.id] = sub
	e.wg.Add(1)
	go e.run(sub)
	return &ua.CreateSubscriptionResponse{
		ResponseHeader:            header(req.RequestHeader, ua.StatusOK),
		SubscriptionID:            sub.id,
		RevisedPublishingInterval: float64(sub.interval) / float64(time.Millisecond),
		RevisedLifetimeCount:      sub.lifetime,
		RevisedMaxKeepAliveCount:  sub.keepAlive,
	}
}

// revise bounds the subscription parameters (Part 4 5.13.2): lifetime at
// least three keep-alives.
func (e *engine) revise(sub *subscription, interval float64, lifetime, keepAlive, maxNotif uint32) {
	sub.interval = e.reviseInterval(interval)
	if keepAlive == 0 {
		keepAlive = 10
	}
	if keepAlive > keepAliveMax {
		keepAlive = keepAliveMax
	}
	if lifetime < 3*keepAlive {
		lifetime = 3 * keepAlive
	}
	sub.keepAlive, sub.lifetime = keepAlive, lifetime
	sub.maxNotif = maxNotificationsPerMessage
	if maxNotif > 0 && maxNotif < maxNotificationsPerMessage {
		sub.maxNotif = int(maxNotif)
	}
}

func (s *Server) modifySubscription(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.ModifySubscriptionRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	e := s.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	sub := ss.subs[req.SubscriptionID]
	if sub == nil {
		return fault(req.RequestHeader, ua.StatusBadSubscriptionIDInvalid)
	}
	e.revise(sub, req.RequestedPublishingInterval, req.RequestedLifetimeCount, req.RequestedMaxKeepAliveCount, req.MaxNotificationsPerPublish)
	return &ua.ModifySubscriptionResponse{
		ResponseHeader:            header(req.RequestHeader, ua.StatusOK),
		RevisedPublishingInterval: float64(sub.interval) / float64(time.Millisecond),
		RevisedLifetimeCount:      sub.lifetime,
		RevisedMaxKeepAliveCount:  sub.keepAlive,
	}
}

func (s *Server) setPublishingMode(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.SetPublishingModeRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	if f := s.checkOps(req.RequestHeader, len(req.SubscriptionIDs)); f != nil {
		return f
	}
	e := s.engine
	e.mu.Lock()
	out := make([]ua.StatusCode, len(req.SubscriptionIDs))
	for i, sid := range req.SubscriptionIDs {
		if sub := ss.subs[sid]; sub != nil {
			sub.publishing = req.PublishingEnabled
			out[i] = ua.StatusOK
		} else {
			out[i] = ua.StatusBadSubscriptionIDInvalid
		}
	}
	e.mu.Unlock()
	return &ua.SetPublishingModeResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out, DiagnosticInfos: []*ua.DiagnosticInfo{}}
}

// publish is never called: withSession routes PublishRequests to
// publishWith, which needs the request ID to answer later.
func (s *Server) publish(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	return fault(r.Header(), ua.StatusBadInternalError)
}

// publishWith queues a publish request for the session's subscriptions;
// the answer goes out when a subscription has notifications or a
// keep-alive is due (nil here means: answered later).
func (s *Server) publishWith(ss *session, sc *uasc.SecureChannel, req *ua.PublishRequest, reqID uint32) ua.Response {
	e := s.engine
	e.mu.Lock()
	if len(ss.subs) == 0 {
		e.mu.Unlock()
		return fault(req.RequestHeader, ua.StatusBadNoSubscription)
	}
	if len(req.SubscriptionAcknowledgements) > s.cfg.Limits.MaxNodesPerRequest {
		e.mu.Unlock()
		return fault(req.RequestHeader, ua.StatusBadTooManyOperations)
	}
	acks := make([]ua.StatusCode, len(req.SubscriptionAcknowledgements))
	for i, a := range req.SubscriptionAcknowledgements {
		acks[i] = ua.StatusBadSubscriptionIDInvalid
		if a == nil {
			continue
		}
		sub := ss.subs[a.SubscriptionID]
		if sub == nil {
			continue
		}
		acks[i] = ua.StatusBadSequenceNumberUnknown
		for j, m := range sub.retrans {
			if m.SequenceNumber == a.SequenceNumber {
				sub.retrans = append(sub.retrans[:j:j], sub.retrans[j+1:]...)
				acks[i] = ua.StatusOK
				break
			}
		}
	}
	var evicted *pubReq
	if len(ss.pubReqs) >= maxPublishRequestsPerSession {
		evicted = ss.popPubReq()
	}
	ss.pubReqs = append(ss.pubReqs, &pubReq{sc: sc, reqID: reqID, req: req, acks: acks})
	subs := make([]*subscription, 0, len(ss.subs))
	for _, sub := range ss.subs {
		subs = append(subs, sub)
	}
	e.mu.Unlock()
	if evicted != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
			defer cancel()
			_ = evicted.sc.SendResponseWithContext(ctx, evicted.reqID, fault(evicted.req.RequestHeader, ua.StatusBadTooManyPublishRequests))
		}()
	}
	for _, sub := range subs {
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func (s *Server) republish(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.RepublishRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	e := s.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	sub := ss.subs[req.SubscriptionID]
	if sub == nil {
		return fault(req.RequestHeader, ua.StatusBadSubscriptionIDInvalid)
	}
	for _, m := range sub.retrans {
		if m.SequenceNumber == req.RetransmitSequenceNumber {
			return &ua.RepublishResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), NotificationMessage: m}
		}
	}
	return fault(req.RequestHeader, ua.StatusBadMessageNotAvailable)
}

func (s *Server) deleteSubscriptions(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.DeleteSubscriptionsRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	if f := s.checkOps(req.RequestHeader, len(req.SubscriptionIDs)); f != nil {
		return f
	}
	e := s.engine
	e.mu.Lock()
	out := make([]ua.StatusCode, len(req.SubscriptionIDs))
	for i, sid := range req.SubscriptionIDs {
		if sub := ss.subs[sid]; sub != nil {
			e.deleteSub(sub)
			out[i] = ua.StatusOK
		} else {
			out[i] = ua.StatusBadSubscriptionIDInvalid
		}
	}
	e.mu.Unlock()
	return &ua.DeleteSubscriptionsResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out, DiagnosticInfos: []*ua.DiagnosticInfo{}}
}

// filterOK accepts no filter or a DataChangeFilter without a deadband;
// this server reports every change of the variables it updates.
func filterOK(f *ua.ExtensionObject) bool {
	if f == nil || f.Value == nil {
		return true
	}
	dcf, ok := f.Value.(*ua.DataChangeFilter)
	return ok && dcf.DeadbandType == uint32(ua.DeadbandTypeNone)
}

func (s *Server) createMonitoredItems(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.CreateMonitoredItemsRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	if f := s.checkOps(req.RequestHeader, len(req.ItemsToCreate)); f != nil {
		return f
	}
	e := s.engine
	e.mu.Lock()
	sub := ss.subs[req.SubscriptionID]
	if sub == nil {
		e.mu.Unlock()
		return fault(req.RequestHeader, ua.StatusBadSubscriptionIDInvalid)
	}
	out := make([]*ua.MonitoredItemCreateResult, len(req.ItemsToCreate))
	queued := false
	for i, c := range req.ItemsToCreate {
		res := &ua.MonitoredItemCreateResult{FilterResult: ua.NewExtensionObject(nil)}
		out[i] = res
		switch {
		case c == nil || c.ItemToMonitor == nil || c.RequestedParameters == nil:
			res.StatusCode = ua.StatusBadNodeIDInvalid
			continue
		case len(sub.items) >= s.cfg.Limits.MaxMonitoredItemsPerSubscription:
			res.StatusCode = ua.StatusBadTooManyMonitoredItems
			continue
		case !s.nodeExists(c.ItemToMonitor.NodeID):
			res.StatusCode = ua.StatusBadNodeIDUnknown
			continue
		case c.ItemToMonitor.AttributeID == ua.AttributeIDEventNotifier:
			// Events are not served (gopcua has no event support).
			res.StatusCode = ua.StatusBadMonitoredItemFilterUnsupported
			continue
		case !filterOK(c.RequestedParameters.Filter):
			res.StatusCode = ua.StatusBadMonitoredItemFilterUnsupported
			continue
		case c.MonitoringMode > ua.MonitoringModeReporting:
			res.StatusCode = ua.StatusBadMonitoringModeInvalid
			continue
		}
		// The initial value (readAttr takes only the space lock, never
		// the engine lock, so holding e.mu here is safe).
		dv := s.readAttr(c.ItemToMonitor.NodeID, c.ItemToMonitor.AttributeID)
		if dv.EncodingMask&ua.DataValueStatusCode != 0 && dv.Status == ua.StatusBadAttributeIDInvalid {
			res.StatusCode = ua.StatusBadAttributeIDInvalid
			continue
		}
		e.nextItem++
		if e.nextItem == 0 {
			e.nextItem = 1
		}
		it := &item{
			id: e.nextItem, sub: sub, nodeID: c.ItemToMonitor.NodeID, attr: c.ItemToMonitor.AttributeID,
			handle: c.RequestedParameters.ClientHandle, discardOldest: c.RequestedParameters.DiscardOldest,
			mode: c.MonitoringMode, queueSize: s.reviseQueue(c.RequestedParameters.QueueSize),
		}
		if n := s.space.lookup(it.nodeID); n != nil && n.def.class == ua.NodeClassVariable && it.attr == ua.AttributeIDValue {
			it.key = n.def.key
			if e.byKey[it.key] == nil {
				e.byKey[it.key] = map[*item]struct{}{}
			}
			e.byKey[it.key][it] = struct{}{}
		}
		sub.items[it.id] = it
		if it.mode == ua.MonitoringModeReporting {
			sub.enqueue(it, dv)
			queued = true
		}
		res.StatusCode = ua.StatusOK
		res.MonitoredItemID = it.id
		res.RevisedSamplingInterval = 0 // exception-based: every change is queued
		res.RevisedQueueSize = uint32(it.queueSize)
	}
	e.mu.Unlock()
	if queued {
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
	return &ua.CreateMonitoredItemsResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out, DiagnosticInfos: []*ua.DiagnosticInfo{}}
}

func (s *Server) reviseQueue(q uint32) int {
	switch {
	case q == 0:
		return 1
	case q > uint32(s.cfg.Limits.MaxQueueSize):
		return s.cfg.Limits.MaxQueueSize
	}
	return int(q)
}

func (s *Server) modifyMonitoredItems(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.ModifyMonitoredItemsRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	if f := s.checkOps(req.RequestHeader, len(req.ItemsToModify)); f != nil {
		return f
	}
	e := s.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	sub := ss.subs[req.SubscriptionID]
	if sub == nil {
		return fault(req.RequestHeader, ua.StatusBadSubscriptionIDInvalid)
	}
	out := make([]*ua.MonitoredItemModifyResult, len(req.ItemsToModify))
	for i, m := range req.ItemsToModify {
		res := &ua.MonitoredItemModifyResult{FilterResult: ua.NewExtensionObject(nil)}
		out[i] = res
		if m == nil || m.RequestedParameters == nil {
			res.StatusCode = ua.StatusBadMonitoredItemIDInvalid
			continue
		}
		it := sub.items[m.MonitoredItemID]
		switch {
		case it == nil:
			res.StatusCode = ua.StatusBadMonitoredItemIDInvalid
			continue
		case !filterOK(m.RequestedParameters.Filter):
			res.StatusCode = ua.StatusBadMonitoredItemFilterUnsupported
			continue
		}
		it.handle = m.RequestedParameters.ClientHandle
		it.discardOldest = m.RequestedParameters.DiscardOldest
		it.queueSize = s.reviseQueue(m.RequestedParameters.QueueSize)
		for len(it.q) > it.queueSize {
			it.q[0].dropped = true
			it.q = it.q[1:]
		}
		res.StatusCode = ua.StatusOK
		res.RevisedQueueSize = uint32(it.queueSize)
	}
	return &ua.ModifyMonitoredItemsResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out, DiagnosticInfos: []*ua.DiagnosticInfo{}}
}

func (s *Server) setMonitoringMode(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.SetMonitoringModeRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	switch {
	case len(req.MonitoredItemIDs) == 0:
		return fault(req.RequestHeader, ua.StatusBadNothingToDo)
	case s.tooMany(len(req.MonitoredItemIDs)):
		return fault(req.RequestHeader, ua.StatusBadTooManyOperations)
	case req.MonitoringMode > ua.MonitoringModeReporting:
		return fault(req.RequestHeader, ua.StatusBadMonitoringModeInvalid)
	}
	e := s.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	sub := ss.subs[req.SubscriptionID]
	if sub == nil {
		return fault(req.RequestHeader, ua.StatusBadSubscriptionIDInvalid)
	}
	out := make([]ua.StatusCode, len(req.MonitoredItemIDs))
	for i, mid := range req.MonitoredItemIDs {
		if it := sub.items[mid]; it != nil {
			it.mode = req.MonitoringMode
			out[i] = ua.StatusOK
		} else {
			out[i] = ua.StatusBadMonitoredItemIDInvalid
		}
	}
	return &ua.SetMonitoringModeResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out, DiagnosticInfos: []*ua.DiagnosticInfo{}}
}

func (s *Server) deleteMonitoredItems(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.DeleteMonitoredItemsRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	if f := s.checkOps(req.RequestHeader, len(req.MonitoredItemIDs)); f != nil {
		return f
	}
	e := s.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	sub := ss.subs[req.SubscriptionID]
	if sub == nil {
		return fault(req.RequestHeader, ua.StatusBadSubscriptionIDInvalid)
	}
	out := make([]ua.StatusCode, len(req.MonitoredItemIDs))
	for i, mid := range req.MonitoredItemIDs {
		it := sub.items[mid]
		if it == nil {
			out[i] = ua.StatusBadMonitoredItemIDInvalid
			continue
		}
		for _, en := range it.q {
			en.dropped = true
		}
		it.q = nil
		e.unindex(it)
		delete(sub.items, mid)
		out[i] = ua.StatusOK
	}
	return &ua.DeleteMonitoredItemsResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out, DiagnosticInfos: []*ua.DiagnosticInfo{}}
}
