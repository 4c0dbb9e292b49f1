package capture

import (
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
	// Align is where fixturing (capture.align) found the part; nil when
	// fixturing is off. When Align.Err is set the part was not located:
	// Image is unwarped and the model fails the part closed (not_located).
	// When located, Image is already warped into the reference pose.
	Align *Alignment
	// Err is set when this part could not be read (corrupt, truncated,
	// zero-byte or unsupported file; no fresh frame after a trigger). The
	// daemon publishes a fail-closed result for PartID/Path.
	Err error
	// Ack, when set by the source, acknowledges the frame once its result
	// is stored durably (ok: the part passed). The watch folder sets it to
	// move the file to done/ (ok) or failed/; until then the file stays in
	// the watch folder, so a restart inspects it again rather than losing
	// it. Sources without acknowledgement leave it nil.
	Ack func(ok bool) error
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
