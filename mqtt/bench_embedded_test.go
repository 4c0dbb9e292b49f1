package mqtt

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/result"
)

// BenchmarkEmbeddedPersistentPLC publishes as fast as 4 producers can
// through the durable outbox and the embedded broker to one persistent
// PLC session (clean session off, QoS 1; every result fsynced into the
// broker's state file before the outbox lets it go) and reports results/s
// received by the PLC.
func BenchmarkEmbeddedPersistentPLC(b *testing.B) {
	port := freePort(b)
	cfg := testConfig(b, Embedded, fmt.Sprintf("benchemb-%d", b.N))
	cfg.Embedded.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.Embedded.Users = []User{{Username: "plc", Password: "plcpw"}}
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
	plc := newPLC(b, fmt.Sprintf("tcp://127.0.0.1:%d", port), "plc-bench", "plc", "plcpw", "segad/"+cfg.Station+"/result")
	plc.connect(true)
	defer plc.disconnect()
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	const producers = 4
	for g := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < b.N; i += producers {
				if err := p.Publish(context.Background(), result.Result{ID: fmt.Sprintf("b-%d", i), Verdict: result.VerdictPass, Seq: uint64(i)}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for plc.count() < b.N && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := plc.count(); n < b.N {
		b.Fatalf("the PLC got %d of %d results", n, b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "results/s")
}
