package daemon

import "github.com/segad-edge/segad-edge/mqtt"

// degradedHealth sets the health JSON's status: "ok", or "degraded" with
// the reason while Options.Degraded reports one (a drift alarm). The
// reason is appended to one already there, so several assurance checks
// can each say theirs. /readyz does not look at it: a degraded line still
// inspects, and a load balancer or systemd must not take it away for a
// doubt that an engineer resolves (docs/assurance.md).
func (d *Daemon) degradedHealth(h *mqtt.Health) {
	if h.Status == "" {
		h.Status = "ok"
	}
	if d.degraded == nil {
		return
	}
	why := d.degraded()
	if why == "" {
		return
	}
	h.Status = "degraded"
	if h.StatusReason != "" {
		why = h.StatusReason + "; " + why
	}
	h.StatusReason = why
}
