// Package audit keeps evidence for quality audits: for every rejected part
// (and a share of passed ones) the original image with the detectors'
// anomaly heatmap and the segment outlines drawn over it, plus the result
// JSON, in a folder bounded in size and age.
package audit

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segad-edge/segad-edge/result"

	"gocv.io/x/gocv"

	"github.com/segad-edge/segad-edge/capture"

	"github.com/segad-edge/segad-edge/segad"
)

// Store keeps evidence for quality audits: for every failed part (and a
// sample of passed ones) the original image with the anomaly heatmap and the
// segment outlines drawn over it, plus the result JSON. The folder is bounded
// in size and age; the oldest entries go first.
type Store struct {
	dir      string
	maxBytes int64
	maxAge   time.Duration
	log      *slog.Logger

	mu    sync.Mutex
	files []auditFile // oldest first
	total int64

	// keep, when set, says an entry must outlive the bounds (its result is
	// labelled: training data); kept remembers its answers, since a label
	// is not taken back.
	keep func(id string) bool
	kept map[string]bool
}

// KeepWhen makes pruning skip the entries whose result ID keep reports
// (labelled results: the history says so). Their bytes still count, so the
// other entries go sooner.
func (a *Store) KeepWhen(keep func(id string) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.keep, a.kept = keep, map[string]bool{}
}

func (a *Store) keeps(base string) bool {
	if a.keep == nil {
		return false
	}
	id := filepath.Base(base)
	if a.kept[id] {
		return true
	}
	if a.keep(id) {
		a.kept[id] = true
		return true
	}
	return false
}

type auditFile struct {
	path string
	size int64
	mod  time.Time
}

// Open opens (creating it if needed) an audit folder and indexes what it
// already holds, so the bounds hold across restarts.
func Open(dir string, maxBytes int64, maxAge time.Duration, log *slog.Logger) (*Store, error) {
	return OpenKeeping(dir, maxBytes, maxAge, log, nil)
}

// OpenKeeping is Open with a keep rule (see KeepWhen) applied from the
// first pruning on, so a restart never deletes a labelled result's entry.
func OpenKeeping(dir string, maxBytes int64, maxAge time.Duration, log *slog.Logger, keep func(id string) bool) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("audit folder %s: %w", dir, err)
	}
	a := &Store{dir: dir, maxBytes: maxBytes, maxAge: maxAge, log: log, keep: keep, kept: map[string]bool{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		a.files = append(a.files, auditFile{p, info.Size(), info.ModTime()})
		a.total += info.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index audit folder %s: %w", dir, err)
	}
	sort.Slice(a.files, func(i, j int) bool { return a.files[i].mod.Before(a.files[j].mod) })
	a.prune(time.Now())
	return a, nil
}

// Save writes one part's evidence: <id>.jpg (overlay) and <id>.json. The
// original may be a zero or empty Mat (a part that could not be read, a
// dropped frame, an unserved trigger): then only the JSON is written, because
// an error frame is exactly what an auditor needs to see. maps are the
// detectors' anomaly maps (any may be nil).
func (a *Store) Save(res *result.Result, original gocv.Mat, maps [][]float32, mapW, mapH int, mask *segad.Mask) error {
	day := res.DecidedAt.UTC().Format("2006-01-02")
	dir := filepath.Join(a.dir, day)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("audit folder %s: %w", dir, err)
	}
	base := filepath.Join(dir, fileSafe(res.ID))
	var written []string
	var imgErr error
	if matUsable(original) {
		img := OverlayExplained(original, maps, mapW, mapH, mask, TopSegment(res.Explain))
		switch {
		case !matUsable(img):
			imgErr = fmt.Errorf("audit: image of %s not written: unsupported frame type %v", res.ID, original.Type())
		default:
			if err := capture.WriteImage(base+".jpg", img); err != nil {
				imgErr = fmt.Errorf("audit: %w", err)
				break
			}
			written = append(written, base+".jpg")
		}
		if img.Ptr() != nil {
			img.Close()
		}
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("audit: encode result %s: %w", res.ID, err)
	}
	if err := os.WriteFile(base+".json", js, 0o644); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	written = append(written, base+".json")
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range written {
		if info, err := os.Stat(p); err == nil {
			a.files = append(a.files, auditFile{p, info.Size(), info.ModTime()})
			a.total += info.Size()
		}
	}
	a.prune(time.Now())
	// The JSON record is kept even when the image could not be written.
	return imgErr
}

