package opcua

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
	"unsafe"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// Which services this package answers itself, and why: gopcua v0.8.0's
// handlers do not check that a request belongs to an activated session
// (Read and Browse answer anyone who opened a secure channel), do not check
// user identity tokens at all (any username/password is accepted), write
// to any node, loop forever on a Browse with IncludeSubtypes=false, and
// dereference nil on unknown subscription or monitored item IDs. So every
// service is registered here before gopcua's own (RegisterHandler keeps the
// first registration); only CreateSession and ActivateSession reuse
// gopcua's implementation (session creation, signatures, nonces), wrapped
// with the limit and the identity check, because their state lives in
// gopcua's unexported session broker.

type handler = server.Handler

func header(h *ua.RequestHeader, code ua.StatusCode) *ua.ResponseHeader {
	var handle uint32
	if h != nil {
		handle = h.RequestHandle
	}
	return &ua.ResponseHeader{
		Timestamp:          time.Now(),
		RequestHandle:      handle,
		ServiceResult:      code,
		ServiceDiagnostics: &ua.DiagnosticInfo{},
		StringTable:        []string{},
		AdditionalHeader:   ua.NewExtensionObject(nil),
	}
}

func fault(h *ua.RequestHeader, code ua.StatusCode) ua.Response {
	return &ua.ServiceFault{ResponseHeader: header(h, code)}
}

// bindSessionService returns gopcua's SessionService bound to srv. Its only
// field is unexported and gopcua builds it only inside Start, after which
// handlers can no longer be replaced; the field is checked by name and type
// so that a gopcua upgrade that changes it fails at start, not at runtime.
func bindSessionService(srv *server.Server) (*server.SessionService, error) {
	ss := new(server.SessionService)
	f := reflect.ValueOf(ss).Elem().FieldByName("srv")
	if !f.IsValid() || f.Type() != reflect.TypeOf(srv) {
		return nil, fmt.Errorf("gopcua server.SessionService has no field srv *server.Server (gopcua changed: plc/opcua needs updating)")
	}
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(reflect.ValueOf(srv))
	return ss, nil
}

// registerHandlers installs every service handler before gopcua's Start.
func (s *Server) registerHandlers() {
	reg := func(typeID uint16, h handler) { s.ua.RegisterHandler(typeID, s.guard(h)) }
	unsupported := func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		return fault(r.Header(), ua.StatusBadServiceUnsupported), nil
	}
	reg(id.GetEndpointsRequest_Encoding_DefaultBinary, s.getEndpoints)
	reg(id.FindServersRequest_Encoding_DefaultBinary, s.findServers)
	reg(id.FindServersOnNetworkRequest_Encoding_DefaultBinary, unsupported)
	reg(id.RegisterServerRequest_Encoding_DefaultBinary, unsupported)
	reg(id.RegisterServer2Request_Encoding_DefaultBinary, unsupported)

	reg(id.CreateSessionRequest_Encoding_DefaultBinary, s.createSession)
	reg(id.ActivateSessionRequest_Encoding_DefaultBinary, s.activateSession)
	reg(id.CloseSessionRequest_Encoding_DefaultBinary, s.closeSession)
	reg(id.CancelRequest_Encoding_DefaultBinary, s.withSession(func(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
		return &ua.CancelResponse{ResponseHeader: header(r.Header(), ua.StatusOK)}
	}))

	// Read-only address space: node management, writes and history
	// updates are refused; methods are not served by the stack.
	for _, t := range []uint16{
		id.AddNodesRequest_Encoding_DefaultBinary, id.AddReferencesRequest_Encoding_DefaultBinary,
		id.DeleteNodesRequest_Encoding_DefaultBinary, id.DeleteReferencesRequest_Encoding_DefaultBinary,
		id.HistoryUpdateRequest_Encoding_DefaultBinary,
	} {
		reg(t, s.withSession(func(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
			return fault(r.Header(), ua.StatusBadUserAccessDenied)
		}))
	}
	for _, t := range []uint16{
		id.HistoryReadRequest_Encoding_DefaultBinary, id.CallRequest_Encoding_DefaultBinary,
		id.QueryFirstRequest_Encoding_DefaultBinary, id.QueryNextRequest_Encoding_DefaultBinary,
		id.SetTriggeringRequest_Encoding_DefaultBinary, id.TransferSubscriptionsRequest_Encoding_DefaultBinary,
	} {
		reg(t, s.withSession(func(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
			return fault(r.Header(), ua.StatusBadServiceUnsupported)
		}))
	}
	reg(id.WriteRequest_Encoding_DefaultBinary, s.withSession(s.write))
	reg(id.ReadRequest_Encoding_DefaultBinary, s.withSession(s.read))
	reg(id.BrowseRequest_Encoding_DefaultBinary, s.withSession(s.browse))
	reg(id.BrowseNextRequest_Encoding_DefaultBinary, s.withSession(s.browseNext))
	reg(id.TranslateBrowsePathsToNodeIDsRequest_Encoding_DefaultBinary, s.withSession(s.translate))
	reg(id.RegisterNodesRequest_Encoding_DefaultBinary, s.withSession(s.registerNodes))
	reg(id.UnregisterNodesRequest_Encoding_DefaultBinary, s.withSession(func(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
		return &ua.UnregisterNodesResponse{ResponseHeader: header(r.Header(), ua.StatusOK)}
	}))

	reg(id.CreateSubscriptionRequest_Encoding_DefaultBinary, s.withSession(s.createSubscription))
	reg(id.ModifySubscriptionRequest_Encoding_DefaultBinary, s.withSession(s.modifySubscription))
	reg(id.SetPublishingModeRequest_Encoding_DefaultBinary, s.withSession(s.setPublishingMode))
	reg(id.PublishRequest_Encoding_DefaultBinary, s.withSession(s.publish))
	reg(id.RepublishRequest_Encoding_DefaultBinary, s.withSession(s.republish))
	reg(id.DeleteSubscriptionsRequest_Encoding_DefaultBinary, s.withSession(s.deleteSubscriptions))
	reg(id.CreateMonitoredItemsRequest_Encoding_DefaultBinary, s.withSession(s.createMonitoredItems))
	reg(id.ModifyMonitoredItemsRequest_Encoding_DefaultBinary, s.withSession(s.modifyMonitoredItems))
	reg(id.SetMonitoringModeRequest_Encoding_DefaultBinary, s.withSession(s.setMonitoringMode))
	reg(id.DeleteMonitoredItemsRequest_Encoding_DefaultBinary, s.withSession(s.deleteMonitoredItems))
}

