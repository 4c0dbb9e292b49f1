package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/result"
)

// TestResultsCmd runs `segad results query|show|export|label` on a SQLite
// history while a store keeps writing to it (the daemon's situation), and
// checks that bad parameters are refused with the reason.
func TestResultsCmd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	s, err := history.Open(context.Background(), history.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().Add(-time.Minute)
	var ids []string
	for i := range 30 {
		at := now.Add(time.Duration(i) * time.Millisecond)
		score := float64(i) / 10
		r := result.Result{ID: result.NewID(at), Station: "st1", Seq: uint64(i), PartID: fmt.Sprintf("P%d", i),
			DecidedAt: at, Verdict: result.VerdictPass, Score: &score, Threshold: 2}
		if score >= 2 {
			r.Verdict = result.VerdictFail
		}
		ids = append(ids, r.ID)
		_ = s.Publish(context.Background(), r)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := newResultsCmd()
		var out, errOut bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(append(args, "--db", path))
		err := cmd.ExecuteContext(context.Background())
		return out.String() + errOut.String(), err
	}
	// Keep writing meanwhile.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 1000; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			_ = s.Publish(context.Background(), result.Result{ID: result.NewID(time.Now()), Station: "st2", Seq: uint64(i), DecidedAt: time.Now(), Verdict: result.VerdictPass})
		}
	}()

	out, err := run("query", "--verdict", "fail", "--station", "st1", "--limit", "4")
	if err != nil || strings.Count(out, "\n") != 6 || !strings.Contains(out, ids[29]) || !strings.Contains(out, "more: --cursor") {
		t.Fatalf("query: %v\n%s", err, out)
	}
	if out, err = run("label", ids[25], "--label", "bad", "--defect-type", "scratch", "--note", "left edge", "--who", "qa1"); err != nil || !strings.Contains(out, "labelled bad by qa1") {
		t.Fatalf("label: %v\n%s", err, out)
	}
	out, err = run("show", ids[25])
	var row history.Row
	if err != nil || json.Unmarshal([]byte(out), &row) != nil || row.Label == nil || row.Label.Note != "left edge" || len(row.Labels) != 1 {
		t.Fatalf("show: %v\n%s", err, out)
	}
	out, err = run("export", "--jsonl", "--label", "bad")
	if err != nil || !strings.Contains(out, ids[25]) || !strings.Contains(out, "1 results exported") {
		t.Fatalf("export: %v\n%s", err, out)
	}
	out, err = run("export", "--csv", "--station", "st1", "--since", "1h")
	if err != nil || !strings.HasPrefix(out, "id,station,") || !strings.Contains(out, "30 results exported") {
		t.Fatalf("export csv: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"query", "--limit", "100000"}, "limit=\"100000\": must be a whole number 1..1000"},
		{[]string{"query", "--cursor", "'; DROP TABLE results;--"}, "cursor="},
		{[]string{"query", "--since", "yesterday"}, "since=\"yesterday\": not a time"},
		{[]string{"export"}, "exactly one of --csv or --jsonl"},
		{[]string{"label", ids[1], "--label", "meh", "--who", "a"}, "must be good or bad"},
		{[]string{"label", ids[1], "--label", "good"}, "who=\"\": required"},
		{[]string{"show", "NOPE"}, "no such result"},
	} {
		out, err := run(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v (%s), want %q", c.args, err, out, c.want)
		}
	}
}
