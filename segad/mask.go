// Package segad is SegAD proper: static segmentation masks (loading,
// resizing, validation, the built-in VAD-style template), the per-segment
// statistics that form a boosted random forest's input row, and verdicts.
//
// It is pure Go (no cgo) so that tools and tests that only need features do
// not pay for OpenCV; drawing a mask over an image lives in segad/preview.
package segad

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/segad-edge/segad-edge/npy"
)

// Ignore is the mask label of pixels that belong to no segment. Any label at
// or above the segment count is ignored the same way by the extractor, but
// only 255 passes Validate.
const Ignore = 255

// MaxSegments is the largest segment count a mask may declare (labels
// 0..254; 255 is Ignore).
const MaxSegments = 255

// MinLabelledShare is the share of a mask's pixels that must belong to a
// segment before Validate stops warning: a mask labelling less than this
// usually lost its labels (saved with the wrong values, or shifted).
const MinLabelledShare = 0.05

// MinSegmentPixels is the pixel count under which Validate warns that a
// segment's statistics are noise: its 0.995 quantile is its maximum and its
// skew and kurtosis are dominated by single pixels.
const MinSegmentPixels = 16

// maxMaskPixels bounds a PNG mask's pixel count, checked from its header
// before decoding, because Go's decoder allocates the whole image up front:
// a forged 50-byte file could otherwise ask for gigabytes. (The .npy reader
// only allocates what the file really holds.)
const maxMaskPixels = 16 << 20

// Mask is a static segmentation: one label per pixel, row-major.
type Mask struct {
	// Width and Height are the mask's size in pixels.
	Width, Height int
	// Labels holds Width*Height labels: j is segment j, Ignore is no segment.
	Labels []uint8
	// Names are the segment names, one per segment (len = segment count L).
	// They appear in feature names, so they must be unique and dot-free.
	Names []string
}

// NumSegments returns L, the number of segments.
func (m *Mask) NumSegments() int { return len(m.Names) }

// SidecarPath returns the names file that goes with a mask file:
// "mask.png" -> "mask.names.txt" (one segment name per line, in label order).
func SidecarPath(maskPath string) string {
	ext := filepath.Ext(maskPath)
	return strings.TrimSuffix(maskPath, ext) + ".names.txt"
}

// LoadMask reads a label mask from an 8-bit PNG (gray or paletted; value j =
// segment j, 255 = ignore) or a .npy integer array of shape (H, W).
//
// Segment names come from names when it is non-empty, else from the sidecar
// file SidecarPath(path) when it exists, else they are "seg0".."seg<L-1>"
// with L = the largest label below 255, plus one. The mask is validated
// (see Validate); warnings are not errors and are left to the caller.
func LoadMask(path string, names []string) (*Mask, error) {
	m, err := readLabels(path)
	if err != nil {
		return nil, fmt.Errorf("load mask %s: %w", path, err)
	}
	switch {
	case len(names) > 0:
		m.Names = append([]string(nil), names...)
	default:
		sc := SidecarPath(path)
		sn, err := ReadNames(sc)
		switch {
		case err == nil:
			m.Names = sn
		case errors.Is(err, os.ErrNotExist):
			m.Names = DefaultNames(maxLabel(m.Labels) + 1)
		default:
			return nil, fmt.Errorf("load mask %s: %w", path, err)
		}
	}
	if _, err := m.Validate(); err != nil {
		return nil, fmt.Errorf("load mask %s: %w", path, err)
	}
	return m, nil
}

// DefaultNames returns "seg0".."seg<n-1>".
func DefaultNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("seg%d", i)
	}
	return out
}

// ReadNames reads a names sidecar: one segment name per line, in label order;
// blank lines and lines starting with '#' are skipped.
func ReadNames(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read segment names %s: %w", path, err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names = append(names, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read segment names %s: %w", path, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("read segment names %s: no names in file", path)
	}
	return names, nil
}

// WriteNames writes the names sidecar ReadNames reads.
func WriteNames(path string, names []string) error {
	var sb strings.Builder
	sb.WriteString("# segment names, one per line: line j names mask label j\n")
	for _, n := range names {
		sb.WriteString(n)
		sb.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		return fmt.Errorf("write segment names %s: %w", path, err)
	}
	return nil
}