// guard turns a panic in a handler into a ServiceFault: gopcua runs every
// handler on its one request goroutine, where a panic would end the process.
func (s *Server) guard(h handler) handler {
	return func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (resp ua.Response, err error) {
		defer func() {
			if p := recover(); p != nil {
				s.stats.panics.Add(1)
				s.log.Error("opcua: request handler panicked; answered BadInternalError", "request", fmt.Sprintf("%T", r), "panic", fmt.Sprint(p))
				resp, err = fault(safeHeader(r), ua.StatusBadInternalError), nil
			}
		}()
		if r == nil || r.Header() == nil {
			return fault(nil, ua.StatusBadRequestHeaderInvalid), nil
		}
		return h(sc, r, reqID)
	}
}

func safeHeader(r ua.Request) (h *ua.RequestHeader) {
	defer func() {
		if recover() != nil {
			h = nil
		}
	}()
	if r == nil {
		return nil
	}
	return r.Header()
}

// withSession answers only requests of an activated session on the secure
// channel that activated it.
func (s *Server) withSession(h func(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response) handler {
	return func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		hdr := r.Header()
		if hdr.AuthenticationToken == nil {
			return fault(hdr, ua.StatusBadSessionIDInvalid), nil
		}
		e := s.engine
		e.mu.Lock()
		ss := e.sessions[hdr.AuthenticationToken.String()]
		code := ua.StatusOK
		switch {
		case ss == nil:
			code = ua.StatusBadSessionIDInvalid
		case !ss.activated:
			code = ua.StatusBadSessionNotActivated
		case ss.sc != sc:
			code = ua.StatusBadSecureChannelIDInvalid
		default:
			ss.lastUsed = time.Now()
		}
		e.mu.Unlock()
		if code != ua.StatusOK {
			s.stats.refused.Add(1)
			s.log.Debug("opcua: request refused", "request", fmt.Sprintf("%T", r), "status", code.Error(), "client", s.remote(sc))
			return fault(hdr, code), nil
		}
		if pr, ok := r.(*ua.PublishRequest); ok {
			return s.publishWith(ss, sc, pr, reqID), nil
		}
		return h(ss, sc, r), nil
	}
}

