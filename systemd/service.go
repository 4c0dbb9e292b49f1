package systemd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/kardianos/service"
)

// PlatformSystemd is kardianos/service's name for systemd.
const PlatformSystemd = "linux-systemd"

// ErrNotSystemd is returned when this computer does not run systemd, which
// segad's units, sd_notify and hardening rely on.
var ErrNotSystemd = errors.New("systemd is not running on this computer")

// Manager installs and controls the segad service through kardianos/service,
// with segad's own unit as the "SystemdScript" template.
type Manager struct {
	unit     Unit
	svc      service.Service
	platform string
	log      *slog.Logger

	// The hooks below are the system boundary; tests replace them.
	userService bool   // install to ~/.config/systemd/user (tests only)
	unitDir     string // where InstallTemplate writes; /etc/systemd/system
	euid        func() int
	lookupUser  func(string) error
	lookupGroup func(string) error
	run         func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// noProgram satisfies service.Interface: segad never runs inside
// kardianos's Run (the unit starts `segad run`), it only installs/controls.
type noProgram struct{}

func (noProgram) Start(service.Service) error { return nil }
func (noProgram) Stop(service.Service) error  { return nil }

// NewManager prepares control of the service described by u. It fails only
// on an invalid unit; a missing systemd shows up as ErrNotSystemd from the
// operations that need it.
func NewManager(u Unit, log *slog.Logger) (*Manager, error) {
	u = u.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{
		unit: u, log: log, platform: service.Platform(),
		euid:        os.Geteuid,
		lookupUser:  func(n string) error { _, err := user.Lookup(n); return err },
		lookupGroup: func(n string) error { _, err := user.LookupGroup(n); return err },
		run:         runCommand,
		unitDir:     "/etc/systemd/system",
	}
	if !nameRE.MatchString(u.Name) {
		return nil, fmt.Errorf("service name %q: use letters, digits and _ . : - only (several stations use the %s@.service template)", u.Name, DefaultName)
	}
	return m, nil
}

// Platform is the service manager kardianos/service detected
// ("linux-systemd", "unix-systemv", ...).
func (m *Manager) Platform() string { return m.platform }

// Unit is the unit description this manager installs (defaults applied).
func (m *Manager) Unit() Unit { return m.unit }

// IsSystemd reports whether the detected service manager is systemd.
func (m *Manager) IsSystemd() bool { return m.platform == PlatformSystemd }

func (m *Manager) notSystemd(action string) error {
	return fmt.Errorf("%s %s: %w (service manager detected: %q); segad ships systemd units only; print them with `segad service unit` to install by hand", action, m.unit.UnitFileName(), ErrNotSystemd, m.platform)
}

// service builds the kardianos service with the rendered unit as template.
// The rendered text contains no "{{" (Validate rejects it), so kardianos's
// template engine copies it through unchanged.
func (m *Manager) service(unitText string) (service.Service, error) {
	if m.svc != nil && unitText == "" {
		return m.svc, nil
	}
	args := m.unit.ExecArgs()
	cfg := &service.Config{
		Name:        m.unit.Name,
		DisplayName: m.unit.Name,
		Description: m.unit.Description,
		UserName:    m.unit.User,
		Executable:  args[0],
		Arguments:   args[1:],
		Option: service.KeyValue{
			"SystemdScript": unitText,
			"UserService":   m.userService,
		},
	}
	svc, err := service.New(noProgram{}, cfg)
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", m.unit.Name, err)
	}
	m.svc = svc
	return svc, nil
}

