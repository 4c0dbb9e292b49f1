package config

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// ConsoleConfig is the technician console served at http.listen "/"
// (docs/console.md): who may log in, with which role, and the limits that
// keep a browser from costing the line anything.
type ConsoleConfig struct {
	// Enabled serves the console (default true). Without users it is
	// read-only and answers loopback clients only.
	Enabled *bool `yaml:"enabled"`
	// Users may log in; each has a role and a bcrypt password hash
	// (`segad user hash` prints one).
	Users []ConsoleUser `yaml:"users"`
	// SessionTTL ends a session this long after login, and after this long
	// without a request (default 8h, one shift).
	SessionTTL time.Duration `yaml:"session_ttl"`
	// LiveRate is the most Live updates per second sent to one browser
	// (default 4); a faster line is sampled, never queued.
	LiveRate int `yaml:"live_rate"`
	// LoginAttempts is how many logins one client may try per minute before
	// it gets 429 (default 5).
	LoginAttempts int `yaml:"login_attempts"`
}

// ConsoleUser is one console login.
type ConsoleUser struct {
	// Name is the login name: letters, digits, '.', '_' and '-', at most
	// MaxConsoleNameLen bytes (it appears in the audit trail and the log).
	Name string `yaml:"name"`
	// Role is viewer (look), technician (thresholds, labels) or engineer
	// (everything the console can change).
	Role string `yaml:"role"`
	// PasswordHash is a bcrypt hash of cost at least MinBcryptCost; the
	// password itself is never stored.
	PasswordHash string `yaml:"password_hash"`
}

// Console limits.
const (
	// MaxConsoleNameLen bounds a console user name.
	MaxConsoleNameLen = 64
	// MaxConsoleUsers bounds console.users (each login compares a bcrypt
	// hash; a plant has a handful of people per station).
	MaxConsoleUsers = 256
	// MinBcryptCost is the weakest bcrypt cost accepted: below it an offline
	// guess of a stolen hash is cheap (bcrypt's own default is 10).
	MinBcryptCost = 10
)

// ConsoleRoles are the console's roles, least to most privileged.
var ConsoleRoles = []string{"viewer", "technician", "engineer"}

var (
	consoleNameRE   = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	sessionTTLRange = [2]time.Duration{time.Minute, 30 * 24 * time.Hour}
)

// On reports whether the console is served.
func (c ConsoleConfig) On() bool { return c.Enabled == nil || *c.Enabled }

func (c *Config) consoleDefaults() {
	k := &c.Console
	if k.Enabled == nil {
		on := true
		k.Enabled = &on
	}
	if k.SessionTTL == 0 {
		k.SessionTTL = 8 * time.Hour
	}
	if k.LiveRate == 0 {
		k.LiveRate = 4
	}
	if k.LoginAttempts == 0 {
		k.LoginAttempts = 5
	}
}

// validateConsole checks console.*; a hash is parsed, never printed (a
// config error message ends up in logs).
func (c *Config) validateConsole() error {
	k := c.Console
	var errs []error
	add := func(e error) {
		if e != nil {
			errs = append(errs, e)
		}
	}
	add(c.durationRange("console.session_ttl", k.SessionTTL, sessionTTLRange,
		"how long a login lasts, and how long it survives without a request (8h is one shift)"))
	add(c.intRange("console.live_rate", int64(k.LiveRate), 1, 30,
		"Live updates per second per browser; a faster line is sampled"))
	add(c.intRange("console.login_attempts", int64(k.LoginAttempts), 1, 100,
		"logins one client may try per minute before it must wait"))
	if len(k.Users) > MaxConsoleUsers {
		add(c.errorAt("console.users", "%d users: at most %d", len(k.Users), MaxConsoleUsers))
		return errors.Join(errs...)
	}
	seen := map[string]int{}
	for i, u := range k.Users {
		key := fmt.Sprintf("console.users[%d]", i)
		switch {
		case u.Name == "":
			add(c.errorAt(key+".name", "missing: a login name"))
		case len(u.Name) > MaxConsoleNameLen:
			add(c.errorAt(key+".name", "%d bytes: at most %d", len(u.Name), MaxConsoleNameLen))
		case !consoleNameRE.MatchString(u.Name):
			add(c.errorAt(key+".name", "%q: use letters, digits, '.', '_' and '-' only (the name is written to the audit trail and the log)", clip(u.Name, 80)))
		default:
			if j, dup := seen[u.Name]; dup {
				add(c.errorAt(key+".name", "%q is also console.users[%d]: names must be unique", u.Name, j))
			}
			seen[u.Name] = i
		}
		known := false
		for _, r := range ConsoleRoles {
			known = known || u.Role == r
		}
		if !known {
			add(c.errorAt(key+".role", "%q is not a role: want viewer, technician or engineer", clip(u.Role, 40)))
		}
		add(c.checkPasswordHash(key+".password_hash", u.PasswordHash))
	}
	return errors.Join(errs...)
}

// checkPasswordHash accepts a bcrypt hash of cost >= MinBcryptCost.
func (c *Config) checkPasswordHash(key, h string) error {
	if h == "" {
		return c.errorAt(key, "missing: a bcrypt hash (make one with: segad user hash)")
	}
	cost, err := bcrypt.Cost([]byte(h))
	if err != nil {
		return c.errorAt(key, "not a bcrypt hash (%d bytes; make one with: segad user hash): %v", len(h), err)
	}
	if cost < MinBcryptCost {
		return c.errorAt(key, "bcrypt cost %d is below %d: a stolen hash would be cheap to guess (make a new one with: segad user hash)", cost, MinBcryptCost)
	}
	return nil
}
