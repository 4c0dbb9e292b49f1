package modbus

import (
	"context"
	"slices"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/segad-edge/segad-edge/result"
)

// BenchmarkPublishToResultValid measures the decision-to-PLC latency on
// loopback: from Publish (the daemon's decision) to a polling Go Modbus
// client (github.com/simonvetter/modbus) reading ResultValid set, polling
// back to back. The PLC then acknowledges (ResultAck up and down) outside
// the timed span. Reported as p50/p99 in ms, next to MQTT's PUBACK figure
// (mqtt BenchmarkPublishDurable).
func BenchmarkPublishToResultValid(b *testing.B) {
	s := startServer(b, testConfig(nil), nil)
	c := goClient(b, s)
	ctx := context.Background()
	score := 1.5
	r := result.Result{Verdict: result.VerdictPass, Score: &score, Threshold: 7, PartID: "P00001"}
	must(b, c.WriteRegister(RegControl, CtlTriggerEnable))
	lat := make([]time.Duration, 0, b.N)
	polls := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := s.Publish(ctx, r); err != nil {
			b.Fatal(err)
		}
		for {
			v, err := c.ReadRegisters(RegStatus, 1, mb.HOLDING_REGISTER)
			if err != nil {
				b.Fatal(err)
			}
			polls++
			if v[0]&StResultValid != 0 {
				break
			}
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		must(b, c.WriteRegister(RegControl, CtlTriggerEnable|CtlResultAck))
		must(b, c.WriteRegister(RegControl, CtlTriggerEnable))
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(polls)/float64(b.N), "polls/op")
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