// Install renders the unit, creates the service user if missing, writes the
// environment file if missing, then lets kardianos/service write the unit,
// enable it and reload systemd. It needs root and a running systemd; it
// does not start the service.
func (m *Manager) Install(ctx context.Context) error {
	u := m.unit
	// The caller's own mistakes first: they are what to fix on any computer.
	text, err := Render(u)
	if err != nil {
		return err
	}
	if err := checkFile("config", u.Config, false); err != nil {
		return fmt.Errorf("install %s: %w", u.UnitFileName(), err)
	}
	if err := checkFile("segad binary", u.Binary, true); err != nil {
		return fmt.Errorf("install %s: %w", u.UnitFileName(), err)
	}
	if !m.IsSystemd() {
		return m.notSystemd("install")
	}
	if !m.userService && m.euid() != 0 {
		return fmt.Errorf("install %s: needs root to write /etc/systemd/system and create user %q: run it with sudo", u.UnitFileName(), u.User)
	}
	if !m.userService {
		if err := m.EnsureUser(ctx); err != nil {
			return fmt.Errorf("install %s: %w", u.UnitFileName(), err)
		}
		if err := writeIfMissing(u.EnvironmentFile, DefaultEnvironmentFile); err != nil {
			return fmt.Errorf("install %s: %w", u.UnitFileName(), err)
		}
	}
	svc, err := m.service(text)
	if err != nil {
		return err
	}
	if err := svc.Install(); err != nil {
		if strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("install %s: %w; run `segad service uninstall --name %s` first to replace it", u.UnitFileName(), err, u.Name)
		}
		return fmt.Errorf("install %s: %w", u.UnitFileName(), err)
	}
	m.log.Info("service installed", "unit", u.UnitFileName(), "binary", u.Binary, "config", u.Config, "user", u.User)
	return nil
}

