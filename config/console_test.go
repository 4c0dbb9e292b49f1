package config

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestConsoleConfig: defaults, and every bad console key stopped with its
// key, line and what to do; a hash is never echoed.
func TestConsoleConfig(t *testing.T) {
	c, err := Parse("/x/cfg.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Console
	if !k.On() || k.SessionTTL != 8*time.Hour || k.LiveRate != 4 || k.LoginAttempts != 5 || len(k.Users) != 0 {
		t.Errorf("defaults: %+v", k)
	}
	h10, err := bcrypt.GenerateFromPassword([]byte("a long password"), 10)
	if err != nil {
		t.Fatal(err)
	}
	h4, _ := bcrypt.GenerateFromPassword([]byte("a long password"), 4)
	user := func(name, role, hash string) string {
		return "    - {name: \"" + name + "\", role: " + role + ", password_hash: \"" + hash + "\"}\n"
	}
	good := user("anna", "technician", string(h10))
	for _, tc := range []struct {
		name, yaml string
		want       string // "" valid
	}{
		{"one user", "console:\n  users:\n" + good, ""},
		{"three roles", "console:\n  users:\n" + good + user("bo.b-1_x", "viewer", string(h10)) + user("eva", "engineer", string(h10)), ""},
		{"duplicate name", "console:\n  users:\n" + good + user("anna", "viewer", string(h10)), "console.users[1].name: \"anna\" is also console.users[0]"},
		{"name with space", "console:\n  users:\n" + user("an na", "viewer", string(h10)), "console.users[0].name: \"an na\": use letters, digits"},
		{"empty name", "console:\n  users:\n" + user("", "viewer", string(h10)), "console.users[0].name: missing"},
		{"long name", "console:\n  users:\n" + user(strings.Repeat("a", 65), "viewer", string(h10)), "65 bytes: at most 64"},
		{"unknown role", "console:\n  users:\n" + user("anna", "admin", string(h10)), "console.users[0].role: \"admin\" is not a role"},
		{"plain password", "console:\n  users:\n" + user("anna", "viewer", "hunter2hunter2"), "console.users[0].password_hash: not a bcrypt hash (14 bytes; make one with: segad user hash)"},
		{"missing hash", "console:\n  users:\n" + user("anna", "viewer", ""), "password_hash: missing"},
		{"weak cost", "console:\n  users:\n" + user("anna", "viewer", string(h4)), "bcrypt cost 4 is below 10"},
		{"ttl too short", "console:\n  session_ttl: 10s\n", "console.session_ttl: 10s out of range [1m0s, 720h0m0s]"},
		{"live rate", "console:\n  live_rate: 1000\n", "console.live_rate: 1000 out of range [1, 30]"},
		{"attempts", "console:\n  login_attempts: -1\n", "console.login_attempts: -1 out of range [1, 100]"},
		{"unknown key", "console:\n  password: x\n", "unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("cfg.yaml", []byte(minimal+tc.yaml))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "cfg.yaml:") {
				t.Errorf("no file and line: %v", err)
			}
			if strings.Contains(err.Error(), string(h10)) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error echoes a secret: %v", err)
			}
		})
	}
}

// TestConsoleReload: console keys are live but enabled, and a changed
// password hash shows in the change log only as a hash of it.
func TestConsoleReload(t *testing.T) {
	for key, want := range map[string]Class{
		"console.enabled": Restart, "console.users[0].role": Live, "console.users": Live,
		"console.session_ttl": Live, "console.live_rate": Live, "console.login_attempts": Live,
	} {
		if got := ClassOf(key); got != want {
			t.Errorf("%s: %v, want %v", key, got, want)
		}
	}
	h1, _ := bcrypt.GenerateFromPassword([]byte("first password"), 10)
	h2, _ := bcrypt.GenerateFromPassword([]byte("second password"), 10)
	parse := func(h []byte, role string) *Config {
		c, err := Parse("cfg.yaml", []byte(minimal+"console:\n  users:\n    - {name: anna, role: "+role+", password_hash: \""+string(h)+"\"}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	changes := Diff(parse(h1, "viewer"), parse(h2, "technician"))
	keys := map[string]Change{}
	for _, ch := range changes {
		keys[ch.Key] = ch
		for _, h := range [][]byte{h1, h2} {
			if strings.Contains(ch.Old+ch.New, string(h)) || strings.Contains(ch.Old+ch.New, string(h[7:29])) {
				t.Errorf("%s: the change log shows a password hash: %q -> %q", ch.Key, ch.Old, ch.New)
			}
		}
	}
	ph, ok := keys["console.users[0].password_hash"]
	if !ok || !strings.HasPrefix(ph.Old, "(secret ") || ph.Old == ph.New || ph.Class != Live {
		t.Errorf("password hash change: %+v (all: %+v)", ph, changes)
	}
	if r := keys["console.users[0].role"]; r.Old != "viewer" || r.New != "technician" {
		t.Errorf("role change: %+v", r)
	}
}
