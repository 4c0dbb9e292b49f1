package modbus

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/segad-edge/segad-edge/plc"
)

// MapVersion is the register map layout version (holding register
// RegMapVersion). Addresses are never moved within a version; new signals
// only take reserved addresses.
const MapVersion = 1

// Holding register addresses (0-based protocol addresses; the 4xxxx
// reference is 40001 + address). The input registers mirror them read-only
// at the same addresses.
const (
	RegControl         uint16 = 0 // R/W control word (Ctl* bits)
	RegStatus          uint16 = 1 // status word (St* bits)
	RegTriggerID       uint16 = 2 // InspectionID of the last accepted trigger
	RegErrorCode       uint16 = 3 // why Error is set (Err* codes)
	RegResultsBuffered uint16 = 4 // results waiting, including the one shown
	RegPendingTriggers uint16 = 5 // accepted triggers not answered yet
	RegHeartbeat       uint16 = 6 // seconds since the server started, wraps
	RegMapVersion      uint16 = 7 // MapVersion
	RegOverrunID       uint16 = 8 // InspectionID of the last triggered result lost to an overrun

	RegResultID        uint16 = 10 // InspectionID answered; 0: not a PLC trigger
	RegResultCode      uint16 = 11 // plc.CodePass/CodeFail/CodeError
	RegReasonNumber    uint16 = 12 // plc.ReasonNumber
	RegResultFlags     uint16 = 13 // Flag* bits
	RegResultSeq       uint16 = 14 // result sequence number (gaps: overrun)
	RegScore           uint16 = 16 // float32, 2 registers
	RegThreshold       uint16 = 18 // float32, 2 registers
	RegCountParts      uint16 = 30 // uint32 counters, 2 registers each
	RegCountFails      uint16 = 32
	RegCountErrors     uint16 = 34
	RegCountOverruns   uint16 = 36
	RegCountTriggers   uint16 = 38
	RegCountRefused    uint16 = 40
	RegCountConnLost   uint16 = 42
	RegCountConnRefuse uint16 = 44
	RegBundleNumber    uint16 = 50 // uint32 CRC-32 of the bundle ID
	RegBundleChanges   uint16 = 52
	RegBundleID        uint16 = 60 // string, BundleIDRegisters registers
	RegPartIDIn        uint16 = 100
	RegResultPartID    uint16 = 200

	// BundleIDRegisters is the length of the bundle ID string area.
	BundleIDRegisters = 16
	// MapSize is the number of holding/input registers; addresses at or
	// beyond it are answered with exception 02 (illegal data address).
	MapSize = RegResultPartID + MaxPartIDRegisters
	// BitCount is the number of coils and of discrete inputs.
	BitCount = 16
)

// Control word bits (holding register 0, coils 0..3).
const (
	CtlTriggerEnable uint16 = 1 << 0
	CtlTrigger       uint16 = 1 << 1
	CtlResultAck     uint16 = 1 << 2
	CtlResetError    uint16 = 1 << 3
	ctlMask                 = CtlTriggerEnable | CtlTrigger | CtlResultAck | CtlResetError
)

// Status word bits (holding register 1, discrete inputs 0..7).
const (
	StOnline         uint16 = 1 << 0
	StReady          uint16 = 1 << 1
	StBusy           uint16 = 1 << 2
	StTriggerAck     uint16 = 1 << 3
	StResultValid    uint16 = 1 << 4
	StError          uint16 = 1 << 5
	StOverrun        uint16 = 1 << 6
	StTriggerRefused uint16 = 1 << 7
)

// Result flag bits (holding register 13).
const (
	FlagTriggered       uint16 = 1 << 0 // answers a trigger of this Modbus server
	FlagScoreValid      uint16 = 1 << 1 // Score holds a number (else NaN)
	FlagWarn            uint16 = 1 << 2 // a pass close to the threshold
	FlagPartIDTruncated uint16 = 1 << 3 // the part ID is longer than the area
)

