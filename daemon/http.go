package daemon

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/partid"
)

// HTTPLimits bound what the HTTP API takes in, so that no client (careless
// or hostile) can hold the daemon's memory, connections or detectors. The
// zero value of a field means its default (DefaultHTTPLimits).
type HTTPLimits struct {
	// MaxBody is the largest /inspect upload in bytes; larger ones get 413.
	MaxBody int64
	// MaxInspect is how many /inspect requests run at once (each holds its
	// upload and decoded image); more get 503 with Retry-After.
	MaxInspect int
	// MaxConns caps concurrent connections; further clients wait in the
	// kernel's accept backlog until one closes.
	MaxConns int
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are
	// http.Server's: a client that sends its headers or body too slowly,
	// or keeps an idle connection, is cut off.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// DefaultHTTPLimits are the limits of the HTTP API: a 32 MiB upload holds a
// 20-megapixel JPEG or a compressed PNG of the same; two /inspect at once
// keep inspection memory to two images while the line runs.
func DefaultHTTPLimits() HTTPLimits {
	return HTTPLimits{
		MaxBody:           32 << 20,
		MaxInspect:        2,
		MaxConns:          64,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      75 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

// withDefaults fills unset fields from DefaultHTTPLimits.
func (l HTTPLimits) withDefaults() HTTPLimits {
	def := DefaultHTTPLimits()
	if l.MaxBody <= 0 {
		l.MaxBody = def.MaxBody
	}
	if l.MaxInspect <= 0 {
		l.MaxInspect = def.MaxInspect
	}
	if l.MaxConns <= 0 {
		l.MaxConns = def.MaxConns
	}
	for _, p := range []struct{ v, def *time.Duration }{
		{&l.ReadHeaderTimeout, &def.ReadHeaderTimeout}, {&l.ReadTimeout, &def.ReadTimeout},
		{&l.WriteTimeout, &def.WriteTimeout}, {&l.IdleTimeout, &def.IdleTimeout},
	} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	return l
}

// freeAfterBody is the upload size from which the memory of a finished
// /inspect is handed back to the OS at once (see returnMemory).
const freeAfterBody = 4 << 20

// Handler is the daemon's HTTP API:
//
//	GET  /healthz   200 while the process runs
//	GET  /readyz    200 once warmed up, the source delivers and results reach the broker, else 503 with why
//	GET  /metrics   Prometheus metrics
//	POST /inspect   an encoded image in the body (PNG, JPEG, BMP, TIFF) -> the
//	                result JSON; same path as the line, not published
//	POST /trigger   ?part_id=ID: grab the freshest frame (on-demand sources)
//	GET  /api/golden, POST /api/golden/run: golden-sample challenges (golden.go)
//
// Every endpoint but /healthz and /readyz needs "Authorization: Bearer
// <http.token>" when a token is set. Limits: HTTPLimits (413 for a body
// over MaxBody, 503 with Retry-After when MaxInspect requests already run,
// 400 for a part ID that breaks the part-ID rule).
func (d *Daemon) Handler(token string) http.Handler {
	lim := d.httpLimits.withDefaults()
	slots := make(chan struct{}, lim.MaxInspect)
	mux := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if token != "" {
				got := r.Header.Get("Authorization")
				if subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+token)) != 1 {
					http.Error(w, "missing or wrong bearer token (http.token)", http.StatusUnauthorized)
					return
				}
			}
			h(w, r)
		}
	}
	refuse := func(w http.ResponseWriter, reason string, status int, msg string) {
		d.metrics.HTTPRefused.WithLabelValues(reason).Inc()
		http.Error(w, msg, status)
	}
	if d.routes != nil {
		d.routes(mux, auth)
	}
	d.goldenRoutes(mux, auth)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := d.notReady(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", auth(promhttp.HandlerFor(d.metrics.Registry, promhttp.HandlerOpts{}).ServeHTTP))
	mux.HandleFunc("POST /inspect", auth(func(w http.ResponseWriter, r *http.Request) {
		id, err := partid.Check(r.URL.Query().Get("part_id"))
		if err != nil {
			refuse(w, "bad_part_id", http.StatusBadRequest, "part_id refused: "+err.Error())
			return
		}
		if r.ContentLength > lim.MaxBody {
			// Refused before reading: the upload never enters memory.
			refuse(w, "body_too_large", http.StatusRequestEntityTooLarge, tooLarge(r.ContentLength, lim.MaxBody))
			return
		}
		// The slot is taken before the body is read: an upload is the
		// memory that needs bounding, and ReadTimeout bounds how long a
		// slow client can hold it.
		select {
		case slots <- struct{}{}:
		default:
			w.Header().Set("Retry-After", "1")
			refuse(w, "busy", http.StatusServiceUnavailable, fmt.Sprintf(
				"busy: %d /inspect requests are already running (the limit); retry after 1 s", lim.MaxInspect))
			return
		}
		body, err := readBody(http.MaxBytesReader(w, r.Body, lim.MaxBody), r.ContentLength)
		if err != nil {
			<-slots
			var tl *http.MaxBytesError
			if errors.As(err, &tl) {
				refuse(w, "body_too_large", http.StatusRequestEntityTooLarge, tooLarge(-1, lim.MaxBody))
				return
			}
			http.Error(w, "read image: "+err.Error(), http.StatusBadRequest)
			return
		}
		size := len(body)
		f := d.frameFromBytes(body, id)
		body = nil // the decoded frame holds what is needed; let the upload go
		ins := d.insp.Inspect(f, false)
		f.Close()
		// A part judged over HTTP is judged as on the line: while a golden
		// challenge has failed (or the start-up one has not passed), the
		// same assurance.golden.action applies.
		d.goldenMark(&ins.Result)
		<-slots
		if size >= freeAfterBody {
			d.returnMemory(slots)
		}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(ins.Result); err != nil {
			d.floodLog.Warn("http: inspect result not sent", "id", ins.Result.ID, "err", err)
		}
	}))
	mux.HandleFunc("POST /trigger", auth(func(w http.ResponseWriter, r *http.Request) {
		id, err := partid.Check(r.URL.Query().Get("part_id"))
		if err != nil {
			refuse(w, "bad_part_id", http.StatusBadRequest, "part_id refused: "+err.Error())
			return
		}
		if err := d.Trigger(id); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	return mux
}

// tooLarge is the 413 text: what was sent (when known) and the limit.
func tooLarge(got, limit int64) string {
	if got > 0 {
		return fmt.Sprintf("request body too large: %d bytes; /inspect takes images up to %d bytes (%d MiB)", got, limit, limit>>20)
	}
	return fmt.Sprintf("request body too large: /inspect takes images up to %d bytes (%d MiB)", limit, limit>>20)
}

// readBody reads an upload into a buffer of its announced size (io.ReadAll
// would double its way up and keep up to twice the body). r is already
// bounded by MaxBytesReader, so a false Content-Length cannot over-allocate
// beyond the limit.
func readBody(r io.Reader, contentLength int64) ([]byte, error) {
	var buf bytes.Buffer
	if contentLength > 0 {
		buf.Grow(int(contentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// returnMemory hands freed heap back to the OS once the last large /inspect
// has finished: Go would otherwise keep a burst's buffers as RSS for
// minutes, and a line computer's memory is shared with the detectors. One
// run at a time, in the background (it costs one GC).
func (d *Daemon) returnMemory(slots chan struct{}) {
	if len(slots) > 0 || !d.freeing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer d.freeing.Store(false)
		debug.FreeOSMemory()
	}()
}

// notReady says why the daemon is not ready, "" when it is: warmed up, the
// source connected, results stored and reaching the broker.
func (d *Daemon) notReady() string {
	if !d.Ready() {
		return "warming up"
	}
	if why := d.goldenBlock(); why != "" {
		return why
	}
	st := d.currentSource().State()
	if !st.Connected {
		return fmt.Sprintf("source not connected: %s", st.LastError)
	}
	if t := d.lastPubErr.Load(); t != 0 && time.Since(time.Unix(0, t)) < time.Minute {
		return "results could not be stored in the outbox in the last minute (disk full?); see the log"
	}
	if l := d.link(); l.Stalled {
		return "results cannot be published: " + l.Reason
	}
	return ""
}

// httpErrorLog turns net/http's per-connection error lines into one
// structured, rate-limited warning message (the text, which names the peer,
// goes into an attribute, so the limit counts them together).
type httpErrorLog struct{ log *slog.Logger }

func (w httpErrorLog) Write(p []byte) (int, error) {
	w.log.Warn("http: connection error", "err", strings.TrimSpace(string(p)))
	return len(p), nil
}

// frameFromBytes decodes and preprocesses an uploaded image exactly as the
// configured source would.
func (d *Daemon) frameFromBytes(data []byte, partID string) *capture.Frame {
	d.cfgMu.Lock()
	pc := d.cfg.Capture.Preprocess
	d.cfgMu.Unlock()
	f := capture.DecodeFrame(data, d.insp.Model().Preprocess(pc))
	f.Source, f.PartID = "http", partID
	return f
}

// ServeHTTP runs the API on addr until ctx ends. TLS when cert and key are
// set. The server enforces the HTTPLimits: header, body, write and idle
// timeouts and a connection cap.
func (d *Daemon) ServeHTTP(ctx context.Context, addr, token, cert, key string) error {
	lim := d.httpLimits.withDefaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http: listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           d.Handler(token),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		// net/http logs per connection (TLS handshake failures, accept
		// errors): through the rate limit, or a scanner floods the journal.
		ErrorLog: log.New(httpErrorLog{d.floodLog}, "", 0),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close() // connections still busy after 2 s are cut
		}
	}()
	limited := netutil.LimitListener(ln, lim.MaxConns)
	go func() {
		var err error
		if cert != "" {
			err = srv.ServeTLS(limited, cert, key)
		} else {
			err = srv.Serve(limited)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http server stopped", "addr", addr, "err", err)
		}
	}()
	d.log.Info("http api listening", "addr", ln.Addr().String(), "max_body", lim.MaxBody, "max_inspect", lim.MaxInspect,
		"max_conns", lim.MaxConns, "read_header_timeout", lim.ReadHeaderTimeout, "read_timeout", lim.ReadTimeout)
	return nil
}
