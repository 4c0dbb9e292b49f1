package opcua

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/segad-edge/segad-edge/plc"
	"github.com/segad-edge/segad-edge/result"
)

// startServer starts a server on a free loopback port with cfg's
// non-zero fields.
func startServer(t testing.TB, cfg Config, status func() plc.Status) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	level := slog.LevelWarn
	if os.Getenv("SEGAD_OPCUA_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	s, err := New(cfg, Options{StateDir: t.TempDir(), Status: status, Logger: log, Version: "test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t testing.TB, s *Server, opts ...gopcua.Option) *gopcua.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]gopcua.Option{gopcua.SecurityMode(ua.MessageSecurityModeNone), gopcua.SecurityPolicy(ua.SecurityPolicyURINone), gopcua.AuthAnonymous(), gopcua.RequestTimeout(5 * time.Second), gopcua.AutoReconnect(false)}, opts...)
	c, err := gopcua.NewClient(s.Endpoint(), opts...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect %s: %v", s.Endpoint(), err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func nid(s *Server, key string) *ua.NodeID { return ua.NewStringNodeID(s.space.idx, key) }

func testResult(i int) result.Result {
	score := float64(i) / 10
	v := result.VerdictPass
	code := ""
	switch i % 5 {
	case 3:
		v, code = result.VerdictFail, result.ReasonAnomaly
	case 4:
		v, code = result.VerdictError, result.ReasonCapture
	}
	r := result.Result{
		ID: fmt.Sprintf("r%06d", i), Seq: uint64(i), PartID: fmt.Sprintf("part-%d", i), Verdict: v,
		ReasonCode: code, Score: &score, Threshold: 0.5, Bundle: "b1", DecidedAt: time.Now(), Station: "st1",
	}
	if v == result.VerdictError {
		r.Score = nil
	}
	return r
}

func readValues(t testing.TB, c *gopcua.Client, ids ...*ua.NodeID) []*ua.DataValue {
	t.Helper()
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth}
	for _, n := range ids {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDValue})
	}
	resp, err := c.Read(context.Background(), req)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return resp.Results
}

// TestReadBrowseWriteRefused: the tree is browsable from Objects, every
// variable reads Good with its declared type, the last result and counters
// follow Publish, and writes are refused with BadNotWritable.
func TestReadBrowseWriteRefused(t *testing.T) {
	s := startServer(t, Config{}, func() plc.Status { return plc.Status{Online: true, Ready: true, Bundle: "b1"} })
	c := dial(t, s)

	resp, err := c.Browse(context.Background(), &ua.BrowseRequest{
		NodesToBrowse: []*ua.BrowseDescription{{
			NodeID: ua.NewNumericNodeID(0, id.ObjectsFolder), BrowseDirection: ua.BrowseDirectionForward,
			ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IncludeSubtypes: true, ResultMask: 63,
		}},
	})
	if err != nil {
		t.Fatalf("Browse: %v", err)
	}
	found := false
	for _, r := range resp.Results[0].References {
		if r.NodeID.NodeID.String() == nid(s, KeyVision).String() {
			found = true
		}
	}
	if !found {
		t.Fatalf("Objects does not reference %s", KeyVision)
	}
	if err := s.Publish(context.Background(), testResult(3)); err != nil {
		t.Fatal(err)
	}
	for _, d := range nodeDefs {
		if d.class != ua.NodeClassVariable {
			continue
		}
		dv := readValues(t, c, nid(s, d.key))[0]
		if dv.Status != ua.StatusOK || dv.Value == nil {
			t.Errorf("%s: status %v", d.key, dv.Status)
		}
	}
	v := readValues(t, c, nid(s, KeyResultCounter), nid(s, KeyVerdict), nid(s, KeySystemState), nid(s, KeyResultState), nid(s, KeyFails))
	if v[0].Value.Value() != uint64(1) || v[1].Value.Value() != "fail" || v[2].Value.Value() != StateOperational ||
		v[3].Value.Value() != int32(2) || v[4].Value.Value() != uint64(1) {
		t.Fatalf("values after one fail: %v %v %v %v %v", v[0].Value.Value(), v[1].Value.Value(), v[2].Value.Value(), v[3].Value.Value(), v[4].Value.Value())
	}
	w, err := c.Write(context.Background(), &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: nid(s, KeyVerdict), AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant("pass")},
	}}})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if w.Results[0] != ua.StatusBadNotWritable {
		t.Fatalf("write answered %v, want BadNotWritable", w.Results[0])
	}
	if got := readValues(t, c, nid(s, KeyVerdict))[0].Value.Value(); got != "fail" {
		t.Fatalf("verdict changed by a write: %v", got)
	}
}

// collector gathers data changes by client handle.
type collector struct {
	t      testing.TB
	ch     chan *gopcua.PublishNotificationData
	values map[uint32][]*ua.DataValue
}

func (c *collector) wait(handle uint32, n int, within time.Duration) {
	c.t.Helper()
	deadline := time.After(within)
	for len(c.values[handle]) < n {
		select {
		case d := <-c.ch:
			if d.Error != nil {
				c.t.Fatalf("subscription: %v", d.Error)
			}
			if dcn, ok := d.Value.(*ua.DataChangeNotification); ok {
				for _, m := range dcn.MonitoredItems {
					c.values[m.ClientHandle] = append(c.values[m.ClientHandle], m.Value)
				}
			}
		case <-deadline:
			c.t.Fatalf("handle %d: %d of %d values", handle, len(c.values[handle]), n)
		}
	}
}

