package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/assurance/shadow"
	"github.com/segad-edge/segad-edge/bundle"
	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/daemon"
	"github.com/segad-edge/segad-edge/fit"
	"github.com/segad-edge/segad-edge/history"
)

// shadowOptions gives the daemon a shadow runner (always: a reload may add
// segad.shadow), its metrics, and its health beside the outputs'.
func shadowOptions(opt *daemon.Options, log *slog.Logger) {
	r := shadow.New(log)
	opt.Shadow = r
	opt.Collectors = append(opt.Collectors, r.Collectors()...)
	outputs := opt.OutputHealth
	opt.OutputHealth = func() map[string]string {
		var h map[string]string
		if outputs != nil {
			h = outputs()
		}
		if msg := r.Health(); msg != "" {
			if h == nil {
				h = map[string]string{}
			}
			h["shadow"] = msg
		}
		return h
	}
}

// checkShadow builds segad.shadow's candidate as the daemon's start would
// (`segad config check`), and frees it.
func checkShadow(cfg *config.Config, log *slog.Logger) error {
	if cfg.SegAD.Shadow == nil {
		return nil
	}
	r := shadow.New(log)
	err := r.Apply(cfg, log)
	return errors.Join(err, r.Close(context.Background()))
}

// newShadowCmd is `segad shadow`: the candidate model's report and its
// promotion (docs/assurance.md).
func newShadowCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "shadow",
		Short: "Compare the shadow candidate (segad.shadow) with the live model, and promote it",
	}
	var cfgPath, since, candidate string
	var asJSON bool
	report := &cobra.Command{
		Use:   "report --config FILE",
		Short: "Agreement, disagreements and both operating points on labelled history",
		Long: `report reads the result history of the configuration (read-only, safe while the
daemon runs) and pairs every shadow result of the candidate with the live result of the
same part. It prints the agreement, the parts each model would reject that the other
passes (result IDs, part IDs, scores), and, on the labelled parts, each model's recall and
false-reject rate at its own threshold with exact 95% (Clopper-Pearson) intervals.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runShadowReport(cmd.Context(), cmd.OutOrStdout(), cfgPath, since, candidate, asJSON)
		},
	}
	report.Flags().StringVar(&cfgPath, "config", "", "the daemon's config file (its history is read)")
	report.Flags().StringVar(&since, "since", "", "results decided at or after this time (RFC 3339, date, or an age: 24h, 7d)")
	report.Flags().StringVar(&candidate, "candidate", "", "the candidate forest hash (sha256:...) to report on (default: the newest shadow result's)")
	report.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	_ = report.MarkFlagRequired("config")

	var pCfg, who string
	promote := &cobra.Command{
		Use:   "promote --config FILE",
		Short: "Make the candidate live: swap segad.bundle and segad.shadow.bundle in the file",
		Long: `promote rewrites the config file (comments and layout kept, written atomically) so
that the candidate bundle becomes segad.bundle and the bundle that was live becomes the
shadow: the running daemon's file watch reloads it (or send SIGHUP), swapping the model
between two frames. The promotion is recorded in FILE.promotions.jsonl (who, when, old and
new bundle); segad rollback returns to the previous bundle the same way.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPromote(cmd.OutOrStdout(), pCfg, who, false)
		},
	}
	promote.Flags().StringVar(&pCfg, "config", "", "the daemon's config file")
	promote.Flags().StringVar(&who, "who", "", "who promotes (default: $SUDO_USER or $USER)")
	_ = promote.MarkFlagRequired("config")
	root.AddCommand(report, promote)
	return root
}

