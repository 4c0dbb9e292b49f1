package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/logging"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/result"
)

// newInspectCmd is `segad inspect`.
func newInspectCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "inspect --config FILE IMAGE...",
		Short: "Inspect image files with the full pipeline and print one JSON result per line",
		Long: `inspect runs the configured detectors, SegAD features and forest on each image,
exactly as the line would (same preprocessing, same code), without MQTT, and prints
one result JSON per line in the order given. A file that cannot be read gets a
result with verdict "error" and a reason, as on the line. The exit status is 0
when every part was judged, 1 on a configuration error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd.Context(), cmd.OutOrStdout(), cfgPath, args)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "/etc/segad/segad.yaml", "configuration file")
	return cmd
}

func runInspect(ctx context.Context, w io.Writer, cfgPath string, files []string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	log, _ := logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format)
	// The line's image limits: inspect reads the files itself, without
	// opening the configured source (which would apply them).
	if err := capture.SetLimits(cfg.Capture.Limits); err != nil {
		return fmt.Errorf("%s: %w", cfgPath, err)
	}
	cfg.Audit.Dir = "" // inspect is a dry run: no audit entries
	cfg.Pipeline.Overflow = "block"
	src := &fileListSource{files: files, log: log}
	d, err := daemon.New(cfg, daemon.Options{Logger: log, Source: src.open, Publisher: &linePrinter{w: w}})
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// linePrinter is the Publisher of `segad inspect`: one JSON line per result.
type linePrinter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *linePrinter) Publish(_ context.Context, r result.Result) error {
	if r.Schema == 0 {
		r.Schema = result.SchemaVersion
	}
	if r.ID == "" {
		r.ID = result.NewID(r.DecidedAt)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err = fmt.Fprintf(p.w, "%s\n", b)
	return err
}

func (p *linePrinter) Close(context.Context) error { return nil }

// Stats: printing never stalls.
func (p *linePrinter) Stats() mqtt.Stats { return mqtt.Stats{} }

// fileListSource hands out the given files in order, preprocessed as the
// configured source would; unreadable files become error frames.
type fileListSource struct {
	files []string
	pre   capture.PreprocessConfig
	log   *slog.Logger
	next  int
	seq   uint64
}

// open is the daemon's Options.Source: files are shaped as the model's
// preprocessing says.
func (s *fileListSource) open(pc capture.PreprocessConfig) (capture.Source, error) {
	s.pre = pc
	return s, nil
}

func (s *fileListSource) Name() string { return "files" }

func (s *fileListSource) Next(ctx context.Context) (*capture.Frame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.next >= len(s.files) {
		return nil, io.EOF
	}
	path := s.files[s.next]
	s.next++
	s.seq++
	// The guarded reader (limits, header check, OpenCV exceptions caught):
	// a hostile file becomes an error result, never a crash.
	f := capture.ReadFrame(path, s.pre)
	f.Source, f.Seq, f.Path = "files", s.seq, path
	// The same part-ID rule as the watch folder: a name that is not a valid
	// part ID gives none (and a warning), never the raw name.
	id, err := capture.PartIDFromFile(path)
	if err != nil && s.log != nil {
		s.log.Warn("file name is not a valid part ID; the result carries an empty part_id", "file", path, "err", err)
	}
	f.PartID = id
	if f.Captured.IsZero() {
		f.Captured = time.Now()
	}
	return f, nil
}

func (s *fileListSource) State() capture.SourceState {
	return capture.SourceState{Connected: true}
}

func (s *fileListSource) Close() error { return nil }
