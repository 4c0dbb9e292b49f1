// Package plc holds what the PLC-facing servers (plc/modbus, plc/opcua)
// share: the numeric codes a PLC program compares against, and the small
// view of the line they serve. A PLC cannot read strings comfortably, so
// verdicts and reason codes become fixed numbers here, documented in
// docs/plc.md; a code is never renumbered once released.
package plc

import (
	"context"

	"github.com/segad-edge/segad-edge/result"
)

// Result codes (the ResultCode register / OPC UA variable).
const (
	CodePass  uint16 = 0
	CodeFail  uint16 = 1
	CodeError uint16 = 2
)

// ResultCode is the numeric code of a verdict; an unknown verdict is an
// error (fail closed).
func ResultCode(v result.Verdict) uint16 {
	switch v {
	case result.VerdictPass:
		return CodePass
	case result.VerdictFail:
		return CodeFail
	default:
		return CodeError
	}
}

// reasonNumbers are the released reason-code numbers. Append only.
var reasonNumbers = map[string]uint16{
	"":                        0, // pass: no reason
	result.ReasonAnomaly:      1,
	result.ReasonError:        2,
	result.ReasonCapture:      3,
	result.ReasonInference:    4,
	result.ReasonMap:          5,
	result.ReasonScore:        6,
	result.ReasonDropped:      7,
	result.ReasonShutdown:     8,
	result.ReasonNotLocated:   9,
	result.ReasonSegmentation: 10,
	result.ReasonGolden:       11,
}

// ReasonUnknown is the number of a reason code this table does not know
// (a newer daemon's code): the PLC still sees ResultCode 2 (error).
const ReasonUnknown uint16 = 0xFFFF

// ReasonNumber is the numeric form of a result's reason code.
func ReasonNumber(code string) uint16 {
	if n, ok := reasonNumbers[code]; ok {
		return n
	}
	return ReasonUnknown
}

// ReasonCodes lists every released reason code with its number, for the
// register map (`segad plc map --json`) and the docs.
func ReasonCodes() map[string]uint16 {
	out := make(map[string]uint16, len(reasonNumbers))
	for k, v := range reasonNumbers {
		out[k] = v
	}
	return out
}

// Status is the line's state as a PLC sees it.
type Status struct {
	// Online: the daemon runs.
	Online bool
	// Ready: warmed up and the source delivers (as /readyz).
	Ready bool
	// Busy: a frame is being inspected.
	Busy bool
	// Error: why the line cannot inspect, "" when it can.
	Error string
	// Bundle identifies the loaded model.
	Bundle string
}

// Line is what a PLC server may ask of the daemon: a trigger (the PLC's
// rising edge) and the line's status. Trigger returns an error when the
// trigger cannot be taken (the daemon still answers it with a result when
// it can be attributed to a part).
type Line interface {
	Trigger(ctx context.Context, partID string) error
	Status() Status
}
