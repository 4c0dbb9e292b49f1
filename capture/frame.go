package capture

import (
	"errors"
	"fmt"
	"time"

	"gocv.io/x/gocv"
)

// Frame is one image on its way through the pipeline. The receiver owns it
// and must Close it: both Mats hold C memory that Go's GC does not see.
type Frame struct {
	// Source is the configured source name.
	Source string
	// Seq increases by one for every frame (or error frame) a source hands
	// out, across reconnects, so gaps in results are visible downstream.
	Seq uint64
	// Captured is when the frame was read (live and video kinds) or the
	// file's modification time (folder and watch: the camera wrote it then).
	Captured time.Time
	// PartID comes from the file name (without extension) or the trigger;
	// "" when unknown.
	PartID string
	// Path is the file the frame came from (file kinds), "" for live kinds.
	Path string
	// Original is the frame as read, for audit images. Zero Mat when Err != nil.
	Original gocv.Mat
	// Image is the preprocessed frame: ROI, resize, colour; 8-bit, three
	// interleaved channels (order in Color), continuous. Zero Mat when Err != nil.
	Image gocv.Mat
	// Color is the channel order of Image: bgr, rgb or gray (replicated).
	Color string
	// Err is set when this part could not be read (corrupt, truncated,
	// zero-byte or unsupported file; no fresh frame after a trigger). The
	// daemon publishes a fail-closed result for PartID/Path.
	Err error
}

// Close frees both Mats. It is safe to call twice and on error frames.
func (f *Frame) Close() {
	if f == nil {
		return
	}
	closeMat(&f.Original)
	closeMat(&f.Image)
}

// ReleaseImages frees both Mats early and keeps the frame's metadata, for
// a frame that will not be inspected (dropped by the daemon's overflow
// policy) but still needs its result. Close stays safe afterwards.
func (f *Frame) ReleaseImages() {
	closeMat(&f.Original)
	closeMat(&f.Image)
	f.Original, f.Image = gocv.Mat{}, gocv.Mat{}
}

// closeMat closes m unless it was never allocated (error frames carry zero Mats).
func closeMat(m *gocv.Mat) {
	if m.Ptr() != nil {
		m.Close()
	}
}

// Pixels exposes Image's bytes without copying, in the layout the infer stage
// takes: 8-bit interleaved, three channels, with the row stride in bytes. The
// slice aliases C memory and is valid until Close.
func (f *Frame) Pixels() (pix []byte, width, height, stride int, err error) {
	if f.Err != nil {
		return nil, 0, 0, 0, fmt.Errorf("frame %d of %s: %w", f.Seq, f.Source, f.Err)
	}
	if f.Image.Ptr() == nil || f.Image.Empty() {
		return nil, 0, 0, 0, fmt.Errorf("frame %d of %s: no image", f.Seq, f.Source)
	}
	if f.Image.Type() != gocv.MatTypeCV8UC3 {
		return nil, 0, 0, 0, fmt.Errorf("frame %d of %s: image type %v, want 8UC3", f.Seq, f.Source, f.Image.Type())
	}
	pix, err = f.Image.DataPtrUint8()
	if err != nil {
		return nil, 0, 0, 0, fmt.Errorf("frame %d of %s: %w", f.Seq, f.Source, err)
	}
	return pix, f.Image.Cols(), f.Image.Rows(), f.Image.Step(), nil
}

// ToNCHW writes img (8-bit, three interleaved channels, continuous) into dst
// as planar float32 NCHW (batch 1): dst[c*H*W + y*W + x] = pixel * scale.
// With rgb set, the planes are R, G, B from a BGR image (what ONNX detectors
// trained in PyTorch take); otherwise they keep the image's order. dst must
// hold at least 3*H*W values.
func ToNCHW(dst []float32, img gocv.Mat, scale float32, rgb bool) error {
	if img.Ptr() == nil || img.Empty() {
		return errors.New("to NCHW: empty image")
	}
	if img.Type() != gocv.MatTypeCV8UC3 {
		return fmt.Errorf("to NCHW: image type %v, want 8UC3", img.Type())
	}
	pix, err := img.DataPtrUint8()
	if err != nil {
		return fmt.Errorf("to NCHW: %w", err)
	}
	return PixToNCHW(dst, pix, img.Cols(), img.Rows(), img.Step(), scale, rgb)
}

// PixToNCHW is ToNCHW over raw interleaved bytes with a row stride, for
// callers that hold pixels rather than a Mat. It is a straight loop over the
// byte slice with a 256-entry lookup table, which is what keeps it cheaper
// than the resize before it.
func PixToNCHW(dst []float32, pix []byte, width, height, stride int, scale float32, rgb bool) error {
	if width <= 0 || height <= 0 {
		return fmt.Errorf("to NCHW: bad size %dx%d", width, height)
	}
	if stride < 3*width {
		return fmt.Errorf("to NCHW: stride %d shorter than a row of %d pixels", stride, width)
	}
	if len(pix) < stride*(height-1)+3*width {
		return fmt.Errorf("to NCHW: %d bytes for %dx%d stride %d", len(pix), width, height, stride)
	}
	hw := width * height
	if len(dst) < 3*hw {
		return fmt.Errorf("to NCHW: dst holds %d values, need %d", len(dst), 3*hw)
	}
	var lut [256]float32
	for i := range lut {
		lut[i] = float32(i) * scale
	}
	p0, p1, p2 := dst[:hw], dst[hw:2*hw], dst[2*hw:3*hw]
	if rgb {
		p0, p2 = p2, p0 // byte 0 is B: it goes to the last plane
	}
	for y := 0; y < height; y++ {
		row := pix[y*stride : y*stride+3*width]
		o0 := p0[y*width : y*width+width]
		o1 := p1[y*width : y*width+width][:len(o0)]
		o2 := p2[y*width : y*width+width][:len(o0)]
		// Reslicing row by 3 each step lets the compiler drop every bounds
		// check in the loop body (check with -gcflags=-d=ssa/check_bce).
		for x := range o0 {
			if len(row) < 3 {
				break
			}
			o0[x] = lut[row[0]]
			o1[x] = lut[row[1]]
			o2[x] = lut[row[2]]
			row = row[3:]
		}
	}
	return nil
}
