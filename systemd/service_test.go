package systemd

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kardianos/service"
)

// fakeSystemd makes kardianos/service choose its systemd backend on this
// computer (which has no running systemd) and puts a stand-in systemctl on
// PATH that logs its arguments. The unit is written by the real library
// code, as a user service under a temporary $HOME, so nothing outside the
// test's folders is touched. The stand-in replaces only what cannot run
// here: the service manager itself.
func fakeSystemd(t *testing.T, isActive string) (home, logFile string) {
	t.Helper()
	// Registered first so it runs after t.Setenv has restored PATH.
	t.Cleanup(func() { service.ChooseSystem(service.AvailableSystems()...) })
	bindir := t.TempDir()
	home = t.TempDir()
	logFile = filepath.Join(t.TempDir(), "systemctl.log")
	script := `#!/bin/sh
echo "$@" >> "` + logFile + `"
case "$1" in
is-active) echo "` + isActive + `" ;;
list-unit-files) echo "segad.service enabled" ;;
show) printf 'ActiveState=active\nSubState=running\nMainPID=4242\nStatusText=inspecting, 9.8 fps\nNRestarts=3\nResult=\n' ;;
esac
exit 0
`
	if err := os.WriteFile(filepath.Join(bindir, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// kardianos detects systemd by rpm-ostree on PATH before anything else.
	if err := os.WriteFile(filepath.Join(bindir, "rpm-ostree"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bindir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("HOME", home)
	service.ChooseSystem(service.AvailableSystems()...)
	if service.Platform() != PlatformSystemd {
		t.Fatalf("kardianos chose %q, want %q", service.Platform(), PlatformSystemd)
	}
	return home, logFile
}

func testUnit(t *testing.T) Unit {
	t.Helper()
	dir := t.TempDir()
	bin := fakeBinary(t, dir)
	cfg := filepath.Join(dir, "station 1.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Unit{Binary: bin, Config: cfg}
}

// TestInstallThroughKardianos runs the library's real systemd Install,
// Status and Uninstall with our unit as SystemdScript and checks that the
// file it writes is byte-for-byte our rendering: its template engine must
// not alter (or choke on) the already-rendered text.
func TestInstallThroughKardianos(t *testing.T) {
	home, logFile := fakeSystemd(t, "active")
	u := testUnit(t)
	m, err := NewManager(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.userService = true
	ctx := context.Background()

	if err := m.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	written, err := os.ReadFile(filepath.Join(home, ".config/systemd/user/segad.service"))
	if err != nil {
		t.Fatalf("unit not written where kardianos puts user units: %v", err)
	}
	want, err := Render(u)
	if err != nil {
		t.Fatal(err)
	}
	if string(written) != want {
		t.Errorf("kardianos wrote a different unit:\n--- got\n%s\n--- want\n%s", written, want)
	}

	if err := m.Install(ctx); err == nil || !strings.Contains(err.Error(), "uninstall") {
		t.Errorf("second Install error = %v, want one that says to uninstall first", err)
	}

	st, err := m.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.State != "running" || st.Properties["StatusText"] != "inspecting, 9.8 fps" || st.Properties["NRestarts"] != "3" {
		t.Errorf("Status = %+v, want running with the daemon's status text", st)
	}
	if _, ok := st.Properties["Result"]; ok {
		t.Error("empty properties should be left out")
	}
	if s := st.String(); !strings.Contains(s, "segad.service: running") || !strings.Contains(s, "StatusText: inspecting, 9.8 fps") {
		t.Errorf("State.String() = %q", s)
	}

	for _, action := range []string{"start", "stop", "restart"} {
		if err := m.Control(ctx, action); err != nil {
			t.Errorf("Control(%s): %v", action, err)
		}
	}
	if err := m.Control(ctx, "reload"); err == nil {
		t.Error("Control(reload) succeeded, want an error naming the valid actions")
	}
	if err := m.Uninstall(ctx); err != nil {
		t.Fatalf("Uninstall: %v", err)
	}
	if _, err := os.Stat(filepath.Join(home, ".config/systemd/user/segad.service")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unit file still there after Uninstall: %v", err)
	}

	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	calls := strings.Split(strings.TrimSpace(string(log)), "\n")
	for _, c := range []string{"enable --user segad.service", "daemon-reload --user", "is-active segad.service --user",
		"start --user segad.service", "stop --user segad.service", "restart --user segad.service", "disable --user segad.service"} {
		if !slices.Contains(calls, c) {
			t.Errorf("systemctl never called with %q; calls:\n%s", c, log)
		}
	}
}

func TestStatusStates(t *testing.T) {
	tests := []struct {
		isActive, want string
	}{
		{"active", "running"},
		{"activating", "running"},
		{"inactive", "stopped"},
		{"failed", "failed"},
		{"unknown", "not installed"},
	}
	for _, tc := range tests {
		t.Run(tc.isActive, func(t *testing.T) {
			fakeSystemd(t, tc.isActive)
			m, err := NewManager(testUnit(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			m.userService = true
			st, err := m.Status(context.Background())
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			if st.State != tc.want {
				t.Errorf("is-active %q: State %q, want %q", tc.isActive, st.State, tc.want)
			}
		})
	}
}

// TestNotSystemd runs on this computer's real service manager when it is
// not systemd: every action must say so, naming what was detected.
func TestNotSystemd(t *testing.T) {
	m, err := NewManager(testUnit(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.IsSystemd() {
		m.platform = "unix-systemv" // same check, on a computer that has systemd
	}
	ctx := context.Background()
	st, err := m.Status(ctx)
	if !errors.Is(err, ErrNotSystemd) || st.Systemd {
		t.Fatalf("Status = %+v, %v; want ErrNotSystemd", st, err)
	}
	if s := st.String(); !strings.Contains(s, "systemd is not running") || !strings.Contains(s, m.platform) {
		t.Errorf("status text %q does not say systemd is missing", s)
	}
	for name, op := range map[string]func() error{
		"install":   func() error { return m.Install(ctx) },
		"uninstall": func() error { return m.Uninstall(ctx) },
		"start":     func() error { return m.Control(ctx, "start") },
	} {
		if err := op(); !errors.Is(err, ErrNotSystemd) || !strings.Contains(err.Error(), m.platform) {
			t.Errorf("%s error = %v, want ErrNotSystemd naming %q", name, err, m.platform)
		}
	}
}

func TestInstallChecks(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Unit)
		euid    int
		errPart string
	}{
		{"not root", func(*Unit) {}, 1000, "needs root"},
		{"missing config", func(u *Unit) { u.Config = filepath.Join(filepath.Dir(u.Config), "nope.yaml") }, 0, "nope.yaml: stat"},
		{"config is a directory", func(u *Unit) { u.Config = filepath.Dir(u.Config) }, 0, "not a regular file"},
		{"binary not executable", func(u *Unit) { u.Binary = u.Config }, 0, "not executable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := testUnit(t)
			tc.edit(&u)
			m, err := NewManager(u, nil)
			if err != nil {
				t.Fatal(err)
			}
			m.platform = PlatformSystemd
			m.euid = func() int { return tc.euid }
			m.lookupUser = func(string) error { t.Fatal("user lookup before the checks"); return nil }
			err = m.Install(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.errPart) || !strings.Contains(err.Error(), "segad.service") {
				t.Fatalf("Install error = %v, want one containing %q and the unit", err, tc.errPart)
			}
		})
	}
}

func TestEnsureUser(t *testing.T) {
	errNo := errors.New("unknown")
	tests := []struct {
		name      string
		unit      Unit
		users     []string // existing users
		groups    []string // existing groups
		runErr    error
		wantArgs  []string // nil: useradd must not run
		wantError string
	}{
		{
			name:  "user exists",
			users: []string{"segad"}, groups: []string{"segad", "video"},
		},
		{
			name:   "fresh computer",
			groups: []string{"video"},
			wantArgs: []string{"--system", "--no-create-home", "--home-dir", "/var/lib/segad", "--shell", "/usr/sbin/nologin",
				"--comment", "segad-edge inspection daemon", "--user-group", "--groups", "video", "segad"},
		},
		{
			name:   "group left over from an earlier install",
			groups: []string{"segad", "video"},
			wantArgs: []string{"--system", "--no-create-home", "--home-dir", "/var/lib/segad", "--shell", "/usr/sbin/nologin",
				"--comment", "segad-edge inspection daemon", "--gid", "segad", "--groups", "video", "segad"},
		},
		{
			name:   "no video group here",
			unit:   Unit{SupplementaryGroups: []string{"video", "render"}},
			groups: []string{"render"},
			wantArgs: []string{"--system", "--no-create-home", "--home-dir", "/var/lib/segad", "--shell", "/usr/sbin/nologin",
				"--comment", "segad-edge inspection daemon", "--user-group", "--groups", "render", "segad"},
		},
		{
			name:   "useradd fails",
			groups: []string{"video"}, runErr: errors.New("exit status 9"),
			wantArgs:  []string{"--system", "--no-create-home", "--home-dir", "/var/lib/segad", "--shell", "/usr/sbin/nologin", "--comment", "segad-edge inspection daemon", "--user-group", "--groups", "video", "segad"},
			wantError: "create user segad: useradd --system",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.unit
			u.Binary, u.Config = "/usr/bin/segad", "/etc/segad/a.yaml"
			m, err := NewManager(u, nil)
			if err != nil {
				t.Fatal(err)
			}
			in := func(list []string) func(string) error {
				return func(n string) error {
					if slices.Contains(list, n) {
						return nil
					}
					return errNo
				}
			}
			m.lookupUser, m.lookupGroup = in(tc.users), in(tc.groups)
			var ran []string
			m.run = func(_ context.Context, name string, args ...string) ([]byte, error) {
				if name != "useradd" {
					t.Errorf("ran %s, want useradd", name)
				}
				ran = args
				return []byte("useradd: some reason"), tc.runErr
			}
			err = m.EnsureUser(context.Background())
			if !slices.Equal(ran, tc.wantArgs) {
				t.Errorf("useradd args\n got %q\nwant %q", ran, tc.wantArgs)
			}
			switch {
			case tc.wantError == "" && err != nil:
				t.Errorf("EnsureUser: %v", err)
			case tc.wantError != "" && (err == nil || !strings.Contains(err.Error(), tc.wantError) || !strings.Contains(err.Error(), "some reason")):
				t.Errorf("EnsureUser error = %v, want %q with useradd's output", err, tc.wantError)
			}
		})
	}
}

// TestUserAddArgsAccepted feeds the constructed arguments to the real
// useradd in a mode that changes nothing (--help parses no account), only
// when useradd exists; it guards against misspelled long options.
func TestUserAddArgsAccepted(t *testing.T) {
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		for _, d := range []string{"/usr/sbin/useradd", "/sbin/useradd"} {
			if _, e := os.Stat(d); e == nil {
				useradd = d
			}
		}
	}
	if useradd == "" {
		t.Skip("useradd not installed")
	}
	out, _ := exec.Command(useradd, "--help").CombinedOutput()
	for _, a := range UserAddArgs("segad", "segad", false, []string{"video"}, "/var/lib/segad") {
		if strings.HasPrefix(a, "--") && !strings.Contains(string(out), a) {
			t.Errorf("useradd --help does not list option %s", a)
		}
	}
}

func TestWriteIfMissing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "segad")
	if err := writeIfMissing(p, DefaultEnvironmentFile); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("GOMEMLIMIT=1GiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeIfMissing(p, DefaultEnvironmentFile); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "GOMEMLIMIT=1GiB\n" {
		t.Errorf("an admin's environment file was overwritten: %q", b)
	}
	if err := writeIfMissing(filepath.Join(dir, "no", "such", "dir"), "x"); err == nil || !strings.Contains(err.Error(), "no/such/dir") {
		t.Errorf("error %v does not name the file", err)
	}
}

// TestInstallTemplate writes segad@.service into a temporary unit folder
// with systemctl replaced by a recorder, then uninstalls it.
func TestInstallTemplate(t *testing.T) {
	u := testUnit(t)
	u.EnvironmentFile = filepath.Join(t.TempDir(), "segad")
	m, err := NewManager(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.platform, m.euid, m.unitDir = PlatformSystemd, func() int { return 0 }, t.TempDir()
	m.lookupUser = func(string) error { return nil } // the user exists
	var calls []string
	m.run = func(_ context.Context, name string, args ...string) ([]byte, error) {
		calls = append(calls, name+" "+strings.Join(args, " "))
		if len(args) > 0 && args[0] == "list-units" {
			return []byte("segad@line1.service loaded active running segad (station line1)\nsegad@line2.service loaded failed failed segad (station line2)\n"), nil
		}
		return nil, nil
	}
	ctx := context.Background()
	if err := m.InstallTemplate(ctx); err != nil {
		t.Fatalf("InstallTemplate: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(m.unitDir, "segad@.service"))
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := RenderTemplate(u); string(got) != want {
		t.Errorf("written template differs from RenderTemplate")
	}
	if env, err := os.ReadFile(u.EnvironmentFile); err != nil || string(env) != DefaultEnvironmentFile {
		t.Errorf("environment file not created: %v", err)
	}
	if err := m.InstallTemplate(ctx); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second InstallTemplate: %v, want 'already exists'", err)
	}
	if err := m.UninstallTemplate(ctx); err != nil {
		t.Fatalf("UninstallTemplate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.unitDir, "segad@.service")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("template still there: %v", err)
	}
	want := []string{
		"systemctl daemon-reload",
		"systemctl list-units --all --plain --no-legend segad@*.service",
		"systemctl disable --now segad@line1.service segad@line2.service",
		"systemctl daemon-reload",
	}
	if !slices.Equal(calls, want) {
		t.Errorf("systemctl calls\n got %q\nwant %q", calls, want)
	}
}
