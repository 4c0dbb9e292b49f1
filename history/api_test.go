package history

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// TestAPI drives the HTTP API against a real SQLite store: paging with the
// cursor, one result, labels (and their refusals), export, explanations
// and every bad parameter answered with 400 and the reason.
func TestAPI(t *testing.T) {
	s := open(t, Config{Path: filepath.Join(t.TempDir(), "h.db"), Logger: quietLog(t)})
	ids := publishN(t, s, 0, 25)
	flush(t, s)
	api := &API{Store: s, Who: func(r *http.Request) string { return "tech-1" },
		Explain: func(_ context.Context, row Row, method string) (any, error) {
			if method != "exact" && method != "path" {
				return nil, &ParamError{Param: "method", Value: method, Reason: "want exact or path"}
			}
			return map[string]any{"id": row.ID, "method": method}, nil
		}}
	mux := http.NewServeMux()
	var authed int
	api.Register(mux, func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { authed++; h(w, r) }
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Paging: 25 results in pages of 10, newest first, none repeated.
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		code, body := do("GET", "/api/results?limit=10&cursor="+cursor, "")
		if code != 200 {
			t.Fatalf("query: %d %s", code, body)
		}
		var p Page
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Results {
			if seen[r.ID] {
				t.Fatalf("result %s on two pages", r.ID)
			}
			seen[r.ID] = true
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != len(ids) {
		t.Fatalf("paged through %d results, want %d", len(seen), len(ids))
	}

	// Label one, read it back.
	code, body := do("POST", "/api/results/"+ids[3]+"/label", `{"label":"bad","defect_type":"scratch","note":"seen at the bench"}`)
	if code != 200 || !strings.Contains(body, `"who":"tech-1"`) {
		t.Fatalf("label: %d %s", code, body)
	}
	code, body = do("GET", "/api/results/"+ids[3], "")
	if code != 200 || !strings.Contains(body, `"defect_type":"scratch"`) {
		t.Fatalf("get labelled: %d %s", code, body)
	}
	code, body = do("GET", "/api/results?label=bad", "")
	if code != 200 || strings.Count(body, `"id":`) != 1 {
		t.Fatalf("label filter: %d %s", code, body)
	}
	code, body = do("GET", "/api/results/"+ids[3]+"/explain?method=path", "")
	if code != 200 || !strings.Contains(body, `"method":"path"`) {
		t.Fatalf("explain: %d %s", code, body)
	}
	code, body = do("GET", "/api/results/export?format=jsonl", "")
	if code != 200 || strings.Count(body, "\n") != len(ids) {
		t.Fatalf("export: %d, %d lines", code, strings.Count(body, "\n"))
	}

	for _, c := range []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"limit too big", "GET", "/api/results?limit=100000", "", 400, "limit"},
		{"bad verdict", "GET", "/api/results?verdict=maybe", "", 400, "verdict"},
		{"bad since", "GET", "/api/results?since=yesterday-ish", "", 400, "since"},
		{"forged cursor", "GET", "/api/results?cursor=AAAA", "", 400, "cursor"},
		{"bad format", "GET", "/api/results/export?format=xlsx", "", 400, "format"},
		{"unknown id", "GET", "/api/results/01ZZZZZZZZZZZZZZZZZZZZZZZZ", "", 404, ""},
		{"label unknown id", "POST", "/api/results/01ZZZZZZZZZZZZZZZZZZZZZZZZ/label", `{"label":"good"}`, 404, ""},
		{"label not good/bad", "POST", "/api/results/" + ids[1] + "/label", `{"label":"meh"}`, 400, "label"},
		{"label unknown field", "POST", "/api/results/" + ids[1] + "/label", `{"label":"good","who":"x","admin":true}`, 400, "unknown field"},
		{"label not JSON", "POST", "/api/results/" + ids[1] + "/label", `label=good`, 400, "label body"},
		{"label huge", "POST", "/api/results/" + ids[1] + "/label", `{"label":"good","note":"` + strings.Repeat("x", 20000) + `"}`, 400, "at most"},
		{"explain bad method", "GET", "/api/results/" + ids[1] + "/explain?method=magic", "", 400, "method"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := do(c.method, c.path, c.body)
			if code != c.code || !strings.Contains(body, c.want) {
				t.Fatalf("%s %s: %d %q, want %d containing %q", c.method, c.path, code, body, c.code, c.want)
			}
		})
	}
	if authed == 0 {
		t.Fatal("routes were not wrapped by the authentication check")
	}
}
