package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/segad-edge/segad-edge/result"

	"github.com/segad-edge/segad-edge/internal/hostile"
	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

// procStatusKB reads a "VmHWM:"-style line (kB) of /proc/<pid>/status.
func procStatusKB(t *testing.T, pid int, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/status (did the daemon die?): %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("parse %s: %q", key, l)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}

// printable: text fit for a result payload and a PLC screen.
func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// TestHostileCaptureDaemon is issue #12's capture acceptance test against
// the real `segad run` process (watch folder, Mosquitto, HTTP API): every
// hostile file in internal/hostile (gigapixel headers in PNG, gray PNG,
// JPEG, BMP and TIFF; a 30000x30000 decompression bomb; truncated, empty,
// garbage and unsupported files), three 49 MP bombs under the pixel limit,
// a 3 GB file, and file names that are not part IDs. Some are in the
// folder before the daemon starts (the crash-loop case), the rest arrive
// while it runs, and the same files are POSTed to /inspect, three at a
// time. Each file gets exactly one result: verdict error, reason_code
// capture_error and a clear, printable reason for the hostile ones, a
// verdict for the valid ones; the process stays up with its peak memory
// bounded, and stops cleanly on SIGTERM.
func TestHostileCaptureDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end process test")
	}
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	os.Mkdir(in, 0o755)
	port := testenv.FreePort(t)

	// What must happen to each file, by part ID (file name stem).
	type expect struct {
		ok   bool   // a real verdict (pass/fail), not error
		want string // substring of the reason when !ok
	}
	expected := map[string]expect{}
	var early, late []func()
	drop := func(name string, data []byte, e expect, before bool) {
		stem := strings.TrimSuffix(name, filepath.Ext(name))
		if _, dup := expected[stem]; dup {
			t.Fatalf("duplicate part %s", stem)
		}
		expected[stem] = e
		write := func() {
			// Written under a temp name and renamed, as FTP servers do, so
			// the daemon never sees a half-written file.
			tmp := filepath.Join(in, "."+name+".part")
			if err := os.WriteFile(tmp, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(in, name)); err != nil {
				t.Fatal(err)
			}
		}
		if before {
			early = append(early, write)
		} else {
			late = append(late, write)
		}
	}
	for i, c := range hostile.Cases() {
		drop(c.Name+filepath.Ext(c.File), c.Data, expect{ok: c.OK, want: c.Want}, i%2 == 0)
	}
	// Decompression bombs under the 50 MP limit: decoded for real, at most
	// max_concurrent_decodes (2) at a time. Three at once cost 8.1 GB
	// before the limits (at 30000x30000).
	bomb := hostile.PNGBomb(7000, 7000)
	for i := 0; i < 3; i++ {
		drop(fmt.Sprintf("bomb49mp-%d.png", i), bomb, expect{ok: true}, false)
	}
	// Bad names: one valid image, one truncated; both get a result with an
	// empty part ID, never the raw name.
	var badNames int
	for i, n := range hostile.OddNames() {
		if n.Valid {
			drop(n.Name, hostile.PNG(64, 48), expect{ok: true}, i%2 == 0)
			continue
		}
		badNames++
		data := hostile.PNG(64, 48)
		if i%2 == 1 {
			data = hostile.Truncate(data, 50)
		}
		name := n.Name
		w := func() { os.WriteFile(filepath.Join(in, name), data, 0o644) }
		if i%2 == 0 {
			early = append(early, w)
		} else {
			late = append(late, w)
		}
	}
	for _, w := range early {
		w()
	}
	// A 3 GB file (sparse: no disk used): refused from its size alone.
	expected["huge3gb"] = expect{want: "over capture.limits.max_bytes"}
	if f, err := os.Create(filepath.Join(in, "huge3gb.png")); err == nil {
		f.Write(hostile.PNG(8, 8))
		f.Truncate(3 << 30)
		f.Close()
	}

	cfgPath := hostileConfig(t, dir, fmt.Sprintf("  kind: watch\n  path: %q\n  watch: {poll: 50ms, grace: 300ms}", in),
		broker.URL(), fmt.Sprintf("http: {listen: \"127.0.0.1:%d\"}\naudit: {dir: audit, sample_pass: 1}\n", port))
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/hostile/#")
	p := startSegad(t, cfgPath)
	cmd, exited, logs := p.cmd, p.exited, p.logs
	alive := func(when string) {
		t.Helper()
		select {
		case err := <-exited:
			t.Fatalf("daemon died %s: %v", when, err)
		default:
		}
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, "the HTTP API", 60*time.Second, func() bool {
		alive("at start")
		r, err := http.Get(base + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	})
	for _, w := range late {
		w()
	}

	// /inspect: every hostile case, three requests at a time.
	type posted struct {
		name string
		res  result.Result
		code int
		err  error
	}
	cases := hostile.Cases()
	out := make([]posted, len(cases)+3)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 3)
	post := func(i int, name string, data []byte) {
		defer wg.Done()
		sem <- struct{}{}
		defer func() { <-sem }()
		out[i].name = name
		// Three at a time against http.max_inspect 2: a busy answer (503 +
		// Retry-After) is retried, as a client should.
		var resp *http.Response
		var err error
		for try := 0; try < 100; try++ {
			resp, err = http.Post(base+"/inspect?part_id="+name, "application/octet-stream", bytes.NewReader(data))
			if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				break
			}
			resp.Body.Close()
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			out[i].err = err
			return
		}
		defer resp.Body.Close()
		out[i].code = resp.StatusCode
		out[i].err = json.NewDecoder(resp.Body).Decode(&out[i].res)
	}
	for i, c := range cases {
		wg.Add(1)
		go post(i, c.Name, c.Data)
	}
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go post(len(cases)+i, fmt.Sprintf("bomb49mp-%d", i), bomb)
	}
	wg.Wait()
	alive("after the /inspect uploads")
	for i, p := range out {
		ok := i >= len(cases) || cases[i].OK
		want := ""
		if i < len(cases) {
			want = cases[i].Want
		}
		switch {
		case p.err != nil || p.code != http.StatusOK:
			t.Errorf("/inspect %s: HTTP %d, %v", p.name, p.code, p.err)
		case ok && p.res.Verdict == result.VerdictError:
			t.Errorf("/inspect %s: valid image got an error: %s", p.name, p.res.Reason)
		case !ok && (p.res.Verdict != result.VerdictError || p.res.ReasonCode != "capture_error" ||
			!strings.Contains(strings.ToLower(p.res.Reason), want)):
			t.Errorf("/inspect %s: verdict %s code %s reason %q, want error/capture_error with %q", p.name, p.res.Verdict, p.res.ReasonCode, p.res.Reason, want)
		}
	}

	// The watch folder: one result per file.
	total := len(expected) + badNames
	waitFor(t, fmt.Sprintf("%d results", total), 90*time.Second, func() bool {
		alive("while inspecting the watch folder")
		return len(sub.Results()) >= total
	})
	time.Sleep(time.Second) // duplicates would arrive now
	alive("after the watch folder")
	results := sub.Results()
	if len(results) != total {
		t.Errorf("%d results for %d files", len(results), total)
	}
	got := map[string]int{}
	empty := 0
	for _, r := range results {
		if !printable(r.Reason) || !printable(r.PartID) {
			t.Errorf("result carries unprintable text: part %q reason %q", r.PartID, r.Reason)
		}
		if r.PartID == "" {
			empty++
			if r.Verdict == result.VerdictError && !strings.Contains(r.Reason, "truncated") {
				t.Errorf("bad-name file: reason %q", r.Reason)
			}
			continue
		}
		got[r.PartID]++
		e, ok := expected[r.PartID]
		switch {
		case !ok:
			t.Errorf("result for unknown part %q", r.PartID)
		case e.ok && r.Verdict == result.VerdictError:
			t.Errorf("%s: valid file got an error: %s", r.PartID, r.Reason)
		case !e.ok && (r.Verdict != result.VerdictError || r.ReasonCode != "capture_error" || !strings.Contains(strings.ToLower(r.Reason), e.want)):
			t.Errorf("%s: verdict %s code %s reason %q, want error/capture_error with %q", r.PartID, r.Verdict, r.ReasonCode, r.Reason, e.want)
		}
	}
	for id := range expected {
		if got[id] != 1 {
			t.Errorf("%s: %d results, want exactly 1", id, got[id])
		}
	}
	if empty != badNames {
		t.Errorf("%d results with an empty part ID, want %d (one per bad file name)", empty, badNames)
	}
	// Audit on (every part kept): error results as a JSON record alone,
	// the others (the 49 MP bombs included) with their overlay image.
	auditDir := filepath.Join(dir, "audit")
	checkAudited(t, auditDir, results)
	recs := auditRecords(t, auditDir)
	for _, r := range results {
		if r.Verdict != result.VerdictError && strings.Join(recs[r.ID], ",") != ".jpg,.json" && strings.Join(recs[r.ID], ",") != ".json,.jpg" {
			t.Errorf("audit of %s result %s (part %q): files %q, want the image and the JSON record", r.Verdict, r.ID, r.PartID, recs[r.ID])
		}
	}

	// Memory: the peak over the whole run, bombs included.
	pid := cmd.Process.Pid
	hwm, rss := procStatusKB(t, pid, "VmHWM"), procStatusKB(t, pid, "VmRSS")
	t.Logf("daemon memory: peak %d MB, now %d MB", hwm>>10, rss>>10)
	if hwm > 1500<<10 {
		t.Errorf("daemon peak memory %d MB, over 1500 MB", hwm>>10)
	}
	if !strings.Contains(logs.String(), "not a valid part ID") {
		t.Errorf("no warning about the bad file names in the log")
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("daemon exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30s of SIGTERM")
	}
	// Every file was acknowledged out of the watch folder (the 3 GB one to
	// failed/ like the rest): nothing left to crash-loop on.
	left, _ := filepath.Glob(filepath.Join(in, "*"))
	for _, p := range left {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			t.Errorf("file %q left in the watch folder", filepath.Base(p))
		}
	}
}
