package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/segad-edge/segad-edge/systemd"
)

// serviceFlags are shared by the service subcommands; only install and unit
// use the unit-shaping ones.
type serviceFlags struct {
	config, configDir, user, name, binary string
	watchdog                              time.Duration
	rwPaths                               []string
	template                              bool
}

func newServiceCmd() *cobra.Command {
	f := &serviceFlags{}
	cmd := &cobra.Command{
		Use:   "service install|uninstall|start|stop|restart|status|unit",
		Short: "Install and control segad as a systemd service",
		Long: `Install and control segad as a systemd service (segad.service), with segad's own
unit: Type=notify with a watchdog, Restart=on-failure after 2s, a dedicated user in
the video group, environment from /etc/default/NAME, and sandboxing. Several stations
on one computer use the segad@.service template instead (see ` + "`segad service unit --template`" + `).
install/uninstall need root; all need a running systemd except unit.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("service: unknown action %q: want install, uninstall, start, stop, restart, status or unit", args[0])
			}
			return cmd.Help()
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.name, "name", systemd.DefaultName, "service name (unit NAME.service)")
	pf.StringVar(&f.config, "config", "", "YAML configuration `FILE` the service runs with (install, unit)")
	pf.StringVar(&f.user, "user", systemd.DefaultUser, "system user (and group) the service runs as; created by install if missing")
	pf.StringVar(&f.binary, "binary", "", "segad executable the unit starts (default: this executable)")
	pf.DurationVar(&f.watchdog, "watchdog", systemd.DefaultWatchdogSec, "systemd WatchdogSec (0 disables the watchdog)")
	pf.StringArrayVar(&f.rwPaths, "rw-path", nil, "extra writable `DIR` under ProtectSystem=strict (e.g. an audit folder); repeatable")
	pf.StringVar(&f.configDir, "config-dir", systemd.DefaultConfigDir, "with --template: folder of the stations' `DIR`/STATION.yaml")
	pf.BoolVar(&f.template, "template", false, "install/uninstall/unit: the NAME@.service template for several stations (config /etc/segad/STATION.yaml)")

	install := &cobra.Command{
		Use:   "install --config FILE [--user segad] [--name segad] | --template",
		Short: "Write, enable and register the unit (does not start it); needs root",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := f.manager(!f.template)
			if err != nil {
				return err
			}
			if f.binary == "" && strings.HasPrefix(m.Unit().Binary, filepath.Clean(os.TempDir())+string(filepath.Separator)) {
				return fmt.Errorf("this segad runs from %s, a temporary build (go run?): install a built binary, or pass --binary PATH", m.Unit().Binary)
			}
			if f.template {
				if err := m.InstallTemplate(cmd.Context()); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "installed %s@.service; add a station with /etc/segad/STATION.yaml, then: systemctl enable --now %s@STATION\n", f.name, f.name)
				return nil
			}
			if err := m.Install(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed %s; start it with: segad service start --name %s\n", f.name+".service", f.name)
			return nil
		},
	}
	uninstall := &cobra.Command{
		Use:   "uninstall [--name segad] [--template]",
		Short: "Disable and remove the unit (keeps the user, state and audit folders); needs root",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := f.manager(false)
			if err != nil {
				return err
			}
			if f.template {
				return m.UninstallTemplate(cmd.Context())
			}
			return m.Uninstall(cmd.Context())
		},
	}
	cmd.AddCommand(install, uninstall)
	for _, action := range []string{"start", "stop", "restart"} {
		cmd.AddCommand(&cobra.Command{
			Use:   action + " [--name segad]",
			Short: strings.ToUpper(action[:1]) + action[1:] + " the service through systemd",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				m, err := f.manager(false)
				if err != nil {
					return err
				}
				return m.Control(cmd.Context(), action)
			},
		})
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status [--name segad]",
		Short: "Print the service state (and the daemon's last status text)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := f.manager(false)
			if err != nil {
				return err
			}
			st, err := m.Status(cmd.Context())
			fmt.Fprint(cmd.OutOrStdout(), st.String())
			return err
		},
	})
	unit := &cobra.Command{
		Use:   "unit --config FILE | --template",
		Short: "Print the unit file install would write (--template: segad@.service for several stations)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := f.unit(!f.template)
			if err != nil {
				return err
			}
			var text string
			if f.template {
				text, err = systemd.RenderTemplate(u)
			} else {
				text, err = systemd.Render(u)
			}
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), text)
			return nil
		},
	}
	cmd.AddCommand(unit)
	return cmd
}

// unit turns the flags into a systemd.Unit; needConfig makes --config
// mandatory (install, unit without --template).
func (f *serviceFlags) unit(needConfig bool) (systemd.Unit, error) {
	u := systemd.Unit{Name: f.name, User: f.user, ConfigDir: f.configDir, ReadWritePaths: f.rwPaths, WatchdogSec: f.watchdog}
	if f.watchdog == 0 {
		u.WatchdogSec = -1 // systemd.Unit's zero means "default"
	} else if f.watchdog < 0 {
		return u, fmt.Errorf("--watchdog %v: must be positive, or 0 to disable", f.watchdog)
	}
	if f.config == "" && needConfig {
		return u, fmt.Errorf("--config FILE is required: the YAML configuration the service runs with")
	}
	if f.config != "" {
		abs, err := filepath.Abs(f.config)
		if err != nil {
			return u, fmt.Errorf("--config %s: %w", f.config, err)
		}
		u.Config = abs
	}
	if abs, err := filepath.Abs(f.configDir); err == nil {
		u.ConfigDir = abs
	}
	for i, p := range u.ReadWritePaths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return u, fmt.Errorf("--rw-path %s: %w", p, err)
		}
		u.ReadWritePaths[i] = abs
	}
	bin := f.binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return u, fmt.Errorf("find this executable (give --binary PATH): %w", err)
		}
		bin = exe
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			bin = real
		}
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return u, fmt.Errorf("--binary %s: %w", bin, err)
	}
	u.Binary = abs
	if needConfig || f.config != "" {
		if err := u.Validate(); err != nil {
			return u, err
		}
	}
	return u, nil
}

func (f *serviceFlags) manager(needConfig bool) (*systemd.Manager, error) {
	u, err := f.unit(needConfig)
	if err != nil {
		return nil, err
	}
	return systemd.NewManager(u, slog.Default())
}
