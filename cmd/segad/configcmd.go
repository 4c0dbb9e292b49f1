package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/model"
)

// newConfigCmd is `segad config`: example and check.
func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check a configuration file or print a commented example"}
	cmd.AddCommand(newConfigExampleCmd(), newConfigCheckCmd())
	return cmd
}

// newConfigExampleCmd is `segad config example`.
func newConfigExampleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "example",
		Short: "Print a complete, commented example configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(config.Example)
			return err
		},
	}
}

// newConfigCheckCmd is `segad config check`.
func newConfigCheckCmd() *cobra.Command {
	var shallow bool
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration without running: keys, values, and that models, mask and forest load, agree and give finite scores",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConfigCheck(cmd.OutOrStdout(), args[0], shallow)
		},
	}
	cmd.Flags().BoolVar(&shallow, "shallow", false, "check keys and values only; do not load models")
	return cmd
}

// runConfigCheck loads the file and, unless shallow, builds the model
// from it as the daemon would.
func runConfigCheck(w io.Writer, path string, shallow bool) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if !shallow {
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		// The same build as the daemon's start and hot reload
		// (model.Build): the threshold from the bundle, then the
		// whole model built and run on probe frames.
		cfg.Pipeline.Warmup = 1
		m, _, err := model.Build(cfg, model.Options{Log: log})
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		m.Close()
		// The golden set as `segad run` reads it (assurance.golden).
		if _, err := loadGolden(cfg, log); err != nil {
			return err
		}
		if err := checkShadow(cfg, log); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	fmt.Fprintf(w, "%s: ok\n", path)
	return nil
}
