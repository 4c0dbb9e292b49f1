// Command faultpub is the publishing process of the MQTT fault tests: it
// publishes results with deterministic IDs through a real Publisher and
// durable outbox, and prints "ok <seq>" once each Publish returned (the
// result is durable), so the test can SIGKILL it and restart it where it
// stopped. With -broker embedded it also hosts the embedded broker, so a
// SIGKILL takes the broker down with the publisher.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/segad-edge/segad-edge/result"

	"github.com/segad-edge/segad-edge/mqtt"
)

func main() {
	broker := flag.String("broker", "", "broker URL")
	outboxPath := flag.String("outbox", "", "outbox file")
	station := flag.String("station", "fault", "station name")
	from := flag.Int("from", 0, "first sequence number")
	to := flag.Int("to", 10000, "sequence number after the last")
	every := flag.Duration("every", 0, "pause between results")
	listen := flag.String("listen", "127.0.0.1:0", "embedded broker listen address (with -broker embedded)")
	user := flag.String("user", "", "embedded broker user as name:password (with -broker embedded)")
	await := flag.Bool("await", false, `print "ready" once started and wait for a line on stdin before publishing`)
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := mqtt.Defaults()
	cfg.Broker = *broker
	cfg.Station = *station
	cfg.Outbox.Path = *outboxPath
	cfg.ConnectRetryInterval = 100 * time.Millisecond
	cfg.MaxReconnectInterval = 200 * time.Millisecond
	cfg.AckTimeout = 3 * time.Second
	cfg.KeepAlive = 2 * time.Second
	if *broker == mqtt.Embedded {
		cfg.Embedded.Listen = *listen
		if name, pw, ok := strings.Cut(*user, ":"); ok {
			cfg.Embedded.Users = []mqtt.User{{Username: name, Password: pw}}
		}
	}
	p, err := mqtt.New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultpub:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	if *await {
		fmt.Println("ready")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	}
	for seq := *from; seq < *to; seq++ {
		now := time.Now()
		score := float64(seq%7) - 3
		v := result.VerdictPass
		if seq%10 == 0 {
			v = result.VerdictFail
		}
		r := result.Result{
			ID: fmt.Sprintf("%s-%06d", *station, seq), Seq: uint64(seq), Source: "faultpub",
			CapturedAt: now, DecidedAt: now, Verdict: v, Score: &score, Threshold: 0,
		}
		if err := p.Publish(ctx, r); err != nil {
			fmt.Fprintln(os.Stderr, "faultpub: publish:", err)
			os.Exit(3)
		}
		fmt.Printf("ok %d\n", seq)
		if *every > 0 {
			time.Sleep(*every)
		}
	}
	for p.Stats().Backlog > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("drained")
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.Close(cctx); err != nil {
		fmt.Fprintln(os.Stderr, "faultpub: close:", err)
		os.Exit(4)
	}
}