// CheckName reports whether s can name a segment or detector in feature
// names: non-empty, at most 64 bytes, letters, digits, '_' and '-' only (a
// '.' would make "<segment>.<detector>.<stat>" ambiguous).
func CheckName(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > 64 {
		return fmt.Errorf("name %q... is %d bytes: at most 64", s[:32], len(s))
	}
	for _, r := range s {
		ok := r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("name %q: only letters, digits, '_' and '-' are allowed", s)
		}
	}
	return nil
}

func maxLabel(labels []uint8) int {
	mx := -1
	for _, l := range labels {
		if l != Ignore && int(l) > mx {
			mx = int(l)
		}
	}
	return mx
}

func readLabels(path string) (*Mask, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".npy":
		a, err := npy.Read(path)
		if err != nil {
			return nil, err
		}
		return labelsFromNpy(a)
	case ".png":
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return DecodePNGMask(bufio.NewReader(f))
	default:
		return nil, fmt.Errorf("unsupported mask format %q (want .png or .npy)", filepath.Ext(path))
	}
}

func labelsFromNpy(a *npy.Array) (*Mask, error) {
	if a.Kind != npy.Int {
		return nil, fmt.Errorf("mask array has dtype %s: want an integer label array", a.Descr)
	}
	shape := a.Shape
	// Accept (H, W, 1) and (1, H, W), which image tools often produce.
	if len(shape) == 3 && shape[2] == 1 {
		shape = shape[:2]
	} else if len(shape) == 3 && shape[0] == 1 {
		shape = shape[1:]
	}
	if len(shape) != 2 || shape[0] == 0 || shape[1] == 0 {
		return nil, fmt.Errorf("mask array has shape %v: want (height, width)", a.Shape)
	}
	m := &Mask{Width: shape[1], Height: shape[0], Labels: make([]uint8, len(a.Int))}
	for i, v := range a.Int {
		if v < 0 || v > 255 {
			return nil, fmt.Errorf("mask label %d at pixel (%d, %d) outside 0..255", v, i%m.Width, i/m.Width)
		}
		m.Labels[i] = uint8(v)
	}
	return m, nil
}

// DecodePNGMask decodes the labels of an 8-bit gray or paletted PNG (a
// paletted image's labels are its palette indices). Colour images are
// accepted only when every pixel is gray (R = G = B), since some editors save
// gray masks as RGB; anything else is an error rather than a guess.
// Names are left empty.
func DecodePNGMask(r io.Reader) (*Mask, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(64)
	if err != nil && len(head) == 0 {
		return nil, fmt.Errorf("decode png: %w", err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(head))
	if err == nil && int64(cfg.Width)*int64(cfg.Height) > maxMaskPixels {
		return nil, fmt.Errorf("png is %dx%d: more than %d pixels", cfg.Width, cfg.Height, maxMaskPixels)
	}
	img, err := png.Decode(br)
	if err != nil {
		return nil, fmt.Errorf("decode png: %w", err)
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w == 0 || h == 0 {
		return nil, errors.New("png has no pixels")
	}
	m := &Mask{Width: w, Height: h, Labels: make([]uint8, w*h)}
	switch im := img.(type) {
	case *image.Gray:
		for y := 0; y < h; y++ {
			copy(m.Labels[y*w:(y+1)*w], im.Pix[y*im.Stride:y*im.Stride+w])
		}
	case *image.Paletted:
		for y := 0; y < h; y++ {
			copy(m.Labels[y*w:(y+1)*w], im.Pix[y*im.Stride:y*im.Stride+w])
		}
	case *image.Gray16:
		return nil, errors.New("png is 16-bit gray: save the mask as 8-bit (label j = segment j, 255 = ignore)")
	default:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				if c.R != c.G || c.G != c.B {
					return nil, fmt.Errorf("png pixel (%d, %d) is coloured (%d,%d,%d): a mask must be gray labels (or paletted)", x, y, c.R, c.G, c.B)
				}
				m.Labels[y*w+x] = c.R
			}
		}
	}
	return m, nil
}

