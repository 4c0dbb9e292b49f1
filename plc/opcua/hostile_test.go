package opcua

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/segad-edge/segad-edge/result"
)

// hello builds a UACP HEL with the given buffer sizes.
func hello(recv, send, maxMsg, maxChunks uint32, url string) []byte {
	b := make([]byte, 8+20+4+len(url))
	copy(b, "HELF")
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[8:], 0)
	binary.LittleEndian.PutUint32(b[12:], recv)
	binary.LittleEndian.PutUint32(b[16:], send)
	binary.LittleEndian.PutUint32(b[20:], maxMsg)
	binary.LittleEndian.PutUint32(b[24:], maxChunks)
	binary.LittleEndian.PutUint32(b[28:], uint32(len(url)))
	copy(b[32:], url)
	return b
}

// rawAnswer writes b and returns the first 4 bytes answered ("ACKF",
// "ERRF") or "" when the server closed without answering.
func rawAnswer(t *testing.T, s *Server, parts ...[]byte) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range parts {
		if _, err := c.Write(p); err != nil {
			break
		}
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 8)
	var typ string
	for {
		if _, err := io.ReadFull(c, got); err != nil {
			return typ
		}
		typ = string(got[:4])
		n := int(binary.LittleEndian.Uint32(got[4:]))
		if typ == "ERRF" || n < 8 || n > 1<<20 {
			return typ
		}
		if _, err := io.CopyN(io.Discard, c, int64(n-8)); err != nil {
			return typ
		}
		if typ == "ACKF" && len(parts) == 1 {
			return typ
		}
	}
}

// stillServes proves the server answers a normal client and reads the
// last result.
func stillServes(t *testing.T, s *Server, want uint64) {
	t.Helper()
	c := dial(t, s)
	if v := readValues(t, c, nid(s, KeyResultCounter))[0].Value.Value(); v != want {
		t.Fatalf("ResultCounter %v, want %d", v, want)
	}
	c.Close(context.Background())
}

// TestHostileTransport: garbage, a HEL with absurd buffer sizes, an
// oversized chunk, a ReverseHello naming another host, a connection that
// never speaks, and more connections than allowed: each is answered with a
// UACP ERR or ACK per the protocol or closed, and the server keeps serving
// (a normal client reads the last result after each).
func TestHostileTransport(t *testing.T) {
	s := startServer(t, Config{Limits: Limits{HandshakeTimeout: 500 * time.Millisecond, MaxConnections: 4}}, nil)
	s.Publish(context.Background(), testResult(1))
	url := s.Endpoint()
	big := make([]byte, 8)
	copy(big, "MSGF")
	binary.LittleEndian.PutUint32(big[4:], 1<<30)
	rhe := []byte("RHEF\x00\x00\x00\x00")
	rhe = append(rhe, []byte("\x0b\x00\x00\x00urn:evil:cl\x14\x00\x00\x00opc.tcp://10.0.0.1:1")...)
	binary.LittleEndian.PutUint32(rhe[4:], uint32(len(rhe)))
	garbage := []byte(strings.Repeat("\xde\xad\xbe\xef GET / HTTP/1.1\r\n", 64))
	cases := []struct {
		name  string
		parts [][]byte
		want  string
	}{
		{"garbage bytes", [][]byte{garbage}, "ERRF"},
		{"HEL with absurd buffer sizes", [][]byte{hello(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, url)}, "ACKF"},
		{"HEL with zero buffer sizes", [][]byte{hello(0, 0, 0, 0, url)}, "ACKF"},
		{"HEL declaring 1 GiB", [][]byte{func() []byte {
			h := hello(8192, 8192, 0, 0, url)
			binary.LittleEndian.PutUint32(h[4:], 1<<30)
			return h
		}()}, "ERRF"},
		{"oversized chunk after HEL", [][]byte{hello(65535, 65535, 0, 0, url), big}, "ERRF"},
		{"endless intermediate chunks", [][]byte{hello(65535, 65535, 0, 0, url), func() []byte {
			var out []byte
			for i := 0; i < 64; i++ {
				c := make([]byte, 65535)
				copy(c, "MSGC")
				binary.LittleEndian.PutUint32(c[4:], 65535)
				out = append(out, c...)
			}
			return out
		}()}, "ERRF"},
		{"ReverseHello", [][]byte{rhe}, "ERRF"},
		{"unknown message type after HEL", [][]byte{hello(65535, 65535, 0, 0, url), []byte("XYZF\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")}, "ERRF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawAnswer(t, s, tc.parts...); got != tc.want {
				t.Fatalf("answered %q, want %q", got, tc.want)
			}
			stillServes(t, s, 1)
		})
	}
	t.Run("silent connection does not block others", func(t *testing.T) {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		stillServes(t, s, 1)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("silent connection not closed after the handshake timeout: %v", err)
		}
	})
	t.Run("connection limit", func(t *testing.T) {
		// A server of its own whose handshake timeout outlasts the test:
		// with the 500 ms one above, a loaded machine closed the silent
		// held connections before they were all counted.
		s := startServer(t, Config{Limits: Limits{HandshakeTimeout: time.Minute, MaxConnections: 4}}, nil)
		s.Publish(context.Background(), testResult(1))
		url := s.Endpoint()
		var held []net.Conn
		for i := 0; i < 4; i++ {
			c, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		for deadline := time.Now().Add(3 * time.Second); s.Stats().Connections < 4; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections counted, want 4", s.Stats().Connections)
			}
		}
		if got := rawAnswer(t, s, hello(65535, 65535, 0, 0, url)); got != "ERRF" {
			t.Fatalf("connection over the limit answered %q, want ERRF", got)
		}
		for _, c := range held {
			c.Close()
		}
		time.Sleep(100 * time.Millisecond)
		stillServes(t, s, 1)
		if s.Stats().ConnectionsRefused == 0 {
			t.Fatal("refusal not counted")
		}
	})
	if st := s.Stats(); st.Panics != 0 || st.BadInput == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestHostileRequests: well-formed requests that crash or hang gopcua
