// Command segad is segad-edge's one binary: the inspection daemon and its tools.
//
// Each subcommand lives in its own file of this package as newXCmd (the
// command and its flags) and runX (what it does); newRootCmd adds every
// one of them to the root command.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/logging"
)

// version is set at build time with -ldflags "-X main.version=..."; it is
// recorded in model bundles and result payloads.
var version = "dev"

// rootCmd is the segad command with every subcommand.
var rootCmd = newRootCmd()

// newRootCmd builds the segad command: the global --log-level flag and
// every subcommand.
func newRootCmd() *cobra.Command {
	// logLevel is the global --log-level flag: the tools log warnings and
	// errors by default so their output stays readable; `segad run` uses
	// the config's log section instead.
	var logLevel string
	root := &cobra.Command{
		Use:   "segad",
		Short: "SegAD edge inspection: anomaly maps + segment statistics + boosted random forest",
		Long: `segad inspects parts on a production line with SegAD (Segmentation-based
Anomaly Detector): ONNX anomaly detectors give anomaly maps, a static segmentation
mask splits them, per-segment statistics feed a boosted random forest, and its score
against a threshold is the verdict published to the PLC over MQTT.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRun: func(*cobra.Command, []string) {
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logging.ParseLevel(logLevel)})))
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "warn", "log level of the tools: debug, info, warn or error (segad run uses log.level from its config)")
	root.AddCommand(
		newAlignCmd(),
		newBenchCmd(),
		newConfigCmd(),
		newDemoCmd(),
		newDetectorCmd(),
		newEvalCmd(),
		newFitCmd(),
		newInspectCmd(),
		newMaskCmd(),
		newOPCUAServeCmd(),
		newPLCCmd(),
		newResultsCmd(),
		newRollbackCmd(),
		newRunCmd(),
		newScoreCmd(),
		newServiceCmd(),
		newShadowCmd(),
		newThresholdCmd(),
		newUserCmd(),
	)
	return root
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "segad:", err)
		os.Exit(1)
	}
}

// logger is the tools' logger as the configuration says (level and format).
func logger(cfg *config.Config) *slog.Logger {
	log, _ := logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format)
	return log
}
