package mqtt

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"
)

// BenchmarkDecisionToPuback measures the time from Publish (the decision)
// to the broker's PUBACK on loopback mosquitto, one result at a time, with
// the durable outbox (bbolt + fsync) and with the in-memory outbox as the
// baseline. It reports p50/p99 in ms.
func BenchmarkDecisionToPuback(b *testing.B) {
	m := startMosquitto(b, mosqOpts{})
	for _, mode := range []string{"memory", "durable"} {
		b.Run(mode, func(b *testing.B) {
			p, acked := benchPublisher(b, m, mode)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if err := p.Publish(context.Background(), result.Result{Verdict: result.VerdictPass, Seq: uint64(i)}); err != nil {
					b.Fatal(err)
				}
				<-acked
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkSustained publishes as fast as 4 producers can and reports
// results/s acknowledged end to end (outbox -> PUBACK).
func BenchmarkSustained(b *testing.B) {
	m := startMosquitto(b, mosqOpts{})
	for _, mode := range []string{"memory", "durable"} {
		b.Run(mode, func(b *testing.B) {
			p, acked := benchPublisher(b, m, mode)
			b.ResetTimer()
			t0 := time.Now()
			var wg sync.WaitGroup
			const producers = 4
			for g := range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < b.N; i += producers {
						if err := p.Publish(context.Background(), result.Result{Verdict: result.VerdictPass, Seq: uint64(i)}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			for range b.N {
				<-acked
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "results/s")
		})
	}
}

func benchPublisher(b *testing.B, m *mosquitto, mode string) (*Publisher, chan struct{}) {
	b.Helper()
	cfg := testConfig(b, m.URL(), fmt.Sprintf("bench-%s-%d", mode, b.N))
	cfg.Outbox.Memory = mode == "memory"
	cfg.StatusInterval = time.Hour
	p, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	waitConnected(b, p)
	acked := make(chan struct{}, b.N+1)
	hook := func(string) { acked <- struct{}{} }
	p.ackHook.Store(&hook)
	return p, acked
}
