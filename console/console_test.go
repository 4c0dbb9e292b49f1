package console

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/segad-edge/segad-edge/config"
	"github.com/segad-edge/segad-edge/console/auth"
	"github.com/segad-edge/segad-edge/internal/testenv"
	"github.com/segad-edge/segad-edge/metrics"
	"github.com/segad-edge/segad-edge/mqtt"
	"github.com/segad-edge/segad-edge/result"
)

// fakeLine is a small fake of the console's own Line interface.
type fakeLine struct{ thr, warn float64 }

func (f fakeLine) Status() mqtt.Health {
	return mqtt.Health{CameraState: "connected", QueueDepth: 1, BrokerBacklog: 2}
}
func (f fakeLine) BrokerConnected() bool          { return true }
func (f fakeLine) Thresholds() (float64, float64) { return f.thr, f.warn }
func (f fakeLine) Identity() Identity             { return Identity{Station: "s1", Forest: "abc"} }

// testYAML is a valid config (an edit is checked as a whole file) with
// comments the edits must keep; %s is the detector's ONNX file.
const testYAML = `# line 3 station
station: s1
capture:
  kind: watch
  path: drop
detectors:
  - name: ms
    model: %q
segad:
  mask: builtin:vad
  model: brf.json
  # fail at or above
  threshold: 1.5 # engineer's choice
  warn_threshold: 1.0
mqtt:
  broker: tcp://127.0.0.1:1883
  outbox: {path: outbox.db}
`

// clock is a settable time for session expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	srv   *httptest.Server
	c     *Console
	cfg   string
	yaml  string // the file as written
	clock *clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), config.MinBcryptCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	clk := &clock{t: time.Now()}
	am, err := auth.New(config.ConsoleConfig{
		Users: []config.ConsoleUser{
			{Name: "tech", Role: "technician", PasswordHash: hash("tech-password")},
			{Name: "view", Role: "viewer", PasswordHash: hash("view-password")},
			{Name: "eng", Role: "engineer", PasswordHash: hash("eng-password-0")},
		},
		SessionTTL: time.Hour, LiveRate: 4, LoginAttempts: 50,
	}, auth.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	testenv.TrainForest(t, filepath.Join(dir, "brf.json"), 29)
	os.Mkdir(filepath.Join(dir, "drop"), 0o755)
	p := filepath.Join(dir, "segad.yaml")
	yaml := fmt.Sprintf(testYAML, filepath.Join(testenv.RepoRoot(t), "infer", "testdata", "meanstd_blur.onnx"))
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := New(Options{Auth: am, LiveRate: 4, ConfigPath: p})
	c.Attach(fakeLine{thr: 1.5, warn: 1.0})
	mux := http.NewServeMux()
	c.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, c: c, cfg: p, clock: clk, yaml: yaml}
}

// session is a logged-in browser: its cookie jar, CSRF token and the
// revision its Threshold page was rendered with.
type session struct {
	client   *http.Client
	csrf     string
	revision string
}

var csrfRE = regexp.MustCompile(`data-csrf="([^"]*)"`)

