package auth

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/segad-edge/segad-edge/config"
)

// clock is a settable Options.Now.
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

var (
	hashOnce sync.Once
	hashes   map[string]string
)

// testHashes are bcrypt hashes at the lowest accepted cost (10), made once:
// the tests check the logic, HashPassword's own test checks cost 12.
func testHashes(t *testing.T) map[string]string {
	hashOnce.Do(func() {
		hashes = map[string]string{}
		for _, pw := range []string{"viewer-password", "tech-password", "eng-password", "other-password"} {
			h, err := bcrypt.GenerateFromPassword([]byte(pw), config.MinBcryptCost)
			if err != nil {
				panic(err)
			}
			hashes[pw] = string(h)
		}
	})
	return hashes
}

func users(t *testing.T) config.ConsoleConfig {
	h := testHashes(t)
	return config.ConsoleConfig{SessionTTL: time.Hour, LoginAttempts: 3, Users: []config.ConsoleUser{
		{Name: "vera", Role: "viewer", PasswordHash: h["viewer-password"]},
		{Name: "tom", Role: "technician", PasswordHash: h["tech-password"]},
		{Name: "eva", Role: "engineer", PasswordHash: h["eng-password"]},
	}}
}

func newManager(t *testing.T, cfg config.ConsoleConfig, secure bool) (*Manager, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)}
	m, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Secure: secure, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return m, c
}

// req builds a request from addr carrying the cookie.
func req(method, target, addr string, cookie *http.Cookie) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = addr
	if cookie != nil {
		r.AddCookie(cookie)
	}
	return r
}

const lan = "192.168.10.20:50000"

// login logs in and returns the session cookie.
func login(t *testing.T, m *Manager, name, pw string) *http.Cookie {
	t.Helper()
	w := httptest.NewRecorder()
	if _, err := m.Login(w, req("POST", "/login", lan, nil), name, pw); err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieName {
			return c
		}
	}
	t.Fatal("no session cookie")
	return nil
}

func TestRoles(t *testing.T) {
	for _, s := range []string{"viewer", "technician", "engineer"} {
		r, err := ParseRole(s)
		if err != nil || r.String() != s {
			t.Errorf("%s: %v %v", s, r, err)
		}
	}
	for _, s := range []string{"", "admin", "Viewer", "none"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if !(RoleNone < RoleViewer && RoleViewer < RoleTechnician && RoleTechnician < RoleEngineer) {
		t.Error("roles out of order")
	}
}

// TestLogin: good and bad credentials, the cookie's attributes, and the
// rate limit that recovers after a minute.
func TestLogin(t *testing.T) {
	for _, secure := range []bool{false, true} {
		m, _ := newManager(t, users(t), secure)
		w := httptest.NewRecorder()
		u, err := m.Login(w, req("POST", "/login", lan, nil), "tom", "tech-password")
		if err != nil || u.Name != "tom" || u.Role != RoleTechnician || u.Anonymous {
			t.Fatalf("login: %+v %v", u, err)
		}
		cs := w.Result().Cookies()
		if len(cs) != 1 {
			t.Fatalf("cookies %v", cs)
		}
		c := cs[0]
		if c.Name != CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure != secure || len(c.Value) < 43 {
			t.Errorf("cookie %+v (secure %v)", c, secure)
		}
		if got, ok := m.Current(req("GET", "/", lan, c)); !ok || got.Name != "tom" {
			t.Errorf("current %+v %v", got, ok)
		}
	}

	m, clk := newManager(t, users(t), false)
	for _, tc := range []struct {
		name, user, pw string
		want           error
	}{
		{"wrong password", "tom", "eng-password", ErrBadCredentials},
		{"unknown user", "mallory", "tech-password", ErrBadCredentials},
		{"empty", "", "", ErrBadCredentials},
		{"rate limited", "tom", "tech-password", ErrRateLimited}, // the fourth attempt of 3 per minute
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			_, err := m.Login(w, req("POST", "/login", lan, nil), tc.user, tc.pw)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if len(w.Result().Cookies()) != 0 {
				t.Error("a refused login set a cookie")
			}
		})
	}
	var rl *RateLimitError
	_, err := m.Login(httptest.NewRecorder(), req("POST", "/login", lan, nil), "tom", "tech-password")
	if !errors.As(err, &rl) || rl.RetryAfterSeconds() < 1 || rl.RetryAfterSeconds() > 60 {
		t.Fatalf("rate limit: %v", err)
	}
	// Another client is not limited by this one's attempts.
	if _, err := m.Login(httptest.NewRecorder(), req("POST", "/login", "192.168.10.21:1", nil), "tom", "tech-password"); err != nil {
		t.Errorf("other client: %v", err)
	}
	// X-Forwarded-For does not make a new client.
	r := req("POST", "/login", lan, nil)
	r.Header.Set("X-Forwarded-For", "10.9.9.9")
	if _, err := m.Login(httptest.NewRecorder(), r, "tom", "tech-password"); !errors.Is(err, ErrRateLimited) {
		t.Errorf("X-Forwarded-For escaped the limit: %v", err)
	}
	clk.add(61 * time.Second)
	if _, err := m.Login(httptest.NewRecorder(), req("POST", "/login", lan, nil), "tom", "tech-password"); err != nil {
		t.Errorf("after a minute: %v", err)
	}
}