// newRollbackCmd is `segad rollback`: undo the last promotion.
func newRollbackCmd() *cobra.Command {
	var cfgPath, who string
	c := &cobra.Command{
		Use:   "rollback --config FILE",
		Short: "Return to the bundle that was live before the last `segad shadow promote`",
		Long: `rollback reads the last record of FILE.promotions.jsonl and swaps the bundles back
the same way promote did (the running daemon reloads the file); it is recorded too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPromote(cmd.OutOrStdout(), cfgPath, who, true)
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "the daemon's config file")
	c.Flags().StringVar(&who, "who", "", "who rolls back (default: $SUDO_USER or $USER)")
	_ = c.MarkFlagRequired("config")
	return c
}

// shadowInterval is the one place the report's intervals are computed:
// exact (Clopper-Pearson) 95% intervals.
func shadowInterval(k, n int) bundle.Interval { return fit.ClopperPearson(k, n, 0.95) }

// shadowReport is the report as printed (--json).
type shadowReport struct {
	shadow.Report
	Agreement float64    `json:"agreement"`
	Live      pointOut   `json:"live"`
	Cand      pointOut   `json:"candidate_operating_point"`
	Since     *time.Time `json:"since,omitempty"`
}

// pointOut is an operating point with its rates and intervals.
type pointOut struct {
	shadow.Point
	Recall        float64         `json:"recall"`
	RecallCI      bundle.Interval `json:"recall_ci95"`
	FalseReject   float64         `json:"false_reject"`
	FalseRejectCI bundle.Interval `json:"false_reject_ci95"`
}

func rate(k, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(k) / float64(n)
}

func point(p shadow.Point) pointOut {
	return pointOut{Point: p, Recall: rate(p.BadRejected, p.Bad), RecallCI: shadowInterval(p.BadRejected, p.Bad),
		FalseReject: rate(p.GoodRejected, p.Good), FalseRejectCI: shadowInterval(p.GoodRejected, p.Good)}
}

func runShadowReport(ctx context.Context, w io.Writer, cfgPath, since, candidate string, asJSON bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	if !cfg.History.On() {
		return fmt.Errorf("%s: history.enabled is false: shadow results are recorded only in the history", cfgPath)
	}
	hc := cfg.History.StoreConfig()
	hc.ReadOnly = true
	st, err := history.Open(ctx, hc)
	if err != nil {
		return fmt.Errorf("shadow report: open the history of %s: %w", cfgPath, err)
	}
	defer st.Close()
	var out shadowReport
	var from time.Time
	if since != "" {
		if from, err = history.ParseTime(since, time.Now()); err != nil {
			return fmt.Errorf("--since %q: %w", since, err)
		}
		out.Since = &from
	}
	rows, err := shadow.Load(ctx, st, from)
	if err != nil {
		return fmt.Errorf("%s: %w", cfgPath, err)
	}
	out.Report = shadow.Compare(rows, candidate)
	out.Agreement = out.Report.Agreement()
	out.Live, out.Cand = point(out.Report.LivePoint), point(out.Report.CandidatePoint)
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	r := &out.Report
	if r.Pairs == 0 {
		fmt.Fprintf(w, "no shadow results paired with live results in %s (is segad.shadow set and the daemon running?)\n", hc.Path+hc.URL)
		return nil
	}
	fmt.Fprintf(w, "candidate %s: %d parts judged by both, agreement %.2f%% (%d)\n", r.Candidate, r.Pairs, 100*out.Agreement, r.Agree)
	if r.CandidateErrors > 0 || r.Unpaired > 0 {
		fmt.Fprintf(w, "candidate errors %d, shadow results without their live result %d\n", r.CandidateErrors, r.Unpaired)
	}
	list := func(title string, ps []shadow.Part) {
		fmt.Fprintf(w, "%s: %d\n", title, len(ps))
		for _, p := range ps {
			fmt.Fprintf(w, "  seq %d part %q live %s %s (%s) candidate %s %s label %q\n", p.Seq, p.PartID, p.LiveVerdict, scoreText(p.LiveScore),
				p.LiveID, p.CandidateVerdict, scoreText(p.CandidateScore), p.Label)
		}
	}
	list("candidate rejects, live passed", r.CandidateRejects)
	list("candidate passes, live rejected", r.CandidatePasses)
	for _, x := range []struct {
		name string
		p    pointOut
	}{{"live", out.Live}, {"candidate", out.Cand}} {
		fmt.Fprintf(w, "%-9s recall %d/%d = %.3f [%.3f, %.3f]  false reject %d/%d = %.3f [%.3f, %.3f] (labelled parts, 95%% exact)\n", x.name,
			x.p.BadRejected, x.p.Bad, x.p.Recall, x.p.RecallCI.Low, x.p.RecallCI.High,
			x.p.GoodRejected, x.p.Good, x.p.FalseReject, x.p.FalseRejectCI.Low, x.p.FalseRejectCI.High)
	}
	return nil
}

// runPromote swaps segad.bundle and segad.shadow.bundle (rollback: back to
// the last promotion's previous bundle) and records it.
func runPromote(w io.Writer, cfgPath, who string, rollback bool) error {
	if who == "" {
		who = os.Getenv("SUDO_USER")
	}
	if who == "" {
		who = os.Getenv("USER")
	}
	p, err := promoteConfig(cfgPath, who, rollback, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: segad.bundle %s -> %s (shadow: %s); recorded in %s; the running daemon reloads the file\n",
		p.Action, p.OldBundle, p.NewBundle, p.NewShadow, promotionsFile(cfgPath))
	return nil
}

// scoreText prints a score, "-" when the part was not scored.
func scoreText(s *float64) string {
	if s == nil {
		return "-"
	}
	return strconv.FormatFloat(*s, 'g', 6, 64)
}