// endpoints are gopcua's None endpoint descriptions (built for its
// internal loopback listener) with the URL clients connect to.
func (s *Server) endpoints() []*ua.EndpointDescription {
	var out []*ua.EndpointDescription
	for _, ep := range s.ua.Endpoints() {
		if ep.SecurityMode != ua.MessageSecurityModeNone {
			continue // gopcua v0.8.0 cannot open these channels
		}
		c := *ep
		c.EndpointURL = s.endpointURL
		if ep.Server != nil {
			app := *ep.Server
			app.DiscoveryURLs = []string{s.endpointURL}
			c.Server = &app
		}
		out = append(out, &c)
	}
	return out
}

func (s *Server) getEndpoints(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.GetEndpointsRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid), nil
	}
	return &ua.GetEndpointsResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Endpoints: s.endpoints()}, nil
}

func (s *Server) findServers(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.FindServersRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid), nil
	}
	var apps []*ua.ApplicationDescription
	if eps := s.endpoints(); len(eps) > 0 {
		app := *eps[0].Server
		app.DiscoveryURLs = []string{s.endpointURL}
		apps = append(apps, &app)
	}
	return &ua.FindServersResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Servers: apps}, nil
}

func (s *Server) createSession(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.CreateSessionRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid), nil
	}
	e := s.engine
	e.mu.Lock()
	n := len(e.sessions)
	e.mu.Unlock()
	if n >= s.cfg.Limits.MaxSessions {
		s.stats.refused.Add(1)
		s.log.Warn("opcua: session refused: limit reached (plc.opcua.limits.max_sessions)", "limit", s.cfg.Limits.MaxSessions, "client", s.remote(sc))
		return fault(req.RequestHeader, ua.StatusBadTooManySessions), nil
	}
	resp, err := s.sessSvc.CreateSession(sc, req, reqID)
	if err != nil {
		return nil, err
	}
	cr, ok := resp.(*ua.CreateSessionResponse)
	if !ok {
		return resp, nil
	}
	cr.ServerEndpoints = s.endpoints()
	// gopcua revises the timeout with its bounds in the wrong unit (it
	// answers 0 ms); revise it here: 1 s to 1 h, default 60 s.
	timeout := 60 * time.Second
	if req.RequestedSessionTimeout > 0 && !math.IsNaN(req.RequestedSessionTimeout) {
		timeout = time.Duration(min(max(req.RequestedSessionTimeout, 1000), 3600e3)) * time.Millisecond
	}
	cr.RevisedSessionTimeout = float64(timeout / time.Millisecond)
	now := time.Now()
	e.mu.Lock()
	e.sessions[cr.AuthenticationToken.String()] = &session{
		token: cr.AuthenticationToken, key: cr.AuthenticationToken.String(), nonce: cr.ServerNonce,
		sc: sc, created: now, lastUsed: now, timeout: timeout, subs: map[uint32]*subscription{},
	}
	e.mu.Unlock()
	return cr, nil
}

func (s *Server) activateSession(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.ActivateSessionRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid), nil
	}
	hdr := req.RequestHeader
	if hdr.AuthenticationToken == nil {
		return fault(hdr, ua.StatusBadSessionIDInvalid), nil
	}
	e := s.engine
	e.mu.Lock()
	ss := e.sessions[hdr.AuthenticationToken.String()]
	var nonce []byte
	if ss != nil {
		nonce = ss.nonce
	}
	e.mu.Unlock()
	if ss == nil {
		return fault(hdr, ua.StatusBadSessionIDInvalid), nil
	}
	user, code := s.checkIdentity(req.UserIdentityToken, nonce)
	if code != ua.StatusOK {
		s.stats.authFailures.Add(1)
		s.log.Warn("opcua: session activation refused", "client", s.remote(sc), "user", clip(user), "status", code.Error())
		return fault(hdr, code), nil
	}
	resp, err := s.sessSvc.ActivateSession(sc, req, reqID)
	if err != nil {
		return nil, err
	}
	ar, ok := resp.(*ua.ActivateSessionResponse)
	if !ok {
		return resp, nil
	}
	e.mu.Lock()
	ss.activated, ss.user, ss.sc, ss.nonce, ss.lastUsed = true, user, sc, ar.ServerNonce, time.Now()
	e.mu.Unlock()
	s.log.Info("opcua: session activated", "client", s.remote(sc), "user", user)
	return ar, nil
}

