// Package daemon joins the stages into the inspection line:
//
//	capture (FrameSource) -> infer (Detectors) -> segad features -> BRF (Scorer) -> verdict -> mqtt (Publisher)
//
// The path of one frame reads top to bottom in line.go (Line.Inspect); this
// file holds the small interfaces the stages meet at, so each stage package
// stays usable and testable on its own.
package daemon

import (
	"context"

	"github.com/segad-edge/segad-edge/result"

	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/infer"
)

// FrameSource yields frames; capture.Source implements it.
type FrameSource interface {
	Name() string
	Next(ctx context.Context) (*capture.Frame, error)
	State() capture.SourceState
	Close() error
}

// Detectors runs the K anomaly detectors and the optional classifier on one
// frame; *infer.Set implements it. imgs[i] is detector i's input, the
// classifier's last.
type Detectors interface {
	Run(imgs []infer.Image) (*infer.SetOutput, error)
	InputSizes() []infer.Size
	Warmup(n int) error
	Close() error
}

// Scorer turns a feature row into SegAD's score (the raw margin); every
// brf.Model implements it.
type Scorer interface {
	NumFeatures() int
	Margin(row []float32) float64
}

// Publisher takes results: *mqtt.Publisher stores them durably and sends
// them to the broker; `segad inspect` prints them.
type Publisher interface {
	Publish(ctx context.Context, r result.Result) error
	Close(ctx context.Context) error
}
