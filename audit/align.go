package audit

import (
	"math"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/segad"
)

// noSegment labels the overlay's mask outside the reference's view: the
// outline then also shows where the registered view ends in the frame.
const noSegment = 255

// Unwarp moves a fixtured frame's anomaly maps and mask from the reference
// pose (where the detectors saw the part) into the frame's own pose, so
// Overlay draws them on the original frame where the part really was
// (capture.align; the inverse of the warp applied before the detectors).
// Map pixels outside the reference's view take the map's minimum (no
// false heat); mask pixels there take label 255. Without a located
// alignment, or on any failure, the inputs are returned unchanged.
func Unwarp(a *capture.Alignment, maps [][]float32, mapW, mapH int, mask *segad.Mask) ([][]float32, *segad.Mask) {
	if !a.Located() || mapW <= 0 || mapH <= 0 {
		return maps, mask
	}
	out := make([][]float32, len(maps))
	for i, m := range maps {
		out[i] = m
		if len(m) != mapW*mapH {
			continue
		}
		if u, ok := unwarpMap(a, m, mapW, mapH); ok {
			out[i] = u
		}
	}
	if mask == nil || mask.Width <= 0 || mask.Height <= 0 || len(mask.Labels) != mask.Width*mask.Height {
		return out, mask
	}
	lm, err := gocv.NewMatFromBytes(mask.Height, mask.Width, gocv.MatTypeCV8UC1, append([]byte(nil), mask.Labels...))
	if err != nil {
		return out, mask
	}
	defer lm.Close()
	u, err := a.UnwarpNearest(lm, noSegment)
	if err != nil {
		return out, mask
	}
	defer u.Close()
	labels, err := u.DataPtrUint8()
	if err != nil || len(labels) != len(mask.Labels) {
		return out, mask
	}
	mm := *mask
	mm.Labels = append([]uint8(nil), labels...)
	return out, &mm
}

// unwarpMap warps one map; the border is its minimum, so what lies outside
// the registered view reads as "nothing found" rather than as heat.
func unwarpMap(a *capture.Alignment, m []float32, w, h int) ([]float32, bool) {
	lo := float32(math.Inf(1))
	for _, v := range m {
		if v < lo {
			lo = v
		}
	}
	src := gocv.NewMatWithSize(h, w, gocv.MatTypeCV32F)
	defer src.Close()
	d, err := src.DataPtrFloat32()
	if err != nil || len(d) != len(m) {
		return nil, false
	}
	for i, v := range m {
		d[i] = v - lo // >= 0 (NaN stays NaN), so the zero border is the minimum
	}
	u, err := a.UnwarpToFrame(src)
	if err != nil {
		return nil, false
	}
	defer u.Close()
	if u.Rows() != h || u.Cols() != w || u.Type() != gocv.MatTypeCV32F {
		return nil, false
	}
	v, err := u.DataPtrFloat32()
	if err != nil || len(v) != w*h {
		return nil, false
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x + lo
	}
	return out, true
}
