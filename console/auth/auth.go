// Package auth is the technician console's access control: users and roles
// from console.users (config.ConsoleConfig), bcrypt password checks with a
// per-client login rate limit, in-memory sessions behind an HttpOnly,
// SameSite=Strict cookie, a per-session CSRF token on every write, and
// Require, the one wrapper every console handler goes through.
//
// Without users configured the console is read-only and answers loopback
// clients only (an anonymous viewer). The client address is the TCP peer's:
// X-Forwarded-For is never trusted, because anyone can send it.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/segad-edge/segad-edge/config"
)

// Role is what a console user may do; roles are ordered, each including
// the ones below it.
type Role int

// Roles, least to most privileged.
const (
	// RoleNone is no role (not logged in).
	RoleNone Role = iota
	// RoleViewer may look.
	RoleViewer
	// RoleTechnician may also change thresholds and label parts.
	RoleTechnician
	// RoleEngineer may change everything the console can change.
	RoleEngineer
)

// ParseRole parses a role name as written in console.users.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "technician":
		return RoleTechnician, nil
	case "engineer":
		return RoleEngineer, nil
	}
	return RoleNone, fmt.Errorf("role %q: want viewer, technician or engineer", s)
}

// String is the role's name in the config ("none" for RoleNone).
func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleTechnician:
		return "technician"
	case RoleEngineer:
		return "engineer"
	}
	return "none"
}

// User is who is making a request.
type User struct {
	// Name is the login name ("" for an anonymous user).
	Name string
	// Role is what the user may do.
	Role Role
	// Anonymous is the loopback viewer of a console without users.
	Anonymous bool
}

// Options are a Manager's settings that do not come from the config file.
type Options struct {
	// Logger receives logins, logouts and refusals (default slog.Default()).
	Logger *slog.Logger
	// Secure marks the session cookie Secure (the console is served over
	// TLS); a Secure cookie is never sent over plain HTTP.
	Secure bool
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
}

// CookieName is the session cookie.
const CookieName = "segad_session"

// CSRFHeader and CSRFField carry the CSRF token of a write request.
const (
	CSRFHeader = "X-CSRF-Token"
	CSRFField  = "csrf_token"
)

// HashCost is the bcrypt cost of HashPassword: about a quarter of a second
// on a small ARM board, which makes an offline guess of a stolen hash slow
// while a login stays quick.
const HashCost = 12

// MinPasswordLen is the shortest password HashPassword accepts.
const MinPasswordLen = 10

// maxPasswordLen is bcrypt's limit: it ignores (x/crypto refuses) bytes
// beyond 72.
const maxPasswordLen = 72

// maxSessions bounds the session table; the oldest session is dropped
// beyond it, so a script logging in in a loop cannot fill memory.
const maxSessions = 1024

// maxClients bounds the rate limiter's table of client addresses.
const maxClients = 4096

// rateWindow is the login rate limit's window.
const rateWindow = time.Minute

// Errors of Login.
var (
	// ErrBadCredentials is an unknown user or a wrong password (which of
	// the two is not said: that would tell a guesser which names exist).
	ErrBadCredentials = errors.New("unknown user or wrong password")
	// ErrRateLimited is returned (inside a *RateLimitError) when a client
	// tried to log in too often; the caller answers 429 with Retry-After.
	ErrRateLimited = errors.New("too many login attempts")
	// ErrNoUsers is returned when console.users is empty: nobody can log in.
	ErrNoUsers = errors.New("the console has no users: add console.users to the config (segad user hash makes a password hash)")
)

// RateLimitError is a refused login with how long to wait.
type RateLimitError struct {
	// RetryAfter is when the client may try again.
	RetryAfter time.Duration
}

// Error says how long to wait.
func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v: try again in %d s", ErrRateLimited, retrySeconds(e.RetryAfter))
}

// Unwrap makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// RetryAfterSeconds is the value of a Retry-After header for e (at least 1).
func (e *RateLimitError) RetryAfterSeconds() int { return retrySeconds(e.RetryAfter) }

func retrySeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

type account struct {
	role Role
	hash []byte
}

type session struct {
	user    string
	csrf    string
	created time.Time
	seen    time.Time
}