// InstallTemplate writes the instance template (Unit.TemplateFileName) for
// several stations on one computer, creates the user and environment file
// like Install, and reloads systemd. Enable stations with
// `systemctl enable --now NAME@STATION` (config ConfigDir/STATION.yaml).
// kardianos/service is not used here: it names units NAME.service and runs
// `systemctl enable` on them, which a template without an instance refuses.
func (m *Manager) InstallTemplate(ctx context.Context) error {
	u := m.unit
	text, err := RenderTemplate(u)
	if err != nil {
		return err
	}
	file := u.TemplateFileName()
	if err := checkFile("segad binary", u.Binary, true); err != nil {
		return fmt.Errorf("install %s: %w", file, err)
	}
	if !m.IsSystemd() {
		return fmt.Errorf("install %s: %w (service manager detected: %q)", file, ErrNotSystemd, m.platform)
	}
	if m.euid() != 0 {
		return fmt.Errorf("install %s: needs root to write %s and create user %q: run it with sudo", file, m.unitDir, u.User)
	}
	if err := m.EnsureUser(ctx); err != nil {
		return fmt.Errorf("install %s: %w", file, err)
	}
	if err := writeIfMissing(u.EnvironmentFile, DefaultEnvironmentFile); err != nil {
		return fmt.Errorf("install %s: %w", file, err)
	}
	p := filepath.Join(m.unitDir, file)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("install %s: %s already exists; run `segad service uninstall --template --name %s` first to replace it", file, p, u.Name)
	}
	if err != nil {
		return fmt.Errorf("install %s: %w", file, err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("install %s: write %s: %w", file, p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("install %s: write %s: %w", file, p, err)
	}
	if out, err := m.run(ctx, "systemctl", "daemon-reload"); err != nil {
		return fmt.Errorf("install %s: systemctl daemon-reload: %w: %s", file, err, bytes.TrimSpace(out))
	}
	m.log.Info("service template installed", "unit", p, "binary", u.Binary, "config_dir", u.ConfigDir, "user", u.User)
	return nil
}

// UninstallTemplate removes the instance template after stopping and
// disabling its running instances, and reloads systemd.
func (m *Manager) UninstallTemplate(ctx context.Context) error {
	file := m.unit.TemplateFileName()
	if !m.IsSystemd() {
		return fmt.Errorf("uninstall %s: %w (service manager detected: %q)", file, ErrNotSystemd, m.platform)
	}
	if m.euid() != 0 {
		return fmt.Errorf("uninstall %s: needs root: run it with sudo", file)
	}
	// Instances are NAME@STATION.service; disable takes no patterns, so
	// list the loaded ones (enabled instances are loaded) first.
	pattern := m.unit.Name + "@*.service"
	out, err := m.run(ctx, "systemctl", "list-units", "--all", "--plain", "--no-legend", pattern)
	if err != nil {
		m.log.Warn("could not list instances", "pattern", pattern, "err", err)
	}
	var instances []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], m.unit.Name+"@") && strings.HasSuffix(f[0], ".service") {
			instances = append(instances, f[0])
		}
	}
	if len(instances) > 0 {
		args := append([]string{"disable", "--now"}, instances...)
		if out, err := m.run(ctx, "systemctl", args...); err != nil {
			return fmt.Errorf("uninstall %s: systemctl %s: %w: %s", file, strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	p := filepath.Join(m.unitDir, file)
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("uninstall %s: %w", file, err)
	}
	if out, err := m.run(ctx, "systemctl", "daemon-reload"); err != nil {
		return fmt.Errorf("uninstall %s: systemctl daemon-reload: %w: %s", file, err, bytes.TrimSpace(out))
	}
	m.log.Info("service template uninstalled", "unit", p)
	return nil
}

// Uninstall disables the service and removes its unit file. The user,
// /etc/default file and state directories stay: they hold the outbox of
// unsent results and the audit images.
func (m *Manager) Uninstall(ctx context.Context) error {
	if !m.IsSystemd() {
		return m.notSystemd("uninstall")
	}
	if !m.userService && m.euid() != 0 {
		return fmt.Errorf("uninstall %s: needs root: run it with sudo", m.unit.UnitFileName())
	}
	svc, err := m.service("")
	if err != nil {
		return err
	}
	if err := svc.Uninstall(); err != nil {
		return fmt.Errorf("uninstall %s: %w", m.unit.UnitFileName(), err)
	}
	m.log.Info("service uninstalled", "unit", m.unit.UnitFileName())
	return nil
}

// Control runs start, stop or restart through kardianos/service.
func (m *Manager) Control(ctx context.Context, action string) error {
	if !m.IsSystemd() {
		return m.notSystemd(action)
	}
	svc, err := m.service("")
	if err != nil {
		return err
	}
	switch action {
	case "start":
		err = svc.Start()
	case "stop":
		err = svc.Stop()
	case "restart":
		err = svc.Restart()
	default:
		return fmt.Errorf("service action %q: want start, stop or restart", action)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w (see `journalctl -u %s`)", action, m.unit.UnitFileName(), err, m.unit.UnitFileName())
	}
	m.log.Info("service "+action, "unit", m.unit.UnitFileName())
	return nil
}

// State is what `segad service status` reports.
type State struct {
	// Unit is the unit file name.
	Unit string
	// Platform is the detected service manager.
	Platform string
	// Systemd is false when systemd is not running here.
	Systemd bool
	// State is "running", "stopped", "failed", "not installed" or "unknown".
	State string
	// Properties are selected `systemctl show` properties (ActiveState,
	// SubState, MainPID, StatusText, NRestarts, ...), when available.
	Properties map[string]string
}

// statusProperties are shown by `segad service status`: StatusText is what
// the daemon sent with Notifier.Status.
var statusProperties = []string{"ActiveState", "SubState", "UnitFileState", "MainPID", "StatusText", "NRestarts", "ActiveEnterTimestamp", "Result"}

// Status asks kardianos/service for the state and systemctl for details.
// Off systemd it returns a State with Systemd false and ErrNotSystemd.
func (m *Manager) Status(ctx context.Context) (State, error) {
	st := State{Unit: m.unit.UnitFileName(), Platform: m.platform, Systemd: m.IsSystemd(), State: "unknown"}
	if !st.Systemd {
		return st, m.notSystemd("status")
	}
	svc, err := m.service("")
	if err != nil {
		return st, err
	}
	s, err := svc.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		st.State = "not installed"
		return st, nil
	case err != nil && strings.Contains(err.Error(), "failed"):
		st.State = "failed"
	case err != nil:
		return st, fmt.Errorf("status %s: %w", st.Unit, err)
	case s == service.StatusRunning:
		st.State = "running"
	case s == service.StatusStopped:
		st.State = "stopped"
	}
	args := []string{"show", "--property=" + strings.Join(statusProperties, ","), st.Unit}
	if m.userService {
		args = append(args, "--user")
	}
	out, err := m.run(ctx, "systemctl", args...)
	if err != nil {
		// Details are a bonus; the state above is already known.
		m.log.Debug("systemctl show failed", "unit", st.Unit, "err", err)
		return st, nil
	}
	st.Properties = parseProperties(out)
	return st, nil
}