func (f *fixture) login(t *testing.T, name, pw string) *session {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	s := &session{client: cl}
	if name != "" {
		resp, err := cl.PostForm(f.srv.URL+"/login", url.Values{"name": {name}, "password": {pw}, "next": {"/threshold"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/threshold" {
			t.Fatalf("login %s: %d to %q", name, resp.StatusCode, resp.Header.Get("Location"))
		}
		code, body := s.do(t, "GET", f.srv.URL+"/threshold", "", nil)
		if code != 200 {
			t.Fatalf("GET /threshold as %s: %d %s", name, code, body)
		}
		m := csrfRE.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no CSRF token on the page")
		}
		s.csrf = m[1]
		var d thresholdPage
		js := body[strings.Index(body, `id="data">`)+len(`id="data">`):]
		js = js[:strings.Index(js, "</script>")]
		if err := json.Unmarshal([]byte(js), &d); err != nil {
			t.Fatalf("page data: %v", err)
		}
		s.revision = d.Revision
	}
	return s
}

func (s *session) do(t *testing.T, method, u, csrf string, body any) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, u, r)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf != "" {
		req.Header.Set(auth.CSRFHeader, csrf)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestApplyThresholdRefused: every refused Apply says why and leaves the
// file byte for byte as it was.
func TestApplyThresholdRefused(t *testing.T) {
	f := newFixture(t)
	tech, view, anon := f.login(t, "tech", "tech-password"), f.login(t, "view", "view-password"), f.login(t, "", "")
	for _, c := range []struct {
		name  string
		s     *session
		csrf  string // "" the session's own
		req   applyRequest
		setup func() // before the request
		code  int
		want  string
	}{
		{name: "no session", s: anon, csrf: "x", req: applyRequest{Threshold: "2"}, code: 401, want: "not logged in"},
		{name: "viewer", s: view, req: applyRequest{Threshold: "2", Warn: "1"}, code: 403, want: "requires role technician"},
		{name: "forged CSRF token", s: tech, csrf: "forged", req: applyRequest{Threshold: "2", Warn: "1"}, code: 403, want: "CSRF"},
		{name: "non-numeric", s: tech, req: applyRequest{Threshold: "abc", Warn: "1"}, code: 400, want: `is not a number (write it like 0.5`},
		{name: "not finite", s: tech, req: applyRequest{Threshold: "NaN", Warn: "1"}, code: 400, want: "not a finite number"},
		{name: "out of range", s: tech, req: applyRequest{Threshold: "1e9", Warn: "1"}, code: 400, want: "out of range"},
		{name: "warn out of range", s: tech, req: applyRequest{Threshold: "2", Warn: "-1e7"}, code: 400, want: "warn threshold -1e+07 is out of range"},
		{name: "warn above threshold", s: tech, req: applyRequest{Threshold: "2", Warn: "3"}, code: 400, want: "must be below the threshold"},
		{name: "warn equal to threshold", s: tech, req: applyRequest{Threshold: "2", Warn: "2"}, code: 400, want: "must be below the threshold"},
		{name: "missing threshold", s: tech, req: applyRequest{Warn: "1"}, code: 400, want: "threshold is required"},
		{name: "missing revision", s: tech, req: applyRequest{Threshold: "2", Warn: "1", Revision: "-"}, code: 400, want: "revision is missing"},
		{name: "file changed meanwhile", s: tech, req: applyRequest{Threshold: "2", Warn: "1"}, code: 409, want: "reload the page",
			setup: func() {
				b, _ := os.ReadFile(f.cfg)
				os.WriteFile(f.cfg, append(b, []byte("# edited by hand\n")...), 0o644)
			}},
		{name: "expired session", s: tech, req: applyRequest{Threshold: "2", Warn: "1"}, code: 401, want: "session expired",
			setup: func() { f.clock.add(2 * time.Hour) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				c.setup()
			}
			before, _ := os.ReadFile(f.cfg)
			req := c.req
			switch req.Revision {
			case "":
				req.Revision = tech.revision
			case "-":
				req.Revision = ""
			}
			csrf := c.csrf
			if csrf == "" {
				csrf = c.s.csrf
			}
			code, body := c.s.do(t, "POST", f.srv.URL+"/console/api/threshold", csrf, req)
			if code != c.code || !strings.Contains(body, c.want) {
				t.Errorf("%d %s, want %d saying %q", code, body, c.code, c.want)
			}
			if after, _ := os.ReadFile(f.cfg); string(after) != string(before) {
				t.Errorf("the refused request changed the file:\n%s", after)
			}
		})
	}
}

// TestApplyThresholdWrites: a technician's Apply changes exactly the two
// values, keeps every comment, returns the new revision, and an Apply
// based on the old revision is then a conflict.
func TestApplyThresholdWrites(t *testing.T) {
	f := newFixture(t)
	tech := f.login(t, "tech", "tech-password")
	code, body := tech.do(t, "POST", f.srv.URL+"/console/api/threshold", tech.csrf, applyRequest{Threshold: "2.25", Warn: "0.75", Revision: tech.revision})
	if code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	var resp applyResponse
	json.Unmarshal([]byte(body), &resp)
	got, _ := os.ReadFile(f.cfg)
	want := strings.NewReplacer("threshold: 1.5 #", "threshold: 2.25 #", "warn_threshold: 1.0", "warn_threshold: 0.75").Replace(f.yaml)
	if string(got) != want {
		t.Errorf("file after Apply:\n%s\nwant:\n%s", got, want)
	}
	if len(resp.Changes) != 2 || resp.Revision == "" || resp.Revision == tech.revision {
		t.Errorf("response %+v: want two changes and a new revision", resp)
	}
	code, body = tech.do(t, "POST", f.srv.URL+"/console/api/threshold", tech.csrf, applyRequest{Threshold: "3", Warn: "1", Revision: tech.revision})
	if code != 409 {
		t.Errorf("apply on the old revision: %d %s, want 409", code, body)
	}
	if again, _ := os.ReadFile(f.cfg); string(again) != want {
		t.Errorf("the conflicting Apply wrote:\n%s", again)
	}
}

