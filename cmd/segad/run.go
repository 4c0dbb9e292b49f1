package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/logging"
	"github.com/segad-edge/segad-edge/systemd"
)

// newRunCmd is `segad run`: the daemon.
func newRunCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the inspection daemon: capture -> detectors -> SegAD -> MQTT",
		Long: `run starts the inspection line described by the YAML config and runs until SIGTERM
or SIGINT (graceful: frames in flight are finished and their results stored), or
until a finite source (video file, image folder) ends. SIGHUP and edits of the
config file reload it: thresholds apply from the next frame, model or camera
changes restart those stages in place, and an invalid edit is rejected with the
running configuration kept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.Context(), cfgPath)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "/etc/segad/segad.yaml", "configuration file")
	return cmd
}

// stopWatchdog makes a stop unwedgeable: once ctx ends (SIGTERM, SIGINT) it
// restores the default signal handling, so a second signal ends the process
// at once, and exits the process itself if Run has not returned within
// bound (shutdown_timeout + daemon.ShutdownSlack), whatever peer hangs.
// Nothing durable is lost by that exit: results not yet sent are in the
// outbox and files not yet acknowledged stay in the watch folder.
func stopWatchdog(ctx context.Context, restoreSignals func(), runDone <-chan struct{}, bound time.Duration, log *slog.Logger) {
	select {
	case <-runDone:
		return
	case <-ctx.Done():
	}
	restoreSignals()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-runDone:
	case <-t.C:
		log.Error("stop did not finish in time: exiting now (results not yet sent stay in the outbox, unacknowledged files in the watch folder)", "bound", bound)
		os.Exit(3)
	}
}

func runDaemon(parent context.Context, cfgPath string) error {
	if parent == nil {
		parent = context.Background()
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	log, level := logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format)
	slog.SetDefault(log)
	notifier, err := systemd.NewNotifier()
	if err != nil {
		log.Warn("systemd notification disabled", "err", err)
	}
	// A first TensorRT engine build can take minutes: tell systemd.
	notifier.ExtendTimeout(10 * time.Minute)
	notifier.Status("loading models")
	log.Info("starting", "version", version, "config", cfgPath, "station", cfg.Station)

	goldenSet, err := loadGolden(cfg, log)
	if err != nil {
		return err
	}
	outs, err := openOutputs(parent, cfg, log)
	if err != nil {
		return err
	}
	opt := daemon.Options{Logger: log, LogLevel: level, HTTPLimits: daemon.HTTPLimits{
		MaxBody: cfg.HTTP.MaxBody, MaxInspect: cfg.HTTP.MaxInspect, MaxConns: cfg.HTTP.MaxConnections}, Golden: goldenSet}
	outs.options(&opt)
	shadowOptions(&opt, log)
	cons, err := openConsole(cfg, cfgPath, outs, &opt, log)
	if err != nil {
		outs.close()
		return err
	}
	d, err := daemon.New(cfg, opt)
	if err != nil {
		outs.close()
		return err
	}
	outs.attach(d)
	cons.attach(d)
	ctx, stop := signal.NotifyContext(parent, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if cfg.HTTP.Listen != "off" {
		if err := d.ServeHTTP(ctx, cfg.HTTP.Listen, cfg.HTTP.Token, cfg.HTTP.TLSCert, cfg.HTTP.TLSKey); err != nil {
			d.Close()
			return err
		}
	}
	if err := d.WatchConfig(ctx); err != nil {
		log.Warn("config file not watched; use SIGHUP to reload", "err", err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading configuration", "file", cfgPath)
				notifier.Reloading()
				d.Reload()
				notifier.Ready()
			}
		}
	}()
	// The watchdog is fed only while the pipeline shows progress, so a
	// stuck pipeline gets restarted by systemd.
	go notifier.Heartbeat(ctx, log, func() bool { return time.Since(d.LastBeat()) < 30*time.Second })
	trusted := startGolden(ctx, d, notifier, log)
	notifier.Ready()
	if trusted {
		notifier.Status("inspecting")
		log.Info("ready: inspecting")
	}
	runDone := make(chan struct{})
	go stopWatchdog(ctx, stop, runDone, d.ShutdownBound(), log)
	err = d.Run(ctx)
	close(runDone)
	notifier.Stopping()
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	log.Info("stopped cleanly")
	return nil
}
