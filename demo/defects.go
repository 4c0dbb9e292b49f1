package demo

import (
	"fmt"

	"github.com/segad-edge/segad-edge/segad"
)

// DefectKind names one kind of synthetic part: PartGood or one defect type.
// The string is also the folder name under bad/ in a written dataset, which
// is how `segad fit --bad` learns the defect types.
type DefectKind string

// The part kinds. The defect types follow Table 7 of the SegAD paper (VAD):
// logical defects are wrong assembly of correct components, structural ones
// are damage or foreign material.
const (
	PartGood DefectKind = "good"

	DefectMissingWire     DefectKind = "missing_wire"       // logical: one wire absent
	DefectWireOutOfDot    DefectKind = "wire_out_of_dot"    // logical: wire ends beside its solder dot
	DefectWireTooStraight DefectKind = "wire_too_straight"  // logical: wire without its usual slack
	DefectWireBentTooMuch DefectKind = "wire_bent_too_much" // logical: wire bowed far out of its lane
	DefectMisplacedSolder DefectKind = "misplaced_solder"   // logical: solder dot off its place
	DefectMissingSolder   DefectKind = "missing_solder"     // logical: no solder dot, bare wire end
	DefectSolderPollution DefectKind = "solder_pollution"   // structural: solder paste splashes on the piezo
	DefectCrack           DefectKind = "crack"              // structural: thin crack in the piezo ceramic
	DefectBrokenPiezo     DefectKind = "broken_piezo"       // structural: chip broken off the disc edge
	DefectBurnedSpot      DefectKind = "burned_spot"        // structural: dark burn mark on the piezo
	DefectParticle        DefectKind = "particle"           // structural: metal or plastic particle
)

// Defect categories of the paper's Table 7.
const (
	CategoryLogical    = "logical"
	CategoryStructural = "structural"
)

// DefectType describes one defect kind of the generator.
type DefectType struct {
	Kind DefectKind
	// Category is CategoryLogical or CategoryStructural.
	Category string
	// Unseen kinds are held out of training (WriteDataset leaves them out)
	// and appear only in test streams, as the paper's unseen defects.
	Unseen bool
	// Segments are the VAD segment labels (segad.VAD*) the defect's pixels
	// may lie in; PartInfo.Segments narrows this to where one instance went.
	Segments []int
	// Description is one line for docs and logs.
	Description string
}

// defectTypes is the generator's defect table, in the order Kinds lists
// them. Three types are unseen: one logical, two structural, so a demo can
// show SegAD generalising to defect types it was never shown.
var defectTypes = []DefectType{
	{DefectMissingWire, CategoryLogical, false, []int{segad.VADWires}, "one of the two wires is missing"},
	{DefectWireOutOfDot, CategoryLogical, true, []int{segad.VADWires, segad.VADPiezoMiddle, segad.VADSolderDots}, "a wire ends on the piezo beside its solder dot"},
	{DefectWireTooStraight, CategoryLogical, false, []int{segad.VADWires}, "a wire runs dead straight, without its usual slack"},
	{DefectWireBentTooMuch, CategoryLogical, false, []int{segad.VADWires, segad.VADPiezoMiddle, segad.VADPiezoBorder, segad.VADBackground}, "a wire bows far out of its lane"},
	{DefectMisplacedSolder, CategoryLogical, false, []int{segad.VADSolderDots, segad.VADPiezoMiddle, segad.VADWires}, "a solder dot sits off its place"},
	{DefectMissingSolder, CategoryLogical, false, []int{segad.VADSolderDots}, "a solder dot is missing; the bare wire end shows"},
	{DefectSolderPollution, CategoryStructural, false, []int{segad.VADPiezoMiddle}, "small solder paste splashes on the piezo near a dot"},
	{DefectCrack, CategoryStructural, false, []int{segad.VADPiezoMiddle}, "a thin dark crack in the piezo ceramic"},
	{DefectBrokenPiezo, CategoryStructural, false, []int{segad.VADPiezoBorder, segad.VADPiezoMiddle, segad.VADOuterHalfCircle, segad.VADBackground}, "a chip broken off the piezo disc's edge (the rim pixels just outside the static mask's disc, where the jittered part overlaps, count as the neighbouring segment)"},
	{DefectBurnedSpot, CategoryStructural, true, []int{segad.VADPiezoMiddle, segad.VADPiezoBorder}, "a dark burn mark on the piezo"},
	{DefectParticle, CategoryStructural, true, []int{segad.VADPiezoMiddle, segad.VADPiezoBorder, segad.VADOuterHalfCircle}, "a small metal or plastic particle lying on the part"},
}

// DefectKinds returns every defect kind, logical first, in a fixed order.
func DefectKinds() []DefectKind {
	out := make([]DefectKind, len(defectTypes))
	for i, d := range defectTypes {
		out[i] = d.Kind
	}
	return out
}

// SeenDefectKinds returns the defect kinds used for training.
func SeenDefectKinds() []DefectKind { return filterKinds(false) }

// UnseenDefectKinds returns the defect kinds held out of training.
func UnseenDefectKinds() []DefectKind { return filterKinds(true) }

func filterKinds(unseen bool) []DefectKind {
	var out []DefectKind
	for _, d := range defectTypes {
		if d.Unseen == unseen {
			out = append(out, d.Kind)
		}
	}
	return out
}

// DefectTypes returns a copy of the defect table (docs, demo summaries).
func DefectTypes() []DefectType {
	out := make([]DefectType, len(defectTypes))
	for i, d := range defectTypes {
		d.Segments = append([]int(nil), d.Segments...)
		out[i] = d
	}
	return out
}

// LookupDefect returns the table entry of kind. PartGood has none.
func LookupDefect(kind DefectKind) (DefectType, bool) {
	for _, d := range defectTypes {
		if d.Kind == kind {
			return d, true
		}
	}
	return DefectType{}, false
}

// ParseDefectKind checks a kind name (as given on a command line or found
// as a folder name), accepting "good" too.
func ParseDefectKind(s string) (DefectKind, error) {
	if DefectKind(s) == PartGood {
		return PartGood, nil
	}
	if _, ok := LookupDefect(DefectKind(s)); ok {
		return DefectKind(s), nil
	}
	return "", fmt.Errorf("unknown part kind %q: want good or one of %v", s, DefectKinds())
}