func score(v float64) *float64 { return &v }

// TestWhatIfAPI: the what-if endpoint judges the page's own parts list
// (its snapshot), even when parts arrive after the page was rendered, as
// metrics.ComputeWhatIf does with the result.Decide rule.
func TestWhatIfAPI(t *testing.T) {
	f := newFixture(t)
	scores := []float64{-1.2, -0.3, 0.1, 0.4, 0.4, 0.9, 1.7, math.NaN()}
	for i, s := range scores {
		r := result.Result{ID: fmt.Sprintf("R%02d", i), Seq: uint64(i + 1), Verdict: result.VerdictPass}
		if !math.IsNaN(s) {
			r.Score = score(s)
		} else {
			r.Verdict = result.VerdictError
		}
		f.c.Publish(context.Background(), r)
	}
	view := f.login(t, "view", "view-password")
	code, body := view.do(t, "GET", f.srv.URL+"/console/api/scores", "", nil)
	var d thresholdPage
	if code != 200 || json.Unmarshal([]byte(body), &d) != nil || len(d.Parts) != len(scores) {
		t.Fatalf("scores: %d %s", code, body)
	}
	// A part arriving now is not in the page's list.
	f.c.Publish(context.Background(), result.Result{ID: "LATE", Seq: 99, Score: score(5), Verdict: result.VerdictFail})
	for _, thr := range []float64{-2, 0.4, 0.41, 1.7, 3} {
		code, body := view.do(t, "GET", fmt.Sprintf("%s/console/api/whatif?threshold=%v&snapshot=%s", f.srv.URL, thr, d.Snapshot), "", nil)
		var got struct{ N, Rejected, Unscored int }
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("whatif %v: %d %s", thr, code, body)
		}
		want := 0
		for _, s := range scores {
			if math.IsNaN(s) || s >= thr {
				want++
			}
		}
		ref := metrics.ComputeWhatIf(toMetricParts(d.Parts), thr, 0.95)
		if got.N != len(scores) || got.Rejected != want || got.Rejected != ref.Rejected || got.Unscored != 1 {
			t.Errorf("threshold %v: %+v, want %d rejected of %d (1 unscored)", thr, got, want, len(scores))
		}
	}
	for _, q := range []string{"threshold=abc", "threshold=", "threshold=1e300"} {
		if code, body := view.do(t, "GET", f.srv.URL+"/console/api/whatif?"+q, "", nil); code != 400 {
			t.Errorf("whatif?%s: %d %s, want 400", q, code, body)
		}
	}
	if code, body := view.do(t, "GET", f.srv.URL+"/console/api/whatif?threshold=1&snapshot=gone", "", nil); code != 410 || !strings.Contains(body, "reload") {
		t.Errorf("an unknown snapshot: %d %s, want 410", code, body)
	}
}

