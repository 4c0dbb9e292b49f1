package config

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// commented is config/example.yaml with odd but valid formatting added:
// a comment between keys, trailing spaces, CRLF-free blank lines, a
// quoted string and a comment after the threshold.
func commented(t testing.TB) []byte {
	t.Helper()
	s := string(Example)
	s = strings.Replace(s, "segad:\n", "segad:    # the SegAD stage   \n\n  # why: tuned on 2026-11-03 after the new supplier\n", 1)
	s = strings.Replace(s, "  model: models/brf.json ", "  model: \"models/brf.json\"", 1)
	s = "# top comment\n\n" + s + "\n# trailing comment, no newline at the end"
	if !strings.Contains(s, "threshold: 0.0  ") {
		t.Fatal("the example no longer has segad.threshold: 0.0")
	}
	return []byte(s)
}

func writeConfig(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "segad.yaml")
	if err := os.WriteFile(p, data, 0o640); err != nil {
		t.Fatal(err)
	}
	return p
}

// diffLines returns the lines only in a and only in b, when b is a with
// lines replaced in place or inserted (a line diff sufficient for edits
// that touch single lines).
func diffLines(a, b string) (removed, added []string) {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	i := 0
	for i < len(la) && i < len(lb) && la[i] == lb[i] {
		i++
	}
	j, k := len(la)-1, len(lb)-1
	for j >= i && k >= i && la[j] == lb[k] {
		j, k = j-1, k-1
	}
	return la[i : j+1], lb[i : k+1]
}

func fptr(v float64) *float64 { return &v }

// TestEditThresholdsPreservesFile: only the threshold lines change; every
// comment, blank line, quote and the missing final newline stay, and the
// result loads with the new values.
func TestEditThresholdsPreservesFile(t *testing.T) {
	for _, tc := range []struct {
		name           string
		threshold      *float64
		warn           *float64
		removed, added []string
		changes        []FileChange
	}{
		{"threshold only", fptr(1.25), nil,
			[]string{"  threshold: 0.0                 # REQUIRED with model: score >= threshold fails (live), |t| <= 1e6"},
			[]string{"  threshold: 1.25                 # REQUIRED with model: score >= threshold fails (live), |t| <= 1e6"},
			[]FileChange{{"segad.threshold", "0.0", "1.25"}}},
		{"warn absent is inserted after the threshold", nil, fptr(-0.5), nil,
			[]string{"  warn_threshold: -0.5"},
			[]FileChange{{"segad.warn_threshold", "", "-0.5"}}},
		{"both", fptr(2), fptr(1e-3),
			[]string{"  threshold: 0.0                 # REQUIRED with model: score >= threshold fails (live), |t| <= 1e6"},
			[]string{"  threshold: 2                 # REQUIRED with model: score >= threshold fails (live), |t| <= 1e6", "  warn_threshold: 0.001"},
			[]FileChange{{"segad.threshold", "0.0", "2"}, {"segad.warn_threshold", "", "0.001"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := commented(t)
			p := writeConfig(t, orig)
			rev, err := FileRevision(p)
			if err != nil {
				t.Fatal(err)
			}
			newRev, changes, err := EditThresholds(p, rev, tc.threshold, tc.warn)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(p)
			if RevisionOf(got) != newRev || newRev == rev {
				t.Errorf("revision %s, file %s, before %s", newRev, RevisionOf(got), rev)
			}
			removed, added := diffLines(string(orig), string(got))
			if strings.Join(removed, "\n") != strings.Join(tc.removed, "\n") || strings.Join(added, "\n") != strings.Join(tc.added, "\n") {
				t.Errorf("diff:\n-%q\n+%q\nwant\n-%q\n+%q", removed, added, tc.removed, tc.added)
			}
			if len(changes) != len(tc.changes) {
				t.Fatalf("changes %+v, want %+v", changes, tc.changes)
			}
			for i := range changes {
				if changes[i] != tc.changes[i] {
					t.Errorf("change %d: %+v, want %+v", i, changes[i], tc.changes[i])
				}
			}
			c, err := Load(p)
			if err != nil {
				t.Fatalf("edited file does not load: %v", err)
			}
			if tc.threshold != nil && *c.SegAD.Threshold != *tc.threshold {
				t.Errorf("threshold %v", *c.SegAD.Threshold)
			}
			if tc.warn != nil && (c.SegAD.WarnThreshold == nil || *c.SegAD.WarnThreshold != *tc.warn) {
				t.Errorf("warn %v", c.SegAD.WarnThreshold)
			}
			st, _ := os.Stat(p)
			if st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
			}
			leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*segad-edit*"))
			if len(leftovers) > 0 {
				t.Errorf("temporary files left: %v", leftovers)
			}
		})
	}
}

