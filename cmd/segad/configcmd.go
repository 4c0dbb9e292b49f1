package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/model"
)

func init() {
	cfgCmd := &cobra.Command{Use: "config", Short: "Check a configuration file or print a commented example"}
	cfgCmd.AddCommand(&cobra.Command{
		Use:   "example",
		Short: "Print a complete, commented example configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(config.Example)
			return err
		},
	})
	var shallow bool
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration without running: keys, values, and that models, mask and forest load, agree and give finite scores",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
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
					return fmt.Errorf("%s: %w", args[0], err)
				}
				m.Close()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	}
	check.Flags().BoolVar(&shallow, "shallow", false, "check keys and values only; do not load models")
	cfgCmd.AddCommand(check)
	rootCmd.AddCommand(cfgCmd)
}
