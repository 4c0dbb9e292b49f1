// Package systemd runs segad as a system service: it renders segad's own
// systemd units (segad.service for one station, segad@.service for several
// stations on one computer), installs and controls them through
// github.com/kardianos/service, and speaks the sd_notify protocol (READY,
// WATCHDOG, STOPPING, STATUS) so systemd knows when the daemon is warmed up
// and restarts it when its pipeline gets stuck.
//
// Rendering is a pure function (Render, RenderTemplate) so the units can be
// checked without a running systemd; Install hands the rendered text to
// kardianos/service as its "SystemdScript" option.
package systemd

import (
	"bytes"
	_ "embed"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// The unit templates are files in this directory so they read (and diff) as
// units; they are Go text/template files rendered by Render and RenderTemplate.
var (
	//go:embed segad.service.tmpl
	unitTemplateText string
	//go:embed segad@.service.tmpl
	instanceTemplateText string
	// DefaultEnvironmentFile is the commented environment file that install
	// writes to Unit.EnvironmentFile when none exists yet.
	//go:embed segad.default
	DefaultEnvironmentFile string
)

var (
	unitTemplate     = template.Must(template.New("segad.service").Parse(unitTemplateText))
	instanceTemplate = template.Must(template.New("segad@.service").Parse(instanceTemplateText))
)

// Defaults for Unit fields left zero.
const (
	DefaultName            = "segad"
	DefaultUser            = "segad"
	DefaultConfigDir       = "/etc/segad"
	DefaultWatchdogSec     = 30 * time.Second
	DefaultRestartSec      = 2 * time.Second
	DefaultTimeoutStartSec = 5 * time.Minute
	DefaultTimeoutStopSec  = 30 * time.Second
	DefaultLimitNOFILE     = 65536
	documentationURL       = "https://github.com/segad-edge/segad-edge/blob/main/docs/service.md"
)

// DefaultSupplementaryGroups gives the service access to V4L2 cameras.
var DefaultSupplementaryGroups = []string{"video"}

// Unit describes the service to render. Zero fields take the Default* values.
type Unit struct {
	// Name is the service name: unit file Name.service, or Name@.service for
	// the instance template; also the state/log/cache directory name.
	Name string
	// Description is the unit's Description=; "segad-edge inspection daemon"
	// when empty.
	Description string
	// Binary is the absolute path of the segad executable.
	Binary string
	// Config is the absolute path of the YAML configuration (segad.service).
	Config string
	// ConfigDir holds one YAML per station for segad@.service
	// (ConfigDir/INSTANCE.yaml); /etc/segad when empty.
	ConfigDir string
	// User and Group run the daemon; Group defaults to User.
	User, Group string
	// SupplementaryGroups grant device access (video for /dev/video*). Nil
	// means DefaultSupplementaryGroups; an empty non-nil slice means none.
	SupplementaryGroups []string
	// WatchdogSec is systemd's watchdog timeout: the daemon pings at half of
	// it. Zero means DefaultWatchdogSec; negative disables the watchdog.
	WatchdogSec time.Duration
	// RestartSec is the delay before an automatic restart.
	RestartSec time.Duration
	// TimeoutStartSec bounds warm-up (model load, TensorRT engine build).
	TimeoutStartSec time.Duration
	// TimeoutStopSec bounds the graceful shutdown before SIGKILL.
	TimeoutStopSec time.Duration
	// LimitNOFILE is the open-file limit.
	LimitNOFILE int
	// EnvironmentFile is read (optional, "-") for extra environment;
	// /etc/default/Name when empty.
	EnvironmentFile string
	// Environment adds Environment= lines (sorted by key).
	Environment map[string]string
	// ReadWritePaths are extra writable folders under ProtectSystem=strict
	// (an audit folder outside /var/log/Name, say). Missing ones are ignored.
	ReadWritePaths []string
}

// UnitFileName is the unit file name of the plain unit, e.g. "segad.service".
func (u Unit) UnitFileName() string { return u.withDefaults().Name + ".service" }

// TemplateFileName is the unit file name of the instance template, e.g.
// "segad@.service".
func (u Unit) TemplateFileName() string { return u.withDefaults().Name + "@.service" }

func (u Unit) withDefaults() Unit {
	if u.Name == "" {
		u.Name = DefaultName
	}
	if u.Description == "" {
		u.Description = "segad-edge inspection daemon"
	}
	if u.ConfigDir == "" {
		u.ConfigDir = DefaultConfigDir
	}
	if u.User == "" {
		u.User = DefaultUser
	}
	if u.Group == "" {
		u.Group = u.User
	}
	if u.SupplementaryGroups == nil {
		u.SupplementaryGroups = DefaultSupplementaryGroups
	}
	if u.WatchdogSec == 0 {
		u.WatchdogSec = DefaultWatchdogSec
	}
	if u.RestartSec == 0 {
		u.RestartSec = DefaultRestartSec
	}
	if u.TimeoutStartSec == 0 {
		u.TimeoutStartSec = DefaultTimeoutStartSec
	}
	if u.TimeoutStopSec == 0 {
		u.TimeoutStopSec = DefaultTimeoutStopSec
	}
	if u.LimitNOFILE == 0 {
		u.LimitNOFILE = DefaultLimitNOFILE
	}
	if u.EnvironmentFile == "" {
		u.EnvironmentFile = "/etc/default/" + u.Name
	}
	return u
}

// Names that systemd, useradd and our directory layout all accept.
var (
	// Unit name prefix: no "@" (that makes a template) and no "/".
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)
	// Debian's useradd NAME_REGEX (adduser.conf), which systemd also accepts.
	accountRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
	envKeyRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Validate reports the first field that systemd (or the kardianos template
// engine the rendered text goes through) would misread.
func (u Unit) Validate() error {
	return u.withDefaults().validate(false)
}

func (u Unit) validate(instance bool) error {
	if !nameRE.MatchString(u.Name) {
		return fmt.Errorf("service name %q: use letters, digits and _ . : - only (no @, no spaces; several stations use the %s@.service template)", u.Name, DefaultName)
	}
	if len(u.Name) > 200 {
		return fmt.Errorf("service name %q: longer than 200 characters", u.Name)
	}
	for _, f := range []struct{ what, v string }{{"user", u.User}, {"group", u.Group}} {
		if !accountRE.MatchString(f.v) || len(f.v) > 32 {
			return fmt.Errorf("%s %q: use lower-case letters, digits, _ and - (start with a letter or _), at most 32 characters", f.what, f.v)
		}
	}
	for _, g := range u.SupplementaryGroups {
		if !accountRE.MatchString(g) {
			return fmt.Errorf("supplementary group %q: not a valid group name", g)
		}
	}
	if u.Binary == "" {
		return fmt.Errorf("binary path is empty: give the absolute path of the segad executable")
	}
	if err := checkPath("binary", u.Binary); err != nil {
		return err
	}
	if !instance {
		if u.Config == "" {
			return fmt.Errorf("config path is empty: give --config FILE")
		}
		if err := checkPath("config", u.Config); err != nil {
			return err
		}
	} else if err := checkPath("config directory", u.ConfigDir); err != nil {
		return err
	}
	if err := checkPath("environment file", u.EnvironmentFile); err != nil {
		return err
	}
	for _, p := range u.ReadWritePaths {
		if err := checkPath("read-write path", p); err != nil {
			return err
		}
	}
	if err := checkText("description", u.Description); err != nil {
		return err
	}
	for k, v := range u.Environment {
		if !envKeyRE.MatchString(k) {
			return fmt.Errorf("environment variable name %q: use letters, digits and _ (not starting with a digit)", k)
		}
		if err := checkText("environment variable "+k, v); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		what string
		v    time.Duration
	}{{"restart delay", u.RestartSec}, {"start timeout", u.TimeoutStartSec}, {"stop timeout", u.TimeoutStopSec}} {
		if d.v < time.Millisecond {
			return fmt.Errorf("%s %v: must be at least 1ms", d.what, d.v)
		}
	}
	if u.WatchdogSec > 0 && u.WatchdogSec < time.Second {
		return fmt.Errorf("watchdog %v: use at least 1s (the daemon pings at half of it), or a negative value to disable", u.WatchdogSec)
	}
	if u.LimitNOFILE < 0 {
		return fmt.Errorf("open-file limit %d: must be positive", u.LimitNOFILE)
	}
	return nil
}

// checkPath accepts absolute, clean paths without control characters.
func checkPath(what, p string) error {
	if !path.IsAbs(p) {
		return fmt.Errorf("%s %q: must be an absolute path (systemd starts services in /)", what, p)
	}
	return checkText(what, p)
}

// checkText rejects what no systemd quoting can carry on one line, and "{{",
// which kardianos/service's template engine (the rendered unit goes through
// it as SystemdScript) would take for an action.
func checkText(what, s string) error {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s %q: contains a control character (newline, tab, ...)", what, s)
		}
	}
	if strings.Contains(s, "{{") {
		return fmt.Errorf("%s %q: contains \"{{\", which the service template engine would interpret", what, s)
	}
	return nil
}

