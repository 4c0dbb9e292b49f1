package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/fit"
	"github.com/segad-edge/segad-edge/history"
)

// openLabelledHistory opens a results history database for reading its
// labelled results (`--history DB`); the returned close function releases
// the database. A variable so tests can stand in for the store.
var openLabelledHistory = func(path string) (src fit.LabelledSource, closeFn func() error, err error) {
	st, err := openHistoryReadOnly(context.Background(), path)
	if err != nil {
		return nil, nil, err
	}
	return &historyScores{st: st}, st.Close, nil
}

// openHistoryReadOnly opens a history database (a SQLite file or a
// postgres:// URL) read-only: safe while the daemon writes to it.
func openHistoryReadOnly(ctx context.Context, db string) (*history.Store, error) {
	cfg := history.Config{Path: db, ReadOnly: true}
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		cfg = history.Config{Backend: history.BackendPostgres, URL: db, ReadOnly: true}
	} else if _, err := os.Stat(db); err != nil {
		// SQLite would say "unable to open database file"; say which.
		return nil, err
	}
	return history.Open(ctx, cfg)
}

// redactDB is a history database as outputs may show it: a PostgreSQL URL
// without its password.
func redactDB(db string) string {
	if u, err := url.Parse(db); err == nil && u.User != nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Redacted()
	}
	return db
}

// historyScores is the history store as `threshold suggest`'s source:
// labelled production results with a score. With keep set (--bundle) only
// the results the bundle's forest scored count: another forest's scores are
// on another scale.
type historyScores struct {
	st   *history.Store
	keep string
	// bundles counts the labelled scores per forest; leftOut those of
	// other forests than keep.
	bundles map[string]int
	leftOut int
}

func (h *historyScores) LabelledScores(ctx context.Context, since time.Time) ([]fit.LabelledScore, error) {
	ls, err := h.st.LabelledScores(ctx, since)
	if err != nil {
		return nil, err
	}
	h.bundles, h.leftOut = map[string]int{}, 0
	out := make([]fit.LabelledScore, 0, len(ls))
	for _, l := range ls {
		h.bundles[l.Bundle]++
		if h.keep != "" && l.Bundle != h.keep {
			h.leftOut++
			continue
		}
		out = append(out, fit.LabelledScore{Score: l.Score, Bad: l.Bad})
	}
	if h.keep != "" && len(out) == 0 && len(ls) > 0 {
		var by []string
		for _, k := range sortedBundles(h.bundles) {
			by = append(by, fmt.Sprintf("%s (%d)", k, h.bundles[k]))
		}
		return nil, fmt.Errorf("none of the %d labelled results was scored by the bundle's forest (%s): they were scored by %s; drop --bundle to use their scores anyway", len(ls), h.keep, strings.Join(by, ", "))
	}
	return out, nil
}

func sortedBundles(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// forestID is how results name the forest that scored them
// (result.Result.Bundle, model.Model.ForestHash): "sha256:" and the first
// 16 hex digits of model.json's sha256.
func forestID(b *bundle.Bundle) (string, error) {
	sum, err := bundle.FileSHA256(b.ModelPath)
	if err != nil {
		return "", err
	}
	return "sha256:" + sum[:16], nil
}

// thresholdSuggestion is what `segad threshold suggest` prints.
type thresholdSuggestion struct {
	// Source is the scores file or history database; Since bounds the
	// history (absent: all of it).
	Source string     `json:"source"`
	Since  *time.Time `json:"since,omitempty"`
	// Forest is the bundle's forest (--bundle with --history): only the
	// results it scored count; LeftOut counts the labelled results other
	// forests scored, Bundles the labelled scores per forest.
	Forest  string         `json:"forest,omitempty"`
	LeftOut int            `json:"left_out,omitempty"`
	Bundles map[string]int `json:"bundles,omitempty"`
	*fit.Table
	// Current is the bundle's own threshold measured on these parts, next
	// to what its manifest promised (when --bundle is given).
	Current *fit.PromiseReport `json:"current,omitempty"`
}

// newThresholdCmd is `segad threshold`: operating points from labelled
// results.
func newThresholdCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "threshold",
		Short: "Operating points (threshold, recall, false-reject rate) from labelled results",
	}
	cmd.AddCommand(newThresholdSuggestCmd())
	return cmd
}

// thresholdSuggestOptions are `segad threshold suggest`'s flags.
type thresholdSuggestOptions struct {
	bundle, history, since, scores string
	recalls, maxFalseReject        []float64
	confidence                     float64
	rows                           int
}

