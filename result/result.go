// Package result holds the one result type every stage and output speaks:
// a Result per inspected part (pass, fail or error, with the reason code
// and text), its features and its JSON form. Capture, the model, the
// daemon, audit, fit, the CLI and every output (MQTT, PLC protocols,
// history) exchange this type; none of them defines its own.
package result

import (
	"crypto/rand"
	"encoding/json"
	"math"
	"sync"
	"time"
)

// SchemaVersion is the version of the JSON payloads on the result, reject and
// health topics. It changes only when a field changes meaning or is removed;
// new optional fields keep the version.
const SchemaVersion = 1

// Verdict is the decision for one part.
type Verdict string

// Verdicts. VerdictError means the pipeline failed closed (camera timeout,
// bad map, model error): the part is treated as rejected.
const (
	VerdictPass  Verdict = "pass"
	VerdictFail  Verdict = "fail"
	VerdictError Verdict = "error"
)

// Feature is one named feature value, kept as ordered pairs because the
// model's feature order is meaningful and JSON objects are unordered.
type Feature struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// Result is the payload of the result topic: one per part.
// Non-finite floats (NaN skew of a constant segment, an uncomputed score)
// are written as JSON null.
type Result struct {
	// Schema is SchemaVersion; Publish fills it when zero.
	Schema int `json:"schema"`
	// ID is unique and sorts by decision time; Publish fills it (NewResultID) when empty.
	ID string `json:"id"`
	// Station is the inspection station; Publish fills it from Config.Station when empty.
	Station string `json:"station"`
	// Source names the frame source (camera, file, stream).
	Source string `json:"source"`
	// Seq is the station's frame sequence number.
	Seq uint64 `json:"seq"`
	// PartID comes from the trigger or the PLC; empty when unknown.
	PartID string `json:"part_id,omitempty"`
	// CapturedAt is when the frame was taken.
	CapturedAt time.Time `json:"captured_at"`
	// DecidedAt is when the verdict was made.
	DecidedAt time.Time `json:"decided_at"`
	// Verdict is pass, fail or error.
	Verdict Verdict `json:"verdict"`
	// Score is the model's raw margin; nil (JSON null) when not computed.
	Score *float64 `json:"score"`
	// Threshold is the decision threshold the score was compared with.
	Threshold float64 `json:"threshold"`
	// Warn flags a pass close to the threshold.
	Warn bool `json:"warn,omitempty"`
	// MapMax is the maximum of each detector's anomaly map, by detector name.
	MapMax map[string]float64 `json:"map_max,omitempty"`
	// Features is the model input row (only when mqtt.publish_features).
	Features []Feature `json:"features,omitempty"`
	// LatencyMS is the time spent per stage in milliseconds (capture, infer, segad, total...).
	LatencyMS map[string]float64 `json:"latency_ms,omitempty"`
	// Bundle identifies the model bundle (ID or content hash).
	Bundle string `json:"bundle,omitempty"`
	// Reason explains an error verdict or a fail in words.
	Reason string `json:"reason,omitempty"`
	// ReasonCode is a stable machine-readable code (see docs/mqtt.md).
	ReasonCode string `json:"reason_code,omitempty"`
	// Explain splits Score into a bias and contributions per segment,
	// detector and feature (docs/brf.md); nil when the forest cannot be
	// explained (LightGBM) or the part was not scored.
	Explain *Explanation `json:"explain,omitempty"`
	// Pose is where fixturing (capture.align) found the part: the motion
	// from the reference pose to the frame; nil without fixturing.
	Pose *Pose `json:"pose,omitempty"`
	// Kind is empty for the line's own verdicts (production); KindGolden
	// and KindShadow mark results that decide nothing on the line: they go
	// only to outputs that record them aside (the history), never to the
	// PLC or the result topic.
	Kind string `json:"kind,omitempty"`
}

// Result kinds (Result.Kind); production is the empty kind.
const (
	// KindGolden is a golden-sample challenge's result (assurance.golden).
	KindGolden = "golden"
	// KindShadow is a candidate model's result (segad.shadow).
	KindShadow = "shadow"
)

// Rejected reports whether the part must be rejected (fail or error).
func (r *Result) Rejected() bool { return r.Verdict != VerdictPass }