// TestEditRefusesBadInput: each bad value gets a message naming the key
// and the file stays byte-identical.
func TestEditRefusesBadInput(t *testing.T) {
	base := strings.Replace(string(commented(t)), "  # warn_threshold: -1.0 ", "  warn_threshold: -1.0   ", 1)
	for _, tc := range []struct {
		name      string
		threshold *float64
		warn      *float64
		sets      []Set
		want      string
	}{
		{"NaN", fptr(math.NaN()), nil, nil, "segad.threshold: NaN is not a finite number"},
		{"+Inf warn", nil, fptr(math.Inf(1)), nil, "segad.warn_threshold: +Inf is not a finite number"},
		{"out of range", fptr(2e6), nil, nil, "segad.threshold: 2e+06 out of range"},
		{"warn equals threshold", fptr(1), fptr(1), nil, "segad.warn_threshold: 1 must be below segad.threshold 1"},
		{"threshold below the file's warn", fptr(-2), nil, nil, "segad.warn_threshold: -1 must be below segad.threshold -2"},
		{"warn above the file's threshold", nil, fptr(0.5), nil, "segad.warn_threshold: 0.5 must be below segad.threshold 0"},
		{"a string where a number goes", nil, nil, []Set{{"segad.threshold", "abc"}}, "nothing was written"},
		{"unknown key", nil, nil, []Set{{"segad.treshold", 1.0}}, "unknown key"},
		{"bad value type", nil, nil, []Set{{"segad.threshold", 3}}, "want a number or a string"},
		{"not a mapping", nil, nil, []Set{{"segad.mask.x", 1.0}}, "not a mapping"},
		{"list path", nil, nil, []Set{{"detectors[0].model", "x"}}, "dotted key"},
		{"nothing", nil, nil, nil, "neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, []byte(base))
			var err error
			if tc.sets != nil {
				_, _, err = Edit(p, "", tc.sets)
			} else {
				_, _, err = EditThresholds(p, "", tc.threshold, tc.warn)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			t.Log(err)
			if got, _ := os.ReadFile(p); string(got) != base {
				t.Errorf("the file changed:\n%s", got)
			}
		})
	}
}

// TestEditConflict: a file changed on disk since its revision was read is
// refused with both revisions, and kept as the other writer left it.
func TestEditConflict(t *testing.T) {
	p := writeConfig(t, commented(t))
	rev, _ := FileRevision(p)
	other := append(commented(t), []byte("\n# saved by someone else\n")...)
	if err := os.WriteFile(p, other, 0o640); err != nil {
		t.Fatal(err)
	}
	_, _, err := EditThresholds(p, rev, fptr(3), nil)
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want *ConflictError", err)
	}
	if ce.Expected != rev || ce.Current != RevisionOf(other) || !strings.Contains(err.Error(), "changed on disk since it was read") || !strings.Contains(err.Error(), "reload and try again") {
		t.Errorf("%+v: %v", ce, err)
	}
	if got, _ := os.ReadFile(p); string(got) != string(other) {
		t.Error("the other writer's file was overwritten")
	}
}