func subscribe(t testing.TB, s *Server, c *gopcua.Client, interval time.Duration, queue uint32, keys ...string) *collector {
	t.Helper()
	col := &collector{t: t, ch: make(chan *gopcua.PublishNotificationData, 10000), values: map[uint32][]*ua.DataValue{}}
	sub, err := c.Subscribe(context.Background(), &gopcua.SubscriptionParameters{Interval: interval}, col.ch)
	if err != nil {
		t.Fatal(err)
	}
	var items []*ua.MonitoredItemCreateRequest
	for i, k := range keys {
		r := gopcua.NewMonitoredItemCreateRequestWithDefaults(nid(s, k), ua.AttributeIDValue, uint32(i+1))
		r.RequestedParameters.QueueSize = queue
		items = append(items, r)
	}
	res, err := sub.Monitor(context.Background(), ua.TimestampsToReturnBoth, items...)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Results {
		if r.StatusCode != ua.StatusOK {
			t.Fatalf("monitor: %v", r.StatusCode)
		}
	}
	col.wait(1, 1, 10*time.Second) // initial value
	return col
}

// TestSubscriberSeesEveryResult: 500 results published in one burst, far
// faster than the 50 ms publishing interval, all reach a subscriber whose
// queue holds them, in order, each ResultId with its ResultCounter.
func TestSubscriberSeesEveryResult(t *testing.T) {
	s := startServer(t, Config{}, nil)
	c := dial(t, s)
	const n = 500
	col := subscribe(t, s, c, 50*time.Millisecond, 1000, KeyResultCounter, KeyResultID)
	for i := 1; i <= n; i++ {
		s.Publish(context.Background(), testResult(i))
	}
	col.wait(1, n+1, 20*time.Second)
	col.wait(2, n+1, 20*time.Second)
	for i := 1; i <= n; i++ {
		cnt, rid := col.values[1][i], col.values[2][i]
		if cnt.Value.Value() != uint64(i) || rid.Value.Value() != fmt.Sprintf("r%06d", i) || cnt.Status != ua.StatusOK {
			t.Fatalf("notification %d: counter %v id %v status %v", i, cnt.Value.Value(), rid.Value.Value(), cnt.Status)
		}
	}
}

// TestQueueOverflowFlagged: with a queue smaller than a burst, the
// subscriber gets the newest values and the first value after the gap
// carries the Overflow bit, so the loss is visible, never silent.
func TestQueueOverflowFlagged(t *testing.T) {
	s := startServer(t, Config{}, nil)
	c := dial(t, s)
	col := subscribe(t, s, c, 200*time.Millisecond, 10, KeyResultCounter)
	// Let the initial value's publish cycle pass so the burst lands in one.
	time.Sleep(250 * time.Millisecond)
	for i := 1; i <= 50; i++ {
		s.Publish(context.Background(), testResult(i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		vs := col.values[1]
		if len(vs) > 1 && vs[len(vs)-1].Value.Value() == uint64(50) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw counter 50")
		}
		col.wait(1, len(vs)+1, time.Until(deadline))
	}
	got := col.values[1][1:]
	gaps := 0
	for i, v := range got {
		prev := uint64(0)
		if i > 0 {
			prev = got[i-1].Value.Value().(uint64)
		}
		if v.Value.Value().(uint64) != prev+1 {
			gaps++
			if v.Status&overflowBits != overflowBits {
				t.Fatalf("value %v after a gap has status %#x, want the overflow bit", v.Value.Value(), uint32(v.Status))
			}
		} else if v.Status != ua.StatusOK {
			t.Fatalf("value %v without a gap has status %#x", v.Value.Value(), uint32(v.Status))
		}
	}
	if gaps == 0 || len(got) > 20 {
		t.Fatalf("%d values, %d gaps: the queue of 10 did not bound the burst", len(got), gaps)
	}
}

// TestConfigValidate: every refusal names the key, the value and the range.
func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"defaults", Config{}, ""},
		{"non-loopback without users", Config{Listen: "0.0.0.0:4840"}, "anonymous sessions are only allowed on loopback"},
		{"bad port", Config{Listen: "127.0.0.1:99999"}, "outside 0..65535"},
		{"short password", Config{Users: []User{{"plc", "x"}}}, "8 to 128 are needed"},
		{"bad mode", Config{SecurityModes: []string{"Basic128"}}, "is not one of"},
		{"encrypted channel", Config{SecurityModes: []string{SecuritySignAndEncrypt}}, "gopcua v0.8.0's server cannot open Basic256Sha256 secure channels"},
		{"queue too big", Config{Limits: Limits{MaxQueueSize: 1 << 20}}, "limits.max_queue_size: 1048576 is outside 1..100000"},
		{"cert without key", Config{CertFile: "a.der"}, "give both or neither"},
		{"interval", Config{Limits: Limits{MinPublishingInterval: time.Microsecond}}, "min_publishing_interval: 1µs is outside 1ms..10s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.ApplyDefaults()
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

var _ = io.EOF
var _ net.Conn