// checkIdentity checks an ActivateSession identity token against the
// configuration: anonymous only on loopback, otherwise a configured user
// whose password was encrypted (RSA-OAEP, Basic256Sha256 token policy)
// with the server certificate and ends with the last server nonce.
func (s *Server) checkIdentity(tok *ua.ExtensionObject, nonce []byte) (string, ua.StatusCode) {
	var v any
	if tok != nil {
		v = tok.Value
	}
	switch t := v.(type) {
	case nil, *ua.AnonymousIdentityToken:
		if !s.anonymous {
			return "(anonymous)", ua.StatusBadIdentityTokenRejected
		}
		return "(anonymous)", ua.StatusOK
	case *ua.UserNameIdentityToken:
		if len(s.cfg.Users) == 0 {
			return t.UserName, ua.StatusBadIdentityTokenRejected
		}
		if t.EncryptionAlgorithm != "http://www.w3.org/2001/04/xmlenc#rsa-oaep" {
			// Passwords are only taken encrypted: the user token policy
			// this server offers is Basic256Sha256.
			return t.UserName, ua.StatusBadIdentityTokenInvalid
		}
		plain, err := rsa.DecryptOAEP(sha1.New(), nil, s.key, t.Password, nil)
		if err != nil || len(plain) < 4 {
			return t.UserName, ua.StatusBadIdentityTokenInvalid
		}
		n := binary.LittleEndian.Uint32(plain)
		body := plain[4:]
		if int(n) != len(body) || len(body) < len(nonce) || subtle.ConstantTimeCompare(body[len(body)-len(nonce):], nonce) != 1 {
			return t.UserName, ua.StatusBadIdentityTokenInvalid
		}
		pw := body[:len(body)-len(nonce)]
		okUser := 0
		for _, u := range s.cfg.Users {
			if subtle.ConstantTimeCompare([]byte(u.Username), []byte(t.UserName)) == 1 &&
				subtle.ConstantTimeCompare([]byte(u.Password), pw) == 1 {
				okUser = 1
			}
		}
		if okUser != 1 {
			return t.UserName, ua.StatusBadUserAccessDenied
		}
		return t.UserName, ua.StatusOK
	default:
		return fmt.Sprintf("(%T)", v), ua.StatusBadIdentityTokenInvalid
	}
}

func (s *Server) closeSession(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	req, ok := r.(*ua.CloseSessionRequest)
	if !ok || req.RequestHeader.AuthenticationToken == nil {
		return fault(r.Header(), ua.StatusBadSessionIDInvalid), nil
	}
	e := s.engine
	e.mu.Lock()
	ss := e.sessions[req.RequestHeader.AuthenticationToken.String()]
	if ss != nil && ss.sc == sc {
		e.closeSession(ss)
	}
	e.mu.Unlock()
	if ss == nil || ss.sc != sc {
		return fault(req.RequestHeader, ua.StatusBadSessionIDInvalid), nil
	}
	s.dropGopcuaSession(ss.token)
	return &ua.CloseSessionResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK)}, nil
}

// dropGopcuaSession removes a session from gopcua's session broker.
func (s *Server) dropGopcuaSession(token *ua.NodeID) {
	_, _ = s.sessSvc.CloseSession(nil, &ua.CloseSessionRequest{RequestHeader: &ua.RequestHeader{AuthenticationToken: token}}, 0)
}

func (s *Server) tooMany(n int) bool { return n > s.cfg.Limits.MaxNodesPerRequest }

// checkOps is the operation-count check every list service starts with: an
// empty list is BadNothingToDo, one over limits.max_nodes_per_request is
// BadTooManyOperations; nil means go on.
func (s *Server) checkOps(h *ua.RequestHeader, n int) ua.Response {
	switch {
	case n == 0:
		return fault(h, ua.StatusBadNothingToDo)
	case s.tooMany(n):
		return fault(h, ua.StatusBadTooManyOperations)
	}
	return nil
}

// readAttr reads one attribute of any node the server has.
func (s *Server) readAttr(nid *ua.NodeID, attr ua.AttributeID) *ua.DataValue {
	if nid == nil {
		return badValue(ua.StatusBadNodeIDInvalid)
	}
	if n := s.space.lookup(nid); n != nil {
		return s.space.attribute(n, attr)
	}
	if nid.Namespace() == 0 {
		if dv := s.ns0.Attribute(nid, attr); dv != nil {
			return dv
		}
	}
	return badValue(ua.StatusBadNodeIDUnknown)
}

