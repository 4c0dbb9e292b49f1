package daemon

import (
	"image"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/audit"
	"github.com/segad-edge/segad-edge/capture"
	"github.com/segad-edge/segad-edge/model"
	"github.com/segad-edge/segad-edge/mqtt"
)

// Preview is a live view of the line (the technician console): the
// daemon hands it the latest part's frame with its anomaly heatmap and
// segment outlines, only while it wants one. Both methods are called from
// the line's own goroutines, so they must return at once.
type Preview interface {
	// PreviewDue reports whether a frame is wanted now (someone watches
	// and the last one is old enough). A true answer takes the slot: the
	// daemon keeps the part's maps and renders it.
	PreviewDue() bool
	// PreviewFrame receives a rendered frame (JPEG), from a goroutine of
	// its own, after the part's result went to the outputs.
	PreviewFrame(f PreviewFrame)
}

// PreviewFrame is one rendered part for a live view.
type PreviewFrame struct {
	// ResultID and Seq name the result the frame belongs to.
	ResultID string
	Seq      uint64
	// JPEG is the frame with the heatmap overlay (audit.OverlayExplained),
	// at most previewWidth pixels wide.
	JPEG []byte
	// Width and Height are the JPEG's size in pixels.
	Width, Height int
	// At is when it was rendered.
	At time.Time
}

// previewWidth bounds a preview's width: a panel PC shows it at about
// this size, and a smaller JPEG keeps a browser on a slow link current.
const previewWidth = 480

// previewState is the daemon's side of the preview hook.
type previewState struct {
	hook Preview
	// due is the frame previewDue took the slot for; offerPreview renders
	// that frame only (finish also runs on the capture goroutine, for
	// parts rejected there, and those must not take the slot).
	due atomic.Pointer[capture.Frame]
	// rendering is true while one frame is being rendered: a second is
	// skipped rather than queued, so a slow render never adds up.
	rendering atomic.Bool
}

// previewDue asks the hook whether f, about to be scored, should be
// previewed; when it should, Score keeps its maps.
func (d *Daemon) previewDue(f *capture.Frame) bool {
	p := d.preview
	if p == nil || p.rendering.Load() || !p.hook.PreviewDue() {
		return false
	}
	p.due.Store(f)
	return true
}

// offerPreview renders the finished part for the hook in the background
// when previewDue asked for it. The frame is cloned (the line closes its
// own at once); the maps are the inspection's own copies, which nothing
// else uses once the audit has saved them.
func (d *Daemon) offerPreview(f *capture.Frame, ins *model.Inspection) {
	p := d.preview
	if p == nil || !p.due.CompareAndSwap(f, nil) {
		return
	}
	if f.Original.Ptr() == nil || f.Original.Empty() || !p.rendering.CompareAndSwap(false, true) {
		return
	}
	// Shrunk before the overlay, not after: the overlay's per-pixel work
	// and the JPEG then cost a preview's size, not the camera's.
	img := gocv.NewMat()
	if w, h := f.Original.Cols(), f.Original.Rows(); w > previewWidth {
		gocv.Resize(f.Original, &img, image.Pt(previewWidth, max(h*previewWidth/w, 1)), 0, 0, gocv.InterpolationArea)
	} else {
		f.Original.CopyTo(&img)
	}
	res := ins.Result
	maps, mw, mh, mask := ins.Maps, ins.MapW, ins.MapH, ins.Mask
	al := f.Align // plain data: safe after the frame is closed
	go func() {
		defer p.rendering.Store(false)
		defer img.Close()
		// Fixturing: the maps are in the reference pose; draw them where
		// the part was in the frame, as the audit image does.
		maps, mask := audit.Unwarp(al, maps, mw, mh, mask)
		over := audit.OverlayExplained(img, maps, mw, mh, mask, audit.TopSegment(res.Explain))
		defer over.Close()
		if over.Empty() {
			return
		}
		buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, over, []int{gocv.IMWriteJpegQuality, 80})
		if err != nil {
			d.floodLog.Warn("preview not rendered", "id", res.ID, "err", err)
			return
		}
		jpg := append([]byte(nil), buf.GetBytes()...)
		buf.Close()
		p.hook.PreviewFrame(PreviewFrame{ResultID: res.ID, Seq: res.Seq, JPEG: jpg, Width: over.Cols(), Height: over.Rows(), At: time.Now()})
	}()
}

// Status is the line's state for a live view: the health the daemon
// publishes on MQTT, with the result link's counters filled in.
func (d *Daemon) Status() mqtt.Health {
	h := d.health()
	s := d.pub.Stats()
	h.BrokerBacklog, h.OutboxDrops, h.Published, h.LastError = s.Backlog, s.Drops, s.Published, s.LastError
	h.Time = time.Now().UTC()
	return h
}

// BrokerConnected reports whether the MQTT link is up now.
func (d *Daemon) BrokerConnected() bool { return d.pub.Stats().Connected }

// Thresholds are the threshold and warn threshold in force (warn NaN: no
// warn band).
func (d *Daemon) Thresholds() (threshold, warn float64) {
	s := d.insp.Settings()
	return s.Threshold, s.Warn
}
