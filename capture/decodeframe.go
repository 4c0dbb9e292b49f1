package capture

import (
	"fmt"
	"time"

	"gocv.io/x/gocv"
)

// DecodeFrame decodes an encoded image (PNG, JPEG, BMP, TIFF, ...) from
// memory and preprocesses it exactly as a source configured with pc would,
// for images that arrive outside a source: the HTTP /inspect endpoint and
// `segad inspect`. It decodes through DecodeImage, so the header check, the
// process-wide limits and the exception guard apply. A corrupt, truncated,
// empty, unsupported or oversized image gives a frame with Err set (and no
// Mats), never a panic. The caller fills Source,
// Seq, PartID and Path, and must Close the frame.
func DecodeFrame(data []byte, pc PreprocessConfig) *Frame {
	pc = Config{Preprocess: pc}.withDefaults().Preprocess
	f := &Frame{Captured: time.Now(), Color: pc.Color}
	pre, err := newPreprocessor(pc)
	if err != nil {
		f.Err = fmt.Errorf("preprocess settings: %w", err)
		return f
	}
	m, err := DecodeImage(data)
	if err != nil {
		f.Err = fmt.Errorf("image: %w", err)
		return f
	}
	return preprocessInto(f, m, pre)
}

// FrameFromMat preprocesses an already decoded image (8-bit, 1, 3 or 4
// channels) as a source configured with pc would. The frame takes ownership
// of original (it becomes Frame.Original); the caller closes the frame.
func FrameFromMat(original gocv.Mat, pc PreprocessConfig) *Frame {
	pc = Config{Preprocess: pc}.withDefaults().Preprocess
	f := &Frame{Captured: time.Now(), Color: pc.Color}
	pre, err := newPreprocessor(pc)
	if err != nil {
		original.Close()
		f.Err = fmt.Errorf("preprocess settings: %w", err)
		return f
	}
	return preprocessInto(f, original, pre)
}

func preprocessInto(f *Frame, m gocv.Mat, pre *preprocessor) *Frame {
	img, err := pre.apply(m)
	if err != nil {
		m.Close()
		f.Err = fmt.Errorf("preprocess image: %w", err)
		return f
	}
	f.Align = pre.locate(&img)
	f.Original, f.Image = m, img
	return f
}