// matUsable reports whether m holds pixels. A zero gocv.Mat (error frames
// carry them) has a nil C pointer, and every OpenCV call on it, Empty
// included, dereferences that pointer: check the pointer first.
func matUsable(m gocv.Mat) bool { return m.Ptr() != nil && !m.Empty() }

// prune deletes the oldest entries until the folder is within its bounds.
// An entry (<id>.jpg and <id>.json) goes as a whole: half an entry is of no
// use to an auditor. Callers hold mu (or own a exclusively).
func (a *Store) prune(now time.Time) {
	gone := map[string]bool{} // entry bases deleted in this pass
	kept := a.files[:0]
	for i, f := range a.files {
		base := strings.TrimSuffix(f.path, filepath.Ext(f.path))
		tooOld := a.maxAge > 0 && now.Sub(f.mod) > a.maxAge
		tooBig := a.maxBytes > 0 && a.total > a.maxBytes
		if !gone[base] && !tooOld && !tooBig {
			kept = append(kept, a.files[i:]...)
			break
		}
		if !gone[base] && a.keeps(base) {
			kept = append(kept, f)
			continue
		}
		gone[base] = true
		a.remove(f)
	}
	// Siblings of deleted entries may sit later in the list (written a
	// moment after): delete them too.
	out := kept[:0]
	for _, f := range kept {
		if gone[strings.TrimSuffix(f.path, filepath.Ext(f.path))] {
			a.remove(f)
			continue
		}
		out = append(out, f)
	}
	a.files = out
}

func (a *Store) remove(f auditFile) {
	if err := os.Remove(f.path); err != nil && !os.IsNotExist(err) {
		a.log.Warn("audit: cannot delete old entry", "file", f.path, "err", err)
	}
	a.total -= f.size
}

// Bytes returns the audit folder's current size as indexed.
func (a *Store) Bytes() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}

// fileSafe keeps result IDs usable as file names.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ':' || r == 0 {
			return '_'
		}
		return r
	}, s)
}

// Overlay draws the element-wise maximum of the anomaly maps as a JET
// heatmap over the image (blended 40%), outlines the mask's segments in
// white and writes the map maximum in the corner. The caller closes the
// result. Maps are normalised to [0, max] of the frame itself, so the colour
// shows where, and the text shows how much. An original without pixels, or
// of a type that cannot be shown as 8-bit BGR, gives an empty Mat (never an
// OpenCV exception, which would abort the process).
func Overlay(original gocv.Mat, maps [][]float32, mapW, mapH int, mask *segad.Mask) gocv.Mat {
	return OverlayExplained(original, maps, mapW, mapH, mask, nil)
}

