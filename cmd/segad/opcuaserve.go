package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/logging"
	"github.com/segad-edge/segad-edge/plc/opcua"
)

// newOPCUAServeCmd is the hidden `segad opcua-serve`: the OPC UA server
// process that `segad run` starts (plc.opcua.enabled) and supervises, so
// that a peer that crashes the server (docs/opcua.md, Process isolation)
// never stops inspection. Its configuration and the results arrive on
// stdin from segad run; it is not meant to be started by hand.
func newOPCUAServeCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "opcua-serve",
		Short:  "OPC UA server process started by segad run (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			code := opcua.ServeChild(os.Stdin, os.Stdout, func(level, format string) *slog.Logger {
				log, _ := logging.New(os.Stderr, level, format)
				return log.With("component", "opcua", "pid", os.Getpid())
			})
			os.Exit(code)
			return nil
		},
	}
}