// Resize returns a copy of the mask scaled to w x h with nearest-neighbour
// sampling (labels must never be interpolated), using OpenCV's INTER_NEAREST
// rule: source x = floor(x * srcW / w).
func (m *Mask) Resize(w, h int) (*Mask, error) {
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("resize mask to %dx%d: size must be positive", w, h)
	}
	out := &Mask{Width: w, Height: h, Labels: make([]uint8, w*h), Names: append([]string(nil), m.Names...)}
	xs := make([]int, w)
	for x := range xs {
		xs[x] = min(x*m.Width/w, m.Width-1)
	}
	for y := 0; y < h; y++ {
		sy := min(y*m.Height/h, m.Height-1)
		src := m.Labels[sy*m.Width : (sy+1)*m.Width]
		dst := out.Labels[y*w : (y+1)*w]
		for x, sx := range xs {
			dst[x] = src[sx]
		}
	}
	return out, nil
}

// Counts returns the number of pixels of each segment (len L).
func (m *Mask) Counts() []int {
	c := make([]int, len(m.Names))
	for _, l := range m.Labels {
		if int(l) < len(c) {
			c[l]++
		}
	}
	return c
}

// Validate checks the mask: sizes agree, names are valid and unique, no
// label lies between the segment count and 255 (such pixels would silently
// belong to no segment, which usually means the names are out of date), and
// at least one pixel belongs to a segment (a mask that is all 255, or whose
// named segments are all empty, would inspect nothing and pass every
// defect). A segment without pixels (often the result of resizing a thin
// segment down) is not an error; it comes back as a warning naming it, for
// the caller to log, and its features are all 0.0 as in the reference
// code. Segments under MinSegmentPixels and masks labelling less than
// MinLabelledShare of their pixels are warned about too.
func (m *Mask) Validate() (warnings []string, err error) {
	if m.Width <= 0 || m.Height <= 0 {
		return nil, fmt.Errorf("mask size %dx%d: must be positive", m.Width, m.Height)
	}
	if len(m.Labels) != m.Width*m.Height {
		return nil, fmt.Errorf("mask has %d labels for %dx%d pixels", len(m.Labels), m.Width, m.Height)
	}
	if len(m.Names) == 0 {
		return nil, errors.New("mask declares no segments")
	}
	if len(m.Names) > MaxSegments {
		return nil, fmt.Errorf("mask declares %d segments: at most %d", len(m.Names), MaxSegments)
	}
	seen := map[string]int{}
	for i, n := range m.Names {
		if err := CheckName(n); err != nil {
			return nil, fmt.Errorf("segment %d: %w", i, err)
		}
		if j, ok := seen[n]; ok {
			return nil, fmt.Errorf("segments %d and %d are both named %q", j, i, n)
		}
		seen[n] = i
	}
	L := len(m.Names)
	for i, l := range m.Labels {
		if int(l) >= L && l != Ignore {
			return nil, fmt.Errorf("label %d at pixel (%d, %d) but only %d segments are declared (labels 0..%d, 255 = ignore)",
				l, i%m.Width, i/m.Width, L, L-1)
		}
	}
	counts := m.Counts()
	labelled := 0
	for _, c := range counts {
		labelled += c
	}
	total := m.Width * m.Height
	if labelled == 0 {
		// Every feature would be 0 (or a map maximum): the forest would
		// score every part alike and defects would pass. Fail closed.
		return nil, fmt.Errorf("no pixel belongs to any of the %d segments at %dx%d (every pixel is 255 = ignore, or no pixel has a label 0..%d): nothing would be inspected and defective parts would pass; label the part's segments 0..%d",
			L, m.Width, m.Height, L-1, L-1)
	}
	if share := float64(labelled) / float64(total); share < MinLabelledShare {
		warnings = append(warnings, fmt.Sprintf("only %d of %d pixels (%.2f%%) belong to a segment at %dx%d: defects elsewhere are seen only by the map maxima; check the mask covers the part",
			labelled, total, 100*share, m.Width, m.Height))
	}
	for j, c := range counts {
		switch {
		case c == 0:
			warnings = append(warnings, fmt.Sprintf("segment %d %q has no pixels at %dx%d: its features will be 0", j, m.Names[j], m.Width, m.Height))
		case c < MinSegmentPixels:
			warnings = append(warnings, fmt.Sprintf("segment %d %q has only %d pixels at %dx%d: its quantile, skew and kurtosis are noise (give it at least %d pixels, or merge it)", j, m.Names[j], c, m.Width, m.Height, MinSegmentPixels))
		}
	}
	return warnings, nil
}

