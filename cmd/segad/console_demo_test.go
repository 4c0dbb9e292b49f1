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
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/demo"
	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/testenv"
)

// TestConsoleDemoLine runs the console against a real `segad run` on the
// demo parts (the demo station: two variation detectors, the VAD mask and a
// bundle fitted by segad fit, with its operating points): good and
// defective parts arrive, a quality engineer labels some; every page
// renders what the line did (Live the newest part, Threshold every scored
// part and the bundle's operating points, the what-if count equal to the
// results', Review the rejects, History the labels, Health the
// latencies). With SEGAD_CONSOLE_SCREENSHOTS set (make
// console-screenshots) it writes the README's screenshots.
func TestConsoleDemoLine(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process browser test")
	}
	ctx := consoleBrowser(t)
	st := goldenDemoStation(t)
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	watch := filepath.Join(dir, "drop")
	os.MkdirAll(watch, 0o755)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base := "http://" + addr
	const token = "console-demo-token-0123456789abcdef"
	const techPW = "tech-secret-1"
	hash, err := bcrypt.GenerateFromPassword([]byte(techPW), config.MinBcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := goldenModelYAML(testenv.ORTLib(t), st.Dir, goldenVariant{watch: watch}) + fmt.Sprintf(`mqtt: {broker: %s, outbox: {path: %q}}
http: {listen: %q, token: %s}
history: {path: %q}
audit: {dir: %q, sample_pass: 0.3}
console:
  users:
    - {name: tech, role: technician, password_hash: %q}
`, broker.URL(), filepath.Join(dir, "outbox.db"), addr, token, filepath.Join(dir, "history.db"), filepath.Join(dir, "audit"), hash)
	cfgPath := filepath.Join(dir, "segad.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/golden/#")
	p := startSegad(t, cfgPath)
	waitFor(t, "the daemon to start", 60*time.Second, func() bool { return strings.Contains(p.logs.String(), "ready: inspecting") })

	// New demo parts (another seed than the station was fitted on): good
	// ones and every defect kind, the unseen ones included.
	parts := filepath.Join(dir, "parts")
	if _, err := demo.WriteDatasetKinds(parts, 24, 2, 4242, demo.DefectKinds()); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(parts, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".png") && filepath.Base(p) != demo.MaskName {
			files = append(files, p)
		}
		return nil
	})
	drop := func(i int, src string) {
		t.Helper()
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		histDrop(t, watch, map[string][]byte{fmt.Sprintf("P-%03d_%s", i, filepath.Base(src)): data})
	}
	// Interleaved, as a line would see them.
	for i := range files {
		j := (i * 7) % len(files)
		drop(i, files[j])
		if i%8 == 7 {
			sub.WaitResults(i+1, 60*time.Second)
		}
	}
	rs := sub.WaitResults(len(files), 120*time.Second)
	var fails int
	for _, r := range rs {
		if r.Verdict == "fail" {
			fails++
		}
	}
	if fails == 0 || fails == len(rs) {
		t.Fatalf("%d of %d demo parts failed: want a line with both verdicts", fails, len(rs))
	}
	// A quality engineer labels parts over the API (the bearer token):
	// defects as bad with their kind, good parts as good.
	label := func(id, l, typ string) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"label": l, "defect_type": typ})
		req, _ := http.NewRequest("POST", base+"/api/results/"+id+"/label", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("label %s: %v %v", id, err, resp)
		}
		resp.Body.Close()
	}
	for _, r := range rs[:len(rs)*2/3] {
		kind := strings.SplitN(strings.TrimPrefix(r.PartID, "P-"), "_", 2)
		if len(kind) < 2 {
			continue
		}
		name := strings.TrimSuffix(kind[1], ".png")
		if strings.HasPrefix(name, "good") {
			label(r.ID, "good", "")
		} else {
			label(r.ID, "bad", name[:strings.LastIndex(name, "_")])
		}
	}

	consoleLogin(t, ctx, base, "tech", techPW)
	// Live: the newest part, with its frame (one more part while watching).
	drop(len(files), files[len(files)-1])
	last := sub.WaitResults(len(files)+1, 60*time.Second)[len(files)]
	evalUntil(t, ctx, "Live to show the newest part", 5*time.Second, fmt.Sprintf(`Number(document.body.dataset.seq||0) >= %d`, last.Seq))
	drop(len(files)+1, files[0])
	sub.WaitResults(len(files)+2, 60*time.Second)
	evalUntil(t, ctx, "the Live frame", 10*time.Second, `(() => { const i = document.getElementById("frame"); return !i.hidden && i.naturalWidth > 0; })()`)
	consoleShot(t, ctx, "live")

	// Threshold: every scored part, the bundle's operating points, the
	// what-if count at the threshold in force equal to the line's fails.
	// The page reads the history, which records a result a moment after
	// it is published: wait until it holds them all.
	waitFor(t, "the history to record every part", 10*time.Second, func() bool {
		req, _ := http.NewRequest("GET", base+"/api/results?limit=200", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var page struct {
			Results []json.RawMessage `json:"results"`
		}
		return json.NewDecoder(resp.Body).Decode(&page) == nil && len(page.Results) == len(rs)+2
	})
	run(t, ctx, "open Threshold", chromedp.Navigate(base+"/threshold"), chromedp.WaitVisible("#hist"))
	if n := evalString(t, ctx, `String(JSON.parse(document.getElementById("data").textContent).parts.length)`); n != strconv.Itoa(len(rs)+2) {
		t.Errorf("Threshold lists %s parts, want %d", n, len(rs)+2)
	}
	if rows := evalString(t, ctx, `String(document.querySelectorAll("#ops tbody tr").length)`); rows == "0" {
		t.Error("Threshold shows no bundle operating points")
	}
	rejected := 0
	for _, r := range sub.Results() {
		if r.Verdict != "pass" {
			rejected++
		}
	}
	evalUntil(t, ctx, "the server's what-if at the threshold in force", 5*time.Second, `document.getElementById("wi-api").dataset.rejected !== undefined`)
	if got := evalString(t, ctx, `document.getElementById("wi-api").dataset.rejected`); got != strconv.Itoa(rejected) {
		t.Errorf("what-if at the threshold in force: %s rejected, the line rejected %d", got, rejected)
	}
	run(t, ctx, "by label", chromedp.Click(`input[value=label]`))
	consoleShot(t, ctx, "threshold")

	// Review, History (labelled defects), Health.
	run(t, ctx, "open Review", chromedp.Navigate(base+"/review"), chromedp.WaitVisible("#queue"))
	evalUntil(t, ctx, "the review queue", 5*time.Second, `Number(document.body.dataset.queue||0) > 0`)
	consoleShot(t, ctx, "review")
	run(t, ctx, "open History", chromedp.Navigate(base+"/history"), chromedp.WaitVisible("#rows"),
		chromedp.SetValue(`select[name=label]`, "bad"), chromedp.Click(`#filters button`))
	// The page's first, unfiltered load also fills the rows: wait for the
	// filtered ones, or the click can land on a row being replaced.
	evalUntil(t, ctx, "labelled defects in History", 5*time.Second,
		`(document.body.dataset.query||"").includes("label=bad") && Number(document.body.dataset.rows||0) > 0`)
	if n := evalString(t, ctx, `String([...document.querySelectorAll("#rows tr[data-id] td.label")].filter(td => !td.textContent.startsWith("bad")).length)`); n != "0" {
		t.Errorf("History filtered by label=bad shows %s rows labelled otherwise", n)
	}
	run(t, ctx, "open a record", chromedp.Click(`#rows tr[data-id]`))
	evalUntil(t, ctx, "the record", 5*time.Second, `document.querySelector("#detail pre") !== null`)
	consoleShot(t, ctx, "history")
	run(t, ctx, "open Health", chromedp.Navigate(base+"/health"), chromedp.WaitVisible("#lat"))
	evalUntil(t, ctx, "latencies", 5*time.Second, `document.querySelectorAll("#lat-table tbody tr").length > 0`)
	consoleShot(t, ctx, "health")
}