// TestUnknownUserTakesAsLong: an unknown name is compared against a dummy
// hash of the same cost, so timing does not tell which names exist.
func TestUnknownUserTakesAsLong(t *testing.T) {
	cfg := users(t)
	cfg.LoginAttempts = 100
	m, _ := newManager(t, cfg, false)
	timeIt := func(name string) time.Duration {
		best := time.Hour
		for range 5 {
			start := time.Now()
			_, _ = m.Login(httptest.NewRecorder(), req("POST", "/login", lan, nil), name, "wrong-password")
			best = min(best, time.Since(start))
		}
		return best
	}
	known, unknown := timeIt("tom"), timeIt("nobody")
	if ratio := float64(unknown) / float64(known); ratio < 0.5 || ratio > 2 {
		t.Errorf("unknown user %v vs known %v: ratio %.2f", unknown, known, ratio)
	}
	t.Logf("wrong password %v, unknown user %v", known, unknown)
}

// TestRequire: the role matrix, CSRF on writes, expired and missing
// sessions, and the answers' shapes (JSON for /api, redirect for pages).
func TestRequire(t *testing.T) {
	m, clk := newManager(t, users(t), false)
	cookies := map[string]*http.Cookie{
		"viewer": login(t, m, "vera", "viewer-password"), "technician": login(t, m, "tom", "tech-password"),
		"engineer": login(t, m, "eva", "eng-password"),
	}
	csrf := func(who string) string { return m.CSRFToken(req("GET", "/", lan, cookies[who])) }
	for who := range cookies {
		if len(csrf(who)) < 43 {
			t.Fatalf("%s: CSRF token %q", who, csrf(who))
		}
	}
	if csrf("viewer") == csrf("technician") {
		t.Fatal("two sessions share a CSRF token")
	}
	ok := func(w http.ResponseWriter, r *http.Request) {
		u, _ := UserFrom(r.Context())
		_, _ = io.WriteString(w, "ok "+u.Name)
	}
	type call struct {
		name       string
		min        Role
		method     string
		path       string
		who        string // cookie; "" none
		token      string // "self", "other", "forged", "form" or ""
		accept     string
		code       int
		body       string
		redirectTo string
	}
	calls := []call{
		{"viewer reads", RoleViewer, "GET", "/live", "viewer", "", "", 200, "ok vera", ""},
		{"viewer cannot apply", RoleTechnician, "POST", "/api/threshold", "viewer", "self", "", 403, `"error":"requires role technician"`, ""},
		{"technician applies", RoleTechnician, "POST", "/api/threshold", "technician", "self", "", 200, "ok tom", ""},
		{"technician is not engineer", RoleEngineer, "GET", "/settings", "technician", "", "", 403, "requires role engineer", ""},
		{"engineer does all", RoleEngineer, "POST", "/api/x", "engineer", "self", "", 200, "ok eva", ""},
		{"engineer reads viewer pages", RoleViewer, "GET", "/live", "engineer", "", "", 200, "ok eva", ""},
		{"form field token", RoleTechnician, "POST", "/threshold", "technician", "form", "", 200, "ok tom", ""},
		{"missing CSRF", RoleTechnician, "POST", "/api/threshold", "technician", "", "", 403, "invalid or missing CSRF token: reload the page", ""},
		{"forged CSRF", RoleTechnician, "POST", "/api/threshold", "technician", "forged", "", 403, "invalid or missing CSRF token", ""},
		{"another session's CSRF", RoleTechnician, "POST", "/api/threshold", "technician", "other", "", 403, "invalid or missing CSRF token", ""},
		{"multipart field is not read", RoleTechnician, "POST", "/threshold", "technician", "multipart", "", 403, "CSRF", ""},
		{"DELETE needs CSRF too", RoleViewer, "DELETE", "/api/x", "viewer", "", "", 403, "CSRF", ""},
		{"no session, API", RoleViewer, "GET", "/api/live", "", "", "", 401, `"error":"not logged in`, ""},
		{"no session, prefixed API", RoleViewer, "GET", "/console/api/live", "", "", "", 401, `"error":"not logged in`, ""},
		{"no session, JSON accept", RoleViewer, "GET", "/live", "", "", "application/json", 401, `"error"`, ""},
		{"no session, page", RoleViewer, "GET", "/history?part=P1", "", "", "text/html", 303, "", "/login?next=" + url.QueryEscape("/history?part=P1")},
		{"no session, write", RoleTechnician, "POST", "/threshold", "", "", "", 401, "not logged in", ""},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			r := req(c.method, c.path, lan, cookies[c.who])
			switch c.token {
			case "self":
				r.Header.Set(CSRFHeader, csrf(c.who))
			case "other":
				r.Header.Set(CSRFHeader, csrf("engineer"))
			case "forged":
				r.Header.Set(CSRFHeader, strings.Repeat("A", 43))
			case "multipart":
				body := "--b\r\nContent-Disposition: form-data; name=\"" + CSRFField + "\"\r\n\r\n" + csrf(c.who) + "\r\n--b--\r\n"
				r = httptest.NewRequest(c.method, c.path, strings.NewReader(body))
				r.RemoteAddr = lan
				r.AddCookie(cookies[c.who])
				r.Header.Set("Content-Type", "multipart/form-data; boundary=b")
			case "form":
				r = httptest.NewRequest(c.method, c.path, strings.NewReader(url.Values{CSRFField: {csrf(c.who)}}.Encode()))
				r.RemoteAddr = lan
				r.AddCookie(cookies[c.who])
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if c.accept != "" {
				r.Header.Set("Accept", c.accept)
			}
			w := httptest.NewRecorder()
			m.Require(c.min, ok)(w, r)
			if w.Code != c.code || !strings.Contains(w.Body.String(), c.body) {
				t.Errorf("%d %q, want %d containing %q", w.Code, w.Body.String(), c.code, c.body)
			}
			if c.redirectTo != "" && w.Header().Get("Location") != c.redirectTo {
				t.Errorf("redirect to %q, want %q", w.Header().Get("Location"), c.redirectTo)
			}
			if strings.HasPrefix(c.path, "/api/") && w.Code >= 400 {
				var e map[string]string
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e["error"] == "" {
					t.Errorf("API error is not JSON {\"error\":...}: %q", w.Body.String())
				}
			}
		})
	}

	// Expiry: idle for the TTL, and absolute even when active.
	t.Run("idle expiry", func(t *testing.T) {
		c := login(t, m, "tom", "tech-password")
		clk.add(time.Hour)
		w := httptest.NewRecorder()
		m.Require(RoleViewer, ok)(w, req("GET", "/api/live", lan, c))
		if w.Code != 401 || !strings.Contains(w.Body.String(), "session expired: log in again") {
			t.Errorf("%d %s", w.Code, w.Body.String())
		}
		if _, ok := m.Current(req("GET", "/", lan, c)); ok {
			t.Error("expired session is current")
		}
	})
	t.Run("absolute expiry", func(t *testing.T) {
		c := login(t, m, "eva", "eng-password")
		for range 5 { // active every 10 minutes: idle never reached
			clk.add(10 * time.Minute)
			w := httptest.NewRecorder()
			m.Require(RoleViewer, ok)(w, req("GET", "/api/live", lan, c))
			if w.Code != 200 {
				t.Fatalf("active session refused: %d", w.Code)
			}
		}
		clk.add(20 * time.Minute) // 70 minutes after login, 20 idle
		w := httptest.NewRecorder()
		m.Require(RoleViewer, ok)(w, req("GET", "/api/live", lan, c))
		if w.Code != 401 || !strings.Contains(w.Body.String(), "session expired") {
			t.Errorf("after 70 minutes of an 1h session: %d %s", w.Code, w.Body.String())
		}
	})
	t.Run("logout", func(t *testing.T) {
		c := login(t, m, "vera", "viewer-password")
		w := httptest.NewRecorder()
		m.Logout(w, req("POST", "/logout", lan, c))
		if cs := w.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
			t.Errorf("logout cookie %v", cs)
		}
		if _, ok := m.Current(req("GET", "/", lan, c)); ok {
			t.Error("session survives logout")
		}
	})
}

