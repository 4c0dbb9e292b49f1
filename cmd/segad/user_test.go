package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"github.com/segad-edge/segad-edge/config"
)

// TestUserHash runs `segad user hash` with the password on a pipe: the
// printed hash verifies with bcrypt at cost 12 and passes the config's
// check; short, empty and overlong input is refused with nothing printed.
func TestUserHash(t *testing.T) {
	for _, tc := range []struct {
		name, input, password, err string
	}{
		{"one line", "correct horse battery\n", "correct horse battery", ""},
		{"CRLF and no more lines read", "correct horse battery\r\nsecond line\n", "correct horse battery", ""},
		{"no newline", "correct horse battery", "correct horse battery", ""},
		{"short", "short\n", "", "at least 10"},
		{"empty", "", "", "no password on stdin"},
		{"over bcrypt's 72 bytes", strings.Repeat("x", 80) + "\n", "", "at most 72"},
		{"huge line", strings.Repeat("x", 10000), "", "longer than 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				_, _ = w.WriteString(tc.input)
				w.Close()
			}()
			defer r.Close()
			var out, prompt bytes.Buffer
			root := newRootCmd()
			root.SetIn(r)
			root.SetOut(&out)
			root.SetErr(&prompt)
			root.SetArgs([]string{"user", "hash"})
			err = root.Execute()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if out.Len() != 0 {
					t.Errorf("printed %q on error", out.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h := strings.TrimSpace(out.String())
			if bcrypt.CompareHashAndPassword([]byte(h), []byte(tc.password)) != nil {
				t.Errorf("hash %q does not verify", h)
			}
			if c, _ := bcrypt.Cost([]byte(h)); c != 12 {
				t.Errorf("cost %d", c)
			}
			if _, err := config.Parse("cfg.yaml", []byte("station: s1\ncapture: {kind: folder, path: imgs}\ndetectors: [{name: d1, model: d1.onnx}]\nsegad: {mask: builtin:vad, model: brf.json, threshold: 0}\nconsole:\n  users: [{name: anna, role: viewer, password_hash: \""+h+"\"}]\n")); err != nil {
				t.Errorf("the hash does not pass the config check: %v", err)
			}
			if strings.Contains(prompt.String(), tc.password) {
				t.Error("the password was echoed")
			}
		})
	}
}

// openPTY opens a pseudo-terminal pair (Linux /dev/ptmx).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// TestUserHashTerminal: on a terminal the password is asked twice
// without echo; two different answers print nothing.
func TestUserHashTerminal(t *testing.T) {
	for _, tc := range []struct {
		name, first, second, err string
	}{
		{"same twice", "correct horse battery", "correct horse battery", ""},
		{"mismatch", "correct horse battery", "correct horse batterY", "the passwords differ"},
		{"short twice", "short", "short", "at least 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			master, slave := openPTY(t)
			go func() {
				_, _ = master.WriteString(tc.first + "\n" + tc.second + "\n")
			}()
			var out, prompt bytes.Buffer
			err := runUserHash(slave, &out, &prompt)
			if !strings.Contains(prompt.String(), "Password: ") || !strings.Contains(prompt.String(), "Again: ") {
				t.Errorf("prompts %q", prompt.String())
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || out.Len() != 0 {
					t.Fatalf("error %v, out %q; want %q", err, out.String(), tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(out.String())), []byte(tc.first)) != nil {
				t.Errorf("hash %q does not verify", out.String())
			}
		})
	}
}