// v0.8.0's own handlers (publishing interval 0, unknown subscription and
// monitored item IDs, a Browse without subtypes, a Read over limits.max_nodes_per_request,
// requests without a session, writes, node management) get OPC UA status
// codes, and inspection results keep flowing to a subscriber.
func TestHostileRequests(t *testing.T) {
	s := startServer(t, Config{Limits: Limits{MaxNodesPerRequest: 100}}, nil)
	c := dial(t, s)
	ctx := context.Background()
	sendOn := func(cl *gopcua.Client, req ua.Request) (ua.Response, error) {
		var resp ua.Response
		err := cl.Send(ctx, req, func(r ua.Response) error { resp = r; return nil })
		return resp, err
	}
	send := func(req ua.Request) (ua.Response, error) { return sendOn(c, req) }
	status := func(resp ua.Response, err error) ua.StatusCode {
		if err != nil {
			if sc, ok := err.(ua.StatusCode); ok {
				return sc
			}
			t.Fatalf("send: %v", err)
		}
		if resp == nil {
			t.Fatal("no response")
		}
		return resp.Header().ServiceResult
	}
	// Publishing interval 0: gopcua's time.NewTicker(0) panics.
	subResp, err := send(&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 0, RequestedMaxKeepAliveCount: 0, RequestedLifetimeCount: 0, PublishingEnabled: true})
	if status(subResp, err) != ua.StatusOK {
		t.Fatalf("CreateSubscription(0 ms): %v", status(subResp, err))
	}
	cs := subResp.(*ua.CreateSubscriptionResponse)
	if cs.RevisedPublishingInterval != 10 {
		t.Fatalf("revised interval %v, want 10 (limits.min_publishing_interval)", cs.RevisedPublishingInterval)
	}
	many := make([]*ua.ReadValueID, 101)
	for i := range many {
		many[i] = &ua.ReadValueID{NodeID: nid(s, KeyResultCounter), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}
	}
	cases := []struct {
		name string
		req  ua.Request
		want ua.StatusCode
		item func(ua.Response) ua.StatusCode
	}{
		{"delete unknown monitored item", &ua.DeleteMonitoredItemsRequest{SubscriptionID: cs.SubscriptionID, MonitoredItemIDs: []uint32{424242}}, ua.StatusOK,
			func(r ua.Response) ua.StatusCode { return r.(*ua.DeleteMonitoredItemsResponse).Results[0] }},
		{"monitoring mode of unknown item", &ua.SetMonitoringModeRequest{SubscriptionID: cs.SubscriptionID, MonitoringMode: ua.MonitoringModeReporting, MonitoredItemIDs: []uint32{7}}, ua.StatusOK,
			func(r ua.Response) ua.StatusCode { return r.(*ua.SetMonitoringModeResponse).Results[0] }},
		{"monitored items on unknown subscription", &ua.CreateMonitoredItemsRequest{SubscriptionID: 999, ItemsToCreate: []*ua.MonitoredItemCreateRequest{
			gopcua.NewMonitoredItemCreateRequestWithDefaults(nid(s, KeyResultID), ua.AttributeIDValue, 1)}}, ua.StatusBadSubscriptionIDInvalid, nil},
		{"monitor an unknown node", &ua.CreateMonitoredItemsRequest{SubscriptionID: cs.SubscriptionID, ItemsToCreate: []*ua.MonitoredItemCreateRequest{
			gopcua.NewMonitoredItemCreateRequestWithDefaults(ua.NewStringNodeID(1, "nope"), ua.AttributeIDValue, 1)}}, ua.StatusOK,
			func(r ua.Response) ua.StatusCode { return r.(*ua.CreateMonitoredItemsResponse).Results[0].StatusCode }},
		{"browse without subtypes", &ua.BrowseRequest{View: view(), NodesToBrowse: []*ua.BrowseDescription{{
			NodeID: ua.NewNumericNodeID(0, id.Server), BrowseDirection: ua.BrowseDirectionForward,
			ReferenceTypeID: ua.NewNumericNodeID(0, id.References), IncludeSubtypes: false, ResultMask: 63}}}, ua.StatusOK, nil},
		{"browse an invalid direction", &ua.BrowseRequest{View: view(), NodesToBrowse: []*ua.BrowseDescription{{
			NodeID: nid(s, KeyVision), BrowseDirection: 7, ReferenceTypeID: ua.NewNumericNodeID(0, 0)}}}, ua.StatusOK,
			func(r ua.Response) ua.StatusCode { return r.(*ua.BrowseResponse).Results[0].StatusCode }},
		{"read 101 nodes (limit 100)", &ua.ReadRequest{NodesToRead: many}, ua.StatusBadTooManyOperations, nil},
		{"read nothing", &ua.ReadRequest{}, ua.StatusBadNothingToDo, nil},
		{"write a server node", &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{NodeID: ua.NewNumericNodeID(0, id.Server_ServerStatus_State), AttributeID: ua.AttributeIDValue,
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(1))}}}}, ua.StatusOK,
			func(r ua.Response) ua.StatusCode { return r.(*ua.WriteResponse).Results[0] }},
		{"add nodes", &ua.AddNodesRequest{}, ua.StatusBadUserAccessDenied, nil},
		{"delete nodes", &ua.DeleteNodesRequest{NodesToDelete: []*ua.DeleteNodesItem{{NodeID: nid(s, KeyVision)}}}, ua.StatusBadUserAccessDenied, nil},
		{"delete unknown subscription", &ua.DeleteSubscriptionsRequest{SubscriptionIDs: []uint32{31337}}, ua.StatusOK,
			func(r ua.Response) ua.StatusCode { return r.(*ua.DeleteSubscriptionsResponse).Results[0] }},
		{"republish unknown", &ua.RepublishRequest{SubscriptionID: cs.SubscriptionID, RetransmitSequenceNumber: 99}, ua.StatusBadMessageNotAvailable, nil},
		{"translate a bogus path", &ua.TranslateBrowsePathsToNodeIDsRequest{BrowsePaths: []*ua.BrowsePath{{StartingNode: ua.NewNumericNodeID(0, id.RootFolder),
			RelativePath: &ua.RelativePath{Elements: []*ua.RelativePathElement{{ReferenceTypeID: ua.NewTwoByteNodeID(0), TargetName: &ua.QualifiedName{Name: "Nope"}}}}}}}, ua.StatusOK,
			func(r ua.Response) ua.StatusCode {
				return r.(*ua.TranslateBrowsePathsToNodeIDsResponse).Results[0].StatusCode
			}},
	}
	wantItem := map[string]ua.StatusCode{
		"delete unknown monitored item":   ua.StatusBadMonitoredItemIDInvalid,
		"monitoring mode of unknown item": ua.StatusBadMonitoredItemIDInvalid,
		"monitor an unknown node":         ua.StatusBadNodeIDUnknown,
		"browse an invalid direction":     ua.StatusBadBrowseDirectionInvalid,
		"write a server node":             ua.StatusBadNotWritable,
		"delete unknown subscription":     ua.StatusBadSubscriptionIDInvalid,
		"translate a bogus path":          ua.StatusBadNoMatch,
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Requests on the subscription use its session; the others get a
			// fresh client each, because gopcua's client closes its channel
			// after some service faults.
			cl := c
			switch tc.req.(type) {
			case *ua.DeleteMonitoredItemsRequest, *ua.SetMonitoringModeRequest, *ua.CreateMonitoredItemsRequest, *ua.RepublishRequest:
			default:
				cl = dial(t, s)
			}
			resp, err := sendOn(cl, tc.req)
			if got := status(resp, err); got != tc.want {
				t.Fatalf("service result %v, want %v", got, tc.want)
			}
			if tc.item != nil {
				if got := tc.item(resp); got != wantItem[tc.name] {
					t.Fatalf("result %v, want %v", got, wantItem[tc.name])
				}
			}
		})
	}
	t.Run("no session", func(t *testing.T) {
		raw, err := gopcua.NewClient(s.Endpoint(), gopcua.SecurityMode(ua.MessageSecurityModeNone), gopcua.RequestTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := raw.Dial(ctx); err != nil {
			t.Fatal(err)
		}
		defer raw.Close(ctx)
		var resp ua.Response
		err = raw.Send(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: nid(s, KeyResultID), AttributeID: ua.AttributeIDValue}}},
			func(r ua.Response) error { resp = r; return nil })
		if err == nil && resp.Header().ServiceResult == ua.StatusOK {
			t.Fatal("read answered without a session")
		}
	})
	// Results still flow.
	col := subscribe(t, s, dial(t, s), 20*time.Millisecond, 100, KeyResultCounter)
	for i := 1; i <= 20; i++ {
		s.Publish(ctx, testResult(i))
	}
	col.wait(1, 21, 10*time.Second)
	if st := s.Stats(); st.Panics != 0 {
		t.Fatalf("%d handler panics", st.Panics)
	}
}

