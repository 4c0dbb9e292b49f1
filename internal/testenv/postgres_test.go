package testenv

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStartPostgres starts a real server, creates a database, runs a query
// in it through psql, restarts the server on the same port and queries again.
func TestStartPostgres(t *testing.T) {
	p := StartPostgres(t)
	p.CreateDB(t, "probe")
	psql := func() string {
		t.Helper()
		out, err := exec.Command(filepath.Join(p.bin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port),
			"-U", "postgres", "-d", "probe", "-tAc", "select 40 + 2").CombinedOutput()
		if err != nil {
			t.Fatalf("psql: %v\n%s\nserver log:\n%s", err, out, p.Log())
		}
		return strings.TrimSpace(string(out))
	}
	if got := psql(); got != "42" {
		t.Fatalf("select 40 + 2 = %q", got)
	}
	p.Stop()
	p.Start()
	if got := psql(); got != "42" {
		t.Fatalf("after restart: select 40 + 2 = %q", got)
	}
}
