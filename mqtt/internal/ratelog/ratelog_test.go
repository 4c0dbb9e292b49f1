package ratelog

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestLimiter: a flood of one message gives Burst lines per window and one
// line with the count of the rest; other messages keep their own budget.
func TestLimiter(t *testing.T) {
	tests := []struct {
		name      string
		floods    map[string]int // message -> lines attempted
		wantLines int            // lines written, summaries included
	}{
		{"under the budget", map[string]int{"a": 3}, 3},
		{"one flood", map[string]int{"a": 10000}, Burst + 1},
		{"two floods keep separate budgets", map[string]int{"a": 10000, "b": 100}, 2 * (Burst + 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			l := New()
			now := time.Unix(0, 0)
			l.now = func() time.Time { return now }
			for msg, n := range tc.floods {
				for i := 0; i < n; i++ {
					l.Log(log, slog.LevelWarn, msg, "i", i)
				}
			}
			l.Flush()
			if got := strings.Count(buf.String(), "\n"); got != tc.wantLines {
				t.Errorf("%d lines, want %d:\n%s", got, tc.wantLines, buf.String())
			}
			for msg, n := range tc.floods {
				if n > Burst && !strings.Contains(buf.String(), "suppressed="+itoa(n-Burst)) {
					t.Errorf("no summary with suppressed=%d for %q", n-Burst, msg)
				}
			}
			// A new window restores the budget.
			buf.Reset()
			now = now.Add(Interval)
			l.Log(log, slog.LevelWarn, "a")
			if buf.Len() == 0 {
				t.Error("budget not restored in the next window")
			}
		})
	}
}

func itoa(n int) string {
	var b []byte
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func TestExcerpt(t *testing.T) {
	tests := []struct {
		in       string
		maxBytes int
	}{
		{"short", 5},
		{strings.Repeat("x", 1<<20), MaxValue + 32},
		{strings.Repeat("é", 200), MaxValue + 32}, // cut on a rune boundary
	}
	for _, tc := range tests {
		got := Excerpt(tc.in)
		if gb := ExcerptBytes([]byte(tc.in)); gb != got {
			t.Errorf("ExcerptBytes %q differs from Excerpt %q", gb[:min(len(gb), 40)], got[:min(len(got), 40)])
		}
		if len(got) > tc.maxBytes {
			t.Errorf("Excerpt of %d bytes gave %d bytes", len(tc.in), len(got))
		}
		if !strings.HasPrefix(tc.in, strings.SplitN(got, "...(", 2)[0]) {
			t.Errorf("Excerpt %q is not a prefix", got[:min(len(got), 40)])
		}
		if !utf8.ValidString(got) {
			t.Errorf("Excerpt cut inside a character: %q", got[len(got)-20:])
		}
		if len(tc.in) > MaxValue && !strings.HasSuffix(got, fmt.Sprintf("(%d bytes)", len(tc.in))) {
			t.Errorf("Excerpt %q does not say how long the value was", got[:min(len(got), 40)])
		}
	}
}
