package history

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// maxLabelBody bounds a POST .../label body: a label is a few hundred bytes.
const maxLabelBody = 16 << 10

// API serves the history over HTTP:
//
//	GET  /api/results                  ?since&until&verdict&part_id&label&kind&limit&cursor -> {"results": [...], "next": "..."}
//	GET  /api/results/export           same filters, &format=csv|jsonl, streamed
//	GET  /api/results/{id}             one result with its label history
//	POST /api/results/{id}/label       {"label": "good|bad", "defect_type": "...", "note": "..."}
//	GET  /api/results/{id}/explain     ?method=exact|path: the forest's contributions for the part
//
// Bad parameters get 400 with the reason, an unknown ID 404, a store that
// cannot answer 503. Authentication is the caller's: Register wraps every
// route with the daemon's own check.
type API struct {
	// Store is the history.
	Store *Store
	// Explain computes the explanation of a recorded result on demand
	// (exact TreeSHAP by default); nil answers 501.
	Explain func(ctx context.Context, row Row, method string) (any, error)
	// Who names the person or client behind a request, for labels; nil
	// means "api".
	Who func(*http.Request) string
	// Log receives write failures; nil discards them.
	Log *slog.Logger
}

// Register adds the routes to mux, each wrapped by wrap (authentication).
func (a *API) Register(mux *http.ServeMux, wrap func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("GET /api/results", wrap(a.query))
	mux.HandleFunc("GET /api/results/export", wrap(a.export))
	mux.HandleFunc("GET /api/results/{id}", wrap(a.get))
	mux.HandleFunc("POST /api/results/{id}/label", wrap(a.label))
	mux.HandleFunc("GET /api/results/{id}/explain", wrap(a.explain))
}

func (a *API) query(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query(), time.Now())
	if err != nil {
		a.fail(w, err)
		return
	}
	page, err := a.Store.Query(r.Context(), q)
	if err != nil {
		a.fail(w, err)
		return
	}
	if page.Results == nil {
		page.Results = []Row{}
	}
	writeJSON(w, page)
}

func (a *API) export(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	format := v.Get("format")
	if format == "" {
		format = FormatCSV
	}
	if format != FormatCSV && format != FormatJSONL {
		a.fail(w, &ParamError{Param: "format", Value: format, Reason: "want csv or jsonl"})
		return
	}
	v.Del("format")
	q, err := ParseQuery(v, time.Now())
	if err != nil {
		a.fail(w, err)
		return
	}
	if format == FormatCSV {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="results.csv"`)
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	if _, err := a.Store.Export(r.Context(), q, format, w); err != nil {
		// Headers are gone once rows streamed: the truncated body and the
		// log are all that can tell.
		a.logf("history export failed", err)
	}
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	row, err := a.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, row)
}

func (a *API) label(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLabelBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("label body: %v (at most %d bytes of JSON)", err, maxLabelBody), http.StatusBadRequest)
		return
	}
	var l Label
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		http.Error(w, fmt.Sprintf(`label body: %v (want {"label": "good|bad", "defect_type": "...", "note": "..."})`, err), http.StatusBadRequest)
		return
	}
	l.Who = "api"
	if a.Who != nil {
		l.Who = a.Who(r)
	}
	saved, err := a.Store.Label(r.Context(), r.PathValue("id"), l)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, saved)
}

func (a *API) explain(w http.ResponseWriter, r *http.Request) {
	if a.Explain == nil {
		http.Error(w, "explanations are not available: the model is not an XGBoost JSON forest", http.StatusNotImplemented)
		return
	}
	method := r.URL.Query().Get("method")
	if method == "" {
		method = "exact"
	}
	row, err := a.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	out, err := a.Explain(r.Context(), row, method)
	if err != nil {
		var pe *ParamError
		if errors.As(err, &pe) {
			a.fail(w, err)
			return
		}
		http.Error(w, "explain: "+err.Error(), http.StatusUnprocessableEntity)
		return
	}
	writeJSON(w, out)
}

// fail maps the store's errors to HTTP statuses.
func (a *API) fail(w http.ResponseWriter, err error) {
	var pe *ParamError
	switch {
	case errors.As(err, &pe):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, ErrReadOnly):
		http.Error(w, err.Error(), http.StatusForbidden)
	default:
		a.logf("history request failed", err)
		http.Error(w, "history: "+err.Error(), http.StatusServiceUnavailable)
	}
}

func (a *API) logf(msg string, err error) {
	if a.Log != nil {
		a.Log.Warn(msg, "err", err)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
