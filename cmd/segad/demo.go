package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/demo"
)

// demoFlags are `segad demo`'s flags besides demo.LineOptions.
type demoFlags struct {
	jsonOut, verbose bool
}

// newDemoCmd is `segad demo`.
func newDemoCmd() *cobra.Command {
	var o demo.LineOptions
	var df demoFlags
	cmd := &cobra.Command{
		Use:   "demo [--dir demo-out]",
		Short: "Run a whole inspection line on generated parts (no camera, broker, GPU, dataset or network)",
		Long: `demo generates synthetic parts modelled on Valeo's VAD product (a piezo disc with
solder dots, wires and pins; good parts with natural variation, and logical and
structural defects, some of them held out of training), fits a variation detector on
good parts, fits SegAD's boosted random forest with XGBoost, writes a daemon config
that uses the embedded MQTT broker, and runs the daemon on a stream of new parts. It
follows the result topic like a PLC, prints a line per part and a summary of SegAD
against the detector alone. Artifacts are cached in --dir: a second run starts in
seconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), o, df)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "demo-out", "folder for the generated data, models, config and audit images")
	f.Uint64Var(&o.Seed, "seed", 1, "random seed (the demo is deterministic for a seed)")
	f.IntVar(&o.Stream, "parts", 200, "parts on the line")
	f.IntVar(&o.Trees, "trees", 0, "trees per boosting round (default: the paper's 200)")
	f.IntVar(&o.Rounds, "rounds", 0, "boosting rounds (default: the paper's 10)")
	f.BoolVar(&o.Jitter, "jitter", false, "parts arrive shifted (up to 6%) and turned (up to 4 degrees); the line runs with fixturing (capture.align)")
	f.BoolVarP(&o.Quiet, "quiet", "q", false, "print the summary only")
	f.BoolVar(&df.jsonOut, "json", false, "print the summary as JSON")
	f.BoolVarP(&df.verbose, "verbose", "v", false, "log what every stage does")
	return cmd
}

// runDemo runs the demo line and prints its summary to w.
func runDemo(ctx context.Context, w io.Writer, o demo.LineOptions, df demoFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	o.Out = w
	// The stages log progress at info level; the demo prints its own.
	level := slog.LevelWarn
	if df.verbose {
		level = slog.LevelInfo
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(o.Log)
	if term.IsTerminal(int(os.Stderr.Fd())) && !o.Quiet {
		o.Progress = os.Stderr
	}
	if df.jsonOut {
		o.Out, o.Quiet = io.Discard, true
	}
	o.Line = demoLine
	s, err := demo.RunLine(ctx, o)
	if err != nil {
		return err
	}
	if df.jsonOut {
		return json.NewEncoder(w).Encode(s)
	}
	s.Print(w)
	if s.Results != s.Parts {
		return fmt.Errorf("demo: %d results for %d parts", s.Results, s.Parts)
	}
	return nil
}

// demoLine is demo.LineOptions.Line: the daemon, as `segad run` starts it.
func demoLine(cfg *config.Config, log *slog.Logger) (func(context.Context) error, error) {
	d, err := daemon.New(cfg, daemon.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	return d.Run, nil
}