// TestLiveFeedCoalesces: with 300 results in a burst, a browser gets at
// most live_rate updates a second, and the last one it gets is the newest
// result (the newest wins; nothing queues).
func TestLiveFeedCoalesces(t *testing.T) {
	f := newFixture(t)
	view := f.login(t, "view", "view-password")
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/console/events", nil)
	resp, err := view.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	const n = 300
	go func() {
		for i := 1; i <= n; i++ {
			r := result.Result{ID: fmt.Sprintf("R%03d", i), Seq: uint64(i), Score: score(float64(i)), Verdict: result.VerdictPass}
			if i%10 == 0 { // every tenth dropped by the queue, every fifth of the rest a fail
				r.Verdict, r.ReasonCode, r.Score = result.VerdictError, result.ReasonDropped, nil
			} else if i%5 == 0 {
				r.Verdict = result.VerdictFail
			}
			f.c.Publish(context.Background(), r)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var msgs []liveUpdate
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var u liveUpdate
			if err := json.Unmarshal([]byte(data), &u); err != nil {
				t.Fatalf("bad message %q: %v", data, err)
			}
			msgs = append(msgs, u)
		}
	}
	// 1.5 s at 4/s: the first message at once, then one per 250 ms.
	if len(msgs) < 3 || len(msgs) > 8 {
		t.Errorf("%d messages in 1.5 s at live_rate 4, want 3..8", len(msgs))
	}
	last := msgs[len(msgs)-1]
	if last.Result == nil || last.Result.Seq != n {
		t.Errorf("last message shows %+v, want seq %d (the newest)", last.Result, n)
	}
	if last.Fails != n/10 || last.Errors != n/10 || last.Dropped != n/10 {
		t.Errorf("last hour: %d fails, %d errors, %d dropped, want %d each", last.Fails, last.Errors, last.Dropped, n/10)
	}
	if last.Parts != n || last.Camera != "connected" || last.Backlog != 2 || last.Threshold == nil || *last.Threshold != 1.5 {
		t.Errorf("last message %+v: want %d parts in the hour and the line's state", last, n)
	}
}

// TestPreviewDue: frames are asked for only while a browser watches, and
// at most min(live_rate, maxFrameRate) a second.
func TestPreviewDue(t *testing.T) {
	c := New(Options{LiveRate: 4})
	if c.PreviewDue() {
		t.Error("a preview is due with nobody watching")
	}
	c.watchers.Add(1)
	if !c.PreviewDue() {
		t.Error("no preview due for a watching browser")
	}
	if c.PreviewDue() {
		t.Error("a second preview due at once (live_rate 4)")
	}
	time.Sleep(300 * time.Millisecond)
	if c.PreviewDue() {
		t.Error("a preview due 300 ms after the last: frames are rendered at most maxFrameRate (2) a second")
	}
	time.Sleep(220 * time.Millisecond)
	if !c.PreviewDue() {
		t.Error("no preview due after 1/maxFrameRate")
	}
}

// TestPagesSmallAndSelfContained: every page with its script and sheet
// stays under 300 KB, and nothing is loaded from outside the daemon.
func TestPagesSmallAndSelfContained(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 1000; i++ { // a full parts list on the Threshold page
		f.c.Publish(context.Background(), result.Result{ID: fmt.Sprintf("01J%023d", i), Seq: uint64(i), Score: score(float64(i) / 100), Verdict: result.VerdictPass})
	}
	view := f.login(t, "view", "view-password")
	_, js := view.do(t, "GET", f.srv.URL+"/console/assets/console.js", "", nil)
	_, css := view.do(t, "GET", f.srv.URL+"/console/assets/console.css", "", nil)
	ext := regexp.MustCompile(`(?i)(src|href)="(https?:)?//`)
	for _, p := range []string{"/live", "/history", "/threshold", "/review", "/health", "/login"} {
		code, body := view.do(t, "GET", f.srv.URL+p, "", nil)
		if code != 200 {
			t.Errorf("GET %s: %d", p, code)
		}
		if total := len(body) + len(js) + len(css); total > 300<<10 {
			t.Errorf("%s weighs %d bytes with its assets, want < 300 KB", p, total)
		}
		if ext.MatchString(body) {
			t.Errorf("%s loads something from another site", p)
		}
	}
}