// OverlayExplained is Overlay that also names the segment that moved the
// score most (top, from TopSegment; nil for none): its outline is drawn
// thicker in yellow over the white ones, and its name and contribution
// ("wires +1.9") are written next to it. A top entry that is no segment
// of the mask ("(whole map)", the classifier score) is written in the
// corner under the map maximum.
func OverlayExplained(original gocv.Mat, maps [][]float32, mapW, mapH int, mask *segad.Mask, top *result.Contribution) gocv.Mat {
	out, ok := bgr8(original)
	if !ok {
		return gocv.NewMat()
	}
	w, h := out.Cols(), out.Rows()
	var comb []float32
	for _, m := range maps {
		if mapW <= 0 || mapH <= 0 || len(m) != mapW*mapH {
			continue
		}
		if comb == nil {
			comb = append([]float32(nil), m...)
			continue
		}
		for i, v := range m {
			if v > comb[i] {
				comb[i] = v
			}
		}
	}
	peak := float32(math.Inf(-1))
	if comb != nil {
		lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
		for _, v := range comb {
			if v < lo {
				lo = v
			}
			if v > hi {
				hi = v
			}
		}
		peak = hi
		gray := make([]byte, len(comb))
		if hi > lo {
			s := 255 / (hi - lo)
			for i, v := range comb {
				if v != v { // NaN shows as hottest: it is why the part failed
					gray[i] = 255
					continue
				}
				gray[i] = byte(min(max((v-lo)*s, 0), 255))
			}
		}
		g, err := gocv.NewMatFromBytes(mapH, mapW, gocv.MatTypeCV8UC1, gray)
		if err == nil && g.Empty() {
			g.Close()
			err = fmt.Errorf("empty %dx%d map", mapW, mapH)
		}
		if err == nil {
			heat := gocv.NewMat()
			gocv.ApplyColorMap(g, &heat, gocv.ColormapJet)
			big := gocv.NewMat()
			gocv.Resize(heat, &big, image.Pt(w, h), 0, 0, gocv.InterpolationLinear)
			gocv.AddWeighted(out, 0.6, big, 0.4, 0, &out)
			big.Close()
			heat.Close()
			g.Close()
		}
	}
	hi := -1 // the top segment's label
	if top != nil && mask != nil {
		hi = slices.Index(mask.Names, top.Name)
	}
	if mask != nil {
		drawOutlines(&out, mask, hi)
	}
	if !math.IsInf(float64(peak), -1) {
		gocv.PutText(&out, fmt.Sprintf("max %.3g", peak), image.Pt(8, 24), gocv.FontHersheySimplex, 0.7,
			color.RGBA{255, 255, 255, 0}, 2)
	}
	if top != nil {
		at := image.Pt(8, 52) // under the maximum
		if hi >= 0 {
			if box, ok := labelBox(mask, hi, w, h); ok {
				at = image.Pt(box.Min.X+4, box.Min.Y+22)
			}
		}
		drawLabel(&out, fmt.Sprintf("%s %+.2g", top.Name, top.Value), at)
	}
	return out
}

// highlight is the colour of the top segment's outline and name: yellow.
var highlight = color.RGBA{255, 255, 0, 0}

// TopSegment is the explanation's entry the overlay names: the segment
// that pushed the score furthest toward "bad" (the first positive entry of
// the table, which is sorted by |value|), else the one that moved it most.
// Nil without an explanation.
func TopSegment(x *result.Explanation) *result.Contribution {
	if x == nil || len(x.Segments) == 0 {
		return nil
	}
	for i := range x.Segments {
		if x.Segments[i].Value > 0 {
			c := x.Segments[i]
			return &c
		}
	}
	c := x.Segments[0]
	return &c
}

// labelBox is the bounding box of mask label l scaled to a w x h image.
func labelBox(m *segad.Mask, l, w, h int) (image.Rectangle, bool) {
	if m == nil || m.Width <= 0 || m.Height <= 0 || len(m.Labels) != m.Width*m.Height {
		return image.Rectangle{}, false
	}
	x0, y0, x1, y1 := m.Width, m.Height, -1, -1
	for i, v := range m.Labels {
		if int(v) != l {
			continue
		}
		x, y := i%m.Width, i/m.Width
		x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
	}
	if x1 < 0 {
		return image.Rectangle{}, false
	}
	return image.Rect(x0*w/m.Width, y0*h/m.Height, (x1+1)*w/m.Width, (y1+1)*h/m.Height), true
}

