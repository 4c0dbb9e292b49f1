// Package partid holds the one rule for part IDs, whichever way they arrive
// (an MQTT trigger, HTTP /trigger or /inspect, a watch-folder file name, a PLC
// register): a part ID ends up in result payloads, PLC registers, file names
// and log lines, so garbage (NUL, newlines, invalid UTF-8, kilobytes of text)
// must be refused at the edge, the same way everywhere.
package partid

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxLen bounds part IDs in bytes so a garbage payload cannot become a huge
// label in every downstream system.
const MaxLen = 128

// Check returns id unchanged when it is a valid part ID: at most MaxLen bytes
// of valid UTF-8 with printable characters only (no control characters, no
// NUL, no newlines). The empty string is valid (no part ID).
func Check(id string) (string, error) {
	if len(id) > MaxLen {
		return "", fmt.Errorf("part ID is %d bytes, longer than %d", len(id), MaxLen)
	}
	if !utf8.ValidString(id) {
		return "", fmt.Errorf("part ID is not valid UTF-8")
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return "", fmt.Errorf("part ID contains the non-printable character %q", r)
		}
	}
	return id, nil
}