// TestLoginRedirectStaysLocal: the next parameter cannot send a user to
// another site after logging in.
func TestLoginRedirectStaysLocal(t *testing.T) {
	for in, want := range map[string]string{"/history?verdict=fail": "/history?verdict=fail", "//evil.example/x": "/live",
		"https://evil.example": "/live", `/\evil.example`: "/live", "": "/live",
		"/\t/evil.example": "/live", "/\n/evil.example": "/live", "/\x7f/x": "/live", "/%2F/evil.example": "/live"} {
		if got := localNext(in); got != want {
			t.Errorf("localNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLatencyMinutes: each finished minute keeps its stages' p50 and p99
// (metrics.Quantile of exactly that minute's samples), and the minute in
// progress is shown too.
func TestLatencyMinutes(t *testing.T) {
	var l latencies
	base := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var first []float64
	for i := 0; i < 200; i++ {
		v := float64((i*37)%101) / 3
		first = append(first, v)
		l.add(base.Add(time.Duration(i)*250*time.Millisecond), map[string]float64{"infer": v, "total": 2 * v})
	}
	l.add(base.Add(90*time.Second), map[string]float64{"infer": 1000})
	got := l.current()
	if len(got) != 3 {
		t.Fatalf("%d entries, want infer and total of minute 0 and infer of minute 1: %+v", len(got), got)
	}
	want := []LatencyMinute{
		{Minute: base, Stage: "infer", N: 200, P50: metrics.Quantile(first, 0.5), P99: metrics.Quantile(first, 0.99)},
		{Minute: base, Stage: "total", N: 200},
		{Minute: base.Add(time.Minute), Stage: "infer", N: 1, P50: 1000, P99: 1000},
	}
	doubled := make([]float64, len(first))
	for i, v := range first {
		doubled[i] = 2 * v
	}
	want[1].P50, want[1].P99 = metrics.Quantile(doubled, 0.5), metrics.Quantile(doubled, 0.99)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestNoUsersReadOnly: a console without users shows its pages to a
// loopback client and refuses every write, saying how to enable them.
func TestNoUsersReadOnly(t *testing.T) {
	am, err := auth.New(config.ConsoleConfig{SessionTTL: time.Hour, LiveRate: 4, LoginAttempts: 5}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "segad.yaml")
	os.WriteFile(p, []byte("segad:\n  threshold: 1\n"), 0o644)
	c := New(Options{Auth: am, ConfigPath: p})
	c.Attach(fakeLine{thr: 1, warn: math.NaN()})
	mux := http.NewServeMux()
	c.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s := &session{client: srv.Client()}
	for _, page := range []string{"/live", "/threshold", "/health"} {
		if code, body := s.do(t, "GET", srv.URL+page, "", nil); code != 200 || !strings.Contains(body, "read-only") {
			t.Errorf("GET %s without users: %d, want 200 read-only", page, code)
		}
	}
	code, body := s.do(t, "POST", srv.URL+"/console/api/threshold", "", applyRequest{Threshold: "2", Revision: "x"})
	if code != 403 || !strings.Contains(body, "console.users") {
		t.Errorf("a write without users: %d %s, want 403 naming console.users", code, body)
	}
	if b, _ := os.ReadFile(p); string(b) != "segad:\n  threshold: 1\n" {
		t.Errorf("the refused write changed the file: %s", b)
	}
}

// TestLiveStreamEndsWithSession: logging out ends an open Live stream
// (it is checked every sessionRecheck), with an "ended" event saying so.
func TestLiveStreamEndsWithSession(t *testing.T) {
	old := sessionRecheck
	sessionRecheck = 100 * time.Millisecond
	defer func() { sessionRecheck = old }()
	f := newFixture(t)
	view := f.login(t, "view", "view-password")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/console/events", nil)
	resp, err := view.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Keep the stream busy so the check runs between messages too.
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			f.c.Publish(context.Background(), result.Result{ID: fmt.Sprint(i), Seq: uint64(i), Verdict: result.VerdictPass})
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	if code, _ := view.do(t, "POST", f.srv.URL+"/logout", view.csrf, nil); code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	t0 := time.Now()
	body, err := io.ReadAll(resp.Body) // returns when the server ends the stream
	if err != nil {
		t.Fatalf("the stream did not end after logout: %v", err)
	}
	if !strings.Contains(string(body), "event: ended") || time.Since(t0) > time.Second {
		t.Errorf("stream ended %s after logout, last bytes %q", time.Since(t0), body[max(0, len(body)-120):])
	}
}

// TestLiveStreamOutlivesWriteTimeout: the daemon's server bounds every
// response by http's WriteTimeout (75 s); a Live stream moves its
// deadline on with every message and so keeps running past it.
func TestLiveStreamOutlivesWriteTimeout(t *testing.T) {
	f := newFixture(t)
	view := f.login(t, "view", "view-password")
	mux := http.NewServeMux()
	f.c.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.WriteTimeout, srv.Config.ReadTimeout = 500*time.Millisecond, 500*time.Millisecond
	srv.Start()
	defer srv.Close()
	u, _ := url.Parse(f.srv.URL)
	su, _ := url.Parse(srv.URL)
	view.client.Jar.SetCookies(su, view.client.Jar.Cookies(u))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			f.c.Publish(context.Background(), result.Result{ID: fmt.Sprint(i), Seq: uint64(i), Verdict: result.VerdictPass})
			time.Sleep(50 * time.Millisecond)
		}
	}()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/console/events", nil)
	resp, err := view.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	var last time.Time
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			last = time.Now()
		}
	}
	// The client leaves at 2 s; the stream must deliver until then.
	if last.IsZero() || last.Sub(start) < 1500*time.Millisecond {
		t.Errorf("the stream delivered for %s of the client's 2 s (server write and read timeouts 500 ms)", last.Sub(start))
	}
}

// TestLiveStreamsBounded: one client can hold at most maxStreamsPerClient
// Live streams (each holds one of the daemon's HTTP connections); the
// next gets 503 with Retry-After, and a closed stream frees its slot.
func TestLiveStreamsBounded(t *testing.T) {
	f := newFixture(t)
	view := f.login(t, "view", "view-password")
	open := func() (*http.Response, context.CancelFunc) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/console/events", nil)
		resp, err := view.client.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		return resp, cancel
	}
	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for i := 0; i < maxStreamsPerClient; i++ {
		resp, cancel := open()
		cancels = append(cancels, cancel)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d", i, resp.StatusCode)
		}
		defer resp.Body.Close()
	}
	resp, cancel := open()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cancel()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many Live streams") {
		t.Fatalf("stream beyond the bound: %d %q", resp.StatusCode, body)
	}
	cancels[0]()
	waitUntil := time.Now().Add(5 * time.Second)
	for {
		resp, cancel := open()
		cancels = append(cancels, cancel)
		code := resp.StatusCode
		if code == http.StatusOK {
			resp.Body.Close()
			break
		}
		resp.Body.Close()
		if time.Now().After(waitUntil) {
			t.Fatalf("a closed stream did not free its slot: %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTechnicianThresholdWithinScores: once the line has judged parts, a
// technician may put the threshold only within the scores seen (and the
// bundle's operating points): one beyond would pass or fail every part,
// which switches inspection off, so it takes an engineer. Nothing is
// written on a refusal.
func TestTechnicianThresholdWithinScores(t *testing.T) {
	f := newFixture(t)
	for i, s := range []float64{-1.5, 0.2, 2.5} {
		f.c.Publish(context.Background(), result.Result{ID: fmt.Sprintf("S%d", i), Seq: uint64(i + 1), Score: score(s), Verdict: result.VerdictPass})
	}
	tech := f.login(t, "tech", "tech-password")
	before, _ := os.ReadFile(f.cfg)
	for _, thr := range []string{"1000", "-3"} {
		code, body := tech.do(t, "POST", f.srv.URL+"/console/api/threshold", tech.csrf, applyRequest{Threshold: thr, Revision: tech.revision})
		if code != http.StatusForbidden || !strings.Contains(body, "only an engineer") {
			t.Errorf("technician threshold %s: %d %s, want 403 naming the engineer", thr, code, body)
		}
	}
	if after, _ := os.ReadFile(f.cfg); string(after) != string(before) {
		t.Fatal("a refused threshold was written")
	}
	if code, body := tech.do(t, "POST", f.srv.URL+"/console/api/threshold", tech.csrf, applyRequest{Threshold: "2", Revision: tech.revision}); code != http.StatusOK {
		t.Fatalf("technician threshold within the scores: %d %s", code, body)
	}
	eng := f.login(t, "eng", "eng-password-0")
	rev, err := config.FileRevision(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := eng.do(t, "POST", f.srv.URL+"/console/api/threshold", eng.csrf, applyRequest{Threshold: "1000", Revision: string(rev)}); code != http.StatusOK {
		t.Fatalf("engineer threshold beyond the scores: %d %s", code, body)
	}
}

// TestLoginFromAnotherSiteRefused: a login form posted by another site's
// page (login CSRF) is refused without checking the password; the console's
// own page and clients without browser headers log in.
func TestLoginFromAnotherSiteRefused(t *testing.T) {
	f := newFixture(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(hdr map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", f.srv.URL+"/login", strings.NewReader("name=tech&password=tech-password"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	host := strings.TrimPrefix(f.srv.URL, "http://")
	for _, c := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"other origin", map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"own origin", map[string]string{"Origin": "http://" + host, "Sec-Fetch-Site": "same-origin"}, http.StatusSeeOther},
		{"no browser headers", nil, http.StatusSeeOther},
	} {
		if got := post(c.hdr); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
