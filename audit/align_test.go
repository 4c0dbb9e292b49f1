package audit

import (
	"image"
	"testing"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/segad"
)

// TestUnwarpMovesMapsAndMask: a part found 10 px right and 4 px down of
// the reference (preprocessed 128 px frame) has its 64 px maps and mask
// moved by 5 and 2 map pixels; pixels with no reference view take the
// map's minimum and label 255; an unlocated frame is left alone.
func TestUnwarpMovesMapsAndMask(t *testing.T) {
	a := &capture.Alignment{Warp: [6]float64{1, 0, 10, 0, 1, 4}, Size: image.Pt(128, 128)}
	const w, h = 64, 64
	m := make([]float32, w*h)
	for i := range m {
		m[i] = 0.5
	}
	m[20*w+20] = 9
	mask := &segad.Mask{Width: w, Height: h, Labels: make([]uint8, w*h), Names: []string{"left", "right"}}
	for y := 0; y < h; y++ {
		for x := w / 2; x < w; x++ {
			mask.Labels[y*w+x] = 1
		}
	}
	// Scaling to the map: x' = s*x + (s-1)/2 with s = 1/2 turns a 10 px
	// shift into 5 map pixels exactly.
	maps, um := Unwarp(a, [][]float32{m}, w, h, mask)
	u := maps[0]
	if got := u[(20+2)*w+20+5]; got != 9 {
		t.Errorf("hot pixel not at (25, 22): %v there", got)
	}
	if got := u[20*w+20]; got != 0.5 {
		t.Errorf("old position still %v", got)
	}
	if u[0] != 0.5 {
		t.Errorf("outside the reference view %v, want the map minimum 0.5", u[0])
	}
	if um.Labels[30*w+2] != noSegment || um.Labels[30*w+(w/2+5)-1] != 0 || um.Labels[30*w+w/2+5] != 1 {
		t.Errorf("mask not moved: %v %v %v", um.Labels[30*w+2], um.Labels[30*w+w/2+4], um.Labels[30*w+w/2+5])
	}
	if mask.Labels[30*w+w/2] != 1 || m[20*w+20] != 9 {
		t.Error("inputs modified")
	}
	lost := &capture.Alignment{Err: capture.ErrNotLocated}
	if maps, um := Unwarp(lost, [][]float32{m}, w, h, mask); &maps[0][0] != &m[0] || um != mask {
		t.Error("an unlocated frame's maps were changed")
	}
	if maps, um := Unwarp(nil, [][]float32{m}, w, h, mask); &maps[0][0] != &m[0] || um != mask {
		t.Error("no fixturing changed the maps")
	}
}
