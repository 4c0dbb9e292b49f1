package daemon

import (
	"testing"

	"github.com/segad-edge/segad-edge/mqtt"
)

// TestDegradedHealth: the health status is ok without a reason, degraded
// with Options.Degraded's reason (appended to one already set), and a
// degraded line stays ready (notReady does not look at it).
func TestDegradedHealth(t *testing.T) {
	cases := []struct {
		name       string
		degraded   func() string
		before     string
		wantStatus string
		wantReason string
	}{
		{"no hook", nil, "", "ok", ""},
		{"no alarm", func() string { return "" }, "", "ok", ""},
		{"drift alarm", func() string { return "drift: wires: fine mean drifted, PSI 0.31" }, "", "degraded", "drift: wires: fine mean drifted, PSI 0.31"},
		{"after another reason", func() string { return "drift: x" }, "golden challenge failed", "degraded", "golden challenge failed; drift: x"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := &Daemon{degraded: c.degraded}
			h := mqtt.Health{StatusReason: c.before}
			if c.before != "" {
				h.Status = "degraded"
			}
			d.degradedHealth(&h)
			if h.Status != c.wantStatus || h.StatusReason != c.wantReason {
				t.Fatalf("status %q reason %q, want %q %q", h.Status, h.StatusReason, c.wantStatus, c.wantReason)
			}
		})
	}
}