// Error codes (holding register 3). Codes other than ErrLine stay until
// ResetError; ErrLine follows the line's state.
const (
	ErrNone              uint16 = 0
	ErrLine              uint16 = 1 // the line reports an error (plc.Status.Error)
	ErrOverrun           uint16 = 2 // a result did not fit the result buffer
	ErrTriggerNotEnabled uint16 = 3 // Trigger rose without TriggerEnable
	ErrTriggerBusy       uint16 = 4 // max_pending_triggers triggers already wait
	ErrPartIDInvalid     uint16 = 5 // the part ID registers hold no valid part ID
	ErrPartIDPending     uint16 = 6 // a trigger with the same part ID still waits
	ErrTriggerRefused    uint16 = 7 // the line refused the trigger (Line.Trigger error)
	ErrNoTriggerSource   uint16 = 8 // the server has no line to trigger
)

// ErrorCodes names every error code, for the docs and `segad plc map`.
func ErrorCodes() map[string]uint16 {
	return map[string]uint16{
		"none":                ErrNone,
		"line_error":          ErrLine,
		"result_overrun":      ErrOverrun,
		"trigger_not_enabled": ErrTriggerNotEnabled,
		"trigger_busy":        ErrTriggerBusy,
		"part_id_invalid":     ErrPartIDInvalid,
		"part_id_pending":     ErrPartIDPending,
		"trigger_refused":     ErrTriggerRefused,
		"no_trigger_source":   ErrNoTriggerSource,
	}
}

// Signal is one entry of the register map.
type Signal struct {
	// Name of the signal as the docs and PLC examples use it.
	Name string `json:"name"`
	// Table: holding_register, input_register, coil or discrete_input.
	Table string `json:"table"`
	// Address is the 0-based protocol address (what goes on the wire).
	Address uint16 `json:"address"`
	// Ref is the conventional 1-based reference (40001 + address for
	// holding registers, 30001 for input registers, 00001 coils, 10001
	// discrete inputs).
	Ref string `json:"ref"`
	// Bit is the bit number inside the register (value 1<<Bit) for bits
	// packed in a word; absent otherwise.
	Bit *int `json:"bit,omitempty"`
	// Type: bool, uint16, uint32, float32 or string.
	Type string `json:"type"`
	// Words is the number of registers (1 for bits and uint16).
	Words int `json:"words"`
	// WordOrder of 32-bit values: big or little; absent for 16-bit types.
	WordOrder string `json:"word_order,omitempty"`
	// Access: r or rw (written by the PLC).
	Access string `json:"access"`
	// Description says what the signal means.
	Description string `json:"description"`
}

// Map is the whole register map as `segad plc map --json` prints it.
type Map struct {
	Version         int               `json:"version"`
	UnitID          int               `json:"unit_id"`
	WordOrder       string            `json:"word_order"`
	StringEncoding  string            `json:"string_encoding"`
	PartIDRegisters int               `json:"part_id_registers"`
	Registers       int               `json:"registers"`
	Bits            int               `json:"bits"`
	InputRegisters  string            `json:"input_registers"`
	Signals         []Signal          `json:"signals"`
	ResultCodes     map[string]uint16 `json:"result_codes"`
	ReasonCodes     map[string]uint16 `json:"reason_codes"`
	ErrorCodes      map[string]uint16 `json:"error_codes"`
}

// Table names used in Signal.Table.
const (
	TableHolding  = "holding_register"
	TableInput    = "input_register"
	TableCoil     = "coil"
	TableDiscrete = "discrete_input"
)

type bitDef struct {
	name, desc string
	bit        int
}

var controlBits = []bitDef{
	{"TriggerEnable", "the PLC allows triggers; a Trigger edge without it is refused (ErrorCode 3)", 0},
	{"Trigger", "rising edge: inspect one part (part ID from PartIDIn, read at the edge); keep it set until TriggerAck, then clear it", 1},
	{"ResultAck", "rising edge: the PLC has read the shown result; ResultValid clears; clear ResultAck to get the next one", 2},
	{"ResetError", "rising edge: clears ResultBufferOverrun, TriggerRefused and a sticky ErrorCode", 3},
}

var statusBits = []bitDef{
	{"Online", "the daemon runs", 0},
	{"Ready", "warmed up and the source delivers frames (as /readyz)", 1},
	{"Busy", "a frame is being inspected or a PLC trigger waits for its result", 2},
	{"TriggerAck", "the last Trigger edge was accepted (TriggerID holds its InspectionID); clears when Trigger clears", 3},
	{"ResultValid", "the result registers hold a result; stays set until ResultAck", 4},
	{"Error", "the line reports an error, or a sticky fault (overrun, refused trigger) waits for ResetError; see ErrorCode", 5},
	{"ResultBufferOverrun", "a result did not fit the result buffer and was not shown (counted in Overruns); sticky until ResetError", 6},
	{"TriggerRefused", "the last Trigger edge was not taken (see ErrorCode); sticky until ResetError", 7},
}