// view is the default view: gopcua's encoder writes nothing for a nil
// struct pointer, which would misalign the request.
func view() *ua.ViewDescription {
	return &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}
}

// TestPublishNeverBlocks: Publish returns in microseconds with a
// subscriber that stopped sending publish requests and a silent TCP
// connection, and returns ErrClosed after Close.
func TestPublishNeverBlocks(t *testing.T) {
	s := startServer(t, Config{}, nil)
	c := dial(t, s)
	sub, err := c.Subscribe(context.Background(), &gopcua.SubscriptionParameters{Interval: 10 * time.Millisecond}, make(chan *gopcua.PublishNotificationData)) // never read
	if err != nil {
		t.Fatal(err)
	}
	r := gopcua.NewMonitoredItemCreateRequestWithDefaults(nid(s, KeyResultID), ua.AttributeIDValue, 1)
	r.RequestedParameters.QueueSize = 1000
	if _, err := sub.Monitor(context.Background(), ua.TimestampsToReturnBoth, r); err != nil {
		t.Fatal(err)
	}
	silent, _ := net.Dial("tcp", s.Addr().String())
	defer silent.Close()
	var worst time.Duration
	for i := 1; i <= 5000; i++ {
		start := time.Now()
		if err := s.Publish(context.Background(), testResult(i)); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > worst {
			worst = d
		}
	}
	if worst > 50*time.Millisecond {
		t.Fatalf("slowest Publish %v", worst)
	}
	t.Logf("slowest of 5000 Publish calls: %v", worst)
	s.Close()
	if err := s.Publish(context.Background(), result.Result{}); err != ErrClosed {
		t.Fatalf("Publish after Close: %v", err)
	}
}
