package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

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