// RegisterMap returns the register map for a configuration (word order,
// unit ID and part ID length come from it).
func RegisterMap(c Config) Map {
	m := Map{
		Version:         MapVersion,
		UnitID:          c.UnitID,
		WordOrder:       c.WordOrder,
		StringEncoding:  "2 bytes per register, first character in the high byte; padded with NUL; UTF-8",
		PartIDRegisters: c.PartIDRegisters,
		Registers:       int(MapSize),
		Bits:            BitCount,
		InputRegisters:  fmt.Sprintf("mirror holding registers 0..%d read-only at the same addresses (function 04)", MapSize-1),
		ResultCodes:     map[string]uint16{"pass": plc.CodePass, "fail": plc.CodeFail, "error": plc.CodeError},
		ReasonCodes:     plc.ReasonCodes(),
		ErrorCodes:      ErrorCodes(),
	}
	hr := func(name string, addr uint16, typ string, words int, access, desc string) {
		s := Signal{Name: name, Table: TableHolding, Address: addr, Ref: ref(40001, addr), Type: typ, Words: words, Access: access, Description: desc}
		if typ == "uint32" || typ == "float32" {
			s.WordOrder = c.WordOrder
		}
		m.Signals = append(m.Signals, s)
	}
	bits := func(word uint16, wordName string, defs []bitDef, table, access string) {
		for _, d := range defs {
			b := d.bit
			m.Signals = append(m.Signals, Signal{Name: d.name, Table: TableHolding, Address: word, Ref: ref(40001, word), Bit: &b, Type: "bool", Words: 1, Access: access, Description: d.desc + " (bit of " + wordName + ")"})
		}
		for _, d := range defs {
			m.Signals = append(m.Signals, Signal{Name: d.name, Table: table, Address: uint16(d.bit), Ref: ref(refBase(table), uint16(d.bit)), Type: "bool", Words: 1, Access: access, Description: d.desc})
		}
	}
	hr("ControlWord", RegControl, "uint16", 1, "rw", "control bits from the PLC (TriggerEnable, Trigger, ResultAck, ResetError); other bits must be 0 (exception 03)")
	bits(RegControl, "ControlWord", controlBits, TableCoil, "rw")
	hr("StatusWord", RegStatus, "uint16", 1, "r", "status bits (Online, Ready, Busy, TriggerAck, ResultValid, Error, ResultBufferOverrun, TriggerRefused)")
	bits(RegStatus, "StatusWord", statusBits, TableDiscrete, "r")
	hr("TriggerID", RegTriggerID, "uint16", 1, "r", "InspectionID given to the last accepted trigger (1..65535, never 0), valid with TriggerAck")
	hr("ErrorCode", RegErrorCode, "uint16", 1, "r", "why Error is set: see error_codes")
	hr("ResultsBuffered", RegResultsBuffered, "uint16", 1, "r", "results waiting for ResultAck, including the one shown")
	hr("PendingTriggers", RegPendingTriggers, "uint16", 1, "r", "accepted triggers whose result has not arrived")
	hr("Heartbeat", RegHeartbeat, "uint16", 1, "r", "seconds since the server started (wraps); a PLC watchdog sees it move")
	hr("MapVersion", RegMapVersion, "uint16", 1, "r", fmt.Sprintf("register map layout version (%d)", MapVersion))
	hr("OverrunInspectionID", RegOverrunID, "uint16", 1, "r", "InspectionID of the last triggered result lost to a buffer overrun (0: none)")
	hr("ResultInspectionID", RegResultID, "uint16", 1, "r", "the TriggerID this result answers; 0: not triggered by this Modbus server (free-running, MQTT or HTTP trigger)")
	hr("ResultCode", RegResultCode, "uint16", 1, "r", "0 pass, 1 fail, 2 error (reject on 1 and 2)")
	hr("ReasonCode", RegReasonNumber, "uint16", 1, "r", "reason code as a number (reason_codes); 65535: a code newer than this table")
	hr("ResultFlags", RegResultFlags, "uint16", 1, "r", "bit 0 Triggered (answers a trigger of this server), bit 1 ScoreValid, bit 2 Warn (pass near the threshold), bit 3 PartIDTruncated")
	hr("ResultSeq", RegResultSeq, "uint16", 1, "r", "sequence number of every result given to this server (wraps, skips 0); a gap means results lost to an overrun")
	hr("Score", RegScore, "float32", 2, "r", "the model's score (NaN when not computed: ScoreValid 0)")
	hr("Threshold", RegThreshold, "float32", 2, "r", "the decision threshold (fail when Score >= Threshold)")
	hr("Parts", RegCountParts, "uint32", 2, "r", "results given to this server since start")
	hr("Fails", RegCountFails, "uint32", 2, "r", "fail results since start")
	hr("Errors", RegCountErrors, "uint32", 2, "r", "error results since start")
	hr("Overruns", RegCountOverruns, "uint32", 2, "r", "results not shown because the result buffer was full")
	hr("TriggersAccepted", RegCountTriggers, "uint32", 2, "r", "PLC triggers accepted")
	hr("TriggersRefused", RegCountRefused, "uint32", 2, "r", "PLC trigger edges refused (TriggerRefused)")
	hr("ConnectionsLost", RegCountConnLost, "uint32", 2, "r", "client connections that ended (closed, reset or idle)")
	hr("ConnectionsRefused", RegCountConnRefuse, "uint32", 2, "r", "connections refused (not in plc.modbus.allow, or max_connections)")
	hr("BundleNumber", RegBundleNumber, "uint32", 2, "r", "CRC-32 (IEEE) of the loaded bundle ID, 0 when none: compare it with the expected recipe's number")
	hr("BundleChanges", RegBundleChanges, "uint16", 1, "r", "how often the loaded bundle changed since start (a hot reload)")
	hr("BundleID", RegBundleID, "string", BundleIDRegisters, "r", fmt.Sprintf("the loaded bundle ID, first %d characters", 2*BundleIDRegisters))
	if c.PartIDRegisters > 0 {
		hr("PartIDIn", RegPartIDIn, "string", c.PartIDRegisters, "rw", "part ID written by the PLC before the Trigger edge (empty: the server makes one)")
		hr("ResultPartID", RegResultPartID, "string", c.PartIDRegisters, "r", "part ID of the shown result")
	}
	return m
}