// TestEditStrings: strings that need quotes get them, plain ones stay
// plain, an absent parent is created, and a symlinked config has its
// target edited (the link stays a link).
func TestEditStrings(t *testing.T) {
	for _, tc := range []struct {
		value, text string
	}{
		{"bundles/v2", "bundles/v2"},
		{"yes", `"yes"`},
		{"1.5", `"1.5"`},
		{"a # b", `"a # b"`},
		{"sp ace: x", `"sp ace: x"`},
		{"", `""`},
	} {
		got, err := formatValue(tc.value)
		if err != nil || got != tc.text {
			t.Errorf("%q: %q, %v; want %q", tc.value, got, err, tc.text)
		}
	}
	dir := t.TempDir()
	real := filepath.Join(dir, "real.yaml")
	if err := os.WriteFile(real, commented(t), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "segad.yaml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	_, changes, err := Edit(link, "", []Set{{"console.session_ttl", "2h0m0s"}, {"mqtt.outbox.path", "/var/lib/segad/out box #1.db"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[1].Old != "/var/lib/segad/outbox.db" || changes[1].New != `"/var/lib/segad/out box #1.db"` {
		t.Errorf("changes %+v", changes)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the symlink was replaced by a file")
	}
	c, err := Load(link)
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.Outbox.Path != "/var/lib/segad/out box #1.db" || c.Console.SessionTTL.Hours() != 2 {
		t.Errorf("outbox %q ttl %v", c.MQTT.Outbox.Path, c.Console.SessionTTL)
	}
}

// TestEditWriteFails: a write that fails (a read-only folder, a full disk)
// leaves the file as it was and no temporary file behind.
func TestEditWriteFails(t *testing.T) {
	t.Run("read-only folder", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes into read-only folders; the full-disk case below covers the failed write")
		}
		p := writeConfig(t, commented(t))
		dir := filepath.Dir(p)
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o755)
		if _, _, err := EditThresholds(p, "", fptr(1), nil); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("error %v", err)
		}
		if got, _ := os.ReadFile(p); string(got) != string(commented(t)) {
			t.Error("file changed")
		}
	})
	t.Run("full disk", func(t *testing.T) {
		p := writeConfig(t, commented(t))
		// RLIMIT_FSIZE makes every write past the limit fail with EFBIG
		// (Go ignores SIGXFSZ), as a full disk would; no test runs in
		// parallel with this one in this package.
		var old syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Skip(err)
		}
		lim := old
		lim.Cur = 100
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			t.Skip(err)
		}
		_, _, err := EditThresholds(p, "", fptr(1), nil)
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Fatal(err)
		}
		if err == nil || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("error %v", err)
		}
		if got, _ := os.ReadFile(p); string(got) != string(commented(t)) {
			t.Error("file changed")
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*segad-edit*")); len(left) > 0 {
			t.Errorf("temporary files left: %v", left)
		}
	})
}

// TestEditRace: consoles applying at once on one revision: exactly one
// wins, the others get a conflict; a writer outside the process saving
// meanwhile is never overwritten unseen, and the file is always whole.
func TestEditRace(t *testing.T) {
	p := writeConfig(t, commented(t))
	rev, _ := FileRevision(p)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = EditThresholds(p, rev, fptr(float64(i+1)), nil)
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		var ce *ConflictError
		switch {
		case err == nil:
			wins++
		case !errors.As(err, &ce):
			t.Errorf("error %v, want a conflict", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d edits won, want 1", wins)
	}

	// An outside writer appends comments while edits run on fresh revisions.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(p)
			if err != nil || len(b) == 0 {
				continue
			}
			tmp := p + ".other"
			_ = os.WriteFile(tmp, append(b, []byte("\n# other writer\n")...), 0o640)
			_ = os.Rename(tmp, p)
			time.Sleep(time.Millisecond)
		}
	}()
	ok, conflicts := 0, 0
	for i := range 40 {
		r, err := FileRevision(p)
		if err != nil {
			continue
		}
		_, _, err = EditThresholds(p, r, fptr(float64(i)/10), nil)
		var ce *ConflictError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &ce):
			conflicts++
		default:
			t.Errorf("edit %d: %v", i, err)
		}
	}
	close(stop)
	<-done
	if _, err := Load(p); err != nil {
		t.Errorf("file broken after the race: %v", err)
	}
	t.Logf("with an outside writer: %d applied, %d conflicts", ok, conflicts)
}