type window struct {
	start time.Time
	n     int
}

// Manager holds the users, the sessions and the login rate limit. It is
// safe for concurrent use.
type Manager struct {
	log    *slog.Logger
	secure bool
	now    func() time.Time

	mu       sync.Mutex
	users    map[string]account
	dummy    []byte // compared for unknown users, so they take as long as known ones
	ttl      time.Duration
	attempts int
	sessions map[[32]byte]*session // by SHA-256 of the cookie value
	clients  map[string]*window
	// hashing holds a token per password check running (maxHashing).
	hashing chan struct{}
}

// New builds a Manager for the console section (already validated by
// config.Parse; it is checked again here, because a Manager may be built
// in code).
func New(cfg config.ConsoleConfig, o Options) (*Manager, error) {
	m := &Manager{log: o.Logger, secure: o.Secure, now: o.Now,
		sessions: map[[32]byte]*session{}, clients: map[string]*window{}, hashing: make(chan struct{}, maxHashing)}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.now == nil {
		m.now = time.Now
	}
	if err := m.Update(cfg); err != nil {
		return nil, err
	}
	return m, nil
}

// Update applies a reloaded console section: users, roles, hashes, the
// session lifetime and the login rate. Sessions of users who were removed,
// whose role was lowered or whose password hash changed end at once.
func (m *Manager) Update(cfg config.ConsoleConfig) error {
	users := make(map[string]account, len(cfg.Users))
	maxCost := HashCost
	for i, u := range cfg.Users {
		if u.Name == "" {
			return fmt.Errorf("console.users[%d]: empty name", i)
		}
		if _, dup := users[u.Name]; dup {
			return fmt.Errorf("console.users[%d]: name %q used twice", i, u.Name)
		}
		role, err := ParseRole(u.Role)
		if err != nil {
			return fmt.Errorf("console.users[%d] (%s): %w", i, u.Name, err)
		}
		cost, err := bcrypt.Cost([]byte(u.PasswordHash))
		if err != nil {
			return fmt.Errorf("console.users[%d] (%s): password_hash is not a bcrypt hash: %w", i, u.Name, err)
		}
		if cost < config.MinBcryptCost {
			return fmt.Errorf("console.users[%d] (%s): bcrypt cost %d is below %d", i, u.Name, cost, config.MinBcryptCost)
		}
		if i == 0 || cost > maxCost {
			maxCost = cost
		}
		users[u.Name] = account{role: role, hash: []byte(u.PasswordHash)}
	}
	ttl := cfg.SessionTTL
	if ttl <= 0 {
		ttl = 8 * time.Hour
	}
	attempts := cfg.LoginAttempts
	if attempts <= 0 {
		attempts = 5
	}
	var dummy []byte
	if len(users) > 0 {
		// The dummy hash has the cost of the configured hashes, so an
		// unknown name costs the same time as a wrong password.
		m.mu.Lock()
		same := m.dummy != nil && costOf(m.dummy) == maxCost
		m.mu.Unlock()
		if !same {
			secret := make([]byte, 32)
			if _, err := rand.Read(secret); err != nil {
				return fmt.Errorf("console: make the dummy password hash: %w", err)
			}
			h, err := bcrypt.GenerateFromPassword([]byte(base64.RawURLEncoding.EncodeToString(secret)), maxCost)
			if err != nil {
				return fmt.Errorf("console: make the dummy password hash: %w", err)
			}
			dummy = h
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	ended := 0
	for k, s := range m.sessions {
		old, hadOld := m.users[s.user]
		nu, ok := users[s.user]
		if !ok || !hadOld || nu.role < old.role || subtle.ConstantTimeCompare(nu.hash, old.hash) != 1 {
			delete(m.sessions, k)
			ended++
		}
	}
	if ended > 0 {
		m.log.Info("console sessions ended by a config change (user removed, role lowered or password changed)", "sessions", ended)
	}
	m.users, m.ttl, m.attempts = users, ttl, attempts
	if dummy != nil {
		m.dummy = dummy
	}
	return nil
}

func costOf(h []byte) int {
	c, _ := bcrypt.Cost(h)
	return c
}

// Configured reports whether any user is configured (else the console is a
// read-only loopback view).
func (m *Manager) Configured() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.users) > 0
}