// TestAnonymous: without users, loopback clients may read and never write;
// other clients get nothing, whatever X-Forwarded-For says.
func TestAnonymous(t *testing.T) {
	m, _ := newManager(t, config.ConsoleConfig{}, false)
	if m.Configured() {
		t.Fatal("configured without users")
	}
	ok := func(w http.ResponseWriter, r *http.Request) {
		u, _ := UserFrom(r.Context())
		if !u.Anonymous || u.Role != RoleViewer {
			t.Errorf("user %+v", u)
		}
		_, _ = io.WriteString(w, "ok")
	}
	for _, tc := range []struct {
		name, method, addr, xff string
		min                     Role
		code                    int
	}{
		{"loopback v4 reads", "GET", "127.0.0.1:4000", "", RoleViewer, 200},
		{"loopback v6 reads", "GET", "[::1]:4000", "", RoleViewer, 200},
		{"loopback cannot write", "POST", "127.0.0.1:4000", "", RoleViewer, 403},
		{"loopback cannot apply", "GET", "127.0.0.1:4000", "", RoleTechnician, 403},
		{"LAN gets nothing", "GET", lan, "", RoleViewer, 401},
		{"LAN with a forged X-Forwarded-For", "GET", lan, "127.0.0.1", RoleViewer, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := req(tc.method, "/api/live", tc.addr, nil)
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
				r.Header.Set("X-Real-IP", tc.xff)
			}
			w := httptest.NewRecorder()
			m.Require(tc.min, ok)(w, r)
			if w.Code != tc.code {
				t.Errorf("%d %s, want %d", w.Code, w.Body.String(), tc.code)
			}
			if _, cur := m.Current(r); cur != (tc.code == 200 || strings.HasPrefix(tc.addr, "127.") || strings.HasPrefix(tc.addr, "[::1]")) {
				t.Errorf("Current %v", cur)
			}
		})
	}
	if _, err := m.Login(httptest.NewRecorder(), req("POST", "/login", "127.0.0.1:1", nil), "x", "y"); !errors.Is(err, ErrNoUsers) {
		t.Errorf("login without users: %v", err)
	}
	// With users, loopback is no longer anonymous.
	m2, _ := newManager(t, users(t), false)
	w := httptest.NewRecorder()
	m2.Require(RoleViewer, ok)(w, req("GET", "/api/live", "127.0.0.1:4000", nil))
	if w.Code != 401 {
		t.Errorf("loopback with users configured: %d", w.Code)
	}
}

