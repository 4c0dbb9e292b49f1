package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/history"
	"github.com/segad-edge/segad-edge/internal/mqtttest"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/result"
)

// chromiumPath is Debian's chromium (make setup installs it).
const chromiumPath = "/usr/bin/chromium"

// consoleBrowser starts a headless Chromium at the console's panel size
// (1366x768) and returns a tab context; the test skips when chromium is
// not installed.
func consoleBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test: %s not found (apt-get install chromium): %v", chromiumPath, err)
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1366, 768), chromedp.UserDataDir(t.TempDir()),
		// No update or sync traffic into the closed network (REFERENCE.md 5).
		chromedp.Flag("disable-component-update", true))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs browser actions with a bound, failing the test with what was
// being done.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// evalUntil polls a JavaScript expression until it is true.
func evalUntil(t *testing.T, ctx context.Context, what string, within time.Duration, js string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("browser: timed out after %s waiting for %s (%s)", within, what, js)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func evalString(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(c, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("browser: %s: %v", js, err)
	}
	return s
}

func consoleLogin(t *testing.T, ctx context.Context, base, name, pw string) {
	t.Helper()
	run(t, ctx, "log in as "+name,
		chromedp.Navigate(base+"/login?next=/live"),
		chromedp.WaitVisible("#name"),
		chromedp.SendKeys("#name", name),
		chromedp.SendKeys("#password", pw),
		chromedp.Click("#login"),
		chromedp.WaitVisible("#verdict"),
	)
}

// consoleShot writes a screenshot of the page to docs/img when
// SEGAD_CONSOLE_SCREENSHOTS is set (make console-screenshots).
func consoleShot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("SEGAD_CONSOLE_SCREENSHOTS") == "" {
		return
	}
	run(t, ctx, "settle", chromedp.Sleep(300*time.Millisecond))
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(testenv.RepoRoot(t), "docs", "img", "console-"+name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleBrowser is the console issue's acceptance test, in a real
// headless Chromium against a real `segad run` (watch folder, Mosquitto,
// SQLite history): a technician logs in; Live shows a new part within a
// second of its result; the Threshold histogram renders; moving the
// what-if slider changes the predicted reject count to the value the API
// computes; Apply writes the YAML (only the threshold line changes, the
// comments stay) and the next parts are judged with the new threshold; a
// label given on Review appears in History; a viewer cannot apply.
func TestConsoleBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process browser test")
	}
	ctx := consoleBrowser(t)
	broker := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	watch := filepath.Join(dir, "drop")
	os.MkdirAll(watch, 0o755)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base := "http://" + addr
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), config.MinBcryptCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	const techPW, viewPW = "tech-secret-1", "view-secret-1"
	cfgPath := hostileConfig(t, dir, fmt.Sprintf("  kind: watch\n  path: %q\n  watch: {poll: 50ms, grace: 300ms}", watch), broker.URL(),
		fmt.Sprintf("http: {listen: %q, token: console-e2e-token-0123456789abcdef}\nhistory: {path: %q}\naudit: {dir: %q}\nconsole:\n  users:\n    - {name: tech, role: technician, password_hash: %q}\n    - {name: view, role: viewer, password_hash: %q}\n",
			addr, filepath.Join(dir, "history.db"), filepath.Join(dir, "audit"), hash(techPW), hash(viewPW)))
	// Comments the edit must keep.
	b, _ := os.ReadFile(cfgPath)
	yaml := "# Station config: the console edits the threshold below.\n" +
		strings.Replace(string(b), "  threshold: 1000\n", "  # fail at or above (the forest's margin)\n  threshold: 1000 # set by the line engineer\n", 1)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := mqtttest.Subscribe(t, broker.URL(), "", "", "segad/hostile/#")
	p := startSegad(t, cfgPath)
	waitFor(t, "the daemon to start", 30*time.Second, func() bool { return strings.Contains(p.logs.String(), "ready: inspecting") })

	// Recent parts: clean and noisy, so the scores spread.
	clean, noisy := partPNG(t, 320, 240, false), partPNG(t, 320, 240, true)
	first := map[string][]byte{}
	for i := 0; i < 4; i++ {
		first[fmt.Sprintf("A-%02d.png", i)] = clean
		first[fmt.Sprintf("B-%02d.png", i)] = noisy
	}
	histDrop(t, watch, first)
	delivered := sub.WaitResults(len(first), 30*time.Second)

	start := time.Now()
	consoleLogin(t, ctx, base, "tech", techPW)
	if got := evalString(t, ctx, `document.getElementById("user").textContent`); !strings.Contains(got, "tech") || !strings.Contains(got, "technician") {
		t.Errorf("logged-in user shows as %q", got)
	}

	// Live: a part dropped now shows within a second of its result.
	histDrop(t, watch, map[string][]byte{"LIVE-1.png": noisy})
	rs := sub.WaitResults(len(first)+1, 30*time.Second)
	liveRes := rs[len(rs)-1]
	evalUntil(t, ctx, "Live to show the new part", 3*time.Second, fmt.Sprintf(`Number(document.body.dataset.seq||0) >= %d`, liveRes.Seq))
	if lag := time.Since(liveRes.DecidedAt); lag > time.Second {
		t.Errorf("Live showed part seq %d %s after its result was decided, want within 1 s", liveRes.Seq, lag)
	}
	if got := evalString(t, ctx, `document.getElementById("part").textContent`); got != "LIVE-1" {
		t.Errorf("Live shows part %q, want LIVE-1", got)
	}
	// The frame comes while the browser watches: one more part renders it.
	histDrop(t, watch, map[string][]byte{"LIVE-2.png": clean})
	sub.WaitResults(len(first)+2, 30*time.Second)
	evalUntil(t, ctx, "the Live frame to load", 5*time.Second, `(() => { const i = document.getElementById("frame"); return !i.hidden && i.naturalWidth > 0; })()`)

	// Threshold: histogram, slider vs the API.
	all := sub.Results()
	var scores []float64
	for _, r := range all {
		if r.Score != nil {
			scores = append(scores, *r.Score)
		}
	}
	slices.Sort(scores)
	if len(scores) < 4 || scores[0] == scores[len(scores)-1] {
		t.Fatalf("the parts' scores do not spread: %v", scores)
	}
	time.Sleep(1200 * time.Millisecond) // the history writes in batches (history.flush)
	run(t, ctx, "open Threshold", chromedp.Navigate(base+"/threshold"), chromedp.WaitVisible("#hist"))
	evalUntil(t, ctx, "the histogram to render", 5*time.Second, fmt.Sprintf(`document.getElementById("hist").dataset.drawn === "%d"`, len(all)))
	// A threshold between the lowest and the highest score.
	mid := (scores[0] + scores[len(scores)-1]) / 2
	evalUntil(t, ctx, "the server check of the threshold in force", 5*time.Second, `document.getElementById("wi-api").dataset.rejected !== undefined`)
	before := evalString(t, ctx, `document.getElementById("wi-rejected").textContent`)
	slider := evalString(t, ctx, fmt.Sprintf(
		`(() => { const s = document.getElementById("what"); s.value = %v; s.dispatchEvent(new Event("input")); return s.value; })()`, mid))
	evalUntil(t, ctx, "the API's what-if for the slider", 5*time.Second, fmt.Sprintf(`document.getElementById("wi-api").dataset.threshold === %q`, slider))
	shown := evalString(t, ctx, `document.getElementById("wi-rejected").textContent`)
	api := evalString(t, ctx, `document.getElementById("wi-api").dataset.rejected`)
	thr, _ := strconv.ParseFloat(slider, 64)
	want := 0
	for _, r := range all {
		if r.Score == nil || *r.Score >= thr {
			want++
		}
	}
	t.Logf("scores %v, slider %s", scores, slider)
	if shown != api || shown != strconv.Itoa(want) || shown == before {
		t.Errorf("slider at %v: the page predicts %s rejects, the API %s, the results say %d (before: %s)", thr, shown, api, want, before)
	}

	// A bad number is refused on the page, saying why; nothing is written.
	yamlBefore, _ := os.ReadFile(cfgPath)
	run(t, ctx, "type a bad threshold", chromedp.SetValue("#in-thr", "0.3x"), chromedp.Click("#apply-btn"))
	evalUntil(t, ctx, "the refusal", 5*time.Second, `document.getElementById("apply-msg").className === "error"`)
	if msg := evalString(t, ctx, `document.getElementById("apply-msg").textContent`); !strings.Contains(msg, `"0.3x" is not a number`) {
		t.Errorf("a bad threshold shows %q", msg)
	}
	if now, _ := os.ReadFile(cfgPath); string(now) != string(yamlBefore) {
		t.Errorf("a refused Apply changed the YAML")
	}
	run(t, ctx, "set the slider's value again", chromedp.SetValue("#in-thr", slider))

	// Apply: the YAML changes in the threshold line only.
	run(t, ctx, "apply", chromedp.Click("#apply-btn"))
	evalUntil(t, ctx, "Apply to succeed", 5*time.Second, `document.getElementById("apply-msg").className === "ok"`)
	yamlAfter, _ := os.ReadFile(cfgPath)
	if d := lineDiff(string(yamlBefore), string(yamlAfter)); len(d) != 2 || !strings.Contains(d[0], "threshold: 1000 # set by the line engineer") ||
		!strings.Contains(d[1], "threshold: "+slider) || !strings.Contains(d[1], "# set by the line engineer") {
		t.Errorf("Apply changed the YAML by %q, want only the threshold line with its comment", d)
	}
	if !strings.Contains(string(yamlAfter), "# Station config") || !strings.Contains(string(yamlAfter), "# fail at or above") {
		t.Errorf("Apply lost a comment:\n%s", yamlAfter)
	}
	waitFor(t, "the daemon to apply the new threshold", 15*time.Second, func() bool {
		return strings.Contains(p.logs.String(), "console: threshold edited") &&
			regexp.MustCompile(`msg="config changed".*threshold.*new=`+regexp.QuoteMeta(slider)).MatchString(p.logs.String())
	})
	// The file changed on disk since the page read it: the next Apply is
	// refused with the conflict, and the file keeps the other edit.
	edited := string(yamlAfter) + "# edited by hand meanwhile\n"
	os.WriteFile(cfgPath, []byte(edited), 0o644)
	run(t, ctx, "apply on a stale revision", chromedp.SetValue("#in-thr", "0.5"), chromedp.Click("#apply-btn"))
	evalUntil(t, ctx, "the conflict", 5*time.Second, `document.getElementById("apply-msg").className === "error"`)
	if msg := evalString(t, ctx, `document.getElementById("apply-msg").textContent`); !strings.Contains(msg, "changed on disk") || !strings.Contains(msg, "nothing was written") {
		t.Errorf("a conflict shows %q", msg)
	}
	if now, _ := os.ReadFile(cfgPath); string(now) != edited {
		t.Errorf("the conflicting Apply changed the YAML:\n%s", now)
	}
	// The change is in the history's audit trail with who made it.
	hs, err := history.Open(context.Background(), history.Config{Path: filepath.Join(dir, "history.db"), ReadOnly: true})
	if err != nil {
		t.Fatalf("open the history: %v", err)
	}
	changes, err := hs.Changes(context.Background(), 10)
	hs.Close()
	if err != nil || len(changes) != 1 || changes[0].User != "tech" || changes[0].Source != "console" ||
		changes[0].Key != "segad.threshold" || changes[0].Old != "1000" || changes[0].New != slider {
		t.Errorf("config changes in the history: %+v (%v), want one by tech: segad.threshold 1000 -> %s", changes, err, slider)
	}
	next := map[string][]byte{"C-00.png": clean, "C-01.png": noisy}
	n0 := len(sub.Results())
	histDrop(t, watch, next)
	after := sub.WaitResults(n0+len(next), 30*time.Second)[n0:]
	for _, r := range after {
		wantV := result.VerdictPass
		if *r.Score >= thr {
			wantV = result.VerdictFail
		}
		if math.Abs(r.Threshold-thr) > 1e-12 || r.Verdict != wantV {
			t.Errorf("part %s after Apply: threshold %v verdict %s (score %v), want threshold %v verdict %s", r.PartID, r.Threshold, r.Verdict, *r.Score, thr, wantV)
		}
	}

	// Review: label the newest reject; it shows in History.
	time.Sleep(1200 * time.Millisecond)
	run(t, ctx, "open Review", chromedp.Navigate(base+"/review"), chromedp.WaitVisible("#queue"))
	evalUntil(t, ctx, "the review queue", 5*time.Second, `Number(document.body.dataset.queue||0) > 0`)
	id := evalString(t, ctx, `document.querySelector("#queue .item").dataset.id`)
	run(t, ctx, "label it", chromedp.SendKeys(`#queue .item input`, "scratch"), chromedp.Click(`#queue .item button.bad`))
	evalUntil(t, ctx, "the label to be saved", 5*time.Second, `document.getElementById("review-msg").className === "ok"`)
	run(t, ctx, "open History", chromedp.Navigate(base+"/history"), chromedp.WaitVisible("#rows"),
		chromedp.SetValue(`select[name=label]`, "bad"), chromedp.Click(`#filters button`))
	evalUntil(t, ctx, "the labelled part in History", 5*time.Second, fmt.Sprintf(
		`(() => { const r = document.querySelector('#rows tr[data-id="%s"] .label'); return !!r && r.textContent === "bad · scratch" && document.body.dataset.rows === "1"; })()`, id))
	run(t, ctx, "open a record", chromedp.Click(fmt.Sprintf(`#rows tr[data-id="%s"]`, id)))
	evalUntil(t, ctx, "the record", 5*time.Second, `document.querySelector("#detail pre") !== null`)
	// The label reaches the Threshold page: the part counts as a labelled
	// defect, caught at the threshold in force.
	run(t, ctx, "open Threshold again", chromedp.Navigate(base+"/threshold"), chromedp.WaitVisible("#hist"))
	if lab := evalString(t, ctx, fmt.Sprintf(`JSON.parse(document.getElementById("data").textContent).parts.find(p => p.id === %q).label`, id)); lab != "bad" {
		t.Errorf("the labelled part shows on Threshold with label %q, want bad", lab)
	}
	if rec := evalString(t, ctx, `document.getElementById("wi-recall").textContent`); rec != "100.0% of 1" {
		t.Errorf("recall on labelled defects shows %q, want 100.0%% of 1", rec)
	}
	run(t, ctx, "open Health", chromedp.Navigate(base+"/health"), chromedp.WaitVisible("#lat"))
	evalUntil(t, ctx, "latencies", 5*time.Second, `document.querySelectorAll("#lat-table tbody tr").length > 0`)

	// A viewer cannot apply: the button is disabled and the API refuses.
	run(t, ctx, "log out", chromedp.Click(`.who button`), chromedp.WaitVisible("#name"))
	consoleLogin(t, ctx, base, "view", viewPW)
	run(t, ctx, "open Threshold as viewer", chromedp.Navigate(base+"/threshold"), chromedp.WaitVisible("#apply-btn"))
	if dis := evalString(t, ctx, `String(document.getElementById("apply-btn").disabled)`); dis != "true" {
		t.Errorf("a viewer's Apply button is enabled")
	}
	yamlViewer, _ := os.ReadFile(cfgPath)
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/console/api/threshold", {method: "POST", headers: {"X-CSRF-Token": document.body.dataset.csrf, "Content-Type": "application/json"},
		body: JSON.stringify({threshold: "5", warn: "", revision: JSON.parse(document.getElementById("data").textContent).revision})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("post as viewer: %v", err)
	}
	if status != 403 {
		t.Errorf("a viewer's threshold POST got %d, want 403", status)
	}
	if now, _ := os.ReadFile(cfgPath); string(now) != string(yamlViewer) {
		t.Errorf("a viewer's refused POST changed the YAML")
	}
	_ = delivered
	t.Logf("browser suite took %s", time.Since(start).Round(time.Millisecond))
}

// lineDiff returns the lines only in a then the lines only in b (a small
// diff, enough for an edit of one line).
func lineDiff(a, b string) []string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range al {
		if !slices.Contains(bl, l) {
			out = append(out, "-"+l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			out = append(out, "+"+l)
		}
	}
	return out
}
