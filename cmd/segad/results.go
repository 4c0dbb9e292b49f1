package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/history"
)

// newResultsCmd is `segad results`: query, show, export and label the
// result history on its database (a SQLite file or a postgres:// URL). Reads
// use a read-only connection, so they are safe while the daemon writes;
// label takes SQLite's write lock for one short transaction.
func newResultsCmd() *cobra.Command {
	var db string
	root := &cobra.Command{
		Use:   "results",
		Short: "Query, show, export and label the result history (safe while the daemon runs)",
		Long: `results works on the history database the daemon writes (history.path, a SQLite
file, or history.url, a postgres:// URL), given with --db or $SEGAD_HISTORY.
query, show and export open it read-only; label writes one label.
Times for --since and --until: RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02)
or an age before now (90m, 24h, 7d). See docs/history.md.`,
	}
	root.PersistentFlags().StringVar(&db, "db", os.Getenv("SEGAD_HISTORY"), "history database: SQLite file or postgres:// URL (default $SEGAD_HISTORY)")

	openDB := func(ctx context.Context, readOnly bool) (*history.Store, error) {
		if db == "" {
			return nil, fmt.Errorf("results: give the history database with --db (a SQLite file or a postgres:// URL) or $SEGAD_HISTORY")
		}
		cfg := history.Config{Path: db, ReadOnly: readOnly, Passive: !readOnly}
		if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
			cfg = history.Config{Backend: history.BackendPostgres, URL: db, ReadOnly: readOnly, Passive: !readOnly}
		}
		return history.Open(ctx, cfg)
	}

	// Filters shared by query and export, validated by the same
	// history.ParseQuery as GET /api/results.
	type filters struct{ since, until, verdict, partID, station, label, kind string }
	addFilters := func(c *cobra.Command, f *filters) {
		c.Flags().StringVar(&f.since, "since", "", "results decided at or after this time")
		c.Flags().StringVar(&f.until, "until", "", "results decided before this time")
		c.Flags().StringVar(&f.verdict, "verdict", "", "pass, fail or error")
		c.Flags().StringVar(&f.partID, "part-id", "", "one part ID")
		c.Flags().StringVar(&f.station, "station", "", "one station (a shared PostgreSQL history)")
		c.Flags().StringVar(&f.label, "label", "", "good, bad, labelled or unlabelled")
		c.Flags().StringVar(&f.kind, "kind", "", "production (default), golden, shadow or all")
	}
	values := func(f *filters) url.Values {
		v := url.Values{}
		for k, s := range map[string]string{"since": f.since, "until": f.until, "verdict": f.verdict, "part_id": f.partID,
			"station": f.station, "label": f.label, "kind": f.kind} {
			if s != "" {
				v.Set(k, s)
			}
		}
		return v
	}

	var qf filters
	var limit int
	var cursor string
	var asJSON bool
	query := &cobra.Command{
		Use:   "query [filters]",
		Short: "List results, newest first, one page at a time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := values(&qf)
			v.Set("limit", strconv.Itoa(limit))
			if cursor != "" {
				v.Set("cursor", cursor)
			}
			q, err := history.ParseQuery(v, time.Now())
			if err != nil {
				return fmt.Errorf("results query: %w", err)
			}
			s, err := openDB(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer s.Close()
			page, err := s.Query(cmd.Context(), q)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(page)
			}
			printTable(out, page.Results)
			if page.Next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more: --cursor %s\n", page.Next)
			}
			return nil
		},
	}
	addFilters(query, &qf)
	query.Flags().IntVar(&limit, "limit", history.DefaultLimit, fmt.Sprintf("results per page (1..%d)", history.MaxLimit))
	query.Flags().StringVar(&cursor, "cursor", "", "continue after the previous page (its printed cursor)")
	query.Flags().BoolVar(&asJSON, "json", false, "print the page as JSON (results and next cursor)")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Print one result with its label history as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openDB(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer s.Close()
			r, err := s.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(r)
		},
	}

	var ef filters
	var csvOut, jsonlOut bool
	var outPath string
	export := &cobra.Command{
		Use:   "export (--csv | --jsonl) [filters] [-o FILE]",
		Short: "Write every matching result as CSV or JSON lines (streamed, newest first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if csvOut == jsonlOut {
				return fmt.Errorf("results export: give exactly one of --csv or --jsonl")
			}
			format := history.FormatCSV
			if jsonlOut {
				format = history.FormatJSONL
			}
			q, err := history.ParseQuery(values(&ef), time.Now())
			if err != nil {
				return fmt.Errorf("results export: %w", err)
			}
			s, err := openDB(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer s.Close()
			var w io.Writer = cmd.OutOrStdout()
			var f *os.File
			if outPath != "" && outPath != "-" {
				if f, err = os.Create(outPath); err != nil {
					return fmt.Errorf("results export: %w", err)
				}
				w = f
			}
			n, err := s.Export(cmd.Context(), q, format, w)
			if f != nil {
				if cerr := f.Close(); err == nil && cerr != nil {
					err = fmt.Errorf("results export: write %s: %w", outPath, cerr)
				}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d results exported\n", n)
			return nil
		},
	}
	addFilters(export, &ef)
	export.Flags().BoolVar(&csvOut, "csv", false, "CSV with a header line")
	export.Flags().BoolVar(&jsonlOut, "jsonl", false, "one JSON object per line")
	export.Flags().StringVarP(&outPath, "output", "o", "", "write to FILE instead of standard output")

	var l history.Label
	label := &cobra.Command{
		Use:   "label ID --label good|bad [--defect-type T] [--note TEXT] --who NAME",
		Short: "Label a result good or bad (newest label wins; earlier ones stay in its history)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := l.Validate(); err != nil {
				return fmt.Errorf("results label: %w", err)
			}
			s, err := openDB(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer s.Close()
			got, err := s.Label(cmd.Context(), args[0], l)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s labelled %s by %s at %s\n", args[0], got.Label, got.Who, got.At.Format(time.RFC3339))
			return nil
		},
	}
	label.Flags().StringVar(&l.Label, "label", "", "good or bad")
	label.Flags().StringVar(&l.DefectType, "defect-type", "", fmt.Sprintf("defect type of a bad part (letters, digits, _ - .; at most %d)", history.MaxDefectType))
	label.Flags().StringVar(&l.Note, "note", "", fmt.Sprintf("free text (at most %d bytes)", history.MaxNote))
	label.Flags().StringVar(&l.Who, "who", "", "who labels it (required)")

	root.AddCommand(query, show, export, label)
	return root
}

// printTable prints one line per result.
func printTable(w io.Writer, rows []history.Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDECIDED\tSTATION\tSEQ\tPART\tVERDICT\tSCORE\tTHRESHOLD\tREASON\tLABEL")
	for _, r := range rows {
		score := "-"
		if r.Score != nil {
			score = strconv.FormatFloat(*r.Score, 'f', 4, 64)
		}
		label := "-"
		if r.Label != nil {
			label = r.Label.Label
			if r.Label.DefectType != "" {
				label += ":" + r.Label.DefectType
			}
		}
		reason := r.ReasonCode
		if r.Warn {
			reason = strings.TrimPrefix(reason+",warn", ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%g\t%s\t%s\n", r.ID, r.DecidedAt.Local().Format("2006-01-02 15:04:05.000"),
			r.Station, r.Seq, strconv.Quote(r.PartID), r.Verdict, score, r.Threshold, reason, label)
	}
	_ = tw.Flush()
}
