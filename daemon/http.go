package daemon

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/segad-edge/segad-edge/capture"
)

// maxInspectBody bounds POST /inspect uploads (a 20-megapixel PNG fits).
const maxInspectBody = 64 << 20

// Handler is the daemon's HTTP API:
//
//	GET  /healthz   200 while the process runs
//	GET  /readyz    200 once warmed up and the source delivers, else 503 with why
//	GET  /metrics   Prometheus metrics
//	POST /inspect   an encoded image in the body (PNG, JPEG, BMP, TIFF) -> the
//	                result JSON; same path as the line, not published
//	POST /trigger   ?part_id=ID: grab the freshest frame (on-demand sources)
//
// Every endpoint but /healthz and /readyz needs "Authorization: Bearer
// <http.token>" when a token is set.
func (d *Daemon) Handler(token string) http.Handler {
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
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.Ready() {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		st := d.currentSource().State()
		if !st.Connected {
			http.Error(w, fmt.Sprintf("source not connected: %s", st.LastError), http.StatusServiceUnavailable)
			return
		}
		if t := d.lastPubErr.Load(); t != 0 && time.Since(time.Unix(0, t)) < time.Minute {
			http.Error(w, "results could not be stored in the outbox in the last minute (disk full?); see the log", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", auth(promhttp.HandlerFor(d.Metrics.Registry, promhttp.HandlerOpts{}).ServeHTTP))
	mux.HandleFunc("POST /inspect", auth(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInspectBody))
		if err != nil {
			http.Error(w, "read image: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		f := d.frameFromBytes(body, r.URL.Query().Get("part_id"))
		ins := d.line.Inspect(f, false)
		f.Close()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(ins.Result)
	}))
	mux.HandleFunc("POST /trigger", auth(func(w http.ResponseWriter, r *http.Request) {
		if err := d.Trigger(r.URL.Query().Get("part_id")); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	return mux
}

// frameFromBytes decodes and preprocesses an uploaded image exactly as the
// configured source would.
func (d *Daemon) frameFromBytes(data []byte, partID string) *capture.Frame {
	d.cfgMu.Lock()
	pc := d.cfg.Capture.Preprocess
	d.cfgMu.Unlock()
	f := capture.DecodeFrame(data, d.line.Model().Preprocess(pc))
	f.Source, f.PartID = "http", partID
	return f
}

// ServeHTTP runs the API on addr until ctx ends. TLS when cert and key are set.
func (d *Daemon) ServeHTTP(ctx context.Context, addr, token, cert, key string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: d.Handler(token), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	go func() {
		var err error
		if cert != "" {
			err = srv.ServeTLS(ln, cert, key)
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http server stopped", "addr", addr, "err", err)
		}
	}()
	d.log.Info("http api listening", "addr", ln.Addr().String())
	return nil
}
