package opcua

import (
	"context"
	"sort"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/segad-edge/segad-edge/result"
)

// BenchmarkPublishToDataChange measures the time from Publish (the
// decision) to the data-change notification of ResultCounter arriving at a
// gopcua client subscriber on loopback, at a line pace of one part every
// 20 ms (so each result goes out as soon as it is published, not at the
// next publishing cycle). Reports p50 and p99 in ms, to compare with the
// MQTT PUBACK p99.
//
//	go test -run '^$' -bench PublishToDataChange -benchtime 500x ./plc/opcua
func BenchmarkPublishToDataChange(b *testing.B) {
	s := startServer(b, Config{}, nil)
	benchPublishToDataChange(b, dial(b, s), func(r result.Result) { s.Publish(context.Background(), r) })
}

// BenchmarkProcessPublishToDataChange is BenchmarkPublishToDataChange with
// the server in its own process (Process, as segad run runs it): the
// pipe's cost on top.
//
//	go test -run '^$' -bench ProcessPublishToDataChange -benchtime 500x ./plc/opcua
func BenchmarkProcessPublishToDataChange(b *testing.B) {
	p, _ := startProcess(b, Config{}, nil, ProcessOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := newTestClient(ctx, p.Endpoint())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	benchPublishToDataChange(b, c, func(r result.Result) { p.Publish(context.Background(), r) })
}

func benchPublishToDataChange(b *testing.B, c *gopcua.Client, publish func(result.Result)) {
	ch := make(chan *gopcua.PublishNotificationData, 1000)
	sub, err := c.Subscribe(context.Background(), &gopcua.SubscriptionParameters{Interval: 10 * time.Millisecond}, ch)
	if err != nil {
		b.Fatal(err)
	}
	req := gopcua.NewMonitoredItemCreateRequestWithDefaults(ua.NewStringNodeID(1, KeyResultCounter), ua.AttributeIDValue, 1)
	if _, err := sub.Monitor(context.Background(), ua.TimestampsToReturnBoth, req); err != nil {
		b.Fatal(err)
	}
	wait := func(want uint64) {
		for {
			select {
			case d := <-ch:
				if dcn, ok := d.Value.(*ua.DataChangeNotification); ok {
					for _, m := range dcn.MonitoredItems {
						if m.Value.Value.Value() == want {
							return
						}
					}
				}
			case <-time.After(5 * time.Second):
				b.Fatalf("no notification for %d", want)
			}
		}
	}
	wait(0)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		time.Sleep(20 * time.Millisecond)
		start := time.Now()
		publish(testResult(i))
		wait(uint64(i))
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}