// MarshalJSON writes non-finite floats as null: encoding/json refuses NaN,
// and NaN is a legitimate feature value (skew of a constant segment).
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	type wire struct {
		plain
		Score     *float64            `json:"score"`
		MapMax    map[string]*float64 `json:"map_max,omitempty"`
		Features  []wireFeature       `json:"features,omitempty"`
		LatencyMS map[string]*float64 `json:"latency_ms,omitempty"`
	}
	w := wire{plain: plain(r)}
	if r.Score != nil {
		w.Score = finite(*r.Score)
	}
	w.MapMax = finiteMap(r.MapMax)
	w.LatencyMS = finiteMap(r.LatencyMS)
	if len(r.Features) > 0 {
		w.Features = make([]wireFeature, len(r.Features))
		for i, f := range r.Features {
			w.Features[i] = wireFeature{f.Name, finite(f.Value)}
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads null floats back as NaN (and a null score as nil).
func (r *Result) UnmarshalJSON(b []byte) error {
	type plain Result
	type wire struct {
		*plain
		MapMax    map[string]*float64 `json:"map_max,omitempty"`
		Features  []wireFeature       `json:"features,omitempty"`
		LatencyMS map[string]*float64 `json:"latency_ms,omitempty"`
	}
	w := wire{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	r.MapMax = nanMap(w.MapMax)
	r.LatencyMS = nanMap(w.LatencyMS)
	r.Features = nil
	for _, f := range w.Features {
		v := math.NaN()
		if f.Value != nil {
			v = *f.Value
		}
		r.Features = append(r.Features, Feature{f.Name, v})
	}
	return nil
}

type wireFeature struct {
	Name  string   `json:"name"`
	Value *float64 `json:"value"`
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func finiteMap(m map[string]float64) map[string]*float64 {
	if m == nil {
		return nil
	}
	out := make(map[string]*float64, len(m))
	for k, v := range m {
		out[k] = finite(v)
	}
	return out
}

func nanMap(m map[string]*float64) map[string]float64 {
	if m == nil {
		return nil
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if v == nil {
			out[k] = math.NaN()
		} else {
			out[k] = *v
		}
	}
	return out
}

// Reason codes (Result.ReasonCode): stable, machine-readable, documented in
// README.md. A fail without its own code is ReasonAnomaly; the others are
// fail-closed error verdicts.
const (
	ReasonAnomaly   = "anomaly"         // score >= threshold
	ReasonError     = "error"           // an error verdict without a more specific code
	ReasonCapture   = "capture_error"   // the frame or file could not be read, or a trigger not served
	ReasonInference = "inference_error" // a detector or the classifier failed
	ReasonMap       = "invalid_map"     // NaN/Inf in a map, wrong map size
	ReasonScore     = "invalid_score"   // the forest returned NaN/Inf
	ReasonDropped   = "dropped"         // inference fell behind; the part was not inspected
	ReasonShutdown  = "shutdown"        // the daemon stopped before inspecting it
	// ReasonNotLocated: fixturing (capture.align) could not find the part
	// in the frame (score below min_score, motion beyond search).
	ReasonNotLocated = "not_located"
	// ReasonSegmentation: the per-frame segmentation model's mask is
	// implausible (a required segment missing, an area out of bounds).
	ReasonSegmentation = "segmentation_error"
	// ReasonGolden: the last golden-sample challenge failed and
	// assurance.golden.action is fail_closed.
	ReasonGolden = "golden_failed"
)

// FailClosed turns r into an error verdict with the reason code and the
// error's text: a part that cannot be judged is rejected, never passed.
func FailClosed(r *Result, code string, err error) {
	r.Verdict = VerdictError
	r.Score = nil
	r.ReasonCode = code
	if err == nil {
		err = errUnknown
	}
	r.Reason = err.Error()
}

// ulidGen makes result IDs: 26 Crockford base32 characters, 48 bits of
// milliseconds then 80 random bits incremented within one millisecond, so IDs
// from one process sort in creation order (ULID, monotonic variant).
type ulidGen struct {
	mu     sync.Mutex
	lastMS uint64
	rnd    [10]byte
}

var defaultULID ulidGen

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns a new unique result ID that sorts by time t (ULID).
func NewID(t time.Time) string { return defaultULID.next(t) }

func (g *ulidGen) next(t time.Time) string {
	g.mu.Lock()
	ms := uint64(t.UnixMilli())
	if ms <= g.lastMS {
		ms = g.lastMS
		// Increment the 80-bit random part; on the (astronomically rare)
		// overflow, move to the next millisecond.
		i := 9
		for ; i >= 0; i-- {
			g.rnd[i]++
			if g.rnd[i] != 0 {
				break
			}
		}
		if i < 0 {
			ms++
			_, _ = rand.Read(g.rnd[:])
		}
	} else {
		_, _ = rand.Read(g.rnd[:])
	}
	g.lastMS = ms
	var b [16]byte
	for i := 0; i < 6; i++ {
		b[i] = byte(ms >> (40 - 8*i))
	}
	copy(b[6:], g.rnd[:])
	g.mu.Unlock()
	// 128 bits -> 26 chars of 5 bits, the first holding the top 3 bits.
	var out [26]byte
	var acc uint64
	var bits uint
	// Walk the bits from the least significant end so the leading char
	// takes the 3 leftover top bits.
	for i, j := 15, 25; j >= 0; j-- {
		for bits < 5 && i >= 0 {
			acc |= uint64(b[i]) << bits
			bits += 8
			i--
		}
		out[j] = crockford[acc&31]
		acc >>= 5
		if bits >= 5 {
			bits -= 5
		} else {
			bits = 0
		}
	}
	return string(out[:])
}

// Pose is the registration of a frame to the reference part image
// (capture.align): the part in the frame is the reference moved by DX, DY
// pixels (in the preprocessed frame's coordinates) and turned by Angle
// degrees (counter-clockwise); Score is the registration's quality in
// [0, 1] (ECC correlation, or the features method's inlier ratio).
type Pose struct {
	DX    float64 `json:"dx"`
	DY    float64 `json:"dy"`
	Angle float64 `json:"angle"`
	Score float64 `json:"score"`
}
