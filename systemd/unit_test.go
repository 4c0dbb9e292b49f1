package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// parseUnit reads a unit file into section -> key -> values (in order), the
// way systemd sees it: comments and blank lines skipped.
func parseUnit(t *testing.T, text string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("unit line %q is not KEY=VALUE inside a section", line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// want is one expected directive: values nil means "must be absent".
type want struct {
	section, key string
	values       []string
}

func checkDirectives(t *testing.T, text string, wants []want) {
	t.Helper()
	u := parseUnit(t, text)
	for _, w := range wants {
		got, ok := u[w.section][w.key]
		if w.values == nil {
			if ok {
				t.Errorf("[%s] %s=%q present, want absent", w.section, w.key, got)
			}
			continue
		}
		if !slices.Equal(got, w.values) {
			t.Errorf("[%s] %s = %q, want %q", w.section, w.key, got, w.values)
		}
	}
}

// common are the directives every rendering must carry, whatever the options.
var common = []want{
	{"Unit", "After", []string{"network-online.target"}},
	{"Unit", "Wants", []string{"network-online.target"}},
	{"Service", "Type", []string{"notify"}},
	{"Service", "NotifyAccess", []string{"main"}},
	{"Service", "ExecReload", []string{"/bin/kill -HUP $MAINPID"}},
	{"Service", "Restart", []string{"on-failure"}},
	{"Service", "NoNewPrivileges", []string{"yes"}},
	{"Service", "ProtectSystem", []string{"strict"}},
	{"Service", "PrivateTmp", []string{"yes"}},
	{"Service", "PrivateDevices", nil}, // would hide /dev/video*
	{"Service", "DevicePolicy", nil},
	{"Service", "MemoryDenyWriteExecute", nil},
	{"Install", "WantedBy", []string{"multi-user.target"}},
}

func TestRender(t *testing.T) {
	tests := []struct {
		name string
		unit Unit
		want []want
	}{
		{
			name: "defaults",
			unit: Unit{Binary: "/usr/local/bin/segad", Config: "/etc/segad/segad.yaml"},
			want: []want{
				{"Service", "ExecStart", []string{"/usr/local/bin/segad run --config /etc/segad/segad.yaml"}},
				{"Unit", "AssertPathExists", []string{"/etc/segad/segad.yaml"}},
				{"Service", "User", []string{"segad"}},
				{"Service", "Group", []string{"segad"}},
				{"Service", "SupplementaryGroups", []string{"video"}},
				{"Service", "WatchdogSec", []string{"30s"}},
				{"Service", "TimeoutStopSec", []string{"30s"}},
				{"Service", "EnvironmentFile", []string{"-/etc/default/segad"}},
				{"Service", "StateDirectory", []string{"segad"}},
				{"Service", "LogsDirectory", []string{"segad"}},
				{"Service", "CacheDirectory", []string{"segad"}},
				{"Service", "ProtectHome", []string{"yes"}},
				{"Service", "ReadWritePaths", nil},
				{"Service", "Environment", nil},
				{"Service", "LimitNOFILE", []string{"65536"}},
				{"Service", "RestartSec", []string{"2s"}},
			},
		},
		{
			name: "named station, own user, watchdog off, no extra groups",
			unit: Unit{Name: "segad-line2", Binary: "/opt/segad/bin/segad", Config: "/etc/segad/line2.yaml", User: "inspect",
				WatchdogSec: -1, SupplementaryGroups: []string{}, RestartSec: 5 * time.Second, TimeoutStopSec: 1500 * time.Millisecond},
			want: []want{
				{"Service", "User", []string{"inspect"}},
				{"Service", "Group", []string{"inspect"}},
				{"Service", "WatchdogSec", nil},
				{"Service", "SupplementaryGroups", nil},
				{"Service", "RestartSec", []string{"5s"}},
				{"Service", "TimeoutStopSec", []string{"1500ms"}},
				{"Service", "EnvironmentFile", []string{"-/etc/default/segad-line2"}},
				{"Service", "StateDirectory", []string{"segad-line2"}},
				{"Service", "SyslogIdentifier", []string{"segad-line2"}},
			},
		},
		{
			// Space: quoted. '%': a specifier unless doubled. '$': a variable
			// in ExecStart= unless doubled, but literal in Assert*=.
			// '"' and '\': C-escaped inside quotes.
			name: "paths needing quotes and escapes",
			unit: Unit{Binary: "/opt/segad 2/bin/segad", Config: `/etc/segad/50% "a"\b $HOME.yaml`,
				ReadWritePaths: []string{"/srv/audit images", "/srv/plain"}, Description: "line 3 at 100%"},
			want: []want{
				{"Service", "ExecStart", []string{`"/opt/segad 2/bin/segad" run --config "/etc/segad/50%% \"a\"\\b $$HOME.yaml"`}},
				{"Unit", "AssertPathExists", []string{`/etc/segad/50%% "a"\b $HOME.yaml`}},
				{"Unit", "Description", []string{"line 3 at 100%%"}},
				{"Service", "ReadWritePaths", []string{`-"/srv/audit images" -/srv/plain`}},
			},
		},
		{
			// ProtectHome=yes hides /home: a config kept there must stay readable.
			name: "config under /home keeps it readable",
			unit: Unit{Binary: "/usr/bin/segad", Config: "/home/tech/segad.yaml"},
			want: []want{{"Service", "ProtectHome", []string{"read-only"}}},
		},
		{
			name: "environment sorted and quoted",
			unit: Unit{Binary: "/usr/bin/segad", Config: "/etc/segad/a.yaml",
				Environment: map[string]string{"GOMEMLIMIT": "1GiB", "A_NOTE": `50% "hot" day`}},
			want: []want{{"Service", "Environment", []string{`"A_NOTE=50%% \"hot\" day"`, "GOMEMLIMIT=1GiB"}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text, err := Render(tc.unit)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			checkDirectives(t, text, append(slices.Clone(common), tc.want...))
			if strings.Contains(text, "{{") {
				t.Errorf("rendered unit contains {{, which kardianos/service would interpret:\n%s", text)
			}
		})
	}
}

func TestRenderTemplate(t *testing.T) {
	tests := []struct {
		name string
		unit Unit
		want []want
	}{
		{
			name: "defaults",
			unit: Unit{Binary: "/usr/bin/segad", Config: "/ignored.yaml"},
			want: []want{
				{"Service", "ExecStart", []string{"/usr/bin/segad run --config /etc/segad/%i.yaml"}},
				{"Unit", "AssertPathExists", []string{"/etc/segad/%i.yaml"}},
				{"Unit", "Description", []string{"segad-edge inspection daemon (station %i)"}},
				{"Service", "StateDirectory", []string{"segad/%i"}},
				{"Service", "LogsDirectory", []string{"segad/%i"}},
				{"Service", "CacheDirectory", []string{"segad/%i"}},
				{"Service", "WorkingDirectory", []string{"/var/lib/segad/%i"}},
				{"Service", "EnvironmentFile", []string{"-/etc/default/segad", "-/etc/default/segad-%i"}},
				{"Service", "WatchdogSec", []string{"30s"}},
			},
		},
		{
			// The directory's own '%' is doubled; the instance's %i is not.
			name: "config dir with space and percent",
			unit: Unit{Binary: "/usr/bin/segad", ConfigDir: "/srv/100% stations/"},
			want: []want{
				{"Service", "ExecStart", []string{`/usr/bin/segad run --config "/srv/100%% stations/%i.yaml"`}},
				{"Unit", "AssertPathExists", []string{"/srv/100%% stations/%i.yaml"}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text, err := RenderTemplate(tc.unit)
			if err != nil {
				t.Fatalf("RenderTemplate: %v", err)
			}
			checkDirectives(t, text, append(slices.Clone(common), tc.want...))
		})
	}
}

func TestRenderRejects(t *testing.T) {
	ok := Unit{Binary: "/usr/bin/segad", Config: "/etc/segad/a.yaml"}
	tests := []struct {
		name    string
		edit    func(*Unit)
		errPart string
	}{
		{"template-style name", func(u *Unit) { u.Name = "segad@line1" }, "service name"},
		{"name with space", func(u *Unit) { u.Name = "seg ad" }, "service name"},
		{"upper-case user", func(u *Unit) { u.User = "Segad" }, `user "Segad"`},
		{"bad group", func(u *Unit) { u.Group = "1x y" }, "group"},
		{"bad supplementary group", func(u *Unit) { u.SupplementaryGroups = []string{"vid eo"} }, "supplementary group"},
		{"relative config", func(u *Unit) { u.Config = "segad.yaml" }, "config \"segad.yaml\": must be an absolute path"},
		{"missing config", func(u *Unit) { u.Config = "" }, "--config FILE"},
		{"relative binary", func(u *Unit) { u.Binary = "bin/segad" }, "binary"},
		{"newline in config", func(u *Unit) { u.Config = "/etc/a\nExecStartPre=/bin/rm" }, "control character"},
		{"kardianos action in path", func(u *Unit) { u.Config = "/etc/{{Path}}.yaml" }, `"{{"`},
		{"bad env key", func(u *Unit) { u.Environment = map[string]string{"1X": "a"} }, "environment variable name"},
		{"relative rw path", func(u *Unit) { u.ReadWritePaths = []string{"audit"} }, "read-write path"},
		{"sub-second watchdog", func(u *Unit) { u.WatchdogSec = 500 * time.Millisecond }, "watchdog"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := ok
			tc.edit(&u)
			_, err := Render(u)
			if err == nil || !strings.Contains(err.Error(), tc.errPart) {
				t.Fatalf("Render error = %v, want one containing %q", err, tc.errPart)
			}
			if !strings.Contains(err.Error(), "segad") {
				t.Errorf("error %q does not name the unit", err)
			}
		})
	}
}

// verifyUnits runs `systemd-analyze verify` on files and returns the lines
// it reported about them (it exits 0 on many unit problems, printing them).
func verifyUnits(t *testing.T, dir string, files ...string) []string {
	t.Helper()
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd)")
	}
	// Without a running systemd, verify loads the given files plus the
	// system's units; --man=no keeps it from checking man pages.
	cmd := exec.Command(tool, append([]string{"verify", "--man=no"}, files...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var report []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, dir) || strings.Contains(line, "segad") {
			report = append(report, line)
		}
	}
	if err != nil && len(report) == 0 {
		report = append(report, "systemd-analyze verify: "+err.Error()+": "+string(out))
	}
	return report
}

// fakeBinary is a real executable at a path that needs quoting and
// specifier escaping, so a wrong rendering makes verify miss the binary.
func fakeBinary(t *testing.T, dir string) string {
	t.Helper()
	bindir := filepath.Join(dir, "opt %n segad")
	if err := os.MkdirAll(bindir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(bindir, "segad")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestSystemdAnalyzeVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd)")
	}
	dir := t.TempDir()
	bin := fakeBinary(t, dir)
	cfgDir := filepath.Join(dir, "etc segad")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(cfgDir, "line $1.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u := Unit{Binary: bin, Config: cfg, ConfigDir: cfgDir, ReadWritePaths: []string{filepath.Join(dir, "audit dir")},
		Environment: map[string]string{"GOMEMLIMIT": "1GiB"}}

	plain, err := Render(u)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := RenderTemplate(u)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("segad.service", plain)
	write("segad@.service", tmpl)
	// A template is verified through an instance: the link name supplies %i.
	if err := os.Symlink("segad@.service", filepath.Join(dir, "segad@line1.service")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"segad.service", "segad@line1.service"} {
		if report := verifyUnits(t, dir, "./"+f); len(report) > 0 {
			t.Errorf("systemd-analyze verify %s reported:\n%s\nunit:\n%s", f, strings.Join(report, "\n"), plain)
		}
	}

	// Control: the same unit with kardianos/service's stock escaping (space
	// as \x20, '%' left alone, so %n becomes the unit name) must be caught,
	// or the check above proves nothing.
	bad := strings.Replace(plain, "ExecStart="+quoteWord(bin, true), "ExecStart="+strings.ReplaceAll(bin, " ", `\x20`), 1)
	if bad == plain {
		t.Fatal("control unit identical to the rendered one")
	}
	write("bad.service", bad)
	if report := verifyUnits(t, dir, "./bad.service"); len(report) == 0 {
		t.Error("systemd-analyze verify accepted an ExecStart with an unescaped specifier; the check is blind")
	}
}