// clientIP is the TCP peer's address: never a header, which a client
// chooses freely.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func isLoopback(r *http.Request) bool {
	ip := net.ParseIP(clientIP(r))
	return ip != nil && ip.IsLoopback()
}

// reserve refuses a client that has failed console.login_attempts logins
// within the current minute, and otherwise counts this attempt as a
// failure before the password is checked (forgive takes it back on
// success): counting only after bcrypt would let parallel guesses all
// pass the check while the first ones are still being hashed.
func (m *Manager) reserve(client string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.clients[client]
	if ok && now.Sub(w.start) < rateWindow && w.n >= m.attempts {
		return &RateLimitError{RetryAfter: w.start.Add(rateWindow).Sub(now)}
	}
	m.failedLocked(client, now)
	return nil
}

// forgive takes back the attempt reserve counted, for a login that
// succeeded.
func (m *Manager) forgive(client string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.clients[client]; ok && now.Sub(w.start) < rateWindow && w.n > 0 {
		w.n--
	}
}

// maxHashing is how many password checks run at once: bcrypt at cost 12
// takes a core for a quarter of a second on an ARM panel PC, and the line's
// detectors need the cores more than a crowd of logins does.
const maxHashing = 2

// failedLocked counts a failed login of client (m.mu held); the window starts with the
// first failure and lasts a minute.
func (m *Manager) failedLocked(client string, now time.Time) {
	w, ok := m.clients[client]
	if ok && now.Sub(w.start) < rateWindow {
		w.n++
		return
	}
	if !ok && len(m.clients) >= maxClients {
		for k, x := range m.clients {
			if now.Sub(x.start) >= rateWindow {
				delete(m.clients, k)
			}
		}
		if len(m.clients) >= maxClients {
			// A flood from many addresses: forget the oldest window
			// rather than grow without bound.
			var oldest string
			var t time.Time
			for k, x := range m.clients {
				if t.IsZero() || x.start.Before(t) {
					oldest, t = k, x.start
				}
			}
			delete(m.clients, oldest)
		}
	}
	m.clients[client] = &window{start: now, n: 1}
}

// Login checks name and password and, when they match, starts a session
// and sets its cookie. Failed attempts count against the client's limit
// (after console.login_attempts failures in a minute: *RateLimitError
// until the minute is over). An unknown name is compared against a dummy
// hash, so it takes as long as a wrong password.
func (m *Manager) Login(w http.ResponseWriter, r *http.Request, name, password string) (User, error) {
	now := m.now()
	client := clientIP(r)
	if err := m.reserve(client, now); err != nil {
		m.log.Warn("console login refused: rate limited", "client", client, "user", clip(name))
		return User{}, err
	}
	m.mu.Lock()
	acct, known := m.users[name]
	dummy, none := m.dummy, len(m.users) == 0
	m.mu.Unlock()
	if none {
		return User{}, ErrNoUsers
	}
	select {
	case m.hashing <- struct{}{}:
		defer func() { <-m.hashing }()
	default:
		m.forgive(client, now) // busy, not wrong: no failure counted
		m.log.Warn("console login refused: other logins are being checked", "client", client, "user", clip(name))
		return User{}, &RateLimitError{RetryAfter: time.Second}
	}
	hash := acct.hash
	if !known {
		hash = dummy
	}
	if len(password) > 4*maxPasswordLen {
		password = password[:4*maxPasswordLen] // bounded work; it cannot match anyway
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	if err != nil || !known {
		m.log.Warn("console login failed", "client", client, "user", clip(name))
		return User{}, ErrBadCredentials
	}
	m.forgive(client, now)
	id, sess, err := m.newSession(name, now)
	if err != nil {
		return User{}, err
	}
	m.mu.Lock()
	if old, ok := m.sessionKey(r); ok {
		delete(m.sessions, old) // a login replaces the browser's old session
	}
	m.sweep(now)
	if m.userSessions(name) >= maxUserSessions {
		m.dropOldestOf(name)
	}
	if len(m.sessions) >= maxSessions {
		m.dropOldest()
	}
	m.sessions[hashID(id)] = sess
	m.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: m.secure, MaxAge: int(m.ttlNow() / time.Second)})
	m.log.Info("console login", "user", name, "role", acct.role.String(), "client", client)
	return User{Name: name, Role: acct.role}, nil
}