// TestUpdate: a reload that removes a user, lowers a role or changes a
// password ends those sessions; the others live on.
func TestUpdate(t *testing.T) {
	m, _ := newManager(t, users(t), false)
	vera, tom, eva := login(t, m, "vera", "viewer-password"), login(t, m, "tom", "tech-password"), login(t, m, "eva", "eng-password")
	cfg := users(t)
	cfg.Users = []config.ConsoleUser{
		{Name: "vera", Role: "technician", PasswordHash: cfg.Users[0].PasswordHash}, // raised: stays
		{Name: "eva", Role: "technician", PasswordHash: cfg.Users[2].PasswordHash},  // lowered: ends
		// tom removed: ends
	}
	if err := m.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if u, ok := m.Current(req("GET", "/", lan, vera)); !ok || u.Role != RoleTechnician {
		t.Errorf("vera: %+v %v", u, ok)
	}
	for name, c := range map[string]*http.Cookie{"tom": tom, "eva": eva} {
		if _, ok := m.Current(req("GET", "/", lan, c)); ok {
			t.Errorf("%s's session survived", name)
		}
	}
	if _, err := m.Login(httptest.NewRecorder(), req("POST", "/login", "10.0.0.1:1", nil), "tom", "tech-password"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("removed user logs in: %v", err)
	}
	cfg.Users[0].PasswordHash = testHashes(t)["other-password"]
	if err := m.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Current(req("GET", "/", lan, vera)); ok {
		t.Error("session survived a password change")
	}
	bad := cfg
	bad.Users = []config.ConsoleUser{{Name: "x", Role: "root", PasswordHash: cfg.Users[0].PasswordHash}}
	if err := m.Update(bad); err == nil || !strings.Contains(err.Error(), "role") {
		t.Errorf("bad role: %v", err)
	}
}

func TestHashPassword(t *testing.T) {
	for _, tc := range []struct {
		pw, err string
	}{
		{"short", "at least 10"},
		{"ünïcödé12", "at least 10"},
		{strings.Repeat("x", 73), "at most 72"},
		{"correct horse battery", ""},
	} {
		h, err := HashPassword(tc.pw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v", tc.pw, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if c, _ := bcrypt.Cost([]byte(h)); c != HashCost {
			t.Errorf("cost %d", c)
		}
		if bcrypt.CompareHashAndPassword([]byte(h), []byte(tc.pw)) != nil {
			t.Error("hash does not verify")
		}
	}
}

