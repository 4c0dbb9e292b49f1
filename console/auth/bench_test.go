package auth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func benchHandler(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

// BenchmarkRequireBaseline is the baseline: the same handler and request
// without Require.
func BenchmarkRequireBaseline(b *testing.B) {
	r := req("GET", "/api/live", lan, nil)
	b.ReportAllocs()
	for b.Loop() {
		benchHandler(httptest.NewRecorder(), r)
	}
}

// BenchmarkRequire is a logged-in GET through Require (cookie, session
// lookup, role check, context): the cost added to every console request.
func BenchmarkRequire(b *testing.B) {
	t := &testing.T{}
	m, _ := newManager(t, users(t), false)
	c := login(t, m, "tom", "tech-password")
	r := req("GET", "/api/live", lan, c)
	h := m.Require(RoleViewer, benchHandler)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkRequireWrite is a logged-in POST with its CSRF token.
func BenchmarkRequireWrite(b *testing.B) {
	t := &testing.T{}
	m, _ := newManager(t, users(t), false)
	c := login(t, m, "tom", "tech-password")
	r := req("POST", "/api/threshold", lan, c)
	r.Header.Set(CSRFHeader, m.CSRFToken(r))
	h := m.Require(RoleTechnician, benchHandler)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