func (m *Manager) ttlNow() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ttl
}

func (m *Manager) newSession(name string, now time.Time) (string, *session, error) {
	id, err := randomToken()
	if err != nil {
		return "", nil, fmt.Errorf("console login: make a session ID: %w", err)
	}
	csrf, err := randomToken()
	if err != nil {
		return "", nil, fmt.Errorf("console login: make a CSRF token: %w", err)
	}
	return id, &session{user: name, csrf: csrf, created: now, seen: now}, nil
}

// randomToken is 256 random bits, URL-safe.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// hashID is how sessions are stored: a leaked table (a heap dump, a debug
// page) does not hand out live cookies.
func hashID(id string) [32]byte { return sha256.Sum256([]byte(id)) }

func (m *Manager) sessionKey(r *http.Request) ([32]byte, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return [32]byte{}, false
	}
	return hashID(c.Value), true
}

// sweep drops expired sessions (m.mu held).
func (m *Manager) sweep(now time.Time) {
	for k, s := range m.sessions {
		if m.expired(s, now) {
			delete(m.sessions, k)
		}
	}
}

func (m *Manager) dropOldest() { m.dropOldestOf("") }

// maxUserSessions bounds one user's sessions (a panel PC per station and a
// few laptops): one account logging in over and over ends its own oldest
// sessions, never other users'.
const maxUserSessions = 32

// dropOldestOf ends the oldest session of user (of anyone for ""), when
// there is one.
func (m *Manager) dropOldestOf(user string) {
	var oldest [32]byte
	var t time.Time
	for k, s := range m.sessions {
		if (user == "" || s.user == user) && (t.IsZero() || s.created.Before(t)) {
			oldest, t = k, s.created
		}
	}
	if !t.IsZero() {
		delete(m.sessions, oldest)
	}
}

// userSessions counts user's sessions.
func (m *Manager) userSessions(user string) int {
	n := 0
	for _, s := range m.sessions {
		if s.user == user {
			n++
		}
	}
	return n
}

// expired: idle for ttl, or older than ttl (absolute), whichever first.
func (m *Manager) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) >= m.ttl || now.Sub(s.created) >= m.ttl
}

// Logout ends the request's session and clears its cookie.
func (m *Manager) Logout(w http.ResponseWriter, r *http.Request) {
	if k, ok := m.sessionKey(r); ok {
		m.mu.Lock()
		if s, ok := m.sessions[k]; ok {
			m.log.Info("console logout", "user", s.user, "client", clientIP(r))
			delete(m.sessions, k)
		}
		m.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: m.secure, MaxAge: -1})
}

// state is what a request's cookie amounts to.
type state int

const (
	noSession state = iota
	expiredSession
	validSession
)

// lookup finds the request's session and, when touch, records the
// request as activity (the idle expiry restarts).
func (m *Manager) lookup(r *http.Request, touch bool) (User, *session, state) {
	k, ok := m.sessionKey(r)
	if !ok {
		return User{}, nil, noSession
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[k]
	if !ok {
		return User{}, nil, noSession
	}
	if m.expired(s, now) {
		delete(m.sessions, k)
		return User{}, nil, expiredSession
	}
	acct, ok := m.users[s.user]
	if !ok { // removed meanwhile (Update ends these sessions too)
		delete(m.sessions, k)
		return User{}, nil, noSession
	}
	if touch {
		s.seen = now
	}
	cp := *s
	return User{Name: s.user, Role: acct.role}, &cp, validSession
}

// Current is the request's user: a valid, unexpired session's, or, when
// no users are configured and the client is on loopback, an anonymous
// viewer.
func (m *Manager) Current(r *http.Request) (User, bool) {
	u, _, st := m.lookup(r, false)
	if st == validSession {
		return u, true
	}
	if m.anonymousOK(r) {
		return User{Role: RoleViewer, Anonymous: true}, true
	}
	return User{}, false
}

func (m *Manager) anonymousOK(r *http.Request) bool {
	return !m.Configured() && isLoopback(r)
}

// CSRFToken is the request's session's CSRF token, for forms (field
// csrf_token) and scripts (header X-CSRF-Token); "" without a session.
func (m *Manager) CSRFToken(r *http.Request) string {
	_, s, st := m.lookup(r, false)
	if st != validSession {
		return ""
	}
	return s.csrf
}

type ctxKey struct{}

// UserFrom is the user Require put into the request's context.
func UserFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(ctxKey{}).(User)
	return u, ok
}