// drawLabel writes text at (x, baseline y), moved inside the image, in the
// highlight colour over a dark outline so it reads on any heatmap.
func drawLabel(img *gocv.Mat, text string, at image.Point) {
	const scale = 0.7
	sz := gocv.GetTextSize(text, gocv.FontHersheySimplex, scale, 2)
	at.X = max(min(at.X, img.Cols()-sz.X-2), 2)
	at.Y = min(max(at.Y, sz.Y+2), img.Rows()-4)
	gocv.PutText(img, text, at, gocv.FontHersheySimplex, scale, color.RGBA{0, 0, 0, 0}, 5)
	gocv.PutText(img, text, at, gocv.FontHersheySimplex, scale, highlight, 2)
}

// bgr8 returns a new 8-bit, 3-channel copy of m (the only type the overlay
// blends with a JET heatmap): gray and BGRA are converted, 16-bit frames
// (GStreamer GRAY16_LE) scaled down. ok is false for anything else.
func bgr8(m gocv.Mat) (gocv.Mat, bool) {
	if !matUsable(m) {
		return gocv.Mat{}, false
	}
	var depth8 gocv.Mat
	switch m.Type() {
	case gocv.MatTypeCV8UC1, gocv.MatTypeCV8UC3, gocv.MatTypeCV8UC4:
		depth8 = m.Clone()
	case gocv.MatTypeCV16UC1, gocv.MatTypeCV16UC3, gocv.MatTypeCV16UC4:
		depth8 = gocv.NewMat()
		m.ConvertToWithParams(&depth8, gocv.MatTypeCV8U, 1.0/257, 0)
	default:
		return gocv.Mat{}, false
	}
	switch depth8.Channels() {
	case 1:
		gocv.CvtColor(depth8, &depth8, gocv.ColorGrayToBGR)
	case 4:
		gocv.CvtColor(depth8, &depth8, gocv.ColorBGRAToBGR)
	}
	if depth8.Type() != gocv.MatTypeCV8UC3 || depth8.Empty() {
		depth8.Close()
		return gocv.Mat{}, false
	}
	return depth8, true
}

// drawOutlines paints white the pixels where the (nearest-neighbour
// scaled) mask label changes to the right or below; the border of label hi
// (-1 for none) is painted over in the highlight colour, thicker.
func drawOutlines(img *gocv.Mat, m *segad.Mask, hi int) {
	if m == nil || m.Width <= 0 || m.Height <= 0 || len(m.Labels) != m.Width*m.Height {
		return
	}
	w, h := img.Cols(), img.Rows()
	if img.Type() != gocv.MatTypeCV8UC3 || !img.IsContinuous() {
		return
	}
	pix, err := img.DataPtrUint8()
	if err != nil {
		return
	}
	label := func(x, y int) uint8 { return m.Labels[(y*m.Height/h)*m.Width+x*m.Width/w] }
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			l := label(x, y)
			if (x+1 < w && label(x+1, y) != l) || (y+1 < h && label(x, y+1) != l) {
				i := (y*w + x) * 3
				pix[i], pix[i+1], pix[i+2] = 255, 255, 255
			}
		}
	}
	if hi < 0 || hi >= 255 {
		return
	}
	// The top segment's border: every pixel of it next to another label,
	// widened to r pixels either side (3 on a 256-pixel image).
	r := max(1, min(w, h)/128)
	own := func(x, y int) bool { return int(label(x, y)) == hi }
	var border []image.Point
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			if !own(x, y) {
				continue
			}
			if x == 0 || y == 0 || x == w-1 || y == h-1 || !own(x-1, y) || !own(x+1, y) || !own(x, y-1) || !own(x, y+1) {
				border = append(border, image.Pt(x, y))
			}
		}
	}
	for _, p := range border {
		for y := max(p.Y-r, 0); y <= min(p.Y+r, h-1); y++ {
			for x := max(p.X-r, 0); x <= min(p.X+r, w-1); x++ {
				i := (y*w + x) * 3
				pix[i], pix[i+1], pix[i+2] = highlight.B, highlight.G, highlight.R // BGR
			}
		}
	}
}
