// Package capture gets frames from whatever the line has (V4L2 cameras,
// RTSP/HTTP streams, GStreamer pipelines, video files, image sequences,
// image folders and FTP/SMB drop folders) into the pipeline, preprocessed
// for the detectors, and keeps doing so when cameras misbehave: live sources
// read in their own goroutine under a frame-age watchdog and are reopened
// with exponential backoff; broken files become error frames, never panics.
package capture

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrClosed is returned by Next and Trigger after Close.
var ErrClosed = errors.New("capture source closed")

// Source hands out frames one at a time. Next and Close may be called from
// different goroutines; Next itself is meant for one consumer.
type Source interface {
	// Name is the configured source name (Frame.Source).
	Name() string
	// Next blocks until a frame is available or ctx is done. Finite
	// sources (video, sequence, folder) return io.EOF at the end. A frame
	// with Err set is a part that could not be read; the caller still owns
	// it and must Close it.
	Next(ctx context.Context) (*Frame, error)
	// State reports connection health for the health endpoint and metrics.
	State() SourceState
	// Close stops the source and frees everything it holds.
	Close() error
}

// Triggerer is implemented by live sources; Trigger fails unless the source
// is configured with trigger.mode on-demand.
type Triggerer interface {
	// Trigger asks for the freshest frame; the next Next returns a frame
	// captured at or after this call, carrying partID, or an error frame when
	// none arrives within trigger.timeout.
	Trigger(partID string) error
}

// SourceState is a snapshot of a source's health.
type SourceState struct {
	// Connected: the source is open and delivering.
	Connected bool
	// Reconnecting: the source failed and a reopen is pending or running.
	Reconnecting bool
	// Reconnects counts reopen attempts since Open.
	Reconnects int
	// LastFrameAge is the time since the last frame was read (0 before the first).
	LastFrameAge time.Duration
	// LastError is the most recent failure, "" when none.
	LastError string
	// AckFailures counts files the watch folder could not move to done/ or
	// failed/ after their result (each stays in place and is inspected
	// again after a restart).
	AckFailures int
}

// Open validates cfg and starts the source. Live sources return at once and
// connect in the background (a camera that is off at start-up is retried
// with backoff); file sources fail here when their path is unusable. Open
// also applies cfg.Limits process-wide (SetLimits).
func Open(cfg Config) (Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	pre, err := newPreprocessor(cfg.Preprocess)
	if err != nil {
		return nil, fmt.Errorf("capture source %q: %w", cfg.Name, err)
	}
	var src Source
	switch cfg.Kind {
	case KindDevice, KindStream, KindGStreamer:
		src, err = openLive(cfg, pre)
	case KindVideo, KindSequence:
		src, err = openVideoFile(cfg, pre)
	case KindFolder:
		src, err = openFolder(cfg, pre)
	case KindWatch:
		src, err = openWatch(cfg, pre)
	default:
		return nil, fmt.Errorf("capture source %q: unknown kind %q", cfg.Name, cfg.Kind)
	}
	if err != nil {
		return nil, err
	}
	// The limits are process-wide (they also guard the HTTP API's
	// DecodeFrame): the source that opens last sets them.
	if err := SetLimits(cfg.Limits); err != nil {
		src.Close()
		return nil, fmt.Errorf("capture source %q: %w", cfg.Name, err)
	}
	return src, nil
}