// WithUser returns ctx carrying u (for handlers tested without Require).
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, ctxKey{}, u)
}

func isWrite(r *http.Request) bool {
	return r.Method != http.MethodGet && r.Method != http.MethodHead
}

// Require wraps h so that it runs only for a user with at least role min
// and, on any method but GET and HEAD, only with the session's CSRF token
// (header X-CSRF-Token, or form field csrf_token of a URL-encoded form). It answers 401 without
// a session (a browser asking for a page is redirected to
// /login?next=...), 403 for a role too low or a bad CSRF token. Anonymous
// users (no users configured, loopback) may only read.
func (m *Manager) Require(min Role, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, s, st := m.lookup(r, true)
		switch {
		case st == validSession:
		case m.anonymousOK(r):
			u = User{Role: RoleViewer, Anonymous: true}
			if isWrite(r) || min > RoleViewer {
				m.deny(w, r, http.StatusForbidden, fmt.Sprintf("requires role %s: the console has no users, so it is read-only (add console.users to the config)", max(min, RoleTechnician)))
				return
			}
		case st == expiredSession:
			m.unauthorized(w, r, "session expired: log in again")
			return
		default:
			m.unauthorized(w, r, "not logged in: log in first")
			return
		}
		if u.Role < min {
			m.deny(w, r, http.StatusForbidden, "requires role "+min.String())
			return
		}
		if isWrite(r) && !u.Anonymous && !csrfOK(r, s.csrf) {
			m.log.Warn("console request refused: bad CSRF token", "user", u.Name, "client", clientIP(r), "method", r.Method, "path", r.URL.Path)
			m.deny(w, r, http.StatusForbidden, "invalid or missing CSRF token: reload the page")
			return
		}
		h(w, r.WithContext(WithUser(r.Context(), u)))
	}
}

func csrfOK(r *http.Request, want string) bool {
	got := r.Header.Get(CSRFHeader)
	if got == "" {
		// Only a URL-encoded form is read here (net/http caps it at 10
		// MB); JSON and multipart writes send the header, so an upload is
		// never parsed before its token is checked.
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			got = r.PostFormValue(CSRFField)
		}
	}
	return want != "" && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// wantsJSON: API paths (an "/api/" segment anywhere: the console may be
// mounted under a prefix) and scripts get JSON errors, browsers get pages.
func wantsJSON(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/api/") || strings.Contains(r.URL.Path, "/api/") ||
		strings.Contains(r.Header.Get("Accept"), "application/json") ||
		strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
}

func (m *Manager) unauthorized(w http.ResponseWriter, r *http.Request, msg string) {
	if !wantsJSON(r) && !isWrite(r) {
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	writeError(w, r, http.StatusUnauthorized, msg)
}

func (m *Manager) deny(w http.ResponseWriter, r *http.Request, code int, msg string) {
	writeError(w, r, code, msg)
}

func writeError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return
	}
	http.Error(w, msg, code)
}

// HashPassword returns a bcrypt hash (cost HashCost) of pw for
// console.users[].password_hash. It refuses passwords shorter than
// MinPasswordLen characters or longer than bcrypt's 72 bytes.
func HashPassword(pw string) (string, error) {
	if n := len([]rune(pw)); n < MinPasswordLen {
		return "", fmt.Errorf("password has %d characters: use at least %d (a phrase of a few words is easy to type on a panel)", n, MinPasswordLen)
	}
	if len(pw) > maxPasswordLen {
		return "", fmt.Errorf("password has %d bytes: bcrypt uses at most %d", len(pw), maxPasswordLen)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), HashCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// clip bounds a user-supplied name in log lines.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