// TestEditShapes: line ends, empty values with comments, and parents
// created where the file has none.
func TestEditShapes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		file     string
		sets     []Set
		want     string // the whole edited file
		wantKeys int
	}{
		{"CRLF file keeps CRLF",
			strings.ReplaceAll(minimal, "\n", "\r\n"),
			[]Set{{"segad.threshold", 0.75}, {"segad.warn_threshold", 0.25}},
			"", 2},
		{"empty value with a comment",
			strings.Replace(minimal, "segad:\n", "segad:\n  warn_threshold:   # set me\n", 1),
			[]Set{{"segad.warn_threshold", -0.5}},
			strings.Replace(minimal, "segad:\n", "segad:\n  warn_threshold: -0.5   # set me\n", 1), 1},
		{"parent created at the end",
			minimal,
			[]Set{{"console.session_ttl", "2h"}},
			minimal + "console:\n  session_ttl: 2h\n", 1},
		{"same value: no change, no write",
			minimal,
			[]Set{{"station", "s1"}},
			minimal, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, []byte(tc.file))
			_, changes, err := Edit(p, "", tc.sets)
			if err != nil {
				t.Fatal(err)
			}
			if len(changes) != tc.wantKeys {
				t.Errorf("changes %+v", changes)
			}
			got, _ := os.ReadFile(p)
			if tc.want != "" && string(got) != tc.want {
				t.Errorf("file:\n%q\nwant\n%q", got, tc.want)
			}
			if strings.Contains(tc.file, "\r\n") && strings.Count(string(got), "\n") != strings.Count(string(got), "\r\n") {
				t.Errorf("mixed line ends: %q", got)
			}
			if _, err := Load(p); err != nil {
				t.Errorf("edited file does not load: %v", err)
			}
		})
	}
}

// FuzzEditString: any string written by Edit either reads back as exactly
// that string with only its own line changed, or is refused with the file
// untouched.
func FuzzEditString(f *testing.F) {
	for _, s := range []string{"/plain/path.db", "/with space/x.db", "/hash #1.db", "/quote\"d.db", "/single'q.db",
		"/colon: x.db", "/tab\tx.db", "/new\nline.db", "/ünïcode.db", "/~", "/null", "/-x", "/@x", "/x\\y.db", "/%x", "/&a *b !c"} {
		f.Add(s)
	}
	base := commented(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, v string) {
		p := filepath.Join(dir, "segad.yaml")
		if err := os.WriteFile(p, base, 0o640); err != nil {
			t.Fatal(err)
		}
		_, _, err := Edit(p, "", []Set{{"mqtt.outbox.path", v}})
		got, _ := os.ReadFile(p)
		if err != nil {
			if string(got) != string(base) {
				t.Fatalf("refused (%v) but the file changed", err)
			}
			return
		}
		c, err := Load(p)
		if err != nil {
			t.Fatalf("written but does not load: %v", err)
		}
		if want := resolvePath(dir, v); c.MQTT.Outbox.Path != want {
			t.Fatalf("reads back %q, want %q", c.MQTT.Outbox.Path, want)
		}
		removed, added := diffLines(string(base), string(got))
		if len(removed) != 1 || len(added) != 1 || !strings.HasPrefix(added[0], "    path: ") {
			t.Fatalf("diff -%q +%q", removed, added)
		}
	})
}
