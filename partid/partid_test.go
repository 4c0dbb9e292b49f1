package partid

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		name, id string
		ok       bool
	}{
		{"empty", "", true},
		{"plain", "P-318", true},
		{"unicode", "Teil-Ä1", true},
		{"max length", strings.Repeat("x", MaxLen), true},
		{"too long", strings.Repeat("x", MaxLen+1), false},
		{"ten thousand", strings.Repeat("x", 10000), false},
		{"nul", "A\x00B", false},
		{"newline", "A\nB", false},
		{"carriage return", "A\rB", false},
		{"tab", "A\tB", false},
		{"invalid utf8", "A\xffB", false},
		{"escape", "A\x1b[31mB", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Check(c.id)
			if c.ok && (err != nil || got != c.id) {
				t.Fatalf("Check(%q) = %q, %v; want it accepted unchanged", c.id, got, err)
			}
			if !c.ok && err == nil {
				t.Fatalf("Check(%q) accepted; want an error", c.id)
			}
		})
	}
}