func (s *Server) nodeExists(nid *ua.NodeID) bool {
	if nid == nil {
		return false
	}
	if s.space.lookup(nid) != nil {
		return true
	}
	return nid.Namespace() == 0 && s.ns0.Node(nid) != nil
}

func (s *Server) read(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.ReadRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	if f := s.checkOps(req.RequestHeader, len(req.NodesToRead)); f != nil {
		return f
	}
	// One lock for the whole request: the fields of one Read all belong
	// to the same result.
	out := make([]*ua.DataValue, len(req.NodesToRead))
	s.space.mu.RLock()
	for i, n := range req.NodesToRead {
		switch {
		case n == nil || n.NodeID == nil:
			out[i] = badValue(ua.StatusBadNodeIDInvalid)
		case s.space.lookup(n.NodeID) != nil:
			out[i] = s.space.attributeLocked(s.space.lookup(n.NodeID), n.AttributeID)
		default:
			out[i] = s.readAttr(n.NodeID, n.AttributeID)
		}
	}
	s.space.mu.RUnlock()
	return &ua.ReadResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out, DiagnosticInfos: []*ua.DiagnosticInfo{}}
}

func (s *Server) write(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.WriteRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	if f := s.checkOps(req.RequestHeader, len(req.NodesToWrite)); f != nil {
		return f
	}
	s.stats.writesRefused.Add(uint64(len(req.NodesToWrite)))
	out := make([]ua.StatusCode, len(req.NodesToWrite))
	for i, n := range req.NodesToWrite {
		out[i] = ua.StatusBadNotWritable
		if n == nil || !s.nodeExists(n.NodeID) {
			out[i] = ua.StatusBadNodeIDUnknown
		}
	}
	return &ua.WriteResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out, DiagnosticInfos: []*ua.DiagnosticInfo{}}
}

func (s *Server) browse(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.BrowseRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	if f := s.checkOps(req.RequestHeader, len(req.NodesToBrowse)); f != nil {
		return f
	}
	out := make([]*ua.BrowseResult, len(req.NodesToBrowse))
	for i, bd := range req.NodesToBrowse {
		out[i] = s.browseOne(bd)
	}
	return &ua.BrowseResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out, DiagnosticInfos: []*ua.DiagnosticInfo{}}
}

func (s *Server) browseOne(bd *ua.BrowseDescription) *ua.BrowseResult {
	if bd == nil || bd.NodeID == nil {
		return &ua.BrowseResult{StatusCode: ua.StatusBadNodeIDInvalid}
	}
	if bd.BrowseDirection > ua.BrowseDirectionBoth {
		return &ua.BrowseResult{StatusCode: ua.StatusBadBrowseDirectionInvalid}
	}
	if n := s.space.lookup(bd.NodeID); n != nil {
		return s.space.browse(n, bd)
	}
	if bd.NodeID.Namespace() != 0 || s.ns0.Node(bd.NodeID) == nil {
		return &ua.BrowseResult{StatusCode: ua.StatusBadNodeIDUnknown}
	}
	// gopcua's namespace-0 Browse compares reference types by walking the
	// whole type tree for every reference (seconds per request on the
	// Server object, on the one request goroutine) and loops forever with
	// IncludeSubtypes=false: ask it for every reference and filter here.
	c := *bd
	c.ReferenceTypeID = ua.NewNumericNodeID(0, 0)
	c.IncludeSubtypes = true
	res := s.ns0.Browse(&c)
	if res == nil {
		return &ua.BrowseResult{StatusCode: ua.StatusBadInternalError}
	}
	kept := res.References[:0]
	for _, r := range res.References {
		if r.ReferenceTypeID != nil && r.ReferenceTypeID.Namespace() == 0 && refMatches(bd.ReferenceTypeID, r.ReferenceTypeID.IntID(), bd.IncludeSubtypes) {
			kept = append(kept, r)
		}
	}
	res.References = kept
	return res
}

func (s *Server) browseNext(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.BrowseNextRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	if s.tooMany(len(req.ContinuationPoints)) {
		return fault(req.RequestHeader, ua.StatusBadTooManyOperations)
	}
	// Browse never hands out continuation points.
	out := make([]*ua.BrowseResult, len(req.ContinuationPoints))
	for i := range out {
		out[i] = &ua.BrowseResult{StatusCode: ua.StatusBadContinuationPointInvalid}
	}
	return &ua.BrowseNextResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out, DiagnosticInfos: []*ua.DiagnosticInfo{}}
}

