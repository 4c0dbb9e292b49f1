package modbus

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/segad-edge/segad-edge/result"
)

// BenchmarkPublishToResultValid measures the decision-to-PLC latency on
// loopback: from Publish (the daemon's decision) to the moment a Go Modbus
// client (github.com/simonvetter/modbus), polling the status word and the
// result sequence number back to back on its own goroutine as a PLC's
// fast task would, reads ResultValid for that result. The poller then
// acknowledges (ResultAck up and down) as a PLC does; the next Publish
// waits for that. Reported as p50/p99 in ms, next to MQTT's PUBACK figure.
func BenchmarkPublishToResultValid(b *testing.B) {
	s := startServer(b, testConfig(nil), nil)
	c := goClient(b, s)
	ctx := context.Background()
	score := 1.5
	r := result.Result{Verdict: result.VerdictPass, Score: &score, Threshold: 7, PartID: "P00001"}
	must(b, c.WriteRegister(RegControl, CtlTriggerEnable))
	seen := make(chan time.Time)
	acked := make(chan struct{})
	done := make(chan struct{})
	var polls atomic.Int64
	go func() {
		defer close(seen)
		for {
			select {
			case <-done:
				return
			default:
			}
			v, err := c.ReadRegisters(RegStatus, 1, mb.HOLDING_REGISTER)
			if err != nil {
				b.Error(err)
				return
			}
			polls.Add(1)
			if v[0]&StResultValid == 0 {
				continue
			}
			seen <- time.Now()
			if c.WriteRegister(RegControl, CtlTriggerEnable|CtlResultAck) != nil || c.WriteRegister(RegControl, CtlTriggerEnable) != nil {
				b.Error("ack failed")
				return
			}
			acked <- struct{}{}
		}
	}()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A random point within the poll cycle, as a decision would be.
		time.Sleep(time.Duration(i%7) * 3 * time.Microsecond)
		t0 := time.Now()
		if err := s.Publish(ctx, r); err != nil {
			b.Fatal(err)
		}
		t1, ok := <-seen
		if !ok {
			b.FailNow()
		}
		lat = append(lat, t1.Sub(t0))
		<-acked
	}
	b.StopTimer()
	close(done)
	for range seen {
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(polls.Load())/float64(b.N), "polls/op")
}

// BenchmarkPoll is one read of the status word and the result block (the
// request a PLC repeats every cycle), for the server's cost per poll.
func BenchmarkPoll(b *testing.B) {
	s := startServer(b, testConfig(nil), nil)
	c := goClient(b, s)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.ReadRegisters(0, 20, mb.HOLDING_REGISTER); err != nil {
			b.Fatal(err)
		}
	}
}