func refBase(table string) int {
	switch table {
	case TableHolding:
		return 40001
	case TableInput:
		return 30001
	case TableDiscrete:
		return 10001
	default:
		return 1
	}
}

func ref(base int, addr uint16) string {
	if base == 1 {
		return fmt.Sprintf("%05d", base+int(addr))
	}
	return fmt.Sprintf("%d", base+int(addr))
}

// WriteText writes the map as an aligned table (`segad plc map`).
func (m Map) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Modbus TCP register map v%d: unit %d, 32-bit word order %s, part ID %d registers; input registers mirror holding registers 0..%d read-only\n\n",
		m.Version, m.UnitID, m.WordOrder, m.PartIDRegisters, m.Registers-1)
	fmt.Fprintln(tw, "TABLE\tADDR\tREF\tBIT\tTYPE\tWORDS\tACCESS\tNAME\tDESCRIPTION")
	for _, s := range m.Signals {
		bit := ""
		if s.Bit != nil {
			bit = fmt.Sprint(*s.Bit)
		}
		typ := s.Type
		if s.WordOrder != "" {
			typ += " (" + s.WordOrder + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Table, s.Address, s.Ref, bit, typ, s.Words, s.Access, s.Name, s.Description)
	}
	codes := func(title string, c map[string]uint16) {
		names := make([]string, 0, len(c))
		for k := range c {
			names = append(names, k)
		}
		sort.Slice(names, func(i, j int) bool { return c[names[i]] < c[names[j]] })
		fmt.Fprintf(tw, "%s:", title)
		for _, k := range names {
			label := k
			if k == "" {
				label = "(none)"
			}
			fmt.Fprintf(tw, " %d %s", c[k], label)
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintln(tw)
	codes("ResultCode", m.ResultCodes)
	codes("ReasonCode", m.ReasonCodes)
	codes("ErrorCode", m.ErrorCodes)
	return tw.Flush()
}