func (s *Server) translate(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.TranslateBrowsePathsToNodeIDsRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	if f := s.checkOps(req.RequestHeader, len(req.BrowsePaths)); f != nil {
		return f
	}
	out := make([]*ua.BrowsePathResult, len(req.BrowsePaths))
	for i, bp := range req.BrowsePaths {
		out[i] = s.translateOne(bp)
	}
	return &ua.TranslateBrowsePathsToNodeIDsResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out, DiagnosticInfos: []*ua.DiagnosticInfo{}}
}

// translateOne follows a browse path through Root, Objects and this
// server's tree (the paths a client needs to find the vision variables).
func (s *Server) translateOne(bp *ua.BrowsePath) *ua.BrowsePathResult {
	if bp == nil || bp.StartingNode == nil || bp.RelativePath == nil || len(bp.RelativePath.Elements) == 0 {
		return &ua.BrowsePathResult{StatusCode: ua.StatusBadNothingToDo}
	}
	if len(bp.RelativePath.Elements) > 16 {
		return &ua.BrowsePathResult{StatusCode: ua.StatusBadTooManyOperations}
	}
	const (
		atRoot = iota
		atObjects
		atMine
	)
	where := -1
	var cur *vnode
	start := bp.StartingNode
	switch {
	case start.Namespace() == 0 && start.IntID() == id.RootFolder && start.Type() != ua.NodeIDTypeString:
		where = atRoot
	case start.Namespace() == 0 && start.IntID() == id.ObjectsFolder && start.Type() != ua.NodeIDTypeString:
		where = atObjects
	default:
		if cur = s.space.lookup(start); cur != nil {
			where = atMine
		}
	}
	if where < 0 {
		return &ua.BrowsePathResult{StatusCode: ua.StatusBadNoMatch}
	}
	for _, el := range bp.RelativePath.Elements {
		if el == nil || el.TargetName == nil || el.IsInverse {
			return &ua.BrowsePathResult{StatusCode: ua.StatusBadNoMatch}
		}
		switch where {
		case atRoot:
			if el.TargetName.NamespaceIndex != 0 || el.TargetName.Name != "Objects" {
				return &ua.BrowsePathResult{StatusCode: ua.StatusBadNoMatch}
			}
			where = atObjects
		case atObjects:
			if el.TargetName.NamespaceIndex != s.space.idx || el.TargetName.Name != s.space.root.def.browse {
				return &ua.BrowsePathResult{StatusCode: ua.StatusBadNoMatch}
			}
			where, cur = atMine, s.space.root
		default:
			if cur = s.space.child(cur, el.TargetName); cur == nil {
				return &ua.BrowsePathResult{StatusCode: ua.StatusBadNoMatch}
			}
		}
	}
	var target *ua.NodeID
	switch where {
	case atObjects:
		target = ua.NewNumericNodeID(0, id.ObjectsFolder)
	case atMine:
		target = cur.id
	default:
		return &ua.BrowsePathResult{StatusCode: ua.StatusBadNoMatch}
	}
	return &ua.BrowsePathResult{StatusCode: ua.StatusGood, Targets: []*ua.BrowsePathTarget{{
		TargetID: ua.NewExpandedNodeID(target, "", 0), RemainingPathIndex: 0xFFFFFFFF,
	}}}
}

func (s *Server) registerNodes(ss *session, sc *uasc.SecureChannel, r ua.Request) ua.Response {
	req, ok := r.(*ua.RegisterNodesRequest)
	if !ok {
		return fault(r.Header(), ua.StatusBadRequestTypeInvalid)
	}
	if f := s.checkOps(req.RequestHeader, len(req.NodesToRegister)); f != nil {
		return f
	}
	return &ua.RegisterNodesResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), RegisteredNodeIDs: req.NodesToRegister}
}

func (s *Server) remote(sc *uasc.SecureChannel) (addr string) {
	if sc == nil {
		return ""
	}
	defer func() { _ = recover() }()
	if a := sc.RemoteAddr(); a != nil {
		return s.front.clientOf(a.String())
	}
	return ""
}

// clip cuts a peer-controlled string for the log.
func clip(s string) string {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
