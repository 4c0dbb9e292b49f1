package demo

import (
	"errors"
	"fmt"
	"image"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/segad"
)

// DefaultPartSize is the side of a rendered part image, VAD-like 512x512.
const DefaultPartSize = 512

// minPartSize keeps the thinnest features (wires, cracks) at least a pixel wide.
const minPartSize = 128

// PartGeometry is the VAD geometry the synthetic parts are drawn with, so
// segad.VADTemplate(size, size, PartGeometry()) is their 7-segment mask. It
// is segad.DefaultVADGeometry with a wider wires area: good wires sag by a
// few pixels, and the lane must hold that natural variation (as VAD's
// static mask does) while a badly bent wire leaves it.
func PartGeometry() segad.VADGeometry {
	g := segad.DefaultVADGeometry()
	g.WireWidth = 0.055
	return g
}

// PartMask returns the 7-segment mask matching parts rendered at size.
func PartMask(size int) *segad.Mask {
	return segad.VADTemplate(size, size, PartGeometry())
}

// PartInfo describes one rendered part.
type PartInfo struct {
	// Index is the part's number within its generator: (seed, Index, Kind)
	// fixes every pixel.
	Index uint64 `json:"index"`
	// Kind is PartGood or the defect type.
	Kind DefectKind `json:"kind"`
	// Category is CategoryLogical or CategoryStructural ("" for good parts).
	Category string `json:"category,omitempty"`
	// Unseen tells whether the kind is held out of training.
	Unseen bool `json:"unseen,omitempty"`
	// BBox bounds the pixels the defect changed (empty for good parts).
	BBox image.Rectangle `json:"bbox"`
	// Segments are the VAD segment labels the defect lies in.
	Segments []int `json:"segments,omitempty"`
	// Shift is the part's position jitter in pixels (natural variation).
	ShiftX, ShiftY float64 `json:"-"`
	// DarkBottom is the height of the thin dark band some images have at
	// their bottom edge (0: none), natural variation of the camera setup.
	DarkBottom int `json:"dark_bottom,omitempty"`
}

// PartGen renders synthetic part images. It is deterministic: part n of a
// generator seeded s is the same image on every machine and run, whichever
// order parts are rendered in (RenderPart). A PartGen is not safe for
// concurrent use; make one per goroutine (they share nothing mutable).
type PartGen struct {
	seed uint64
	size int
	next uint64
	r    *renderer
}

// NewPartGen returns a generator of size x size parts (0: DefaultPartSize).
// Sizes below 128 are raised to 128 so that wires stay visible.
func NewPartGen(seed uint64, size int) *PartGen {
	if size <= 0 {
		size = DefaultPartSize
	}
	size = max(size, minPartSize)
	return &PartGen{seed: seed, size: size, r: newRenderer(size)}
}

// Size is the side of the rendered images in pixels.
func (g *PartGen) Size() int { return g.size }

// Mask is the 7-segment mask of this generator's parts.
func (g *PartGen) Mask() *segad.Mask { return g.r.mask }

// Render renders the next part (index 0, 1, ...) as kind. The caller must
// Close the Mat.
func (g *PartGen) Render(kind DefectKind) (gocv.Mat, PartInfo, error) {
	m, info, err := g.RenderPart(g.next, kind)
	if err == nil {
		g.next++
	}
	return m, info, err
}

// RenderPart renders part index as kind into a new 8-bit BGR Mat. Rendering
// the same index as PartGood and as a defect gives the same part (same
// jitter, wire shapes, lighting and noise) with only the defect added, which
// is how tests locate a defect's pixels.
func (g *PartGen) RenderPart(index uint64, kind DefectKind) (gocv.Mat, PartInfo, error) {
	buf := make([]byte, 3*g.size*g.size)
	info, err := g.RenderBGR(buf, index, kind)
	if err != nil {
		return gocv.Mat{}, info, err
	}
	m := gocv.NewMatWithSize(g.size, g.size, gocv.MatTypeCV8UC3)
	pix, err := m.DataPtrUint8()
	if err != nil {
		m.Close()
		return gocv.Mat{}, info, fmt.Errorf("render part %d: %w", index, err)
	}
	copy(pix, buf)
	return m, info, nil
}

// RenderBGR renders part index as kind into dst, 8-bit interleaved BGR with
// a stride of 3*Size() bytes (OpenCV's layout), without cgo.
func (g *PartGen) RenderBGR(dst []byte, index uint64, kind DefectKind) (PartInfo, error) {
	if len(dst) < 3*g.size*g.size {
		return PartInfo{}, fmt.Errorf("render part %d: buffer holds %d bytes, a %dx%d BGR image needs %d", index, len(dst), g.size, g.size, 3*g.size*g.size)
	}
	info := PartInfo{Index: index, Kind: kind}
	var dt DefectType
	if kind != PartGood {
		var ok bool
		if dt, ok = LookupDefect(kind); !ok {
			return PartInfo{}, fmt.Errorf("render part %d: unknown part kind %q: want good or one of %v", index, kind, DefectKinds())
		}
		info.Category, info.Unseen = dt.Category, dt.Unseen
	}
	g.r.render(dst, g.seed, index, kind, &info)
	return info, nil
}

// errNoParts is returned when a dataset or stream would be empty.
var errNoParts = errors.New("no parts requested")
