package mqtt

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segad-edge/segad-edge/result"

	"github.com/segad-edge/segad-edge/partid"
)

// Reject is the small payload of the reject topic, for PLCs: published only
// for rejected parts (verdict fail or error).
type Reject struct {
	Schema     int            `json:"schema"`
	ResultID   string         `json:"result_id"`
	Station    string         `json:"station"`
	Seq        uint64         `json:"seq"`
	PartID     string         `json:"part_id,omitempty"`
	Verdict    result.Verdict `json:"verdict"`
	ReasonCode string         `json:"reason_code"`
}

// RejectFor builds the reject payload of a rejected result.
func RejectFor(r *result.Result) Reject {
	code := r.ReasonCode
	if code == "" {
		code = result.ReasonAnomaly
		if r.Verdict == result.VerdictError {
			code = result.ReasonError
		}
	}
	return Reject{Schema: result.SchemaVersion, ResultID: r.ID, Station: r.Station, Seq: r.Seq,
		PartID: r.PartID, Verdict: r.Verdict, ReasonCode: code}
}

// Health is the retained JSON on the health topic, refreshed every
// status_interval. The daemon fills it through Publisher.SetHealth; the
// broker-side fields (backlog, drops, published) are filled by the publisher.
type Health struct {
	Schema          int       `json:"schema"`
	Station         string    `json:"station"`
	Time            time.Time `json:"time"`
	UptimeS         float64   `json:"uptime_s"`
	Frames          uint64    `json:"frames"`
	Fails           uint64    `json:"fails"`
	Errors          uint64    `json:"errors"`
	QueueDepth      int       `json:"queue_depth"`
	CameraState     string    `json:"camera_state,omitempty"`
	LastConfigError string    `json:"last_config_error,omitempty"`
	// BrokerBacklog is the number of results waiting in the outbox.
	BrokerBacklog int `json:"broker_backlog"`
	// OutboxDrops counts results dropped because the outbox was full or expired.
	OutboxDrops uint64 `json:"outbox_drops"`
	// Published counts results acknowledged by the broker since start.
	Published uint64 `json:"published"`
	// TriggersIgnored counts malformed trigger payloads.
	TriggersIgnored uint64 `json:"triggers_ignored"`
	// TriggersOverflowed counts triggers answered with an error result
	// because they arrived faster than the line takes them.
	TriggersOverflowed uint64 `json:"triggers_overflowed,omitempty"`
	// TriggersLost counts triggers beyond even the overflow bound: counted
	// and logged, but not answered.
	TriggersLost uint64 `json:"triggers_lost,omitempty"`
	// LastError is the last broker error (connect, publish), empty when none.
	LastError string `json:"last_error,omitempty"`
	// Outputs names the outputs beside MQTT that cannot do their work and
	// why (history, PLC servers); omitted when all work.
	Outputs map[string]string `json:"outputs,omitempty"`
	// Status is "ok", or "degraded" when the line runs but cannot be
	// trusted to judge as it should (a failed golden-sample challenge, a drift alarm);
	// StatusReason says why.
	Status       string `json:"status,omitempty"`
	StatusReason string `json:"status_reason,omitempty"`
	// Golden is the last golden-sample challenge (assurance.golden);
	// omitted when challenges are off.
	Golden *GoldenHealth `json:"golden,omitempty"`
}

// Trigger is an on-demand capture request from the trigger topic.
type Trigger struct {
	// PartID is the requested part ID; empty when the request had none.
	PartID string
	// Topic is the topic it arrived on.
	Topic string
	// ReceivedAt is when the publisher received it.
	ReceivedAt time.Time
	// Overflow is true when this trigger could not be served because
	// triggers arrived faster than the line takes them; the daemon answers
	// it with a capture_error result for its part ID (it must not capture).
	Overflow bool
}

// ParseTrigger reads a trigger payload: empty (no part ID), JSON
// {"part_id": "..."} or a plain-text part ID. Anything else is an error that
// says what was wrong; the caller logs it and ignores the message.
func ParseTrigger(payload []byte) (string, error) {
	s := strings.TrimSpace(string(payload))
	if s == "" {
		return "", nil
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("payload is not UTF-8")
	}
	if s[0] == '{' || s[0] == '[' || s[0] == '"' {
		var t struct {
			PartID *string `json:"part_id"`
		}
		if err := json.Unmarshal([]byte(s), &t); err != nil {
			return "", fmt.Errorf("payload looks like JSON but is not a {\"part_id\": \"...\"} object: %w", err)
		}
		if t.PartID == nil {
			return "", nil
		}
		return partid.Check(*t.PartID)
	}
	return partid.Check(s)
}

// ExplainTop is how many segments and detectors of a result's explanation
// the result topic carries; the full tables (and the per-feature one) go to
// the history and the audit JSON.
const ExplainTop = 3

// wireResult is r as the result topic carries it: its explanation trimmed
// to the top ExplainTop segments and detectors, without the per-feature
// table. r itself is not changed (other outputs get the full result).
func wireResult(r *result.Result) *result.Result {
	if r.Explain == nil {
		return r
	}
	w, x := *r, *r.Explain
	x.Segments, x.Detectors, x.Features = result.Top(x.Segments, ExplainTop), result.Top(x.Detectors, ExplainTop), nil
	w.Explain = &x
	return &w
}
