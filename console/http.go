package console

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segad-edge/segad-edge/console/auth"
	"github.com/segad-edge/segad-edge/history"
)

//go:embed assets
var assets embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"json": func(v any) (template.JS, error) {
		b, err := json.Marshal(v)
		return template.JS(b), err
	},
}).ParseFS(assets, "assets/*.html"))

// page is what every page template gets.
type page struct {
	Page     string // live, history, threshold, review, health
	Title    string
	User     auth.User
	CSRF     string
	CanWrite bool // technician or above
	History  bool // the history is on
	Data     any  // the page's own data
}

// Register adds the console's routes to the daemon's mux. Pages and their
// APIs need a console session (auth.Require); the daemon's /api routes
// keep their bearer token.
func (c *Console) Register(mux *http.ServeMux) {
	a := c.opt.Auth
	view := func(h http.HandlerFunc) http.HandlerFunc { return secure(a.Require(auth.RoleViewer, h)) }
	tech := func(h http.HandlerFunc) http.HandlerFunc { return secure(a.Require(auth.RoleTechnician, h)) }
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/live", http.StatusSeeOther) })
	mux.HandleFunc("GET /login", secure(c.loginPage))
	mux.HandleFunc("POST /login", secure(c.login))
	mux.HandleFunc("POST /logout", secure(func(w http.ResponseWriter, r *http.Request) {
		a.Logout(w, r)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	}))
	for _, p := range []struct{ path, title string }{
		{"live", "Live"}, {"history", "History"}, {"threshold", "Threshold"}, {"review", "Review"}, {"health", "Health"},
	} {
		mux.HandleFunc("GET /"+p.path, view(c.pageHandler(p.path, p.title)))
	}
	mux.Handle("GET /console/assets/", secure(http.StripPrefix("/console/", http.FileServerFS(mustSub(assets))).ServeHTTP))
	mux.HandleFunc("GET /console/events", view(c.events))
	mux.HandleFunc("GET /console/frame.jpg", view(c.frameJPEG))
	mux.HandleFunc("GET /console/api/live", view(func(w http.ResponseWriter, _ *http.Request) {
		b, _ := c.snapshot()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	mux.HandleFunc("GET /console/api/scores", view(c.scores))
	mux.HandleFunc("GET /console/api/whatif", view(c.whatIf))
	mux.HandleFunc("POST /console/api/threshold", tech(c.applyThreshold))
	mux.HandleFunc("GET /console/api/health", view(c.healthAPI))
	mux.HandleFunc("GET /console/audit/{id}", view(c.auditImage))
	if c.opt.History != nil {
		// The history's own API, behind console sessions: reading for
		// viewers, labelling for technicians.
		sub := http.NewServeMux()
		api := &history.API{Store: c.opt.History, Explain: c.opt.Explain, Log: c.log,
			Who: func(r *http.Request) string {
				if u, ok := auth.UserFrom(r.Context()); ok {
					return u.Name
				}
				return "console"
			}}
		api.Register(sub, func(h http.HandlerFunc) http.HandlerFunc {
			read, write := a.Require(auth.RoleViewer, h), a.Require(auth.RoleTechnician, h)
			return func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet || r.Method == http.MethodHead {
					read(w, r)
					return
				}
				write(w, r)
			}
		})
		h := secure(http.StripPrefix("/console", sub).ServeHTTP)
		mux.HandleFunc("/console/api/results", h)
		mux.HandleFunc("/console/api/results/", h)
	}
}

func mustSub(f fs.FS) fs.FS {
	s, err := fs.Sub(f, ".")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return s
}

// secure sets the headers every console response carries: nothing but the
// daemon itself may supply scripts, styles or images, and no other site
// may frame the console (clickjacking an Apply button).
func secure(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		h(w, r)
	}
}

func (c *Console) pageHandler(name, title string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, _ := auth.UserFrom(r.Context())
		p := page{Page: name, Title: title, User: u, CSRF: c.opt.Auth.CSRFToken(r), CanWrite: u.Role >= auth.RoleTechnician && !u.Anonymous,
			History: c.opt.History != nil}
		if name == "threshold" {
			d, err := c.thresholdData()
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			p.Data = d
		}
		c.render(w, name, p)
	}
}