// TestConcurrent: requests, logins, logouts and reloads at once (run
// with -race): no session survives its user's removal.
func TestConcurrent(t *testing.T) {
	cfg := users(t)
	cfg.LoginAttempts = 100
	m, _ := newManager(t, cfg, false)
	c := login(t, m, "tom", "tech-password")
	h := m.Require(RoleViewer, func(w http.ResponseWriter, _ *http.Request) {})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				h(httptest.NewRecorder(), req("GET", "/api/live", lan, c))
				_ = m.CSRFToken(req("GET", "/", lan, c))
				if i%25 == g {
					w := httptest.NewRecorder()
					r := req("POST", "/login", "10.0.0."+string(rune('1'+g))+":1", nil)
					if _, err := m.Login(w, r, "vera", "viewer-password"); err == nil {
						m.Logout(httptest.NewRecorder(), req("POST", "/logout", lan, w.Result().Cookies()[0]))
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 5 {
			if err := m.Update(cfg); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	if _, ok := m.Current(req("GET", "/", lan, c)); !ok {
		t.Error("tom's session ended by reloads that did not change him")
	}
	cfg.Users = cfg.Users[:1]
	if err := m.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Current(req("GET", "/", lan, c)); ok {
		t.Error("tom's session survived his removal")
	}
}

// TestLoginParallelGuessesLimited: guesses sent all at once from one client
// are limited like guesses one after another (the attempt is counted before
// the password is hashed), and at most maxHashing password checks run at
// once, so a crowd of logins cannot take the line's cores.
func TestLoginParallelGuessesLimited(t *testing.T) {
	m, _ := newManager(t, users(t), false) // 3 attempts a minute
	const n = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.Login(httptest.NewRecorder(), req("POST", "/login", lan, nil), "tom", "wrong-password")
			kind := "other"
			switch {
			case errors.Is(err, ErrBadCredentials):
				kind = "checked"
			case errors.Is(err, ErrRateLimited):
				kind = "limited"
			}
			mu.Lock()
			got[kind]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if got["checked"] > 3 || got["checked"] == 0 || got["other"] != 0 || got["checked"]+got["limited"] != n {
		t.Fatalf("40 parallel guesses with 3 attempts a minute: %v, want at most 3 checked, the rest limited", got)
	}
	// A busy refusal (other checks running) is not a failed attempt: the
	// right password still gets in when the guesses were all refused busy.
	m2, _ := newManager(t, users(t), false)
	for i := 0; i < maxHashing; i++ {
		m2.hashing <- struct{}{}
	}
	var rl *RateLimitError
	if _, err := m2.Login(httptest.NewRecorder(), req("POST", "/login", lan, nil), "tom", "tech-password"); !errors.As(err, &rl) {
		t.Fatalf("login while %d checks run: %v, want refused busy", maxHashing, err)
	}
	for i := 0; i < maxHashing; i++ {
		<-m2.hashing
	}
	for i := 0; i < 3; i++ {
		if _, err := m2.Login(httptest.NewRecorder(), req("POST", "/login", lan, nil), "tom", "tech-password"); err != nil {
			t.Fatalf("login %d after the busy refusal: %v (busy refusals or successes counted as failures)", i, err)
		}
	}
}

// TestOneUserCannotEvictOthers: a user who logs in over and over ends only
// their own oldest sessions (at most maxUserSessions each, far below the
// global bound whose eviction would hit everyone); another user's session
// survives.
func TestOneUserCannotEvictOthers(t *testing.T) {
	cfg := users(t)
	cfg.LoginAttempts = 100
	m, clk := newManager(t, cfg, false)
	eva := login(t, m, "eva", "eng-password")
	var first *http.Cookie
	for i := 0; i < maxUserSessions+5; i++ {
		clk.add(time.Millisecond)
		c := login(t, m, "tom", "tech-password")
		if first == nil {
			first = c
		}
	}
	if _, ok := m.Current(req("GET", "/", lan, eva)); !ok {
		t.Error("another user's many logins ended eva's session")
	}
	if _, ok := m.Current(req("GET", "/", lan, first)); ok {
		t.Error("tom's oldest session outlived the per-user bound")
	}
	m.mu.Lock()
	n := m.userSessions("tom")
	m.mu.Unlock()
	if n > maxUserSessions {
		t.Errorf("tom holds %d sessions, bound %d", n, maxUserSessions)
	}
}