// Hash returns a hex sha256 over the mask's size, labels and names, recorded
// in model manifests so a model is never scored with a different mask than
// the one it was trained on.
func (m *Mask) Hash() string {
	h := sha256.New()
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:4], uint32(m.Width))
	binary.LittleEndian.PutUint32(b[4:], uint32(m.Height))
	h.Write(b[:])
	h.Write(m.Labels)
	for _, n := range m.Names {
		binary.LittleEndian.PutUint32(b[:4], uint32(len(n)))
		h.Write(b[:4])
		h.Write([]byte(n))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// WritePNG writes the labels as an 8-bit gray PNG and the names sidecar next
// to it (SidecarPath).
func (m *Mask) WritePNG(path string) error {
	img := &image.Gray{Pix: m.Labels, Stride: m.Width, Rect: image.Rect(0, 0, m.Width, m.Height)}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write mask %s: %w", path, err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("write mask %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write mask %s: %w", path, err)
	}
	return WriteNames(SidecarPath(path), m.Names)
}

// WriteNpy writes the labels as a (H, W) uint8 .npy and the names sidecar.
func (m *Mask) WriteNpy(path string) error {
	if err := npy.WriteUint8(path, []int{m.Height, m.Width}, m.Labels); err != nil {
		return fmt.Errorf("write mask: %w", err)
	}
	return WriteNames(SidecarPath(path), m.Names)
}

// BuiltinVAD names the built-in VAD-style mask (VADTemplate) where a mask
// file is expected.
const BuiltinVAD = "builtin:vad"

// MaskAt loads a mask (a label file, or BuiltinVAD drawn at w x h) at the
// anomaly maps' size w x h and validates it: the one way every tool (the
// line, fit, score) gets its mask. names are the segment names (nil: the
// sidecar file's, else seg0..). A mask of another size is resized nearest-
// neighbour (labels stay labels); one of another aspect ratio gives a
// warning, because its segments are stretched off the part. A mask with no
// labelled pixel at w x h is refused (Validate); its warnings are returned
// for the caller to log.
func MaskAt(source string, names []string, w, h int) (*Mask, []string, error) {
	var mask *Mask
	var warnings []string
	if source == BuiltinVAD {
		mask = VADTemplate(w, h, DefaultVADGeometry())
		if len(names) > 0 {
			if len(names) != mask.NumSegments() {
				return nil, nil, fmt.Errorf("segad.segments names %d segments but %s has %d", len(names), BuiltinVAD, mask.NumSegments())
			}
			mask.Names = append([]string(nil), names...)
		}
	} else {
		var err error
		if mask, err = LoadMask(source, names); err != nil {
			return nil, nil, err
		}
		if mask.Width != w || mask.Height != h {
			if ma, ta := float64(mask.Width)/float64(mask.Height), float64(w)/float64(h); math.Abs(ma/ta-1) > 0.02 {
				warnings = append(warnings, fmt.Sprintf("the mask is %dx%d but the maps are %dx%d: resized with another aspect ratio, the segments are stretched (check with `segad mask preview`)", mask.Width, mask.Height, w, h))
			}
			if mask, err = mask.Resize(w, h); err != nil {
				return nil, nil, fmt.Errorf("resize mask %s to %dx%d: %w", source, w, h, err)
			}
		}
	}
	more, err := mask.Validate()
	if err != nil {
		return nil, nil, fmt.Errorf("mask %s at the map size %dx%d: %w", source, w, h, err)
	}
	return mask, append(warnings, more...), nil
}