func (c *Console) render(w http.ResponseWriter, name string, p any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := pages.ExecuteTemplate(w, name+".html", p); err != nil {
		c.log.Warn("console: page not rendered", "page", name, "err", err)
	}
}

// localNext keeps a post-login redirect on this site (an absolute or
// protocol-relative URL would make the login page an open redirect). A
// control character is refused too: browsers drop tabs and newlines from
// a URL, so "/\t/evil.example" would become "//evil.example".
func localNext(s string) string {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.Contains(s, `\`) {
		return "/live"
	}
	for _, b := range []byte(s) {
		if b < 0x20 || b == 0x7f {
			return "/live"
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(u.Path, "//") {
		return "/live"
	}
	return s
}

type loginData struct {
	Next, Error, Name string
	Configured        bool
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, "login", loginData{Next: localNext(r.URL.Query().Get("next")), Configured: c.opt.Auth.Configured()})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	// A login form posted from another site would log this browser into
	// the other site's chosen account (login CSRF): browsers name the
	// posting page's origin, and it must be this console.
	if !sameOrigin(r) {
		c.log.Warn("console: login from another site refused", "origin", r.Header.Get("Origin"), "client", r.RemoteAddr)
		http.Error(w, "login refused: the form was sent from another site (open the console's own login page)", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	name, pw, next := r.PostFormValue("name"), r.PostFormValue("password"), localNext(r.PostFormValue("next"))
	_, err := c.opt.Auth.Login(w, r, name, pw)
	if err == nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	code := http.StatusUnauthorized
	var rl *auth.RateLimitError
	if errors.As(err, &rl) {
		w.Header().Set("Retry-After", strconv.Itoa(rl.RetryAfterSeconds()))
		code = http.StatusTooManyRequests
	} else if errors.Is(err, auth.ErrRateLimited) {
		w.Header().Set("Retry-After", "60")
		code = http.StatusTooManyRequests
	}
	w.WriteHeader(code)
	c.render(w, "login", loginData{Next: next, Error: err.Error(), Name: name, Configured: c.opt.Auth.Configured()})
}

// events is the Live feed: server-sent events, one JSON message per
// update, at most live_rate a second (the newest wins; updates in
// between are never queued), and a comment every 15 s so proxies keep
// the stream open.
func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	// Each stream holds one of the daemon's HTTP connections for as long
	// as the page is open, out of the same budget as /trigger, /inspect
	// and the readiness probes: bound them, in all and per client.
	client := r.RemoteAddr
	if host, _, err := net.SplitHostPort(client); err == nil {
		client = host
	}
	if !c.streams.take(client) {
		w.Header().Set("Retry-After", "10")
		http.Error(w, fmt.Sprintf("too many Live streams open (at most %d, %d per client): close a console tab", maxStreams, maxStreamsPerClient), http.StatusServiceUnavailable)
		return
	}
	defer c.streams.give(client)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	c.watchers.Add(1)
	defer c.watchers.Add(-1)
	ping := time.NewTicker(streamPing)
	defer ping.Stop()
	// The session is checked when the stream opens and again every few
	// seconds: a logout, an expiry or a user removed by a reload ends an
	// open stream too, instead of feeding it for the rest of the shift.
	recheck := time.NewTicker(sessionRecheck)
	defer recheck.Stop()
	stillAllowed := func() bool {
		_, ok := c.opt.Auth.Current(r)
		return ok
	}
	var sent uint64
	first, due := true, false
	write := func(s string) bool {
		// The server's WriteTimeout covers a whole response: a stream
		// moves its write deadline on with every write instead. (The
		// read deadline needs nothing: net/http clears it for the
		// connection's background read once the handler runs.)
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprint(w, s); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for {
		ch, ver := c.wait()
		if first || ver != sent {
			first = false
			b, v := c.snapshot()
			if !write("data: " + string(b) + "\n\n") {
				return
			}
			sent = v
			select {
			case <-time.After(time.Second / time.Duration(c.rate.Load())):
			case <-r.Context().Done():
				return
			}
		} else {
			select {
			case <-ch:
			case <-ping.C:
				if !write(": ping\n\n") {
					return
				}
			case <-r.Context().Done():
				return
			case <-recheck.C:
				due = true
			}
		}
		select {
		case <-recheck.C:
			due = true
		default:
		}
		if due {
			due = false
			if !stillAllowed() {
				write("event: ended\ndata: {\"error\": \"session ended: log in again\"}\n\n")
				return
			}
		}
	}
}

func (c *Console) frameJPEG(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	f := c.frame
	c.mu.Unlock()
	if f == nil {
		http.Error(w, "no frame yet: frames are rendered while a browser watches Live", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Result-ID", f.ResultID)
	w.Write(f.JPEG)
}

// streamPing is how often an idle Live stream sends a comment.
const streamPing = 15 * time.Second

// sessionRecheck is how often an open Live stream checks its session (a
// variable for tests).
var sessionRecheck = 5 * time.Second

// idRE is a result ID (ULID) as the history writes it.
var idRE = regexp.MustCompile(`^[0-9A-Za-z]{26}$`)

// auditImage serves the audit overlay kept for a result, if the audit
// still has it (audit.dir/<day>/<id>.jpg).
func (c *Console) auditImage(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSuffix(r.PathValue("id"), ".jpg")
	if !idRE.MatchString(id) {
		http.Error(w, "not a result ID", http.StatusBadRequest)
		return
	}
	if c.opt.AuditDir == "" {
		http.Error(w, "the audit is off (audit.dir): no images are kept", http.StatusNotFound)
		return
	}
	m, _ := filepath.Glob(filepath.Join(c.opt.AuditDir, "*", id+".jpg"))
	if len(m) == 0 {
		http.Error(w, "no image kept for "+id, http.StatusNotFound)
		return
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		http.Error(w, "read audit image: "+err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "private, max-age=3600")
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// healthData is the Health page's data.
type healthData struct {
	Identity  *Identity       `json:"identity"`
	Latencies []LatencyMinute `json:"latencies"`
	Live      json.RawMessage `json:"live"`
}

func (c *Console) healthAPI(w http.ResponseWriter, _ *http.Request) {
	var d healthData
	if l := c.lineNow(); l != nil {
		id := l.Identity()
		d.Identity = &id
	}
	c.mu.Lock()
	d.Latencies = c.lat.current()
	c.mu.Unlock()
	d.Live, _ = c.snapshot()
	writeJSON(w, http.StatusOK, d)
}

// maxStreams bounds the Live streams open at once, and maxStreamsPerClient
// those of one client address: a quarter of the daemon's default 64
// connections in all, so consoles can never starve the PLC's triggers and
// the readiness probes.
const (
	maxStreams          = 16
	maxStreamsPerClient = 8
)

// streamSlots counts the open Live streams, in all and per client.
type streamSlots struct {
	mu     sync.Mutex
	total  int
	client map[string]int
}

func (s *streamSlots) take(client string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = map[string]int{}
	}
	if s.total >= maxStreams || s.client[client] >= maxStreamsPerClient {
		return false
	}
	s.total++
	s.client[client]++
	return true
}

func (s *streamSlots) give(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.client[client]--; s.client[client] <= 0 {
		delete(s.client, client)
	}
}

// sameOrigin reports whether a request was sent by a page of this console:
// Sec-Fetch-Site (modern browsers) or the Origin header, when present,
// must name this host. A request with neither (curl, an old browser) is
// let through: login CSRF needs a browser, and those send one of them.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}