// parseProperties reads `systemctl show` KEY=VALUE lines.
func parseProperties(out []byte) map[string]string {
	p := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && v != "" {
			p[k] = v
		}
	}
	return p
}

// String renders the state for a terminal, one "key: value" per line.
func (s State) String() string {
	var b strings.Builder
	if !s.Systemd {
		fmt.Fprintf(&b, "%s: not managed: systemd is not running on this computer (service manager detected: %q)\n", s.Unit, s.Platform)
		return b.String()
	}
	fmt.Fprintf(&b, "%s: %s\n", s.Unit, s.State)
	for _, k := range statusProperties {
		if v, ok := s.Properties[k]; ok {
			fmt.Fprintf(&b, "  %s: %s\n", k, v)
		}
	}
	return b.String()
}

// EnsureUser creates the service's system user (and its group) when they
// do not exist, with the supplementary groups that exist here. It needs root.
func (m *Manager) EnsureUser(ctx context.Context) error {
	u := m.unit
	if m.lookupUser(u.User) == nil {
		return nil
	}
	groupExists := m.lookupGroup(u.Group) == nil
	var groups []string
	for _, g := range u.SupplementaryGroups {
		if m.lookupGroup(g) != nil {
			// useradd would fail outright; the unit's SupplementaryGroups=
			// then fails at start with a clear 216/GROUP instead.
			m.log.Warn("supplementary group does not exist; the user will not be in it", "group", g, "user", u.User)
			continue
		}
		groups = append(groups, g)
	}
	args := UserAddArgs(u.User, u.Group, groupExists, groups, "/var/lib/"+u.Name)
	if out, err := m.run(ctx, "useradd", args...); err != nil {
		return fmt.Errorf("create user %s: useradd %s: %w: %s", u.User, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	m.log.Info("created system user", "user", u.User, "group", u.Group, "groups", groups)
	return nil
}

// UserAddArgs are useradd's arguments for a system account that cannot log
// in, owns no home directory (systemd creates StateDirectory=), and is a
// member of groups. groupExists picks --gid (join it) over --user-group
// (create it): useradd refuses to create a group that already exists.
func UserAddArgs(userName, group string, groupExists bool, groups []string, home string) []string {
	args := []string{"--system", "--no-create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin", "--comment", "segad-edge inspection daemon"}
	if groupExists || group != userName {
		args = append(args, "--gid", group)
	} else {
		args = append(args, "--user-group")
	}
	if len(groups) > 0 {
		args = append(args, "--groups", strings.Join(groups, ","))
	}
	return append(args, userName)
}

// checkFile reports a missing or unusable file by name, before systemd
// would fail later with a terse "status=203/EXEC" or an assertion.
func checkFile(what, p string, executable bool) error {
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, p, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %s: not a regular file", what, p)
	}
	if executable && fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s %s: not executable (chmod +x)", what, p)
	}
	return nil
}

// writeIfMissing creates p with text unless it exists; an admin's edits win.
func writeIfMissing(p, text string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write environment file %s: %w", p, err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("write environment file %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write environment file %s: %w", p, err)
	}
	return nil
}

func runCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}