// escapeSpecifiers protects '%' from systemd's specifier expansion (%i, %h...).
func escapeSpecifiers(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// quoteWord renders one word for a directive that systemd splits into words
// with C-style quoting (ExecStart=, ReadWritePaths=, Environment=). dollar
// also doubles '$', which ExecStart= would expand as a variable. Words
// needing no quotes stay bare so the unit reads naturally.
func quoteWord(s string, dollar bool) string {
	return quoteEscaped(escapeSpecifiers(s), dollar)
}

// quoteEscaped is quoteWord for text whose specifiers are already escaped
// (or deliberate, like the template's %i).
func quoteEscaped(s string, dollar bool) string {
	if dollar {
		s = strings.ReplaceAll(s, "$", "$$")
	}
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._+-:=,@%$", r))
	}) < 0 {
		return s
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}

// ExecArgs returns the argv that ExecStart= runs: binary, "run", "--config",
// config. Install hands it to kardianos/service too (other init systems).
func (u Unit) ExecArgs() []string {
	u = u.withDefaults()
	return []string{u.Binary, "run", "--config", u.Config}
}

// durationSec renders a duration the way systemd parses it ("2s", "500ms").
func durationSec(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

// protectHome picks ProtectHome=: "yes" hides /home, /root and /run/user
// entirely, which would make a binary or config kept there (a technician's
// first install) fail with a confusing "No such file"; then read-only.
func protectHome(paths ...string) string {
	for _, p := range paths {
		for _, h := range []string{"/home", "/root", "/run/user"} {
			if p == h || strings.HasPrefix(p, h+"/") {
				return "read-only"
			}
		}
	}
	return "yes"
}

type unitData struct {
	Name, UnitFile, Description, Documentation   string
	ExecStart, ConfigPath, ConfigDir, AssertPath string
	RestartSec, WatchdogSec                      string
	TimeoutStartSec, TimeoutStopSec              string
	EnvironmentFile                              string
	Environment                                  []string
	User, Group, SupplementaryGroups             string
	DirName, SyslogIdentifier                    string
	LimitNOFILE                                  int
	ProtectHome, ReadWritePaths                  string
}

func (u Unit) data(instance bool) unitData {
	d := unitData{
		Name:                u.Name,
		UnitFile:            u.Name + ".service",
		Description:         escapeSpecifiers(u.Description),
		Documentation:       documentationURL,
		ConfigDir:           escapeSpecifiers(u.ConfigDir),
		RestartSec:          durationSec(u.RestartSec),
		TimeoutStartSec:     durationSec(u.TimeoutStartSec),
		TimeoutStopSec:      durationSec(u.TimeoutStopSec),
		EnvironmentFile:     escapeSpecifiers(u.EnvironmentFile),
		User:                u.User,
		Group:               u.Group,
		SupplementaryGroups: strings.Join(u.SupplementaryGroups, " "),
		DirName:             u.Name,
		SyslogIdentifier:    u.Name,
		LimitNOFILE:         u.LimitNOFILE,
	}
	if u.WatchdogSec > 0 {
		d.WatchdogSec = durationSec(u.WatchdogSec)
	}
	keys := make([]string, 0, len(u.Environment))
	for k := range u.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d.Environment = append(d.Environment, quoteWord(k+"="+u.Environment[k], false))
	}
	rw := make([]string, 0, len(u.ReadWritePaths))
	for _, p := range u.ReadWritePaths {
		// "-": a folder that does not exist yet must not stop the service.
		rw = append(rw, "-"+quoteWord(p, false))
	}
	d.ReadWritePaths = strings.Join(rw, " ")

	bin := quoteWord(u.Binary, true)
	if instance {
		d.UnitFile = u.Name + "@.service"
		d.Description += " (station %i)"
		d.DirName = u.Name + "/%i"
		d.SyslogIdentifier = u.Name + "@%i"
		// %i stays a specifier: the instance name picks the config file.
		d.ConfigPath = quoteEscaped(escapeSpecifiers(strings.TrimSuffix(u.ConfigDir, "/"))+"/%i.yaml", true)
		d.ExecStart = bin + " run --config " + d.ConfigPath
		// Assert*= takes the rest of the line as one path: no quoting.
		d.AssertPath = escapeSpecifiers(strings.TrimSuffix(u.ConfigDir, "/")) + "/%i.yaml"
		d.ProtectHome = protectHome(append([]string{u.Binary, u.ConfigDir}, u.ReadWritePaths...)...)
	} else {
		d.ConfigPath = quoteWord(u.Config, true)
		d.ExecStart = bin + " run --config " + d.ConfigPath
		d.AssertPath = escapeSpecifiers(u.Config)
		d.ProtectHome = protectHome(append([]string{u.Binary, u.Config}, u.ReadWritePaths...)...)
	}
	return d
}

// Render returns the text of the plain unit (Unit.UnitFileName) for one
// station running Binary with Config. It is pure: no file or system access.
func Render(u Unit) (string, error) {
	u = u.withDefaults()
	if err := u.validate(false); err != nil {
		return "", fmt.Errorf("render %s: %w", u.UnitFileName(), err)
	}
	return execute(unitTemplate, u.data(false), u.UnitFileName())
}

// RenderTemplate returns the text of the instance template
// (Unit.TemplateFileName): instance NAME runs with ConfigDir/NAME.yaml and
// its own state directory. Unit.Config is ignored.
func RenderTemplate(u Unit) (string, error) {
	u = u.withDefaults()
	if err := u.validate(true); err != nil {
		return "", fmt.Errorf("render %s: %w", u.TemplateFileName(), err)
	}
	return execute(instanceTemplate, u.data(true), u.TemplateFileName())
}

func execute(t *template.Template, d unitData, file string) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("render %s: %w", file, err)
	}
	return b.String(), nil
}