func newThresholdSuggestCmd() *cobra.Command {
	var o thresholdSuggestOptions
	cmd := &cobra.Command{
		Use:   "suggest (--history DB [--since 7d] | --scores FILE.csv) [--bundle DIR] [--recall R | --max-false-reject F]",
		Short: "Recompute the operating-point table from labelled parts and suggest a threshold",
		Long: `suggest computes the operating-point table (threshold, recall, false-reject rate,
with Clopper-Pearson confidence intervals from the counts) from labelled parts:
the results history of the line (--history DB, labelled results since --since:
7d, 12h or a date) or a CSV of score,label rows (--scores; label 1/bad or
0/good, a header row is optional). The scores are the shipped forest's own on
parts it never trained on, so the table is honest for a line whose parts drift
from the training set.

The suggested threshold answers the first budget: --recall R (keep at least R of
the defects) or --max-false-reject F (fail at most F of the good parts); without
either, the bundle's own budget, else recall 0.95. With --bundle the bundle's
current threshold is measured on the same parts next to what its manifest
promised ("current"). Prints one JSON object; the bundle is not changed.`,
		Example: `  segad threshold suggest --bundle bundles/line1 --history /var/lib/segad/history.db --since 7d
  segad threshold suggest --scores labelled.csv --max-false-reject 0.02`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := runThresholdSuggest(cmd.Context(), cmd, o)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.bundle, "bundle", "", "bundle folder: its budget is the default, its current threshold is measured too")
	f.StringVar(&o.history, "history", "", "results history database (labelled results)")
	f.StringVar(&o.since, "since", "", "only results since: a duration back from now (7d, 12h, 30m) or a date (2006-01-02, RFC 3339)")
	f.StringVar(&o.scores, "scores", "", "CSV of score,label rows (label 1/bad or 0/good) instead of --history")
	f.Float64SliceVar(&o.recalls, "recall", nil, "escape budgets (recall to keep); the first budget gives the suggested threshold, recall first when both kinds are given")
	f.Float64SliceVar(&o.maxFalseReject, "max-false-reject", nil, "yield budgets (share of good parts failed at most)")
	f.Float64Var(&o.confidence, "confidence", fit.DefaultConfidence, "confidence level of the intervals")
	f.IntVar(&o.rows, "rows", fit.DefaultTableRows, "at most this many table rows (plus the requested points)")
	return cmd
}

// runThresholdSuggest reads the labelled scores and computes the table.
func runThresholdSuggest(ctx context.Context, cmd *cobra.Command, o thresholdSuggestOptions) (*thresholdSuggestion, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if (o.history == "") == (o.scores == "") {
		return nil, fmt.Errorf("threshold suggest: give either --history DB or --scores FILE.csv")
	}
	var b *bundle.Bundle
	if o.bundle != "" {
		var err error
		if b, err = bundle.Load(o.bundle); err != nil {
			return nil, fmt.Errorf("threshold suggest: %w", err)
		}
	}
	budgets, err := fit.Budgets(o.recalls, o.maxFalseReject, "")
	if err != nil {
		return nil, fmt.Errorf("threshold suggest: %w", err)
	}
	if len(budgets) == 0 {
		budgets = []bundle.Budget{{Kind: bundle.BudgetRecall, Value: fit.DefaultRecalls[0]}}
		if b != nil && b.Manifest.Threshold.Budget != nil {
			budgets[0] = *b.Manifest.Threshold.Budget
		}
	}
	res := &thresholdSuggestion{}
	var mixed []string // warnings about the history's forests
	var ls []fit.LabelledScore
	if o.scores != "" {
		if o.since != "" {
			return nil, fmt.Errorf("threshold suggest: --since filters --history; a --scores file has no times")
		}
		fh, err := os.Open(o.scores)
		if err != nil {
			return nil, fmt.Errorf("threshold suggest: %w", err)
		}
		defer fh.Close()
		if ls, err = fit.ReadScoresCSV(fh); err != nil {
			return nil, fmt.Errorf("threshold suggest: %s: %w", o.scores, err)
		}
		res.Source = o.scores
	} else {
		since, err := parseSince(o.since, time.Now())
		if err != nil {
			return nil, fmt.Errorf("threshold suggest: --since: %w", err)
		}
		if openLabelledHistory == nil {
			return nil, fmt.Errorf("threshold suggest: --history: this build has no results history store; export the labelled results as score,label rows and use --scores FILE.csv")
		}
		src, closeFn, err := openLabelledHistory(o.history)
		if err != nil {
			return nil, fmt.Errorf("threshold suggest: open history %s: %w", redactDB(o.history), err)
		}
		defer closeFn()
		hs, _ := src.(*historyScores)
		if hs != nil && b != nil {
			if hs.keep, err = forestID(b); err != nil {
				return nil, fmt.Errorf("threshold suggest: %w", err)
			}
			res.Forest = hs.keep
		}
		if ls, err = src.LabelledScores(ctx, since); err != nil {
			return nil, fmt.Errorf("threshold suggest: history %s: %w", redactDB(o.history), err)
		}
		res.Source = redactDB(o.history)
		if hs != nil {
			res.LeftOut, res.Bundles = hs.leftOut, hs.bundles
			if len(hs.bundles) > 1 && hs.keep == "" {
				mixed = append(mixed, fmt.Sprintf("the labelled results were scored by %d forests (see bundles): their scores are on different scales; give --bundle to keep only one forest's", len(hs.bundles)))
			} else if hs.leftOut > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "segad threshold suggest: %d labelled results scored by other forests than %s left out\n", hs.leftOut, hs.keep)
			}
		}
		if !since.IsZero() {
			res.Since = &since
		}
	}
	scores, bad := make([]float64, len(ls)), make([]bool, len(ls))
	for i, l := range ls {
		scores[i], bad[i] = l.Score, l.Bad
	}
	if res.Table, err = fit.OperatingTable(scores, bad, budgets, o.confidence, o.rows); err != nil {
		return nil, fmt.Errorf("threshold suggest: %s: %w", res.Source, err)
	}
	if b != nil {
		if thr, err := b.SuggestedThreshold(); err == nil {
			res.Current = fit.MeasurePromise(b.Manifest.Threshold, thr, scores, bad)
		}
	}
	res.Warnings = append(res.Warnings, mixed...)
	for _, w := range res.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "segad threshold suggest: warning:", w)
	}
	return res, nil
}

// parseSince reads --since: "" (all of it), a duration back from now (Go
// durations, plus days: 7d, 1.5d), or a date (2006-01-02, RFC 3339).
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if d, err := strconv.ParseFloat(n, 64); err == nil && d >= 0 {
			return now.Add(-time.Duration(d * float64(24*time.Hour))), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want a duration back from now (7d, 12h, 30m) or a date (2006-01-02, RFC 3339)", s)
}
